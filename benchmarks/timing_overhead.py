"""Where the timing process's own time goes per config, and what binding the launches saves (needs a CUDA GPU).

    PYTHONPATH=. python benchmarks/timing_overhead.py [--profile]

A live run spends more of its wall time in the timing process around the timed kernels than in
them. This measures, in one process on the GPU and for a sample of configs on small and large
shapes: the first launch of a config in a process (loading its binary from Triton's disk cache),
then per config the tuner's measurement (CudaTimingSession.measure: the check against the
reference, then CUDA graphs of launches bound once, kernels.bind_w8a8_block_matmul) and the same
check and timing with graphs captured through the Python launcher (w8a8_block_matmul per launch,
as before), in alternating order. Printed per point: wall ms per config for each, the GPU's share,
and the ratio of the two medians (the same kernels must time the same). --profile adds cProfile's
top entries for the tuner's measurement.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from kernels import OUTPUT_DTYPES, bind_w8a8_block_matmul, w8a8_block_matmul
from kernels.timing import time_launches
from tuner.benchmarkers._cuda import CudaTimingSession, compile_config
from tuner.space import Problem, default_config, search_space

POINTS = [((7168, 256), (1, 16, 256)), ((576, 7168), (1, 64)), ((7168, 18432), (1, 1024))]
CONFIGS_PER_POINT = 16


def sample_configs(seed: int = 0) -> list:
    space = [c for c in search_space(128) if c.fits(232448)]
    return [default_config(128, 128), *random.Random(seed).sample(space, CONFIGS_PER_POINT - 1)]


def python_launcher_timing(session: CudaTimingSession, problem: Problem, config) -> tuple[float, float]:
    """The median us and GPU seconds of config checked and timed with a Python launch per graph node."""
    sets = session.operands(problem)
    out_dtype = OUTPUT_DTYPES[problem.out_dtype]

    def launch(i: int):
        return w8a8_block_matmul(*sets[i], [problem.block_n, problem.block_k], out_dtype, config.as_sglang())

    out = launch(0)
    torch.cuda.synchronize()
    reference = session._references[problem]
    assert ((out.float() - reference).norm() / reference.norm()).item() < 1e-2
    timing = time_launches(launch, len(sets))
    return timing.median_us, timing.gpu_us * 1e-6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configs = sample_configs()
    problems = [Problem(N=N, K=K, M=M) for (N, K), ms in POINTS for M in ms]
    started = time.perf_counter()
    with ProcessPoolExecutor(15, mp_context=multiprocessing.get_context("spawn")) as pool:
        failed = {(p, c) for p, c, f in pool.map(_compile, [(p, c) for p in problems for c in configs]) if f}
    print(f"compiled {len(problems) * len(configs)} in {time.perf_counter() - started:.0f} s; {len(failed)} failed")
    session = CudaTimingSession(0)
    print(f"device {session.device_name}, torch {torch.__version__}")
    profiler = cProfile.Profile() if args.profile else None
    print(f"{'N':>6} {'K':>6} {'M':>5} {'load ms':>8} {'python ms':>9} {'bound ms':>9} {'gpu ms':>7} "
          f"{'bound/python us':>15} {'min':>6} {'max':>6}")  # fmt: skip
    for problem in problems:
        started = time.perf_counter()
        session.operands(problem)
        torch.cuda.synchronize()
        operands_ms = (time.perf_counter() - started) * 1e3
        loads, python, bound, gpu, ratios = [], [], [], [], []
        for i, config in enumerate(c for c in configs if (problem, c) not in failed):
            sets = session.operands(problem)
            started = time.perf_counter()
            bind_w8a8_block_matmul(*sets[0], [128, 128], OUTPUT_DTYPES[problem.out_dtype], config.as_sglang())
            torch.cuda.synchronize()
            loads.append(time.perf_counter() - started)
            results = {}
            for way in ("bound", "python") if i % 2 == 0 else ("python", "bound"):
                started, gpu_s = time.perf_counter(), session.gpu_s
                if way == "bound":
                    if profiler is not None:
                        profiler.enable()
                    m = session.measure(problem, config, None)
                    if profiler is not None:
                        profiler.disable()
                    results[way] = (m.us, time.perf_counter() - started, session.gpu_s - gpu_s)
                else:
                    us, g = python_launcher_timing(session, problem, config)
                    results[way] = (us, time.perf_counter() - started, g)
            if results["bound"][0] is None:
                continue
            python.append(results["python"][1])
            bound.append(results["bound"][1])
            gpu.append(results["bound"][2])
            ratios.append(results["bound"][0] / results["python"][0])
        print(f"{problem.N:>6} {problem.K:>6} {problem.M:>5} {statistics.mean(loads) * 1e3:>8.2f} "
              f"{statistics.mean(python) * 1e3:>9.2f} {statistics.mean(bound) * 1e3:>9.2f} "
              f"{statistics.mean(gpu) * 1e3:>7.2f} {statistics.median(ratios):>15.4f} {min(ratios):>6.3f} "
              f"{max(ratios):>6.3f}   (operands {operands_ms:.0f} ms)", flush=True)  # fmt: skip
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def _compile(job):
    problem, config = job
    return problem, config, compile_config(problem, config)


if __name__ == "__main__":
    main()
