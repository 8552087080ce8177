"""CUDA-graph timing of back-to-back kernel launches over rotating input buffers.

On an H100 a single launch, or triton.testing.do_bench, reads the Python launch path for small
kernels (46-63 us for kernels that take 17-20 us). A captured graph replays many launches with no
host in between, and rotating through enough input sets keeps the weights out of L2, as in serving.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from kernels._reference import quantize_blockwise, quantize_per_token_group

Operands = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class GraphTiming:
    """Per-launch latencies in microseconds: the cheap first estimate and the median of replays.

    gpu_us is how long the device ran every replay of this timing, warm-ups included: the GPU's
    busy time, from which a run reports its duty cycle.
    """

    estimate_us: float
    median_us: float | None
    p20_us: float | None
    p80_us: float | None
    launches_per_replay: int
    gpu_us: float = 0.0


def rotation_sets_needed(
    M: int, N: int, K: int, *, l2_bytes: int, block_size: Sequence[int] = (128, 128), max_sets: int = 64
) -> int:
    """How many operand sets a rotation needs so that every launch reads its inputs from DRAM.

    What rotates is each set's inputs: A and B (one byte an element) and their float32 scales. The
    output does not: every launch of a timing writes the same C, as a graph that allocates it per
    launch reuses one block. So the sets' inputs together must exceed twice the L2.
    """
    block_n, block_k = block_size
    groups = -(-K // block_k)
    per_set = M * K + N * K + 4 * (M * groups + -(-N // block_n) * groups)
    return max(2, min(max_sets, math.ceil(2 * l2_bytes / per_set)))


def make_weight_sets(
    N: int, K: int, block_size: Sequence[int], dtype: torch.dtype, n_sets: int, *, device="cuda", seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n_sets distinct block-quantized random weights (N, K) with their scales."""
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    return [
        quantize_blockwise(torch.randn(N, K, device=device, generator=generator), list(block_size), dtype)
        for _ in range(n_sets)
    ]


def make_operand_sets(
    M: int,
    weights: Sequence[tuple[torch.Tensor, torch.Tensor]],
    block_size: Sequence[int],
    n_sets: int,
    *,
    seed: int = 0,
) -> list[Operands]:
    """n_sets (A, B, As, Bs) with fresh random activations, cycling over the given weights.

    Several batch sizes of one shape share the weights: only the activations depend on M.
    """
    b0, _ = weights[0]
    generator = torch.Generator(device=b0.device).manual_seed(seed)
    sets = []
    for i in range(n_sets):
        x = torch.randn(M, b0.shape[1], device=b0.device, generator=generator)
        a, a_scales = quantize_per_token_group(x, block_size[1], b0.dtype)
        b, b_scales = weights[i % len(weights)]
        sets.append((a, b, a_scales, b_scales))
    return sets


def _capture(launch: Callable[[int], object], n_launches: int) -> torch.cuda.CUDAGraph:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(n_launches):
            launch(i)
    return graph


def _replay_us(graph: torch.cuda.CUDAGraph, n_launches: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / n_launches


def time_launches(
    launch: Callable[[int], object],
    n_sets: int,
    *,
    prune_above_us: float | None = None,
    target_replay_us: float = 1000.0,
    replays: int = 5,
    max_launches: int = 2000,
) -> GraphTiming:
    """Time launch(i) (i picks the operand set, i % n_sets) as the median of graph replays.

    launch must already have run once eagerly, so that compilation and module loading stay out of
    the graph. A first graph of one pass over the sets, replayed once to warm up, gives a cheap
    estimate; if it is above prune_above_us the full measurement is skipped. Otherwise a graph long
    enough to fill target_replay_us is replayed once to warm up and `replays` times to measure.
    Where one pass already fills it (slow kernels), that graph is the warm first one: a copy would
    cost a capture and one more pass of a kernel that takes milliseconds.
    """
    gpu_us = 0.0

    def replay(graph: torch.cuda.CUDAGraph, n_launches: int) -> float:
        nonlocal gpu_us
        us = _replay_us(graph, n_launches)
        gpu_us += us * n_launches
        return us

    graph = _capture(lambda i: launch(i % n_sets), n_sets)
    replay(graph, n_sets)
    estimate = replay(graph, n_sets)
    if prune_above_us is not None and estimate > prune_above_us:
        return GraphTiming(estimate, None, None, None, n_sets, gpu_us)
    passes = max(1, math.ceil(target_replay_us / (estimate * n_sets)))
    n_launches = min(max_launches, passes * n_sets)
    if n_launches != n_sets:
        del graph  # its memory, before the long one is captured
        graph = _capture(lambda i: launch(i % n_sets), n_launches)
        replay(graph, n_launches)
    samples = sorted(replay(graph, n_launches) for _ in range(replays))
    del graph
    quantiles = statistics.quantiles(samples, n=5)
    return GraphTiming(estimate, statistics.median(samples), quantiles[0], quantiles[-1], n_launches, gpu_us)
