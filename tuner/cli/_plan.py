"""What a dry run prints: the plan, what the run would use, and how long it would take at most."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from tuner.benchmarkers import Benchmarker
from tuner.cli._common import count
from tuner.engines import Target
from tuner.samplers import resolve
from tuner.shapes import ModelPlan
from tuner.space import Problem, search_space

# Per timed config on a GPU host: `python -m tuner.run --tp-size 8 --trials 32 --baseline none` timed 7488
# configs in 323 s from an empty storage and a cold Triton cache on one NVIDIA H100 80GB HBM3 with 16 CPU
# cores (torch 2.11, Triton 3.6, Optuna 5.1), 2026-12-06 (benchmarks/results/h100_evidence_2026-12-06/).
# Small kernels dominate that model, so the rate stands for other GPU hosts until they are measured.
SECONDS_PER_TRIAL = 323 / 7488
LIVE_RATE = "the rate of a whole model on one NVIDIA H100 with 16 CPU cores (7488 timed configs in 323 s, 2026-12-06)"
# Per trial in replay (no GPU): README's replay example (6 studies x 32 trials against
# studies/landscapes/h100_fp8_7168x18432.csv.gz, a fresh SQLite storage) took 1.7 s of the run's own
# clock on a 2-core CPU, 2026-12-06, start-up included.
REPLAY_SECONDS_PER_TRIAL = 1.7 / 192


def budgets(
    shapes: Sequence[Sequence[Problem]], trials: int, spaces: Sequence[str], replay: Benchmarker | None = None
) -> dict[tuple[Problem, str], int]:
    """The configs each study (a problem in a space) would time at most: --trials, capped as a run caps it
    (tuner.study.budget) at the distinct schedules of what it searches: in replay the landscape's configs,
    live the space's (which of them fit the device's shared memory only the GPU says)."""
    from tuner.study import schedules, searchable

    capped = {}
    for space in spaces:
        for problems in shapes:
            for p in problems:
                configs = searchable(p, replay, space) if replay is not None else search_space(p.block_k, space)
                capped[p, space] = min(trials, schedules(configs, p.M))
    return capped


def plan(
    shapes: list[list[Problem]],
    capped: Mapping[tuple[Problem, str], int],
    trials: int,
    names: dict[tuple[int, int], str],
    model: ModelPlan | None = None,
) -> str:
    """The shapes, batch sizes and budget a run would tune; capped: each study's budget (see budgets)."""
    lines = [model.headline()] if model is not None else []
    p = shapes[0][0]
    lines += [f"plan: {count(len(shapes), 'shape')} x {count(len(shapes[0]), 'batch size')} x {trials} trials = "
              f"{sum(capped.values())} timed configs in {count(len(capped), 'study', 'studies')}, {p.input_type} in "
              f"[{p.block_n}, {p.block_k}] blocks, {p.out_dtype} out"]  # fmt: skip
    for problems in shapes:
        p = problems[0]
        lines.append(f"  N={p.N:<6} K={p.K:<6} ({names[p.N, p.K]})  M = {' '.join(str(q.M) for q in problems)}")
    lines += [f"note: {note}" for note in (model.notes if model is not None else ())]
    return "\n".join(lines)


def deepseek_list_note(tp_size: int, shapes: int) -> str:
    """Why --tp-size alone and --model with DeepSeek-V3's config.json plan different shapes."""
    return (
        f"without --model, --tp-size plans SGLang's fixed list of DeepSeek-V3 shapes ({shapes} at TP {tp_size}: "
        "kv_a_proj alone, a plain q_proj and unsplit copies, as SGLang's tuning script has them); --model with "
        "DeepSeek-V3's config.json plans only what the model runs, the fused 2112 x 7168 A projection among them."
    )


def replay_workers_note(devices: list[int]) -> str:
    """What --gpus means with --replay, where no GPU is used."""
    return (f"--gpus with --replay runs {count(len(devices), 'replay worker')}, one process per index given, none on "
            "a GPU: the multi-GPU path without GPUs")  # fmt: skip


def setup_lines(
    args: argparse.Namespace, devices: list[int], device_name: str | None, save_path: str, targets: Sequence[Target]
) -> list[str]:
    """Replay or live and on what, the space of each file, sampler and prior, and where the files would go."""
    if args.replay is not None:
        lines = [f"mode: replay of {args.replay}, recorded on {device_name}: no GPU is used"]
        lines += [f"note: {replay_workers_note(devices)}"] if args.gpus is not None else []
    elif device_name is not None:
        lines = [f"mode: live on {device_name.replace('_', ' ')}, GPUs {','.join(map(str, devices))}"]
    else:
        lines = ["mode: live, on a CUDA GPU; none is visible here, so the device, existing files and studies are "
                 "unknown"]  # fmt: skip
    for target in targets:
        configs = len(search_space(args.block_k, target.space))
        lines.append(f"files: {target.describe()}, {configs} configs per batch size")
    sampler = f"{args.sampler} ({resolve(args.sampler)})" if args.sampler == "auto" else args.sampler
    lines.append(f"sampler: {sampler}; prior: {_prior(args)}")
    written = " and ".join(f"{engine.name}'s" for target in targets for engine in target.engines)
    lines.append(f"save path: {save_path}/ ({written} file names)")
    return lines


def _prior(args: argparse.Namespace) -> str:
    """Where warm starts from other shapes come from: the shipped landscapes of this block shape, or none."""
    from tuner.samplers import Prior

    if args.no_prior:
        return "none (--no-prior)"
    if (args.block_n, args.block_k) not in Prior.shipped().blocks:
        return f"none (no shipped landscape was recorded at [{args.block_n}, {args.block_k}] blocks)"
    return "the shipped landscapes"


def _duration(seconds: float) -> str:
    """Whole seconds under a minute (one at the least), else minutes."""
    return f"{max(1, round(seconds))} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def estimate(timed_configs: int, *, replay: bool) -> str:
    """How long timed_configs would take at most, naming the rate assumed; seconds under a minute."""
    if replay:
        return (f"no GPU time, the latencies are the landscape's; about "
                f"{_duration(timed_configs * REPLAY_SECONDS_PER_TRIAL)} of CPU for the sampler and the storage (at "
                f"{REPLAY_SECONDS_PER_TRIAL * 1000:.0f} ms a trial, measured on a 2-core CPU)")  # fmt: skip
    return (f"about {_duration(timed_configs * SECONDS_PER_TRIAL)} at most, at {LIVE_RATE}; warm starts and configs "
            "shared between batch sizes make it less")  # fmt: skip
