"""The GPU side on a real CUDA device: graph timing, compile-ahead, the correctness check, dtypes, cuBLAS.

Skipped without a CUDA GPU. Small shapes and few configs, so the module takes well under a minute
on an H100, compilation included.
"""

from __future__ import annotations

import pytest
import torch

import kernels._w8a8_block
from kernels import (
    OUTPUT_DTYPES,
    RELATIVE_TOLERANCE,
    quantize_blockwise,
    quantize_per_token_group,
    w8a8_block_matmul,
    w8a8_block_matmul_reference,
)
from kernels.timing import time_launches
from tuner.benchmarkers._cuda import CudaTimingSession, compile_config
from tuner.benchmarkers._gpu import specialization
from tuner.cli.compare import _cublas, _time_cublas
from tuner.space import Config, Problem

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BLOCK = [128, 128]
PROBLEM = Problem(N=512, K=1024, M=16, out_dtype="bfloat16")
CONFIG = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)


@pytest.fixture(scope="module")
def session() -> CudaTimingSession:
    return CudaTimingSession(0)


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out.float() - reference.float()).norm() / reference.float().norm()).item()


def _launcher(session: CudaTimingSession, problem: Problem, config: Config):
    sets = session.operands(problem)

    def launch(i: int) -> torch.Tensor:
        return w8a8_block_matmul(*sets[i], BLOCK, OUTPUT_DTYPES[problem.out_dtype], config.as_sglang())

    launch(0)  # compiled and loaded outside the graph, as time_launches requires
    torch.cuda.synchronize()
    return launch, len(sets)


def test_graph_replays_time_a_real_kernel(session):
    launch, n_sets = _launcher(session, PROBLEM, CONFIG)
    timing = time_launches(launch, n_sets)
    assert 0 < timing.median_us < 1000.0  # a 16x512x1024 product: microseconds, not the host's milliseconds
    assert timing.p20_us <= timing.median_us <= timing.p80_us
    assert 0.5 < timing.median_us / timing.estimate_us < 2.0  # the long graph agrees with the first pass
    # The measured graph fills the 1 ms target (or the cap on launches) and cycles over whole passes.
    assert timing.launches_per_replay == 2000 or timing.launches_per_replay * timing.estimate_us >= 1000.0
    assert timing.launches_per_replay == 2000 or timing.launches_per_replay % n_sets == 0
    # The device's busy time covers at least the three measured replays at or above the median.
    assert timing.gpu_us >= 3 * timing.launches_per_replay * timing.median_us


def test_a_slow_first_estimate_is_pruned_without_the_long_graph(session):
    launch, n_sets = _launcher(session, PROBLEM, CONFIG)
    timing = time_launches(launch, n_sets, prune_above_us=1e-3)
    assert timing.median_us is None and timing.estimate_us > 0 and timing.launches_per_replay == n_sets


def _compiled() -> int:
    """How many binaries the kernel holds in memory for this device (the first of Triton's device caches)."""
    kernel = kernels._w8a8_block._w8a8_block_matmul_kernel
    return len(kernel.device_caches[torch.cuda.current_device()][0])


def test_compile_ahead_builds_exactly_the_binary_the_launch_uses():
    # A config no other test here runs, so every binary counted below is this test's own.
    config = Config(block_m=32, block_n=64, block_k=128, group_m=16, num_warps=4, num_stages=2)
    base = Problem(N=512, K=7168, M=16)
    others = [Problem(N=1024, K=7168, M=48), Problem(N=512, K=18432, M=16), Problem(N=520, K=7168, M=16)]
    for problem in [base, *others]:
        before = _compiled()
        assert compile_config(problem, config) is None
        compiled = _compiled() - before
        # A new binary exactly where the tuner's key says Triton specializes anew.
        same_key = problem is not base and specialization(problem, config) == specialization(base, config)
        assert compiled == (0 if same_key else 1), problem
        a, a_scales = quantize_per_token_group(torch.randn(problem.M, problem.K, device="cuda"), 128,
                                               torch.float8_e4m3fn)  # fmt: skip
        b, b_scales = quantize_blockwise(torch.randn(problem.N, problem.K, device="cuda"), BLOCK, torch.float8_e4m3fn)
        loaded = _compiled()
        out = w8a8_block_matmul(a, b, a_scales, b_scales, BLOCK, torch.float16, config.as_sglang())
        assert _compiled() == loaded, problem  # the launch found the compiled binary
        reference = w8a8_block_matmul_reference(a, b, a_scales, b_scales, BLOCK, torch.float32)
        assert _relative_error(out, reference) < RELATIVE_TOLERANCE[torch.float16]


def test_measure_passes_a_right_result_and_stops_a_wrong_one(session):
    ok = session.measure(PROBLEM, CONFIG, None)
    assert ok.status == "ok" and ok.us > 0
    pruned = session.measure(PROBLEM, CONFIG, 1e-3)
    assert pruned.status == "pruned" and pruned.us > 0
    reference = session._references[PROBLEM]  # no public way to plant a wrong reference
    session._references[PROBLEM] = reference * 1.5
    try:
        wrong = session.measure(PROBLEM, CONFIG, None)
    finally:
        session._references[PROBLEM] = reference
    assert wrong.status == "wrong_result" and "relative error 0.33" in wrong.reason


# K=18432 is the longest reduction of DeepSeek-V3's shapes, where Hopper's fp8 accumulation strays
# most (5.9e-4 read for a float32 output); M=13 leaves a partial tile.
@pytest.mark.parametrize("input_type", ["fp8", "int8"])
@pytest.mark.parametrize("out_dtype", ["float32", "float16", "bfloat16"])
def test_every_output_dtype_is_within_its_tolerance(session, input_type, out_dtype):
    problem = Problem(N=512, K=18432, M=13, input_type=input_type, out_dtype=out_dtype)
    a, b, a_scales, b_scales = session.operands(problem)[0]
    out = w8a8_block_matmul(a, b, a_scales, b_scales, BLOCK, OUTPUT_DTYPES[out_dtype], CONFIG.as_sglang())
    reference = w8a8_block_matmul_reference(a, b, a_scales, b_scales, BLOCK, torch.float32)
    assert out.dtype == OUTPUT_DTYPES[out_dtype]
    assert _relative_error(out, reference) < RELATIVE_TOLERANCE[OUTPUT_DTYPES[out_dtype]]
    assert session.measure(problem, CONFIG, None).status == "ok"  # the harness's own check agrees


def test_cublas_times_the_same_product(session):
    problem = Problem(N=1024, K=7168, M=128, out_dtype="bfloat16")
    us = _time_cublas(session, problem)
    if us is None:
        pytest.skip(f"torch {torch.__version__} has no block-scaled fp8 torch._scaled_mm on this GPU")
    assert 0 < us < 1000.0
    a, b, a_scales, b_scales = session.operands(problem)[0]
    reference = w8a8_block_matmul_reference(a, b, a_scales, b_scales, BLOCK, torch.float32)
    out = _cublas(a, b, a_scales, b_scales, torch.bfloat16)
    assert _relative_error(out, reference) < RELATIVE_TOLERANCE[torch.bfloat16]  # the scales are read as ours


def test_a_probe_checks_each_config_at_a_new_m_then_times_it_quickly(session):
    # M = 37 is neither 1 nor a multiple of 16: a new binary for either config, as a coverage check meets it.
    problem = Problem(N=512, K=1024, M=37, out_dtype="bfloat16")
    other = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)
    quick = session.probe(problem, [CONFIG, other], 3, True)
    full = session.retime(problem, [CONFIG, other], 3)
    for config in (CONFIG, other):
        assert len(quick[config]) == 3 and all(us > 0 for us in quick[config])
        # the quick timing (a quarter of the replay span) agrees with the full one to within a few per cent
        assert sorted(quick[config])[1] == pytest.approx(sorted(full[config])[1], rel=0.1)
    reference = session._references[problem]  # no public way to plant a wrong reference
    session._references[problem] = reference * 1.5
    try:
        wrong = session.probe(problem, [CONFIG, other], 3, True)
    finally:
        session._references[problem] = reference
    assert all(result.status == "wrong_result" for result in wrong.values())


def test_a_coverage_check_runs_on_the_gpu_and_adds_its_cost_to_its_own_category(tmp_path):
    from tuner.benchmarkers import COVERAGE, GpuBenchmarker, RunClock
    from tuner.study import THRESHOLD, TuneOptions, make_storage, stored_coverage, study_name, tune_shape

    problems = [Problem(N=512, K=1024, M=M) for M in (16, 24, 32)]
    storage, clock = make_storage(f"sqlite:///{tmp_path}/s.db"), RunClock()
    with GpuBenchmarker(clock=clock) as bench:
        tune_shape(storage, bench, problems, TuneOptions(trials=4, seed=0, coverage=THRESHOLD), tmp_path, clock=clock)
        names = {p.M: study_name(p, bench.device_name, bench.kind, bench.software) for p in problems}
    coverage = stored_coverage(storage, problems, names)
    assert [p.M for p in coverage.probes] == [*range(17, 24), *range(25, 32)]
    assert all(p.served for p in coverage.probes) and clock.seconds()[COVERAGE] > 0


@pytest.mark.parametrize(
    ("block", "entry"),
    [
        ([128, 128], CONFIG.as_sglang()),
        ([128, 128], {**CONFIG.as_sglang(), "SPLIT_K": 4, "SWAP_AB": True}),  # two kernels, a split buffer
        ([32, 32], {**CONFIG.as_sglang(), "BLOCK_SIZE_K": 32}),
        ([32, 32], {**CONFIG.as_sglang(), "BLOCK_SIZE_K": 32, "SPLIT_K": 2, "SWAP_AB": False}),
    ],
)
def test_a_bound_relaunch_computes_what_a_launch_does_and_captures(block, entry):
    """Bound launches call Triton's compiled launchers directly: right on odd sizes, and inside a graph."""
    M, N, K = 13, 1000, 1000  # partial tiles and a K tail at either block
    x, w = torch.randn(M, K, device="cuda"), torch.randn(N, K, device="cuda")
    a, a_scales = quantize_per_token_group(x, block[1], torch.float8_e4m3fn)
    b, b_scales = quantize_blockwise(w, block, torch.float8_e4m3fn)
    reference = w8a8_block_matmul_reference(a, b, a_scales, b_scales, block, torch.float32)
    relaunch, out = kernels.bind_w8a8_block_matmul(a, b, a_scales, b_scales, block, torch.float16, entry)
    torch.cuda.synchronize()
    assert _relative_error(out, reference) < RELATIVE_TOLERANCE[torch.float16]
    out.fill_(float("nan"))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        relaunch()
    graph.replay()
    torch.cuda.synchronize()
    assert _relative_error(out, reference) < RELATIVE_TOLERANCE[torch.float16]
