"""The prior: which configs were close to the optimum on recorded landscapes of other shapes.

A study on a device is ranked from that device's landscapes where it has any, else from those of a
device of the same architecture (an H200 from an H100's: same SM, same instructions, a similar memory
system), and it records which device that was. The prior never uses the shape being tuned.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from tuner.benchmarkers import Row, read_rows
from tuner.dispatch import is_hopper, is_sm90_or_newer
from tuner.space import Config, Problem

# Penalty ratio for a config that failed on a prior shape. A config a shape did not record is unknown
# there, not failed: a cut-short sweep records some tiles alone, and scoring the rest as failures ranked
# them all low (one such shape in five cost every 64-row tile 1.58x in the geometric mean).
_FAILED_RATIO = 10.0
# The recorded landscapes the prior learns from: package data, so an installed tuner has them too.
# (studies/landscapes/ in the repository links to them for the replay examples.) SHIPPED is the one
# pattern package data installs (pyproject.toml), so the repository and an install read the same files.
PRIOR_PACKAGE, PRIOR_FOLDER, SHIPPED = "tuner.samplers", "landscapes", "*.csv.gz"
# Study user attribute: the device whose landscapes ranked the study's prior seeds (absent: no prior).
PRIOR_DEVICE = "prior_device"

_Shape = tuple[str, str, int, int, int, int]  # device, input type, N, K, block_n, block_k


def architecture(device_name: str) -> str | None:
    """The GPU generation a device name belongs to (Hopper, Blackwell), or None when the name is not known."""
    if is_hopper(device_name):
        return "Hopper"
    return "Blackwell" if is_sm90_or_newer(device_name) else None


class Prior:
    """Ranks configs by their geometric-mean slowdown to the optimum on the recorded shapes that hold them."""

    def __init__(self, rows: Iterable[Row]) -> None:
        # (device, input_type, N, K, block) -> M -> config -> us (None when failed)
        self._by_shape: dict[_Shape, dict[int, dict[Config, float | None]]] = defaultdict(lambda: defaultdict(dict))
        for row in rows:
            p = row.problem
            key = (row.device, p.input_type, p.N, p.K, p.block_n, p.block_k)
            self._by_shape[key][p.M][row.config] = row.us if row.status == "ok" else None
        # A study asks more than once (its seeds, its sampler, its record of the source): ranked once each.
        self._rankings: dict[tuple[Problem, str], list[Config]] = {}

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
        sources = sorted((f for f in found if Path(f.name).match(SHIPPED)), key=lambda f: f.name)
        with contextlib.ExitStack() as stack:  # a real path for each, even from a zipped install
            return cls.from_files([stack.enter_context(importlib.resources.as_file(f)) for f in sources])

    @property
    def shapes(self) -> int:
        """How many recorded shapes the prior holds (over every device)."""
        return len(self._by_shape)

    @property
    def blocks(self) -> set[tuple[int, int]]:
        """The blocks [block_n, block_k] the recorded shapes were quantized in: a study learns from its own alone."""
        return {(block_n, block_k) for (*_, block_n, block_k) in self._by_shape}

    def _other_shapes(self, problem: Problem, device_name: str) -> Iterator[dict[int, dict[Config, float | None]]]:
        """The recorded shapes of device_name with problem's input type and block, bar problem's own."""
        for (device, input_type, N, K, block_n, block_k), by_m in self._by_shape.items():
            same_setup = (device, input_type, block_n, block_k) == (
                device_name, problem.input_type, problem.block_n, problem.block_k
            )  # fmt: skip
            if same_setup and (N, K) != (problem.N, problem.K):
                yield by_m

    def source(self, problem: Problem, device_name: str) -> str | None:
        """The device whose landscapes rank configs for problem on device_name, None when none fits.

        device_name itself where it recorded another shape; else the device of the same architecture
        with the most such shapes (ties by name); a device whose architecture is unknown gets only its own.
        """
        if next(self._other_shapes(problem, device_name), None) is not None:
            return device_name
        family = architecture(device_name)
        if family is None:
            return None
        kin = {key[0] for key in self._by_shape if key[0] != device_name and architecture(key[0]) == family}
        counts = {device: sum(1 for _ in self._other_shapes(problem, device)) for device in sorted(kin)}
        return max((d for d in counts if counts[d]), key=lambda d: counts[d], default=None)

    def ranking(self, problem: Problem, device_name: str) -> list[Config]:
        """Configs best first for problem, learned from every other recorded shape of source()'s device."""
        if (problem, device_name) not in self._rankings:
            device = self.source(problem, device_name)
            self._rankings[problem, device_name] = self._rank(problem, device) if device is not None else []
        return list(self._rankings[problem, device_name])

    def _rank(self, problem: Problem, device: str) -> list[Config]:
        log_ratios: dict[Config, list[float]] = defaultdict(list)
        shapes = 0
        for by_m in self._other_shapes(problem, device):
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
        score = {c: sum(r) / len(r) for c, r in log_ratios.items()}
        return sorted(score, key=lambda c: (score[c], c))
