"""The command line: python -m tuner.run --N 5120 --K 25600 --trials 200.

Parses and validates everything before any study or file is touched, then calls tuner.study.
Exit status: 0 on success, 2 on a usage error (one line says why), 130 after Ctrl-C (143 after SIGTERM, which
stops a run as Ctrl-C does), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tuner.baselines import baseline_folders, baseline_lines, folders_for, shipped_shapes, split_missing
from tuner.cli._common import (
    QUANTIZATION_DEFAULTS,
    OneLineParser,
    add_gemm_flags,
    check_writable,
    gemm_setup,
)
from tuner.cli._drop_in import run_record, where_files_go
from tuner.cli._plan import budgets, deepseek_list_note, estimate, plan, replay_workers_note, setup_lines
from tuner.cli._replay_hint import replay_hint
from tuner.dispatch import HOPPER_NOTE, deepgemm_note
from tuner.engines import FORMATS, SGLANG, SPACE_CHOICES, plan_targets
from tuner.export import ExportError, other_out_dtype, read_config_file
from tuner.samplers import AUTO, SAMPLERS
from tuner.shapes import DEEPSEEK_V3_TP_SIZE, ModelPlan, deepseek_v3_shapes, load_model_config, model_plan
from tuner.space import DEFAULT_BATCH_SIZES, Problem, block_sizes_k
from tuner.stopping import TuningError, exit_status, stopped_by_ctrl_c
from tuner.study import DEFAULT_STORAGE, REPLAY_STORAGE, StudyState, check_new_file, sqlite_file, storage_place

# Where config files and studies go without --save-path and --storage: a replay's are kept apart
# from real tuning results.
SAVE_PATH = "configs"
REPLAY_SAVE_PATH = "studies/replay/configs"

# --help's closing lines: one command per common use.
EPILOG = """examples:
  python -m tuner.run --N 7168 --K 18432
      one weight shape at SGLang's 18 batch sizes, 32 configs timed each, float16 output
  python -m tuner.run --tp-size 8 --dry-run
      SGLang's list of DeepSeek-V3 shapes at TP 8: the plan and a time estimate, nothing run
  python -m tuner.run --model config.json --tp-size 8 --format both
      a model's linear layers, written under SGLang's and vLLM's file names
  python -m tuner.run --N 7168 --K 18432 --out-dtype bfloat16 --batch-sizes 1 16 64 256 1024 4096 \\
      --replay studies/landscapes/h100_fp8_7168x18432.csv.gz
      no GPU needed: the same flow against a recorded landscape

File names, content and the landscape format: docs/contracts.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m tuner.run",
        description="Tune the W8A8 block-scaled GEMM's launch configs per batch size with Optuna, and write\n"
        "them as SGLang (or vLLM) config files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--N", type=int, help="weight rows (output features); give with --K")
    parser.add_argument("--K", type=int, help="weight columns (input features); give with --N")
    parser.add_argument(
        "--tp-size",
        type=int,
        metavar="TP",
        default=None,
        help=f"tensor parallelism: of --model (default 1), or of SGLang's list of DeepSeek-V3 shapes without --model "
        f"or --N/--K (default {DEEPSEEK_V3_TP_SIZE}); not with --N/--K, which give the shape one rank runs",
    )
    add_gemm_flags(parser, model_aware=True)
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=int, metavar="M", help="tune one batch size M")
    batch.add_argument(
        "--batch-sizes",
        type=int,
        metavar="M",
        nargs="+",
        help=f"tune these M (default: SGLang's {len(DEFAULT_BATCH_SIZES)}, {' '.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=32,
        metavar="T",
        help="distinct configs timed per (N, K, M) study (default: %(default)s)",
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help=f"Optuna storage URL (default: {DEFAULT_STORAGE}, or {REPLAY_STORAGE} with --replay)",
    )
    parser.add_argument(
        "--save-path",
        default=None,
        metavar="DIR",
        help=f"folder for the config files (default: {SAVE_PATH}/, or {REPLAY_SAVE_PATH}/ with --replay)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="sglang",
        dest="file_format",
        help="write SGLang's file name, vLLM's (no space in block_shape) or both; vLLM's file gets base-space "
        "entries alone, each file confirmed against what its own engine runs (default: %(default)s)",
    )
    parser.add_argument(
        "--replay", default=None, metavar="FILE.csv", help="tune against this landscape CSV instead of a GPU"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="S", help="sampler seed (default: none, a new search each run)"
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="auto",
        help=f"local: local search around the best configs; tpe, gp, random: Optuna's; auto: {AUTO} (default)",
    )
    parser.add_argument(
        "--space",
        choices=SPACE_CHOICES,
        default="auto",
        help="base: SGLang's grid of configs (1280 at [128, 128] blocks); hopper: each also at SPLIT_K 1-32 and "
        "SWAP_AB, for SGLang's Hopper kernel (SM90 GPUs; its file entries need an SGLang with that kernel); auto: "
        "hopper for SGLang's file on an SM90 GPU where the installed SGLang has that kernel, else base "
        "(default: %(default)s)",
    )
    parser.add_argument("--no-prior", action="store_true", help="do not warm-start from the shipped landscapes")
    parser.add_argument(
        "--model",
        default=None,
        metavar="CONFIG.json",
        help="a Hugging Face config.json (or the model's folder holding it): tune its block-quantized linear layers "
        "at --tp-size",
    )
    parser.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,...",
        help="comma-separated GPUs, one worker each (default: all visible); with --replay, one replay worker per "
        "index, none on a GPU (default: one)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything the run would, print the plan, what the storage holds and a time estimate; run "
        "nothing (no GPU needed)",
    )
    parser.add_argument(
        "--baseline",
        default="auto",
        metavar="auto|DIR|none",
        help="the config files already there to time and never export slower than: auto, the installed SGLang's "
        "and vLLM's for this GPU; DIR, a folder of them; none (default: %(default)s)",
    )
    parser.add_argument(
        "--shipped",
        action="store_true",
        help="tune the shapes the installed SGLang (or --baseline DIR) holds config files for on this GPU at "
        "--input-type and --block-n/--block-k: each file is its shape's baseline, never exported slower; with "
        "--missing, only the batch sizes a file has no entry for",
    )
    parser.add_argument(
        "--no-coverage",
        action="store_true",
        help="skip the coverage check: by default, after a shape's batch sizes are tuned, the runtime M between "
        "them are timed with the tuned configs near them, and a key is added where the entry the loaders pick "
        "there is more than 2%% slower than the best of them",
    )
    parser.add_argument(
        "--missing",
        action="store_true",
        help="tune only the shapes of --model or --tp-size that have no file for this GPU in the installed SGLang's "
        "or vLLM's config folder (or --baseline DIR), where they run their default config",
    )
    return parser


# Optuna's samplers seed numpy, which takes 0 <= seed < 2**32.
_SEED_LIMIT = 2**32


def _check_values(args: argparse.Namespace) -> None:
    """Name the flag in every bad value or combination that the flags alone decide, before Problem (whose
    messages name its fields) sees any, and before the run asks for a GPU: a run and its dry run, with or
    without a GPU, refuse the same input with the same line."""
    positive = [("--N", args.N), ("--K", args.K), ("--batch-size", args.batch_size), ("--trials", args.trials)]
    positive += [("--batch-sizes", M) for M in args.batch_sizes or ()]
    for flag, value in positive:
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive int, but got {value}.")
    for flag, value in (("--block-n", args.block_n), ("--block-k", args.block_k)):
        if value < 1 or value & (value - 1):
            raise ValueError(f"{flag} must be a power of two, but got {value}.")
    if args.seed is not None and not 0 <= args.seed < _SEED_LIMIT:
        raise ValueError(f"--seed must be an int from 0 to 2**32 - 1, but got {args.seed}.")
    if args.missing and args.N is not None:
        raise ValueError("--missing chooses among a model's shapes: give --model or --tp-size, not --N/--K.")
    if args.shipped and (args.N is not None or args.model is not None or args.tp_size is not None):
        raise ValueError("--shipped tunes the shapes of the installed files: leave out --N/--K, --model and --tp-size.")
    baseline_folders(args.baseline, missing=args.missing)
    plan_targets(args.space, args.file_format, args.input_type, None)  # what can be refused without the device


def _model(args: argparse.Namespace) -> ModelPlan | None:
    """The --model file's plan (TP 1 unless --tp-size), its quantization filling the flags not given."""
    if (args.N is None) != (args.K is None):
        raise ValueError("--N and --K must be given together.")
    if args.N is not None and args.model is not None:
        raise ValueError("give either --N/--K or --model, not both.")
    if args.N is not None and args.tp_size is not None:
        raise ValueError(
            "--tp-size splits the shapes of --model or of DeepSeek-V3's list; --N/--K is already the shape one rank "
            "runs: leave --tp-size out."
        )
    model = model_plan(load_model_config(args.model), args.tp_size) if args.model is not None else None
    quantization = dict(QUANTIZATION_DEFAULTS)
    if model is not None:  # the model's own blocks
        quantization = {
            "input_type": model.input_type,
            "block_n": model.block_shape[0],
            "block_k": model.block_shape[1],
        }
        for name, value in quantization.items():
            given = getattr(args, name)
            if given is not None and given != value:
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"{flag} {given} does not match the model's quantization_config ({name} {value}); leave it out."
                )
    for name, value in quantization.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return model


def _shapes(args: argparse.Namespace, model: ModelPlan | None) -> dict[tuple[int, int], str]:
    """(N, K) -> the layers that have it, from --N/--K, --model, --shipped, or DeepSeek-V3 at --tp-size."""
    if args.N is not None:
        return {(args.N, args.K): "given"}
    if args.shipped:
        return _shipped(args)
    if model is not None:
        return model.shapes()
    tp_size = DEEPSEEK_V3_TP_SIZE if args.tp_size is None else args.tp_size
    return dict.fromkeys(deepseek_v3_shapes(tp_size), "deepseek_v3")


def _shipped(args: argparse.Namespace) -> dict[tuple[int, int], str]:
    """The shapes of SGLang's installed files (or --baseline DIR's) for the run's device, input type and block."""
    folders = folders_for(baseline_folders(args.baseline), (SGLANG,))
    if not folders:
        raise ValueError(
            "--shipped tunes the shapes of the installed SGLang's files (or --baseline DIR's), but "
            f"{'--baseline none was given' if args.baseline == 'none' else 'no SGLang is installed'}."
        )
    device_name = _device_name(args)
    found = shipped_shapes(folders, device_name, args.input_type, args.block_n, args.block_k)
    if not found:
        where = " and ".join(str(folder.path) for folder in folders)
        raise ValueError(
            f"--shipped: {where} holds no file for {device_name}, {args.input_type}, block_shape="
            f"[{args.block_n}, {args.block_k}]; --block-n/--block-k and --input-type choose the files."
        )
    return dict.fromkeys(found, "shipped")


def _device_name(args: argparse.Namespace) -> str:
    """The name files carry for the run's device: the landscape's in replay, else the first visible GPU's."""
    if args.replay is not None:
        from tuner.benchmarkers import ReplayBenchmarker

        return ReplayBenchmarker.from_file(args.replay).device_name
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--shipped finds the files for this GPU by its name, but no CUDA GPU is visible: run it on "
                         "the GPU, or with --replay.")  # fmt: skip
    gpus = _gpu_list(args)
    return torch.cuda.get_device_name(gpus[0] if gpus else 0).replace(" ", "_")


def _problems(args: argparse.Namespace) -> tuple[list[list[Problem]], dict[tuple[int, int], str], ModelPlan | None]:
    """Each shape's problems, the layers behind each shape, and the model's plan if --model was given."""
    model = _model(args)
    _check_values(args)
    shapes = _shapes(args, model)
    batch_sizes = [args.batch_size] if args.batch_size is not None else args.batch_sizes or DEFAULT_BATCH_SIZES
    block_sizes_k(args.block_k)  # raises for a block_k no K tile fits
    problems = [[Problem(N=N, K=K, M=M, **gemm_setup(args)) for M in dict.fromkeys(batch_sizes)] for N, K in shapes]
    return problems, shapes, model


def _gpu_list(args: argparse.Namespace) -> list[int] | None:
    """--gpus as device indices, checked without a GPU; None where not given.

    With --replay they name replay workers, one process each, none of which uses a GPU: the
    multi-GPU path run without GPUs (the run says so at its start).
    """
    if args.gpus is None:
        return None
    try:
        devices = [int(d) for d in args.gpus.split(",")]
    except ValueError:
        raise ValueError(f"--gpus must be comma-separated device indices, but got {args.gpus!r}.") from None
    if not devices or len(set(devices)) != len(devices) or min(devices) < 0:
        raise ValueError(f"--gpus must list distinct non-negative device indices, but got {args.gpus!r}.")
    return devices


def _visible_gpus(gpus: list[int] | None) -> list[int]:
    """The GPUs a live run uses: --gpus, each of which must be visible, else every visible one."""
    import torch

    visible = torch.cuda.device_count()
    if gpus is None:
        return list(range(visible))
    if max(gpus) >= visible:
        raise ValueError(f"--gpus {','.join(map(str, gpus))} names a GPU that is not visible: {visible} are.")
    return gpus


def _existing_file(path: Path) -> dict:
    """A config file the run would merge into, read; a corrupt one stops the run before anything is tuned,
    saying what to do."""
    try:
        return read_config_file(path)
    except ValueError as error:
        raise ValueError(
            f"{error} (the run merges its entries into that file and never overwrites one it cannot read: move it "
            "aside, or give another --save-path)"
        ) from None


def _storage(url: str, *, dry_run: bool) -> tuple[object, list[str]]:
    """The run's storage, and the lines that say where it is; a dry run creates nothing: a SQLite file not
    there yet reads as an empty storage."""
    from tuner.study import make_storage, masked_url

    path = sqlite_file(url)
    lines = [f"storage: {masked_url(url)}" + (f" ({path.absolute()})" if path and not path.is_absolute() else "")]
    if path is None or path.exists():
        return make_storage(url), lines  # an unusable URL is a usage error, raised before any work
    check_writable(path, "--storage", folder=False)
    if dry_run:
        import optuna

        return optuna.storages.InMemoryStorage(), [*lines, f"no storage at {path.absolute()} yet: the run creates it"]
    return make_storage(url), [*lines, f"created new storage {path.absolute()}"]


def _prepare(args: argparse.Namespace, shapes: list[list[Problem]], gpus: list[int] | None) -> tuple | None:
    """Check everything that can be checked before tuning; ValueError names what is wrong.

    A dry run checks the same; on a machine without a GPU it leaves out what needs one (the device's
    name, hence existing files and studies), and device_name and software come back None. None when
    --missing leaves no shape to tune.
    """
    from tuner.benchmarkers import ReplayBenchmarker
    from tuner.study import WorkerSpec

    device_name = software = None
    if args.replay is not None:
        replay = ReplayBenchmarker.from_file(args.replay)
        devices, device_name, kind, software = gpus or [0], replay.device_name, "replay", replay.software
    else:
        import torch

        kind, devices = "gpu", gpus or []
        if torch.cuda.is_available():
            from tuner.benchmarkers._gpu import gpu_software

            devices = _visible_gpus(gpus)
            device_name = torch.cuda.get_device_name(devices[0]).replace(" ", "_")
            software = gpu_software()  # the workers' own: they run this interpreter
    # In replay the landscape's device decides, as it names the files.
    targets = tuple(plan_targets(args.space, args.file_format, args.input_type, device_name))
    folders = baseline_folders(args.baseline)
    if args.missing and device_name is not None:  # in replay the landscape's device decides, as it names the files
        shapes, lines = split_missing(folders, shapes, device_name)
        print("\n".join(lines), flush=True)
        if not shapes:  # every shape's file is installed: nothing to tune, nothing to write
            return None
    if args.replay is not None:
        for problems in shapes:
            for problem in problems:
                replay.require(problem)
    save_path = Path(args.save_path or (REPLAY_SAVE_PATH if args.replay is not None else SAVE_PATH))
    check_writable(save_path, "--save-path", folder=True)
    for problems in shapes if device_name is not None else ():
        p = problems[0]
        for space, engine in ((target.space, engine) for target in targets for engine in target.engines):
            path = save_path / engine.file_name(p.N, p.K, device_name, p.input_type, p.block_n, p.block_k)
            if path.exists():
                entries = _existing_file(path)
                if warning := other_out_dtype(path, [q.M for q in problems], p.out_dtype):
                    print(f"warning: {warning}", file=sys.stderr, flush=True)
                hopper = " ".join(str(q.M) for q in problems if q.M in entries and entries[q.M].hopper)
                if hopper and space == "base":
                    print(f"note: {path.name} holds Hopper entries (SPLIT_K, SWAP_AB) at M {hopper}: --space base "
                          "times each beside its search and replaces it only with a faster config (move the file "
                          "aside for base entries alone)", flush=True)  # fmt: skip
    spec = WorkerSpec(
        storage_url=args.storage,
        save_path=str(save_path),
        trials=args.trials,
        seed=args.seed,
        use_prior=not args.no_prior,
        replay=args.replay,
        sampler=args.sampler,
        targets=targets,
        baseline=args.baseline,
        coverage=not args.no_coverage,
    )
    storage, where = _storage(spec.storage_url, dry_run=args.dry_run)
    return spec, devices, device_name, kind, software, shapes, storage, where


def _dry_run(args: argparse.Namespace, shapes, names, model: ModelPlan | None, prepared: tuple) -> None:
    """What the run would do, with what it would use and find, and how long it would take at most."""
    from tuner.benchmarkers import ReplayBenchmarker
    from tuner.study import capped_note

    spec, devices, device_name, kind, software, shapes, storage, where = prepared  # shapes: what --missing left
    replay = ReplayBenchmarker.from_file(args.replay) if args.replay is not None else None
    capped = budgets(shapes, args.trials, [target.space for target in spec.targets], replay)
    print(plan(shapes, capped, args.trials, names, model))
    if set(names.values()) == {"deepseek_v3"}:
        print(f"note: {deepseek_list_note(args.tp_size or DEEPSEEK_V3_TP_SIZE, len(shapes))}")
    print("\n".join(setup_lines(args, devices, device_name, spec.save_path, spec.targets)))
    if device_name is not None:
        _announce(spec, storage, where, device_name, kind, software, shapes, files=False)
    else:
        print("\n".join(where))
    if note := capped_note(capped, args.trials):
        print(note)
    print(f"estimate: {estimate(sum(capped.values()), replay=kind == 'replay')}")
    dispose = getattr(getattr(storage, "engine", None), "dispose", None)
    if dispose is not None:
        dispose()  # closes SQLite's connections now, so its -wal and -shm files go with them


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BaseException as error:
        if stopped_by_ctrl_c(error):
            print("interrupted: every finished measurement is stored; rerun the same command to resume.",
                  file=sys.stderr)  # fmt: skip
            return exit_status(error)  # as shells report a process stopped by SIGINT (130) or SIGTERM (143)
        if isinstance(error, ExportError):  # the studies are done and stored; only the file failed
            print(f"failed: {error}; the tuned results are in the storage: rerun the command with a --save-path that "
                  "can be written, and it writes the files from the finished studies without tuning them again.",
                  file=sys.stderr)  # fmt: skip
            return 1
        if isinstance(error, TuningError):  # raised on purpose (WrongResult, no config ran): its message says all
            print(f"failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        raise  # a bug or a CUDA error: its traceback is what a report needs


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.storage is None:
            args.storage = REPLAY_STORAGE if args.replay is not None else DEFAULT_STORAGE
        else:  # one the user named: a file the run can keep, in a folder that exists (a mistyped path is not)
            check_new_file(args.storage)
        shapes, names, model = _problems(args)
        gpus = _gpu_list(args)
        if args.replay is None and not args.dry_run:
            import torch

            if not torch.cuda.is_available():
                print(replay_hint(args, parser, shapes), file=sys.stderr)
                return 1
        prepared = _prepare(args, shapes, gpus)
    except ValueError as error:  # everything the user gave is checked here, before any work
        print(f"error: {error}", file=sys.stderr)
        return 2
    if prepared is None:
        return 0
    if args.dry_run:
        _dry_run(args, shapes, names, model, prepared)
        return 0
    if model is not None:  # what the shapes came from, once, before any work
        print("\n".join([model.headline(), *(f"note: {note}" for note in model.notes)]), file=sys.stderr)
    elif set(names.values()) == {"deepseek_v3"}:
        print(f"note: {deepseek_list_note(args.tp_size or DEEPSEEK_V3_TP_SIZE, len(shapes))}", file=sys.stderr)
    if args.replay is not None and gpus is not None:
        print(f"note: {replay_workers_note(gpus)}", file=sys.stderr)
    return _execute(*prepared)


def resume_line(states: Sequence[StudyState | None], trials: int, where: str) -> str:
    """What a rerun finds done, from each study's state (None: not made yet): a resume is never silent.

    A study is finished when it timed --trials configs, or every distinct config its space holds.
    Where nothing is begun, the line says where it looked (where: tuner.study.storage_place), since
    a user who expected studies there has likely named another storage.
    """
    finished = sum(1 for s in states if s is not None and s.finished(trials))
    begun = sum(1 for s in states if s is not None and 0 < s.timed and not s.finished(trials))
    if finished == len(states):
        return f"{finished} of {len(states)} studies finished earlier; nothing to time"
    if finished == begun == 0:
        return f"{len(states)} studies, none begun earlier in {where}"
    line = f"{finished} of {len(states)} studies finished earlier"
    if begun:
        line += f", {begun} resume{'s' if begun == 1 else ''} where {'it' if begun == 1 else 'they'} stopped"
    return line


def identity_notes(states: Sequence[StudyState | None], trials: int, sampler: str) -> list[str]:
    """What an earlier run decided for the studies it made: their sampler, and a budget --trials extends.

    A study is one search, named by its problem, device and software: a rerun resumes each with
    the sampler that made it, so another --sampler applies to new studies only; a new --storage
    tunes them all anew.
    """
    made = [s for s in states if s is not None]
    notes = []
    other = Counter(s.sampler for s in made if s.sampler is not None and s.sampler != sampler)
    if other:
        kinds = ", ".join(f"{n} with {name}" for name, n in sorted(other.items()))
        notes.append(
            f"note: {sum(other.values())} studies were made with another sampler ({kinds}) and resume with it; "
            f"--sampler {sampler} applies to new studies (another --storage tunes all anew)"
        )
    # Those that had finished a smaller budget, and whose space holds more configs.
    extended = Counter(
        s.budget for s in made if s.budget is not None and s.timed >= s.budget and not s.finished(trials)
    )
    if extended:
        earlier = " or ".join(str(b) for b in sorted(extended))
        notes.append(f"note: --trials {trials} extends {sum(extended.values())} studies tuned to {earlier} earlier")
    return notes


def rounds_again_note(names: Sequence[str]) -> str:
    """The studies whose confirmation round failed to run in an earlier run: this one holds it again."""
    studies = "1 study" if len(names) == 1 else f"{len(names)} studies"
    return (f"the confirmation round of {studies} failed to run earlier (e.g. {names[0]}): "
            "held again before their export")  # fmt: skip


def _announce(
    spec, storage, where: list[str], device_name: str, kind: str, software: dict[str, str], shapes, *, files: bool
) -> None:
    """Where the studies live, what of them is done and what made them, before any work starts."""
    from tuner.samplers import resolve
    from tuner.study import failed_rounds, study_name, study_states

    names = [
        study_name(p, device_name, kind, software, target.space)
        for target in spec.targets
        for problems in shapes
        for p in problems
    ]
    states = list(study_states(storage, names).values())
    print("\n".join(where), flush=True)
    for note in getattr(storage, "notes", ()):  # a dry run's storage not made yet (in memory) has none
        print(note, flush=True)
    print(resume_line(states, spec.trials, storage_place(spec.storage_url)), flush=True)
    for note in identity_notes(states, spec.trials, resolve(spec.sampler)):
        print(note, flush=True)
    if again := failed_rounds(storage, names):
        print(f"note: {rounds_again_note(again)}", flush=True)
    if files:  # a dry run said it among the setup lines
        for target in spec.targets:
            print(f"files: {target.describe()}", flush=True)
    folders = baseline_folders(spec.baseline)
    first = [problems[0] for problems in shapes]
    for target in spec.targets:
        lines = baseline_lines(spec.baseline, folders_for(folders, target.engines), first, device_name, target.space)
        print("\n".join(lines), flush=True)
    note = deepgemm_note(device_name, shapes[0][0].out_dtype)  # in replay, the landscape's device
    if note is not None:
        print(f"note: {note}", flush=True)


def _execute(
    spec,
    devices: list[int],
    device_name: str,
    kind: str,
    software: dict[str, str],
    shapes: list[list[Problem]],
    storage,
    where: list[str],
) -> int:
    from tuner.study import (
        collect,
        format_table,
        no_coverage_line,
        run_workers,
        stored_coverage,
        study_name,
        tune_units,
    )

    _announce(spec, storage, where, device_name, kind, software, shapes, files=True)
    spec = replace(spec, made_by=run_record(spec.replay, devices, device_name, shapes[0][0].out_dtype))
    if len(devices) == 1:
        outcome = tune_units(spec, devices[0], shapes, progress=True)
    else:
        codes = run_workers(spec, devices, shapes)
        if any(codes):
            print(f"error: workers exited with {codes}; rerun the same command to resume.", file=sys.stderr)
            return 1
        outcome = collect(spec, device_name, kind, software, shapes)
    # outcome holds each shape's targets in turn, as tune_units and collect tune and read them
    for (problems, target), (results, paths) in zip([(ps, t) for ps in shapes for t in spec.targets], outcome):
        print("", *paths, format_table(results), sep="\n")
        if spec.coverage:
            names = {p.M: study_name(p, device_name, kind, software, target.space) for p in problems}
            coverage = stored_coverage(storage, problems, names, replay=kind == "replay")
            print(coverage.line() if coverage is not None else no_coverage_line(problems))
    print("\n" + where_files_go([path for _, paths in outcome for path in paths], device_name))
    if any(r.best.hopper for results, _ in outcome for r in results):
        print(f"\nnote: {HOPPER_NOTE}")
    if spec.replay is not None:
        print(f"\nreplay of {spec.replay}: latencies are the landscape's, not measured now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
