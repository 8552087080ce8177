"""Record a landscape: time every config of the space at every batch size of some shapes (needs a CUDA GPU).

    python -m tuner.sweep --N 7168 4096 --K 18432 7168 --batch-sizes 1 16 64 256 1024 4096 \\
        --out studies/landscapes/h100.csv

--configs FILE.json times only the configs it lists (SGLang entries; a config file's entries count
too) instead of the whole space: a dense landscape, at many M between SGLang's batch sizes, over the
configs that win at them and their neighbours (benchmarks/dense_sweep_plan.py writes such a file).

Timed exactly as the tuner times (tuner.benchmarkers: CUDA graphs over rotating buffers, compilation on
every CPU core ahead of the GPU). Where M <= BLOCK_SIZE_M the launch does not depend on
GROUP_SIZE_M: one of those configs is timed and its result recorded for all four. A config whose
compile process died or hung is compiled again, and recorded as compile_error if that happens on
every try. An interrupted sweep resumes: rows already in --out are not timed again.

Exit status: 0 on success, 2 on a usage error, 130 after Ctrl-C (143 after SIGTERM), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from tuner.benchmarkers import (
    COMPILE_FAILURES,
    COMPILE_TRIES,
    Benchmarker,
    LandscapeWriter,
    Measurement,
    compile_failed,
    read_rows,
)
from tuner.cli._common import add_gemm_flags, gemm_setup, no_gpu
from tuner.space import SPACES, Config, Problem, search_space
from tuner.stopping import TuningError, exit_status, held_outside_waits

SWEEP_BATCH_SIZES = (1, 16, 64, 256, 1024, 4096)


def sweep(
    bench: Benchmarker,
    problems: Sequence[Problem],
    writer: LandscapeWriter,
    *,
    done: set[tuple[Problem, Config]] = frozenset(),
    progress: bool = True,
    space: str = "base",
    configs: Sequence[Config] | None = None,
) -> dict[tuple[Problem, Config], Measurement]:
    """Measure every (problem, config) of the space (or of configs) not in done; returns what it measured,
    copies included."""
    configs = search_space(problems[0].block_k, space) if configs is None else configs
    todo = [(p, c) for c in configs for p in problems if (p, c) not in done]
    # Compile every distinct schedule up front, in the order it will be timed (a subset of the space may
    # hold a config without the twin that stands for its schedule: the twin is what is timed).
    for problem, representative in dict.fromkeys((p, c.schedule_key(p.M)) for p, c in todo):
        bench.prepare(problem, [representative])
    results: dict[tuple[Problem, Config], Measurement] = {}
    for problem, config in tqdm(todo, desc="sweep", unit="cfg", disable=not progress, mininterval=5):
        representative = config.schedule_key(problem.M)
        if (problem, representative) not in results:
            results[problem, representative] = _measured(bench, problem, representative)
        results[problem, config] = results[problem, representative]
        writer.write(bench.device_name, problem, config, results[problem, config])
    return results


def read_configs(path: str | Path, block_k: int, space: str) -> list[Config]:
    """The configs a --configs file lists: a JSON list of SGLang entries, or a config file's entries, each
    a member of the space (in its order, once each); anything else raises ValueError naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--configs {str(path)!r} is not a readable JSON file: {error}") from None
    entries = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"--configs {str(path)!r} must hold a non-empty JSON list of SGLang entries (or a config "
                         f"file), but holds {type(data).__name__}.")  # fmt: skip
    members = set(search_space(block_k, space))
    configs = []
    for i, entry in enumerate(entries):
        try:
            config = Config.from_sglang(entry)
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"--configs {str(path)!r}: entry {i}: {error}") from None
        if config not in members:
            hint = " (use --space hopper)" if config.hopper else ""
            raise ValueError(
                f"--configs {str(path)!r}: entry {i}, {config.short()}, is not in the {space} space for block_k "
                f"{block_k}{hint}."
            )
        configs.append(config)
    return list(dict.fromkeys(configs))


def _measured(bench: Benchmarker, problem: Problem, config: Config) -> Measurement:
    """config's measurement, compiled anew while its compile process dies or hangs, up to COMPILE_TRIES times.

    A landscape records the config's own outcome: a lost compile process is the host's (a busy
    host's OOM killer, a slow compile), until it happens on every try.
    """
    for _ in range(COMPILE_TRIES):
        measurement = bench.measure(problem, config)
        if measurement.status not in COMPILE_FAILURES:
            return measurement
    return compile_failed(measurement)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a flag is spelled out, never taken from its prefix
    )
    parser.add_argument("--N", type=int, nargs="+", required=True, help="weight rows, one per shape")
    parser.add_argument("--K", type=int, nargs="+", required=True, help="weight columns, paired with --N")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        metavar="M",
        default=list(SWEEP_BATCH_SIZES),
        help=f"the M to time (default: {' '.join(map(str, SWEEP_BATCH_SIZES))})",
    )
    add_gemm_flags(parser)
    parser.add_argument("--out", required=True, help="landscape CSV to write (appended to, and resumed)")
    parser.add_argument(
        "--space",
        choices=SPACES,
        default="base",
        help="base: SGLang's 1280 configs; hopper: each at every SPLIT_K and SWAP_AB as well (12x, an SM90 GPU) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--configs",
        default=None,
        metavar="FILE.json",
        help="time only these configs: a JSON list of SGLang entries, or a config file (default: the whole space)",
    )
    parser.add_argument(
        "--compile-workers",
        type=int,
        default=None,
        help="processes compiling ahead of the timing (default: CPU cores - 1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if len(args.N) != len(args.K):
            raise ValueError(f"--N and --K must pair up, but got {len(args.N)} N and {len(args.K)} K values.")
        problems_by_shape = [
            [Problem(N=N, K=K, M=M, **gemm_setup(args)) for M in args.batch_sizes] for N, K in zip(args.N, args.K)
        ]
        configs = None if args.configs is None else read_configs(args.configs, args.block_k, args.space)
        done = set()
        try:
            done = {(row.problem, row.config) for row in read_rows(args.out)}
        except ValueError as error:
            if "does not exist" not in str(error):
                raise
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if no_gpu("tuner.sweep"):
        return 1
    from tuner.benchmarkers import GpuBenchmarker

    try:
        with (
            held_outside_waits(),  # SIGTERM as Ctrl-C: the landscape is closed, not cut
            GpuBenchmarker(compile_workers=args.compile_workers) as bench,
            LandscapeWriter(args.out, hopper=args.space == "hopper") as writer,
        ):
            for problems in problems_by_shape:
                started = time.perf_counter()
                results = sweep(bench, problems, writer, done=done, space=args.space, configs=configs)
                p = problems[0]
                print(f"N={p.N} K={p.K}: {len(results)} rows in {time.perf_counter() - started:.0f} s, "
                      f"{bench.restarts} timing-process restarts so far", flush=True)  # fmt: skip
    except KeyboardInterrupt as error:
        print(f"interrupted: every row measured is in {args.out}; rerun the same command to resume.", file=sys.stderr)
        return exit_status(error)
    except TuningError as error:  # the GPU timing process could not start
        print(f"failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
