"""Does a K tile below the quantization block compile, compute right and ever win? [32, 32] blocks, on a GPU.

    PYTHONPATH=. python benchmarks/block_k_check.py          # needs a CUDA GPU

SGLang's kernels need BLOCK_SIZE_K to divide block_k (they step the scale pointers once every
block_k // BLOCK_SIZE_K K tiles), so for [32, 32] blocks the K tile is 32 or 16. This times a few
tiles at both, through the tuner's own GPU benchmarker (compile pool, the check against the float32
reference on random inputs, CUDA-graph timing over rotating operands), on three shapes of SGLang's
shipped [32, 32] files and one odd shape whose N and K end in partial blocks, and prints per point
the best latency at each K tile and their ratio, and every config that failed, with its reason.
"""

from __future__ import annotations

import itertools
import sys

from tuner.benchmarkers import GpuBenchmarker
from tuner.space import Config, Problem

SHAPES = [(576, 5120), (5120, 2048), (25600, 6144)]
BATCH_SIZES = [1, 64, 1024]
ODD = [((1000, 1000), 3), ((1000, 1000), 67)]  # N and K end in partial 32-blocks; M odd
TILES = [(16, 64), (64, 64), (128, 128)]
STAGES = (3, 5)
BLOCK_KS = (16, 32)


def configs() -> list[Config]:
    """The base tiles at each K tile, and two of them on SGLang's Hopper path."""
    base = [
        Config(block_m=bm, block_n=bn, block_k=bk, group_m=1, num_warps=4, num_stages=s)
        for (bm, bn), s, bk in itertools.product(TILES, STAGES, BLOCK_KS)
    ]
    hopper = [
        Config(block_m=16, block_n=64, block_k=bk, group_m=1, num_warps=4, num_stages=4, split_k=4, swap_ab=True)
        for bk in BLOCK_KS
    ]
    return base + hopper


def main() -> int:
    points = [(shape, M, "fp8") for shape, M in itertools.product(SHAPES, BATCH_SIZES)]
    points += [(shape, M, input_type) for (shape, M), input_type in itertools.product(ODD, ("fp8", "int8"))]
    candidates = configs()
    failures = 0
    with GpuBenchmarker() as bench:
        print(f"device {bench.device_name}")
        problems = [
            Problem(N=N, K=K, M=M, block_n=32, block_k=32, input_type=t, out_dtype="float16") for (N, K), M, t in points
        ]
        for problem in problems:
            bench.prepare(problem, candidates)
        print(f"{'N':>6} {'K':>5} {'M':>5} {'in':>4} {'best BK16 us':>12} {'best BK32 us':>12} {'16/32':>6}  "
              "best BK16 / BK32")  # fmt: skip
        for problem in problems:
            best: dict[int, tuple[float, Config]] = {}
            for config in candidates:
                m = bench.measure(problem, config)
                if m.status != "ok":
                    failures += m.status == "wrong_result"
                    print(f"  {problem.N}x{problem.K} M={problem.M} {problem.input_type} {config.short()}: "
                          f"{m.status} {m.reason[:160]}")  # fmt: skip
                    continue
                if config.block_k not in best or m.us < best[config.block_k][0]:
                    best[config.block_k] = (m.us, config)
            b16, b32 = best.get(16), best.get(32)
            ratio = f"{b16[0] / b32[0]:6.3f}" if b16 and b32 else "     -"
            print(f"{problem.N:>6} {problem.K:>5} {problem.M:>5} {problem.input_type:>4} "
                  f"{b16[0] if b16 else float('nan'):>12.1f} {b32[0] if b32 else float('nan'):>12.1f} {ratio}  "
                  f"{b16[1].short() if b16 else '-'} / {b32[1].short() if b32 else '-'}", flush=True)  # fmt: skip
    print(f"{failures} wrong results")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
