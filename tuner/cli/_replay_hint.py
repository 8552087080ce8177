"""What a machine without a GPU can run instead: the user's own command, in replay on a shipped landscape.

The landscapes a checkout holds (studies/landscapes/, its partial/ and hopper/ folders) and those
installed with the package (tuner/samplers/landscapes/, what a wheel has) are indexed once by what
they cover; the hint names those that cover the requested GEMMs in the requested space, or says
none does and names the closest, of the requested types where one is (a replay of another output
dtype would tune what the user did not ask for, e.g. bfloat16, which SGLang sends to DeepGEMM on
Hopper GPUs).
"""

from __future__ import annotations

import argparse
import csv
import functools
import gzip
import importlib.resources
import math
import shlex
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner.benchmarkers import HEADER, HOPPER_HEADER
from tuner.cli._common import QUANTIZATION_DEFAULTS
from tuner.samplers import PRIOR_FOLDER, PRIOR_PACKAGE
from tuner.space import Problem
from tuner.study import DEFAULT_STORAGE


@dataclass(frozen=True)
class Coverage:
    """One GEMM setup a landscape file holds rows for, at which batch sizes."""

    path: Path
    device: str
    input_type: str
    out_dtype: str
    N: int
    K: int
    block_n: int
    block_k: int
    batch_sizes: tuple[int, ...]
    hopper: bool = False  # a landscape of the Hopper space (SPLIT_K, SWAP_AB columns)

    @property
    def partial(self) -> bool:
        return self.path.parent.name == "partial"

    def space(self) -> str:
        return "hopper" if self.hopper else "base"

    def covers(self, problem: Problem) -> bool:
        """Same shape, types and block: a replay of problem reads this landscape's rows."""
        p = problem
        return (self.input_type, self.out_dtype, self.N, self.K, self.block_n, self.block_k) == (
            p.input_type, p.out_dtype, p.N, p.K, p.block_n, p.block_k
        )  # fmt: skip

    def distance(self, problem: Problem) -> tuple[int, float]:
        """How far problem is from this setup: first how many of its types differ (input, output, block),
        then how far its shape is (the ratios of N and of K, in log space)."""
        p = problem
        mismatches = (self.input_type != p.input_type) + (self.out_dtype != p.out_dtype)
        mismatches += (self.block_n, self.block_k) != (p.block_n, p.block_k)
        return mismatches, abs(math.log(self.N / p.N)) + abs(math.log(self.K / p.K))


# The landscapes a checkout holds for replay (the examples point there), and the package's own.
LANDSCAPES = Path(__file__).resolve().parents[2] / "studies" / "landscapes"


def _installed_landscapes() -> Path | None:
    """The package data's landscape folder (tuner/samplers/landscapes/), wherever the tuner is installed."""
    folder = Path(str(importlib.resources.files(PRIOR_PACKAGE).joinpath(PRIOR_FOLDER)))
    return folder if folder.is_dir() else None


@functools.cache
def shipped_landscapes(folder: Path = LANDSCAPES, installed: Path | None = None) -> tuple[Coverage, ...]:
    """What every landscape covers: under folder (and its partial/ and hopper/), then in the installed
    package (default: the package data); each file once, under the first path found, read once."""
    installed = _installed_landscapes() if installed is None else installed
    paths = [*sorted(folder.glob("*.csv*")), *sorted((folder / "partial").glob("*.csv*"))]
    paths += sorted((folder / "hopper").glob("*.csv*"))
    paths += sorted(installed.glob("*.csv*")) if installed is not None else []
    coverage, seen = [], set()
    for path in paths:
        if path.resolve() in seen:  # the checkout's top-level files link to the package's
            continue
        seen.add(path.resolve())
        batch_sizes: dict[tuple, set[int]] = defaultdict(set)
        with gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header not in (HEADER, HOPPER_HEADER):
                continue  # not a landscape; replay would refuse it too
            for device, input_type, out_dtype, N, K, M, block_n, block_k, *_ in reader:
                batch_sizes[device, input_type, out_dtype, int(N), int(K), int(block_n), int(block_k)].add(int(M))
        for (device, input_type, out_dtype, N, K, block_n, block_k), ms in batch_sizes.items():
            setup = (path, device, input_type, out_dtype, N, K, block_n, block_k, tuple(sorted(ms)))
            coverage.append(Coverage(*setup, hopper=header == HOPPER_HEADER))
    return tuple(coverage)


def _shown(path: Path) -> str:
    """The path as the user can type it from here: relative below the working folder, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command(args: argparse.Namespace, parser: argparse.ArgumentParser, land: Coverage, batch_sizes) -> str:
    """The replay command for one landscape setup, keeping the user's budget, seed and other choices."""
    argv = ["python", "-m", "tuner.run", "--N", land.N, "--K", land.K]
    argv += ["--input-type", land.input_type, "--out-dtype", land.out_dtype]
    if (land.block_n, land.block_k) != (QUANTIZATION_DEFAULTS["block_n"], QUANTIZATION_DEFAULTS["block_k"]):
        argv += ["--block-n", land.block_n, "--block-k", land.block_k]
    argv += ["--batch-sizes", *batch_sizes, "--trials", args.trials]
    if args.seed is not None:
        argv += ["--seed", args.seed]
    if args.no_prior:
        argv += ["--no-prior"]
    for flag, dest in (("--sampler", "sampler"), ("--format", "file_format"), ("--space", "space")):
        if getattr(args, dest) != parser.get_default(dest):
            argv += [flag, getattr(args, dest)]
    if args.storage not in (None, DEFAULT_STORAGE):  # a storage the user named; the default is live runs'
        argv += ["--storage", args.storage]
    if args.save_path is not None:
        argv += ["--save-path", args.save_path]
    return shlex.join([*map(str, argv), "--replay", _shown(land.path)])


def _covered(covered: Sequence[tuple[Coverage, Sequence[int]]], shapes: int) -> str:
    """Which of the run's shapes replay, against what: 'the same run works in replay against a landscape
    recorded on X', or, of several shapes, each one covered."""
    partial = " (its first configs only)"
    if shapes == 1:
        ((land, _),) = covered
        what = "a partial landscape" + partial if land.partial else "a landscape"
        return f"the same run works in replay against {what} recorded on {land.device}"
    named = [f"N={land.N} K={land.K}" + (" in a partial landscape" + partial if land.partial else "")
             for land, _ in covered]  # fmt: skip
    devices = " and ".join(dict.fromkeys(land.device for land, _ in covered))
    if len(named) == 1:
        return f"of your {shapes} shapes, {named[0]} works in replay against a landscape recorded on {devices}"
    which = ", ".join(named[:-1]) + " and " + named[-1]
    return f"of your {shapes} shapes, {which} work in replay against landscapes recorded on {devices}, one command each"


def _describe(problem: Problem) -> str:
    p = problem
    return f"{p.input_type} N={p.N} K={p.K} block [{p.block_n}, {p.block_k}] -> {p.out_dtype}"


def replay_hint(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    shapes: Sequence[Sequence[Problem]],
    landscapes: Sequence[Coverage] | None = None,
) -> str:
    """One line for a machine without a GPU: the user's run in replay where landscapes of the user's
    space cover it (each shape they cover, where the run has several), else which GEMM none covers
    and the closest shipped example of that space."""
    landscapes = shipped_landscapes() if landscapes is None else landscapes
    # auto replays either space's landscape (the landscape's device decides which one it tunes), base first.
    landscapes = [land for land in landscapes if args.space in ("auto", land.space())]
    given = args.batch_sizes is not None or args.batch_size is not None
    for space in sorted({land.space() for land in landscapes}, key=lambda space: space != "base"):
        covered = []  # (landscape, batch sizes) per shape a landscape of this space covers, in the run's order
        for problems in shapes:
            wanted = {p.M for p in problems}  # SGLang's batch sizes unless given: a dense landscape's others are probes
            for land in sorted(landscapes, key=lambda land: (land.partial, -len(land.batch_sizes))):
                batch_sizes = [M for M in land.batch_sizes if M in wanted]
                if land.space() == space and land.covers(problems[0]) and batch_sizes:
                    covered.append((land, batch_sizes))
                    break
        if covered:
            return (
                "No CUDA GPU is visible; "
                + _covered(covered, len(shapes))
                + ": "
                + " && ".join(_command(args, parser, land, batch_sizes) for land, batch_sizes in covered)
            )
    space = "" if args.space in ("auto", "base") else f" of the {args.space} space"
    if not landscapes:
        return f"No CUDA GPU is visible, and this installation ships no landscape{space} to replay."
    first = shapes[0][0]
    if len(shapes) == 1:
        requested = _describe(first)
        if given:
            requested += f" at M = {' '.join(str(p.M) for p in shapes[0])}"
    else:
        requested = f"any of your {len(shapes)} shapes ({first.input_type}, block [{first.block_n}, "
        requested += f"{first.block_k}] -> {first.out_dtype})"
    closest = min(landscapes, key=lambda land: (min(land.distance(ps[0]) for ps in shapes), land.partial))
    return (
        f"No CUDA GPU is visible, and no shipped landscape{space} covers {requested}; the closest "
        f"example runs in replay: {_command(args, parser, closest, closest.batch_sizes)}"
    )
