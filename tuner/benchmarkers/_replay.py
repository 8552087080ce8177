"""Replay: tune against a recorded landscape instead of a GPU (docs/contracts.md, "Landscape file").

A trial's latency is read from the matching row; a config with a failed row is a failed config
with the recorded reason. Needs no GPU and no Triton compiler, so the whole tuner can be tested and
its search measured anywhere.

A landscape may cover part of the space (a sweep cut short, or a grid recorded over a subset, like
the Hopper check's): replay measures only what it recorded, so a study in replay searches the
recorded configs only (measurable()), as if the space were that subset. Before, every config
without a row was a failed trial, spending the budget of every sampler on the landscape's gaps.
A config that launches the same schedule as a recorded one at that M (one row of tiles, so
GROUP_SIZE_M changes nothing; see Config.schedule_key) counts as recorded and replays its row,
which is what a sweep writes for such configs anyway.

A landscape may also record M besides the tuned batch sizes (a dense one, every M from 1 to 64 and
steps of ~12% above): a run tunes the batch sizes it is given, and its coverage check probes the
recorded M between them (batch_sizes(), probe()).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from tuner.benchmarkers._base import Measurement
from tuner.benchmarkers._devices import sm_count
from tuner.benchmarkers._landscape import Row, read_rows
from tuner.space import GROUP_SIZE_M, Config, Problem
from tuner.stopping import interruptible


class ReplayBenchmarker:
    """The Benchmarker over a landscape file (see tuner.benchmarkers)."""

    kind = "replay"
    shared_memory_limit = None  # the landscape's failed rows say what did not fit

    def __init__(self, rows: Iterable[Row], *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s  # simulated GPU time per measurement, for concurrency tests
        self._rows: dict[tuple[Problem, Config], Row] = {}
        # The configs recorded per problem, so that a study's questions read its own rows only.
        self._recorded: dict[Problem, list[Config]] = {}
        # The row each recorded schedule replays, for configs that differ from a recorded one only
        # in what changes nothing at that M.
        self._schedules: dict[tuple[Problem, Config], Row] = {}
        devices = set()
        lines = []
        for row in rows:
            if (row.problem, row.config) not in self._rows:
                self._recorded.setdefault(row.problem, []).append(row.config)
            self._rows[row.problem, row.config] = row
            self._schedules.setdefault((row.problem, row.config.schedule_key(row.problem.M)), row)
            devices.add(row.device)
            lines.append(",".join(row.as_csv(hopper=row.config.hopper)))  # base rows hash as they always did
        if len(devices) != 1:
            raise ValueError(f"a landscape must hold one device, but holds {sorted(devices) or 'no rows'}.")
        self.device_name = devices.pop()
        self.sm_count = sm_count(self.device_name)  # as known for the landscape's device; None if unknown
        # Studies replayed from other rows are other studies; the file's name and order do not matter.
        self.software = {"landscape": hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]}
        self.problems = sorted(self._recorded, key=lambda p: (p.N, p.K, p.M))
        self._batch_sizes: dict[Problem, set[int]] = {}  # per GEMM (its problem at M = 1)
        for problem in self.problems:
            self._batch_sizes.setdefault(problem.at(1), set()).add(problem.M)
        self.measurements = 0
        self._measurable: dict[Problem, frozenset[Config]] = {}

    @classmethod
    def from_file(cls, path: str | Path, *, delay_s: float = 0.0) -> ReplayBenchmarker:
        return cls(read_rows(path), delay_s=delay_s)

    def batch_sizes(self, problem: Problem) -> frozenset[int]:
        """The M the landscape recorded for problem's GEMM (none if it holds no rows of it)."""
        return frozenset(self._batch_sizes.get(problem.at(1), ()))

    def measurable(self, problem: Problem) -> frozenset[Config]:
        """The configs recorded for problem (failed ones included), and those with a recorded schedule at its M."""
        if problem not in self._measurable:
            recorded = set(self._recorded.get(problem, ()))
            same_schedule = {  # one row of tiles: every GROUP_SIZE_M launches the same schedule
                replace(config, group_m=group_m)
                for config in recorded
                if problem.M <= config.block_m
                for group_m in GROUP_SIZE_M
            }
            self._measurable[problem] = frozenset(recorded | same_schedule)
        return self._measurable[problem]

    def _row(self, problem: Problem, config: Config) -> Row | None:
        row = self._rows.get((problem, config))
        return row if row is not None else self._schedules.get((problem, config.schedule_key(problem.M)))

    def prepare(self, problem: Problem, configs: Iterable[Config], *, replace: bool = False) -> None:
        """Nothing to compile in replay."""

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        self.measurements += 1
        with interruptible():
            time.sleep(self.delay_s)
        row = self._row(problem, config)
        if row is None:  # outside measurable(): no study proposes it
            return Measurement("crash", reason="no row for this config in the landscape")
        if row.status != "ok":
            return Measurement(row.status, reason="recorded in the landscape")
        if prune_above_us is not None and row.us > prune_above_us:
            return Measurement("pruned", us=row.us)
        return Measurement("ok", us=row.us)

    def retime(self, problem: Problem, configs: Sequence[Config], *, rounds: int) -> dict[Config, list[float]]:
        """The recorded latencies again: a landscape holds one number per config, so no spread."""
        times = {config: self.latency(problem, config) for config in configs}
        return {config: [us] * rounds if us is not None else [] for config, us in times.items()}

    def probe(
        self, problem: Problem, configs: Sequence[Config], *, rounds: int, quick: bool = False
    ) -> dict[Config, list[float] | Measurement]:
        """The recorded latencies at problem's M, as retime gives them; a config recorded as failed there
        gets that failure, one without a row a crash (a check asks only for measurable configs)."""
        out: dict[Config, list[float] | Measurement] = {}
        for config in configs:
            row = self._row(problem, config)
            if row is None:
                out[config] = Measurement("crash", reason="no row for this config in the landscape")
            elif row.status != "ok":
                out[config] = Measurement(row.status, reason="recorded in the landscape")
            else:
                out[config] = [row.us] * rounds
        return out

    def optimum(self, problem: Problem, among: Iterable[Config] | None = None) -> tuple[Config, float]:
        """The landscape's best config and latency for a problem (for evaluation), among some configs if given."""
        rows = ((config, self._rows[problem, config]) for config in self._recorded.get(problem, ()))
        ok = [(row.us, config) for config, row in rows if row.status == "ok"]
        if among is not None:
            ok = [(us, config) for config in set(among) if (us := self.latency(problem, config)) is not None]
        if not ok:
            raise ValueError(f"the landscape has no ok row for {problem}.")
        us, config = min(ok)
        return config, us

    def latency(self, problem: Problem, config: Config) -> float | None:
        row = self._row(problem, config)
        return row.us if row is not None else None

    def require(self, problem: Problem) -> None:
        """Raise ValueError unless the landscape covers problem."""
        if problem not in self.problems:
            have = sorted({(p.N, p.K, p.M, p.input_type, p.out_dtype, p.block_n, p.block_k) for p in self.problems})
            raise ValueError(
                f"the landscape has no rows for N={problem.N} K={problem.K} M={problem.M} {problem.input_type} "
                f"{problem.out_dtype} block [{problem.block_n}, {problem.block_k}]; it holds {have[:6]}"
                + (" ..." if len(have) > 6 else "")
            )
