"""The command line: python -m tuner.run --N 5120 --K 25600 --trials 200.

Parses and validates everything before any study or file is touched, then calls tuner.study.
Exit status: 0 on success, 2 on a usage error (one line says why), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tuner.cli._common import OneLineParser, add_gemm_flags, check_writable, gemm_setup
from tuner.exceptions import TuningError
from tuner.export import config_file_name, read_config_file
from tuner.interrupt import stopped_by_ctrl_c
from tuner.shapes import deepseek_v3_shapes, load_model_config, model_shapes
from tuner.space import DEFAULT_BATCH_SIZES, Problem, search_space

# The replay twin of the main job, on the landscape this repository ships (its six batch sizes).
REPLAY_EXAMPLE = (
    "python -m tuner.run --N 7168 --K 18432 --out-dtype bfloat16 --batch-sizes 1 16 64 256 1024 4096 "
    "--replay studies/landscapes/h100_fp8_7168x18432.csv.gz"
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m tuner.run", description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, help="weight rows (output features); give with --K")
    parser.add_argument("--K", type=int, help="weight columns (input features); give with --N")
    parser.add_argument("--tp-size", type=int, default=8, help="without --N/--K: DeepSeek-V3's shapes at this TP")
    add_gemm_flags(parser)
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=int, help="tune one batch size M")
    batch.add_argument("--batch-sizes", type=int, nargs="+", help="tune these M (default: SGLang's 18)")
    parser.add_argument("--trials", type=int, default=32, help="distinct configs timed per (N, K, M) study")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite under studies/)")
    parser.add_argument("--save-path", default="configs", help="folder for the SGLang config files")
    parser.add_argument("--replay", default=None, help="tune against this landscape CSV instead of a GPU")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed")
    parser.add_argument("--no-prior", action="store_true", help="do not warm-start from the shipped landscapes")
    parser.add_argument("--model", default=None, help="a Hugging Face config.json: tune its linear layers at --tp-size")
    parser.add_argument("--gpus", default=None, help="comma-separated GPUs, one worker each (default: all visible)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and a time estimate, run nothing")
    return parser


def _shapes(args: argparse.Namespace) -> dict[tuple[int, int], str]:
    """(N, K) -> the layers that have it, from --N/--K, --model, or DeepSeek-V3 at --tp-size."""
    if (args.N is None) != (args.K is None):
        raise ValueError("--N and --K must be given together.")
    if args.N is not None and args.model is not None:
        raise ValueError("give either --N/--K or --model, not both.")
    if args.N is not None:
        return {(args.N, args.K): "given"}
    if args.model is not None:
        layers = model_shapes(load_model_config(args.model), args.tp_size)
    else:
        layers = [("deepseek_v3", N, K) for N, K in deepseek_v3_shapes(args.tp_size)]
    shapes: dict[tuple[int, int], str] = {}
    for name, N, K in layers:
        shapes[N, K] = f"{shapes[N, K]}+{name}" if (N, K) in shapes else name
    return shapes


def _problems(args: argparse.Namespace) -> list[list[Problem]]:
    shapes = _shapes(args)
    batch_sizes = [args.batch_size] if args.batch_size is not None else args.batch_sizes or DEFAULT_BATCH_SIZES
    for name, value in (("--block-n", args.block_n), ("--block-k", args.block_k)):
        if value < 1 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two, but got {value}.")
    search_space(args.block_k)  # raises if no BLOCK_SIZE_K of the space divides block_k
    if args.trials < 1:
        raise ValueError(f"--trials must be a positive int, but got {args.trials}.")
    return [[Problem(N=N, K=K, M=M, **gemm_setup(args)) for M in dict.fromkeys(batch_sizes)] for N, K in shapes]


# Per timed config on the H100 host: ~1.75 s of compilation spread over 15 processes, plus timing.
_SECONDS_PER_TRIAL = 1.75 / 15 + 0.05


def plan(shapes: list[list[Problem]], trials: int, names: dict[tuple[int, int], str]) -> str:
    """What a run would do, and roughly how long it would take on an H100 host."""
    studies = sum(len(problems) for problems in shapes)
    lines = [f"plan: {len(shapes)} shapes x {len(shapes[0])} batch sizes x {trials} trials = "
             f"{studies * trials} timed configs in {studies} studies"]  # fmt: skip
    for problems in shapes:
        p = problems[0]
        lines.append(f"  N={p.N:<6} K={p.K:<6} ({names[p.N, p.K]})  M = {' '.join(str(q.M) for q in problems)}")
    minutes = studies * trials * _SECONDS_PER_TRIAL / 60
    lines.append(f"estimate: about {minutes:.0f} min on one H100 with 16 CPU cores (at most; warm starts "
                 "and configs shared between batch sizes make it less)")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        shapes = _problems(args)
        if args.dry_run:
            print(plan(shapes, args.trials, _shapes(args)))
            return 0
        if args.replay is None:
            import torch

            if not torch.cuda.is_available():
                print(f"No CUDA GPU is visible; the same flow runs in replay: {REPLAY_EXAMPLE}", file=sys.stderr)
                return 1
        run = _prepare(args, shapes)
    except ValueError as error:  # everything the user gave is checked here, before any work
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return _execute(*run)
    except BaseException as error:
        if stopped_by_ctrl_c(error):
            print("interrupted: every finished measurement is stored; rerun the same command to resume.",
                  file=sys.stderr)  # fmt: skip
            return 1
        if isinstance(error, TuningError):  # raised on purpose (WrongResult, no config ran): its message says all
            print(f"failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        raise  # a bug or a CUDA error: its traceback is what a report needs


def _devices(args: argparse.Namespace) -> list[int]:
    """--gpus as a list of device indices: every visible GPU by default, one worker in replay."""
    if args.gpus is None:
        if args.replay is not None:
            return [0]
        import torch

        return list(range(torch.cuda.device_count()))
    try:
        devices = [int(d) for d in args.gpus.split(",")]
    except ValueError:
        raise ValueError(f"--gpus must be comma-separated device indices, but got {args.gpus!r}.") from None
    if not devices or len(set(devices)) != len(devices) or min(devices) < 0:
        raise ValueError(f"--gpus must list distinct non-negative device indices, but got {args.gpus!r}.")
    if args.replay is None:
        import torch

        if max(devices) >= torch.cuda.device_count():
            raise ValueError(f"--gpus {args.gpus} names a GPU that is not visible: {torch.cuda.device_count()} are.")
    return devices


def _prepare(args: argparse.Namespace, shapes: list[list[Problem]]) -> tuple:
    """Check everything that can be checked before tuning; ValueError names what is wrong."""
    from tuner.benchmarkers import ReplayBenchmarker
    from tuner.study import DEFAULT_STORAGE, WorkerSpec, make_storage

    devices = _devices(args)
    if args.replay is not None:
        replay = ReplayBenchmarker.from_file(args.replay)
        for problems in shapes:
            for problem in problems:
                replay.require(problem)
        device_name, kind = replay.device_name, "replay"
    else:
        import torch

        device_name, kind = torch.cuda.get_device_name(devices[0]).replace(" ", "_"), "gpu"
    save_path = Path(args.save_path)
    check_writable(save_path, "--save-path", folder=True)
    for problems in shapes:
        p = problems[0]
        path = save_path / config_file_name(p.N, p.K, device_name, p.input_type, p.block_n, p.block_k)
        if path.exists():
            read_config_file(path)  # a corrupt file stops the run before anything is tuned
    spec = WorkerSpec(
        storage_url=args.storage or DEFAULT_STORAGE,
        save_path=str(save_path),
        trials=args.trials,
        seed=args.seed,
        use_prior=not args.no_prior,
        replay=args.replay,
    )
    make_storage(spec.storage_url)  # an unusable URL is a usage error, raised before any work
    return spec, devices, device_name, kind, shapes


def _execute(spec, devices: list[int], device_name: str, kind: str, shapes: list[list[Problem]]) -> int:
    from tuner.study import collect, format_table, run_workers, tune_units

    if len(devices) == 1:
        outcome = tune_units(spec, devices[0], shapes, progress=True)
    else:
        codes = run_workers(spec, devices, shapes)
        if any(codes):
            print(f"error: workers exited with {codes}; rerun the same command to resume.", file=sys.stderr)
            return 1
        outcome = collect(spec, device_name, kind, shapes)
    for results, path in outcome:
        print(f"\n{path}\n{format_table(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
