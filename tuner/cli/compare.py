"""Re-time competing configs in one harness, at every batch size, next to cuBLAS and the roofline (needs a CUDA GPU).

    python -m tuner.compare --N 7168 --K 18432 --out-dtype bfloat16 \\
        --config tuned=configs/FILE.json --config sglang=benchmarks/sglang_shipped/FILE.json \\
        --landscape studies/landscapes/h100_fp8_7168x18432.csv.gz --out compare.csv
    python -m tuner.compare --N 576 7168 --K 7168 18432 --config new=DIR --config old=DIR2 --out FOLDER

Each labelled config file gives SGLang's pick for each M (nearest key); --landscape adds the
recorded optimum; SGLang's default config is always included. Several shapes (--N and --K paired)
take folders: each shape's file is the one of its N, K, input type and block shape there (this
device's name first, else another device's), and each shape's CSV goes into the --out folder as
compare_{N}x{K}.csv. Every distinct config is compiled
first, on every CPU core; then each is checked once and timed in the same process on the same
operands, in several interleaved rounds that each start with a different config, so the ratios
compare like with like. Labels that pick the same config share its one timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from tuner.benchmarkers import roofline_attrs
from tuner.cli._common import add_gemm_flags, check_writable, gemm_setup, no_gpu
from tuner.export import nearest_entry, read_config_file
from tuner.space import DEFAULT_BATCH_SIZES, Config, Problem, default_config


def candidates(problem: Problem, files: dict[str, dict[int, Config]], optimum: Config | None) -> dict[str, Config]:
    """The config each contender would run at problem.M."""
    picks = {label: nearest_entry(entries, problem.M) for label, entries in files.items()}
    if optimum is not None:
        picks["optimum"] = optimum
    picks["default"] = default_config(problem.block_n, problem.block_k)
    return picks


def compile_jobs(picks: dict[Problem, dict[str, Config]]) -> list[tuple[Problem, Config]]:
    """One (problem, config) per binary Triton builds for picks: labels and batch sizes share binaries."""
    from tuner.benchmarkers._gpu import specialization

    jobs: dict[tuple, tuple[Problem, Config]] = {}
    for problem, by_label in picks.items():
        for config in by_label.values():
            jobs.setdefault(specialization(problem, config), (problem, config))
    return list(jobs.values())


def compile_ahead(picks: dict[Problem, dict[str, Config]], workers: int) -> None:
    """Fill Triton's disk cache with every binary picks need, in spawned processes, before any timing.

    Timing compiles a config it has not seen on first launch, one at a time (~1.75 s each on the
    H100 host): a 13-shape comparison of four files would wait minutes for that alone.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tuner.benchmarkers._cuda import compile_config

    jobs = compile_jobs(picks)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for failure in pool.map(compile_config, *zip(*jobs)):
            if failure is not None:  # measured again in the timing loop, which reports it per config
                print(f"compile: {failure.status}: {failure.reason[:120]}", flush=True)


def time_picks(session, problem: Problem, picks: dict[str, Config], rounds: int) -> dict[str, float]:
    """Each label's median latency over rounds; a label whose config fails its check gets none.

    Each distinct config is checked once and timed once per round, whatever number of labels picked
    it (two labels on one config get one number: any gap between them would be noise), and each
    round starts with a different config, so that a GPU warming through a round slows none alike.
    """
    distinct = list(dict.fromkeys(picks.values()))
    passed = [config for config in distinct if session.measure(problem, config, None).status == "ok"]
    times = session.retime(problem, passed, rounds) if passed else {}
    medians = {config: statistics.median(ts) for config, ts in times.items() if ts}
    return {label: medians[config] for label, config in picks.items() if config in medians}


def _cublas(a, b, a_scales, b_scales, out_dtype):
    """The kernel's product through cuBLAS: torch._scaled_mm with block-wise scales."""
    import torch

    return torch._scaled_mm(a, b.t(), scale_a=a_scales.t().contiguous().t(), scale_b=b_scales.t(), out_dtype=out_dtype)


def _time_cublas(session, problem: Problem) -> float | None:
    """_cublas timed as the kernel is (fails for M < 16 on torch 2.11): a reference point."""
    import torch

    from kernels.timing import time_launches

    sets = session.operands(problem)
    out_dtype = getattr(torch, problem.out_dtype)

    def launch(i: int):
        return _cublas(*sets[i], out_dtype)

    try:
        launch(0)
        torch.cuda.synchronize()
        return time_launches(launch, len(sets)).median_us
    except (RuntimeError, ValueError):  # torch's checks raise either where a layout or M is not supported
        return None


def _config_paths(items: Sequence[str]) -> dict[str, Path]:
    """--config LABEL=PATH values as label -> file or folder; ValueError names a malformed or taken label."""
    paths = {}
    for item in items:
        label, _, path = item.partition("=")
        if not label or not path:
            raise ValueError(f"--config must be LABEL=PATH, but got {item!r}.")
        if label in paths or label in ("optimum", "default", "cublas"):
            raise ValueError(f"--config label {label!r} is taken; give each file its own label.")
        paths[label] = Path(path)
    return paths


def _shape_files(paths: dict[str, Path], problem: Problem, device_name: str | None) -> dict[str, dict[int, Config]]:
    """Each label's entries for problem's shape: its file, or the matching file of its folder (see the module)."""
    files = {}
    for label, path in paths.items():
        if path.is_dir():
            found = _file_in(path, problem, device_name)
            if found is None:
                continue
            path = found
        files[label] = read_config_file(path)
    return files


def _file_in(folder: Path, problem: Problem, device_name: str | None) -> Path | None:
    p = problem
    matching = [
        path
        for path in sorted(folder.glob(f"N={p.N},K={p.K},device_name=*,dtype={p.input_type}_w8a8,block_shape=*.json"))
        if path.name.endswith((f"[{p.block_n}, {p.block_k}].json", f"[{p.block_n},{p.block_k}].json"))
    ]
    own = [path for path in matching if f"device_name={device_name}," in path.name]
    return (own or matching or [None])[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )  # fmt: skip
    parser.add_argument("--N", type=int, nargs="+", required=True, help="weight rows (output features), per shape")
    parser.add_argument("--K", type=int, nargs="+", required=True, help="weight columns (input features), per shape")
    add_gemm_flags(parser)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        metavar="M",
        default=list(DEFAULT_BATCH_SIZES),
        help=f"the M to time (default: SGLang's {len(DEFAULT_BATCH_SIZES)})",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a config file to time (or a folder of them, one per shape), once per label",
    )
    parser.add_argument("--landscape", default=None, help="add the recorded optimum of this landscape")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds, the median of which is reported (default: 3)"
    )
    parser.add_argument("--out", required=True, help="CSV of every timing (a folder of them for several shapes)")
    args = parser.parse_args(argv)
    try:
        if args.rounds < 1:
            raise ValueError(f"--rounds must be a positive int, but got {args.rounds}.")
        if len(args.N) != len(args.K):
            raise ValueError(f"--N and --K must pair up, but got {len(args.N)} N and {len(args.K)} K values.")
        paths = _config_paths(args.config)
        shapes = [
            [Problem(N=N, K=K, M=M, **gemm_setup(args)) for M in args.batch_sizes] for N, K in zip(args.N, args.K)
        ]
        several = len(shapes) > 1
        for label, path in paths.items():
            if several and not path.is_dir():
                raise ValueError(f"--config {label}={path}: several shapes take a folder of config files.")
            if not several and not path.is_dir():
                read_config_file(path)  # a bad file is a usage error before any work
        optima: dict[Problem, Config] = {}
        if args.landscape:
            from tuner.benchmarkers import ReplayBenchmarker

            replay = ReplayBenchmarker.from_file(args.landscape)
            optima = {p: replay.optimum(p)[0] for problems in shapes for p in problems if p in replay.problems}
        out = Path(args.out)
        check_writable(out, "--out", folder=several)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if no_gpu("tuner.compare"):
        return 1

    import torch

    from tuner.benchmarkers._cuda import CudaTimingSession

    device_name = torch.cuda.get_device_name().replace(" ", "_")
    picks_by_problem = {}
    for problems in shapes:
        files = _shape_files(paths, problems[0], device_name)
        picks_by_problem |= {problem: candidates(problem, files, optima.get(problem)) for problem in problems}
    compile_ahead(picks_by_problem, max(1, (os.cpu_count() or 2) - 1))
    session = CudaTimingSession(0)
    print(f"device {session.device_name}; median of {args.rounds} rounds, us per launch in CUDA graphs")
    for problems in shapes:
        p0 = problems[0]
        if several:
            print(f"N={p0.N} K={p0.K}", flush=True)
        rows = []
        for problem in problems:
            picks = picks_by_problem[problem]
            medians = time_picks(session, problem, picks, args.rounds)
            cublas = _time_cublas(session, problem)
            for label, config in picks.items():
                if label in medians:
                    attrs = roofline_attrs(problem, medians[label], session.device_name)
                    rows.append((problem.M, label, config.short(), medians[label], attrs))
            if cublas is not None:
                rows.append((problem.M, "cublas", "torch._scaled_mm", cublas,
                             roofline_attrs(problem, cublas, session.device_name)))  # fmt: skip
            line = "  ".join(f"{label} {us:.1f}" for label, us in {**medians, "cublas": cublas}.items() if us)
            print(f"M={problem.M:>5}: {line}", flush=True)
        path = out / f"compare_{p0.N}x{p0.K}.csv" if several else out
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.write("M,label,config,us,tflops,gbps,roofline_pct\n")
            for M, label, config, us, attrs in rows:
                f.write(
                    f"{M},{label},{config},{us:.3f},{attrs['tflops']},{attrs['gbps']},{attrs.get('roofline_pct', '')}\n"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
