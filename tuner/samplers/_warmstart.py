"""Warm starts: configs worth timing first, from what is already known about neighbouring problems.

Three sources, cheapest knowledge first: the best configs of the nearest batch sizes already tuned
for this shape, the entry an existing config file would give SGLang at this M, SGLang's default,
and a prior from recorded landscapes of other shapes on the same device (configs that were close
to the optimum there, at the nearest recorded M). The prior never uses the shape being tuned.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from tuner.benchmarkers import Row, read_rows
from tuner.space import Config, Problem

# Penalty ratio for a config that failed or is missing on a prior shape.
_FAILED_RATIO = 10.0
# The recorded landscapes the prior learns from: package data, so an installed tuner has them too.
# (studies/landscapes/ in the repository links to them for the replay examples.)
PRIOR_PACKAGE, PRIOR_FOLDER = "tuner.samplers", "landscapes"


class Prior:
    """Ranks configs by their geometric-mean slowdown to the optimum on recorded shapes."""

    def __init__(self, rows: Iterable[Row]) -> None:
        # (device, input_type, N, K, block) -> M -> config -> us (None when failed)
        self._by_shape: dict[tuple, dict[int, dict[Config, float | None]]] = defaultdict(lambda: defaultdict(dict))
        for row in rows:
            p = row.problem
            key = (row.device, p.input_type, p.N, p.K, p.block_n, p.block_k)
            self._by_shape[key][p.M][row.config] = row.us if row.status == "ok" else None

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> Prior:
        rows: list[Row] = []
        for path in paths:
            rows.extend(read_rows(path))
        return cls(rows)

    @classmethod
    def shipped(cls) -> Prior:
        """The landscapes installed with the tuner (tuner/samplers/landscapes/), wherever it is installed."""
        folder = importlib.resources.files(PRIOR_PACKAGE).joinpath(PRIOR_FOLDER)
        found = folder.iterdir() if folder.is_dir() else ()
        sources = sorted((f for f in found if f.name.endswith((".csv", ".csv.gz"))), key=lambda f: f.name)
        with contextlib.ExitStack() as stack:  # a real path for each, even from a zipped install
            return cls.from_files([stack.enter_context(importlib.resources.as_file(f)) for f in sources])

    @property
    def shapes(self) -> int:
        """How many recorded shapes the prior holds (over every device)."""
        return len(self._by_shape)

    def ranking(self, problem: Problem, device_name: str) -> list[Config]:
        """Configs best first for problem, learned from every other recorded shape of this device."""
        log_ratios: dict[Config, list[float]] = defaultdict(list)
        shapes = 0
        for (device, input_type, N, K, block_n, block_k), by_m in self._by_shape.items():
            same_setup = (device, input_type, block_n, block_k) == (
                device_name, problem.input_type, problem.block_n, problem.block_k
            )  # fmt: skip
            if not same_setup or (N, K) == (problem.N, problem.K):
                continue
            nearest_m = min(by_m, key=lambda m: (abs(math.log(m / problem.M)), m))
            timings = by_m[nearest_m]
            best = min((us for us in timings.values() if us is not None), default=None)
            if best is None:
                continue
            shapes += 1
            for config, us in timings.items():
                log_ratios[config].append(math.log(us / best if us is not None else _FAILED_RATIO))
        if not shapes:
            return []
        missing = math.log(_FAILED_RATIO)
        score = {c: (sum(r) + missing * (shapes - len(r))) / shapes for c, r in log_ratios.items()}
        return sorted(score, key=lambda c: (score[c], c))


def dedupe(configs: Iterable[Config | None], space: Sequence[Config] | frozenset[Config]) -> list[Config]:
    """Keep the first occurrence of each config that belongs to the space."""
    members = set(space)
    return list(dict.fromkeys(c for c in configs if c is not None and c in members))
