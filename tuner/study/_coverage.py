"""Right at every batch size: probe the runtime M between a shape's tuned keys, and add the keys a file needs.

SGLang and vLLM run, for a runtime M, the entry of the key nearest to M (the smaller key on a tie), so
at M = 40 a file keyed 32 and 48 runs the config tuned for 32, and at M = 1117 the one tuned for
1024. A file is only as good as its worst runtime M. So once a shape's keys are tuned and confirmed,
the check probes the M between them: at each it times, in one harness, the entry the loader picks
there and the other tuned configs near it (every key's entry of the interval and the fastest few of
the two neighbouring studies), and where the loader's pick is more than a threshold slower than the
best of them, beyond the spread of interleaved rounds, that M gets its own key with the fastest
config found there. Keys are only added, never removed, and both loaders take any integer key.

Which M: on a GPU every integer up to 64 (or the largest key), then multiples of 16 at most 12%
apart (PROBE_STEP; every multiple of 16 up to ~270). Every BLOCK_SIZE_M of the space is a multiple
of 16, so an M launches the same grid of tiles as the multiple of 16 at or above it for every
config: above 64 each probe stands for the 16 M below it, and shares the keys' compiled binaries
(Triton compiles an int argument apart when it is 1 or a multiple of 16; the keys from 16 on are
multiples of 16). In replay the check probes the M the landscape recorded between the keys.

What it costs: an interval whose candidates are all one config is not timed (nothing to compare:
the loader's pick is the only tuned config there). Elsewhere each probe M first gets one quick round
over the candidates (a screen); the pick is served if it is within the threshold of the screen's
best, and only where it is not do interleaved rounds over the pick and its few challengers decide.
Compiles for the probes' M go ahead in the compile pool (prepare_probes) while the shape's larger
batch sizes are still tuned.

Resume: each interval's evidence (every probe's screen and rounds) is a user attribute of the study
of its smaller key, written after every probe, with the basis it was made on (the loader's keys and
the candidates). A rerun with the same basis reuses it: a finished interval is not timed again, and
one cut short by a crash is timed only where it has no evidence; another basis (a study that got
more trials, another key in the file) is probed anew. The verdicts and the added keys follow from
the evidence alone (decide), so the end of a run, a multi-GPU run's parent and the report all
derive the same ones from the storage.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuner.benchmarkers import COVERAGE, Benchmarker, Measurement, RunClock
from tuner.export import nearest_entry, read_config_file, write_configs
from tuner.space import DEFAULT_BATCH_SIZES, Config, Problem, config_of
from tuner.study._search import GpuFailure, WrongResult
from tuner.study._storage import study_name
from tuner.study._store import rows_of

# The loader's pick is served at an M where it is at most this much slower than the best timed there.
THRESHOLD = 0.02
# Every M up to this one is probed; above it, multiples of 16 at most PROBE_STEP apart.
SMALL_M = 64
PROBE_STEP = 1.12
# Candidates from each neighbouring study besides its exported entry: its fastest distinct configs.
BEST_FEW = 2
# A probe that the screen does not clear is decided by this many interleaved rounds over the pick
# and the config the screen found fastest (its key's config, if it gets one).
ROUNDS = 3
CHALLENGERS = 1
# The study user attribute of an interval's record: RECORD + its larger key, on its smaller key's study.
RECORD = "coverage_"
# What the provenance record says of a key the check added.
ADDED_KEY = (
    "added by the coverage check: at this M the entry of the nearest tuned key was slower than this config, "
    "timed with it in one harness, by more than the threshold and the rounds' spread"
)


def probe_batch_sizes(keys: Iterable[int]) -> list[int]:
    """The runtime M a check on a GPU probes between the smallest and largest of keys (keys left out)."""
    keys = sorted(set(keys))
    low, high = keys[0], keys[-1]
    found = set(range(low + 1, min(SMALL_M, high) + 1))
    m = SMALL_M
    while m < high:
        m = max(m + 16, 16 * math.floor(m * PROBE_STEP / 16))
        found.add(m)
    return sorted(m for m in found if low < m < high and m not in keys)


def dense_batch_sizes(high: int = 4096) -> list[int]:
    """The M a dense landscape records: SGLang's batch sizes up to high and what a check probes between them."""
    keys = [m for m in DEFAULT_BATCH_SIZES if m < high] + [high]
    return sorted({*keys, *probe_batch_sizes(keys)})


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """How the loader's pick fares at one probe M: served or not, its ratio to the best, and that best."""

    served: bool
    ratio: float  # the pick's latency over the best's (inf where the pick fails at this M)
    best: str  # the label of the fastest config timed here


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One probe M: the loader's pick before the check (tuned keys alone) and after, against the best timed."""

    M: int
    before: str
    before_ratio: float
    after: str
    after_ratio: float
    best: str
    best_us: float | None  # None where the interval was not timed (one candidate)
    served: bool  # after the check
    served_before: bool
    timed: bool


@dataclass
class Evidence:
    """What was timed at one probe M: the screen over every candidate, and the deciding rounds."""

    screen: dict[str, float] = field(default_factory=dict)  # label -> µs, one quick round
    failed: dict[str, str] = field(default_factory=dict)  # label -> status, where a candidate failed here
    rounds: list[dict[str, list[float]]] = field(default_factory=list)  # each: label -> µs per round

    def as_json(self) -> dict[str, Any]:
        return {"screen": self.screen, "failed": self.failed, "rounds": self.rounds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(dict(data["screen"]), dict(data["failed"]), [dict(r) for r in data["rounds"]])


def _spread(times: Mapping[str, Sequence[float]], *labels: str) -> float:
    return max(max(times[label]) - min(times[label]) for label in labels)


def judge(evidence: Evidence, pick: str, threshold: float) -> Verdict | None:
    """The pick's verdict from the evidence, or None where the screen does not clear it and no round decided.

    A round decides where it timed the pick: served if the pick's median is within the threshold
    of the round's fastest, or within the round's spread of it (noise is no reason for a key).
    """
    ran = evidence.screen
    best = min(ran, key=lambda label: (ran[label], label))
    if pick not in ran:  # it fails at this M: whatever runs is better
        return Verdict(served=False, ratio=math.inf, best=best)
    if ran[pick] <= (1 + threshold) * ran[best]:
        return Verdict(served=True, ratio=ran[pick] / ran[best], best=best)
    for times in evidence.rounds:
        if times.get(pick):
            medians = {label: statistics.median(ts) for label, ts in times.items() if ts}
            fastest = min(medians, key=lambda label: (medians[label], label))
            gap = medians[pick] - medians[fastest]
            served = medians[pick] <= (1 + threshold) * medians[fastest] or gap <= _spread(times, pick, fastest)
            return Verdict(served=served, ratio=medians[pick] / medians[fastest], best=fastest)
    return None


def challengers(evidence: Evidence, pick: str, threshold: float) -> list[str]:
    """The configs a deciding round times beside the pick: the fastest of those the screen found faster."""
    ran = evidence.screen
    faster = sorted((label for label in ran if ran[label] * (1 + threshold) < ran[pick]), key=ran.__getitem__)
    return faster[:CHALLENGERS]


# Holds a deciding round at one probe M for the pick (a label) and adds it to that M's evidence.
Round = Callable[[int, str], None]


def decide(
    keys: Mapping[int, str],
    evidence: Mapping[int, Evidence],
    threshold: float,
    deciding_round: Round | None = None,
) -> tuple[dict[int, Verdict], dict[int, Verdict], dict[int, str]]:
    """The verdicts before and after, and the keys to add, for one interval's probes.

    keys are the loader's keys of the interval (its two ends and any key between them) by their
    entries' labels. While some probe M is not served, the worst of them gets its own key with the
    fastest config timed there, and the interval is judged again: a key serves its own M, so this
    ends. deciding_round times a round where the evidence does not decide a pick yet; without one
    (reading a finished check back) the screen's verdict stands.
    """

    def verdict(M: int, pick: str) -> Verdict:
        found = judge(evidence[M], pick, threshold)
        if found is None and deciding_round is not None:
            deciding_round(M, pick)
            found = judge(evidence[M], pick, threshold)
        if found is None:  # a round was never held: the screen's numbers, not served
            ran = evidence[M].screen
            best = min(ran, key=lambda label: (ran[label], label))
            found = Verdict(served=False, ratio=ran[pick] / ran[best], best=best)
        return found

    def judged(current: Mapping[int, str]) -> dict[int, Verdict]:
        ordered = dict(sorted(current.items()))  # the loader breaks ties by file order: ascending keys
        return {M: verdict(M, nearest_entry(ordered, M)) for M in sorted(evidence)}

    current = dict(keys)
    before = now = judged(current)
    added: dict[int, str] = {}
    while unserved := [M for M, v in now.items() if not v.served]:
        worst = max(unserved, key=lambda M: (now[M].ratio, -M))
        current[worst] = added[worst] = now[worst].best
        now = judged(current)
    return before, now, added


@dataclass(frozen=True, kw_only=True)
class Interval:
    """The runtime M between two tuned keys, and what the loader and the search give there."""

    low: int
    high: int
    keys: dict[int, Config]  # the loader's keys in [low, high] before the check: the two ends and any between
    candidates: tuple[Config, ...]  # the keys' entries first, then the neighbouring studies' fastest
    probes: tuple[int, ...]

    def basis(self, threshold: float) -> dict[str, Any]:
        """What the evidence was gathered on: evidence on another basis is gathered anew."""
        return {
            "keys": {str(M): c.short() for M, c in sorted(self.keys.items())},
            "candidates": sorted(c.short() for c in self.candidates),
            "probes": list(self.probes),
            "threshold": threshold,
        }


@dataclass(frozen=True, kw_only=True)
class IntervalOutcome:
    """An interval's probes and the keys the check added there (empty where it had nothing to probe)."""

    low: int
    high: int
    probes: tuple[ProbeResult, ...]
    added: dict[int, Config]
    unrecorded: int = 0  # replay: probe M where the landscape has no latency for the loader's pick
    threshold: float = THRESHOLD


def outcome_of(record: Mapping[str, Any], deciding_round: Round | None = None) -> IntervalOutcome:
    """An interval's outcome from its record: the evidence decides, as it did during the check.

    A probe M recorded with no evidence had no latency for the loader's pick (replay) and is counted
    apart. deciding_round holds the rounds a check still needs; reading a finished one back needs none.
    """
    basis = record["basis"]
    entries = {label: Config.from_sglang(entry) for label, entry in record["candidates"].items()}
    keys = {int(M): label for M, label in basis["keys"].items()}
    evidence = record["evidence"]
    low, high, probes = record["low"], record["high"], basis["probes"]
    if len(entries) == 1:  # one candidate: the loader's pick is the only tuned config there, nothing timed
        (label,) = entries
        same = {"before": label, "after": label, "best": label, "before_ratio": 1.0, "after_ratio": 1.0}
        results = [ProbeResult(M=M, **same, best_us=None, served=True, served_before=True, timed=False) for M in probes]
        return IntervalOutcome(low=low, high=high, probes=tuple(results), added={}, threshold=basis["threshold"])
    found = {int(M): e if isinstance(e, Evidence) else Evidence.from_json(e) for M, e in evidence.items() if e}
    before, after, added = decide(keys, found, basis["threshold"], deciding_round)
    current = dict(sorted({**keys, **added}.items()))
    results = []
    for M in sorted(found):
        best = after[M].best
        results.append(
            ProbeResult(
                M=M,
                before=nearest_entry(dict(sorted(keys.items())), M),
                before_ratio=before[M].ratio,
                after=nearest_entry(current, M),
                after_ratio=after[M].ratio,
                best=best,
                best_us=_latency(found[M], best),
                served=after[M].served,
                served_before=before[M].served,
                timed=True,
            )
        )
    return IntervalOutcome(
        low=low,
        high=high,
        probes=tuple(results),
        added={M: entries[label] for M, label in added.items()},
        unrecorded=sum(1 for M in probes if str(M) in evidence and not evidence[str(M)]),
        threshold=basis["threshold"],
    )


def _latency(evidence: Evidence, label: str) -> float | None:
    """label's latency at a probe: its median in the last round that timed it, else the screen's."""
    for times in reversed(evidence.rounds):
        if times.get(label):
            return statistics.median(times[label])
    return evidence.screen.get(label)


@dataclass(frozen=True, kw_only=True)
class ShapeCoverage:
    """A shape's check: every interval's probes and the keys added, and the one line a run prints."""

    problem: Problem  # the shape, at its smallest tuned M
    keys: tuple[int, ...]
    intervals: tuple[IntervalOutcome, ...]
    threshold: float = THRESHOLD
    replay: bool = False
    unchecked: tuple[tuple[int, int], ...] = ()  # intervals with no record (split between workers)

    @property
    def probes(self) -> list[ProbeResult]:
        return [p for interval in self.intervals for p in interval.probes]

    @property
    def added(self) -> dict[int, Config]:
        return {M: c for interval in self.intervals for M, c in sorted(interval.added.items())}

    def line(self) -> str:
        """The shape's coverage in one line: probed range, served before and after, the worst M, keys added."""
        head = f"coverage N={self.problem.N} K={self.problem.K}"
        probes = self.probes
        unrecorded = sum(interval.unrecorded for interval in self.intervals)
        if not probes:
            if self.replay:
                return f"{head}: the landscape records no M between the keys {_keys(self.keys)}; nothing to probe"
            return f"{head}: no M between the keys {_keys(self.keys)}; nothing to probe"
        pct = f"{self.threshold:.0%}"
        served_before = sum(p.served_before for p in probes)
        served = sum(p.served for p in probes)
        worst_before = max(probes, key=lambda p: (p.before_ratio, -p.M))
        worst = max(probes, key=lambda p: (p.after_ratio, -p.M))
        untimed = sum(not p.timed for p in probes)
        line = f"{head}: {len(probes)} probe M from {probes[0].M} to {probes[-1].M}"
        if untimed:
            line += f" ({untimed} not timed: one tuned config there)"
        line += (
            f"; within {pct} of the best timed config: {served_before} before the check, {served} after; worst "
            f"M={worst_before.M} {_ratio(worst_before.before_ratio)} before, M={worst.M} "
            f"{_ratio(worst.after_ratio)} after; keys added: {', '.join(map(str, self.added)) or 'none'}"
        )
        if unrecorded:
            line += f"; {unrecorded} M without the loader's pick in the landscape, not probed"
        if self.unchecked:  # tuned by two workers, or checked only with other batch sizes
            line += f"; not checked between {', '.join(f'{a} and {b}' for a, b in self.unchecked)}"
        return line


def no_coverage_line(problems: Sequence[Problem]) -> str:
    """The line of a shape with no checked interval: one batch size, or every interval tuned apart (workers)."""
    p = problems[0]
    if len(problems) == 1:
        return f"coverage N={p.N} K={p.K}: one batch size, M={p.M}; nothing between keys to probe"
    return f"coverage N={p.N} K={p.K}: no interval between its batch sizes was checked"


def _keys(keys: Sequence[int]) -> str:
    return ", ".join(map(str, keys))


def _ratio(ratio: float) -> str:
    return "fails" if math.isinf(ratio) else f"{ratio:.3f}x"


def _study_bests(storage: BaseStorage, name: str, k: int) -> list[Config]:
    """The k fastest distinct completed configs of the named study (none if it does not exist)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    return list(dict.fromkeys(config_of(t) for t in sorted(done, key=lambda t: t.value)))[:k]


def probed_batch_sizes(bench: Benchmarker, problem: Problem, tuned: Sequence[int]) -> list[int]:
    """Every M the check probes between the tuned batch sizes: probe_batch_sizes on a GPU, the recorded M in replay."""
    recorded = bench.batch_sizes(problem)
    if len(tuned) < 2:
        return []
    if recorded is None:
        return probe_batch_sizes(tuned)
    return sorted(m for m in recorded if min(tuned) < m < max(tuned) and m not in tuned)


def interval(
    low: int,
    high: int,
    file_entries: Mapping[int, Config],
    bests: Sequence[Config],
    probed: Sequence[int],
    *,
    leave_out: Iterable[int] = (),
) -> Interval:
    """The interval from low to high: the loader's keys there (bar leave_out: keys an earlier check of it
    added), their entries and bests (the neighbouring studies' fastest) as candidates, and the probes."""
    leave_out = set(leave_out)
    keys = {M: c for M, c in sorted(file_entries.items()) if low <= M <= high and M not in leave_out}
    candidates = tuple(dict.fromkeys([*keys.values(), *bests]))
    probes = tuple(m for m in probed if low < m < high and m not in keys)
    return Interval(low=low, high=high, keys=keys, candidates=candidates, probes=probes)


def timeable(bench: Benchmarker, problem: Problem, interval: Interval) -> Interval:
    """The interval with the candidates bench can time at every one of its probe M (the keys' entries kept).

    A GPU times any config; a landscape recorded over part of the space has no latency for the rest,
    and a candidate it lacks at some M could not be judged there had it become a key nearby.
    """
    sets = [bench.measurable(problem.at(M)) for M in interval.probes]
    kept = [
        c
        for c in interval.candidates
        if c in interval.keys.values() or all(found is None or c in found for found in sets)
    ]
    return replace(interval, candidates=tuple(kept))


def prepare_probes(bench: Benchmarker, problem: Problem, interval: Interval) -> None:
    """Compile, ahead, what the interval's probes will time at their M (the pool compiles each class once)."""
    for M in interval.probes:
        bench.prepare(problem.at(M), interval.candidates)


def prepare_ahead(
    bench: Benchmarker,
    problems: Sequence[Problem],
    entries: Mapping[int, Config],
    bests: Mapping[int, Sequence[Config]],
) -> None:
    """While a shape's larger batch sizes are tuned, compile what the check will probe between the tuned ones.

    problems are the shape's batch sizes tuned so far, entries their picks and bests each one's fastest
    configs. Between the small keys the probes are M of other compile classes than the keys' (not
    multiples of 16), so their candidates compile anew; asked for here, they are ready when the check
    starts. They queue behind the next study's seeds (a compile a study waits for goes first anyway),
    and a study's start drops what no process took yet: asked again before each study, they go through.
    """
    tuned = sorted(p.M for p in problems)
    probed = probed_batch_sizes(bench, problems[0], tuned)
    for low, high in zip(tuned, tuned[1:]):
        if low < SMALL_M:  # above, every probe is a multiple of 16, compiled for the keys already
            prepare_probes(bench, problems[0], interval(low, high, entries, [*bests[low], *bests[high]], probed))


class _Check:
    """One interval's probing against a benchmarker, its evidence written to the storage after every step."""

    def __init__(
        self,
        storage: BaseStorage,
        study_id: int,
        bench: Benchmarker,
        problem: Problem,
        interval: Interval,
        threshold: float,
        clock: RunClock,
    ) -> None:
        self.storage, self.study_id, self.bench, self.problem = storage, study_id, bench, problem
        self.interval, self.threshold, self.clock = interval, threshold, clock
        self.entries = {c.short(): c for c in interval.candidates}
        self.record: dict[str, Any] = {
            "low": interval.low,
            "high": interval.high,
            "basis": interval.basis(threshold),
            "candidates": {label: c.as_sglang() for label, c in self.entries.items()},
            "evidence": {},
            "done": False,
        }

    def resume(self, stored: Mapping[str, Any] | None) -> bool:
        """Take over a stored record made on the same basis (finished, or cut short); whether it did."""
        if stored is None or stored.get("basis") != self.record["basis"]:
            return False
        self.record = dict(stored)
        return True

    def run(self) -> IntervalOutcome:
        """Screen every probe M that has no evidence yet, then decide, holding rounds where needed."""
        evidence = self.record["evidence"]
        if len(self.entries) > 1:
            for M in self.interval.probes:
                if str(M) not in evidence:
                    evidence[str(M)] = self._screen(M)  # None: no latency for the loader's pick here (replay)
                    self._save()
        evidence.update({M: Evidence.from_json(e) for M, e in evidence.items() if isinstance(e, dict)})

        def deciding_round(M: int, pick: str) -> None:
            found = evidence[str(M)]
            labels = [pick, *challengers(found, pick, self.threshold)]
            found.rounds.append(self._time(M, [self.entries[label] for label in labels], rounds=ROUNDS))
            self._save()

        outcome = outcome_of(self.record, deciding_round)
        self.record["added"] = {str(M): config.short() for M, config in outcome.added.items()}
        self.record["done"] = True
        self._save()
        return outcome

    def _save(self) -> None:
        """Write the record, every piece of evidence as JSON, in one write to the study."""
        evidence = {M: e.as_json() if isinstance(e, Evidence) else e for M, e in self.record["evidence"].items()}
        record = {**self.record, "evidence": evidence}
        rows_of(self.storage).set_study_attrs(
            self.study_id, {RECORD + str(self.interval.high): record}, clock=self.clock
        )

    def _screen(self, M: int) -> Evidence | None:
        """One quick round over the candidates the benchmarker can time at M; None where the pick is not one."""
        problem = self.problem.at(M)
        measurable = self.bench.measurable(problem)
        configs = [c for c in self.interval.candidates if measurable is None or c in measurable]
        pick = nearest_entry(self.interval.keys, M)
        if pick not in configs:
            return None
        evidence = Evidence()
        for config, result in self.bench.probe(problem, configs, rounds=1, quick=True).items():
            if isinstance(result, Measurement):
                self._failed(problem, config, result)
                evidence.failed[config.short()] = result.status
            else:
                evidence.screen[config.short()] = round(result[0], 3)
        if not evidence.screen:  # every candidate failed: a live GPU raised above; a landscape recorded it so
            return None
        return evidence

    def _time(self, M: int, configs: Sequence[Config], *, rounds: int) -> dict[str, list[float]]:
        problem = self.problem.at(M)
        times = {}
        for config, result in self.bench.probe(problem, configs, rounds=rounds, quick=True).items():
            if isinstance(result, Measurement):
                self._failed(problem, config, result)
            times[config.short()] = [] if isinstance(result, Measurement) else [round(t, 3) for t in result]
        return times

    def _failed(self, problem: Problem, config: Config, result: Measurement) -> None:
        """A wrong result is a bug and stops the run, as in a search; so does a live crash or hang, which
        a config that ran at the keys should not cause (a rerun resumes the check; --no-coverage skips it)."""
        if result.status == "wrong_result":
            raise WrongResult(
                f"{config.short()} computes a wrong result on {problem} (coverage check): {result.reason}"
            )
        if self.bench.kind == "gpu" and result.status in ("crash", "timeout"):
            raise GpuFailure(
                f"{config.short()} failed at M={problem.M} in the coverage check ({result.status}: {result.reason}); "
                "rerun the same command to resume the check, or add --no-coverage to skip it."
            )


def check_shape(
    storage: BaseStorage,
    bench: Benchmarker,
    problems: Sequence[Problem],
    paths: Sequence[Path],
    *,
    space: str = "base",
    threshold: float = THRESHOLD,
    clock: RunClock | None = None,
    made_by: Mapping[str, str] | None = None,
) -> ShapeCoverage:
    """Check a tuned shape between its batch sizes (problems), add the keys it needs to the files at paths,
    with made_by and ADDED_KEY as their provenance (tuner.export.write_configs).

    The config files must already hold the tuned entries (tune_shape wrote them); the first path is
    read as the loader reads it. The files of one search (one per engine) hold the same tuned
    entries, so the keys the first one needs go into each; where a later file's copied baseline
    holds other keys between the batch sizes (another engine's shipped file), its picks there are
    not checked apart. The whole check's wall time goes on clock's COVERAGE.
    """
    clock = clock if clock is not None else RunClock()
    ordered = sorted(problems, key=lambda p: p.M)
    tuned = [p.M for p in ordered]
    with clock.claiming(COVERAGE):
        names = {p.M: study_name(p, bench.device_name, bench.kind, bench.software, space) for p in ordered}
        entries = read_config_file(paths[0])
        probed = probed_batch_sizes(bench, ordered[0], tuned)
        checks = []
        for low, high in zip(tuned, tuned[1:]):
            bests = [c for M in (low, high) for c in _study_bests(storage, names[M], BEST_FEW)]
            study_id = storage.get_study_id_from_name(names[low])
            stored = storage.get_study_user_attrs(study_id).get(RECORD + str(high))
            leave_out = [int(M) for M in (stored or {}).get("added", {})]
            found = timeable(bench, ordered[0], interval(low, high, entries, bests, probed, leave_out=leave_out))
            check = _Check(storage, study_id, bench, ordered[0], found, threshold, clock)
            if not check.resume(stored):  # anew, with every key the file holds now as the loader's
                found = timeable(bench, ordered[0], interval(low, high, entries, bests, probed))
                check = _Check(storage, study_id, bench, ordered[0], found, threshold, clock)
            if not check.record["done"]:
                prepare_probes(bench, ordered[0], found)
            checks.append(check)
        outcomes = [check.run() for check in reversed(checks)][::-1]  # the largest M first: no new compiles there
        coverage = ShapeCoverage(
            problem=ordered[0],
            keys=tuple(tuned),
            intervals=tuple(outcomes),
            threshold=threshold,
            replay=bench.kind == "replay",
        )
        if coverage.added:
            for path in paths:
                write_configs(path, coverage.added, added_by(made_by))
    return coverage


def added_by(made_by: Mapping[str, str] | None) -> dict[str, str] | None:
    """The provenance of a key the check added: the run's, and why the key is there (None: no record)."""
    return None if made_by is None else {**made_by, "coverage": ADDED_KEY}


def stored_coverage(
    storage: BaseStorage, problems: Sequence[Problem], names: Mapping[int, str], *, replay: bool = False
) -> ShapeCoverage | None:
    """A shape's check as the storage holds it (None where no interval was checked): what a run prints at its end.

    names are the shape's studies by M, whose user attributes hold the intervals' records.
    """
    attrs = {}
    for problem in problems:
        try:
            attrs[problem.M] = storage.get_study_user_attrs(storage.get_study_id_from_name(names[problem.M]))
        except KeyError:
            attrs[problem.M] = {}
    return coverage_of(problems, attrs, replay=replay)


def coverage_of(
    problems: Sequence[Problem], attrs: Mapping[int, Mapping[str, Any]], *, replay: bool = False
) -> ShapeCoverage | None:
    """A shape's check from its studies' user attributes by M (None where no interval between them was checked).

    Each interval between neighbouring batch sizes is read from its smaller one's record; one
    without a finished record (tuned by other workers, or checked with other batch sizes) is listed
    as unchecked.
    """
    ordered = sorted(problems, key=lambda p: p.M)
    outcomes, unchecked = [], []
    for low, high in zip(ordered, ordered[1:]):
        record = attrs.get(low.M, {}).get(RECORD + str(high.M))
        if record is not None and record.get("done"):
            outcomes.append(outcome_of(record))
        else:
            unchecked.append((low.M, high.M))
    if not outcomes:
        return None
    return ShapeCoverage(
        problem=ordered[0],
        keys=tuple(p.M for p in ordered),
        intervals=tuple(outcomes),
        threshold=outcomes[0].threshold,
        replay=replay,
        unchecked=tuple(unchecked),
    )
