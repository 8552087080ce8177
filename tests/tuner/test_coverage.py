"""The coverage check: probe the runtime M between a shape's keys, add the keys a file needs, resume, and say it.

Most tests replay a synthetic dense landscape (tests.tuner.synthetic.dense_us: wave quantization moves
the optimum between SGLang's batch sizes, recorded at every M up to 64 and ~10% steps to 4096).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import optuna
import pytest

from tests.tuner.fake_compiler import KILLED_FILE, busy_host_compile, fake_compile
from tests.tuner.fake_gpu import FakeSession
from tests.tuner.synthetic import (
    DENSE_BATCH_SIZES,
    DEVICE,
    HOPPER_GRID,
    dense_us,
    write_dense_landscape,
    write_landscape,
)
from tuner.benchmarkers import (
    COMPILE_TRIES,
    COVERAGE,
    GPU,
    HOPPER_HEADER,
    GpuBenchmarker,
    Measurement,
    ReplayBenchmarker,
    Row,
    RunClock,
)
from tuner.engines import SGLANG, VLLM
from tuner.export import config_file_name, nearest_entry, read_config_file
from tuner.space import DEFAULT_BATCH_SIZES, Config, Problem
from tuner.study import (
    THRESHOLD,
    TuneOptions,
    dense_batch_sizes,
    make_storage,
    probe_batch_sizes,
    stored_coverage,
    study_name,
    tune_shape,
)
from tuner.study._coverage import RECORD, Evidence, decide, interval, judge, timeable
from tuner.study._search import GpuFailure, WrongResult

SHAPE = (7168, 18432)
FILE = config_file_name(*SHAPE, DEVICE, "fp8", 128, 128)
TRIALS = 8
A = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
B = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
C = Config(block_m=64, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)


# --- which M are probed ---------------------------------------------------------------------------
def test_a_gpu_check_probes_every_m_up_to_64_then_multiples_of_16_at_most_12_percent_apart():
    probes = probe_batch_sizes(DEFAULT_BATCH_SIZES)
    assert [m for m in probes if m <= 64] == [m for m in range(2, 65) if m not in DEFAULT_BATCH_SIZES]
    large = sorted(m for m in {*probes, *DEFAULT_BATCH_SIZES} if m >= 64)  # the keys are points of M too
    assert all(m % 16 == 0 for m in large)
    assert all(b - a == 16 or b / a <= 1.12 for a, b in zip(large, large[1:]))
    assert not set(probes) & set(DEFAULT_BATCH_SIZES)


@pytest.mark.parametrize(
    ("keys", "expected_first", "expected_last"),
    [
        ((64, 1024), 80, 928),  # a --batch-sizes run: its range only, no integers below the smaller key
        ((1, 48), 2, 47),  # every integer when the largest key is at most 64
        ((16,), None, None),  # one key: nothing between keys
    ],
)
def test_probes_cover_the_range_of_the_keys_alone(keys, expected_first, expected_last):
    probes = probe_batch_sizes(keys)
    assert (probes[0] if probes else None, probes[-1] if probes else None) == (expected_first, expected_last)


def test_the_dense_list_is_every_m_to_64_and_about_40_more_to_4096_with_sglangs_batch_sizes():
    dense = dense_batch_sizes()
    assert set(range(1, 65)) <= set(dense) and set(DEFAULT_BATCH_SIZES) <= set(dense)
    assert 35 <= sum(m > 64 for m in dense) <= 45 and dense[-1] == 4096


# --- verdicts from the evidence -------------------------------------------------------------------
def _evidence(screen, rounds=()):
    return Evidence(screen=dict(screen), rounds=[dict(r) for r in rounds])


# (screen, rounds, pick, served, ratio, best): what each case covers.
@pytest.mark.parametrize(
    ("screen", "rounds", "pick", "expected"),
    [
        ({"a": 101.0, "b": 100.0}, [], "a", (True, 1.01, "b")),  # within 2% in the screen: no round needed
        ({"a": 110.0, "b": 100.0}, [], "a", None),  # beyond it: a round decides
        # the round finds the pick 1% slower, within the threshold: served
        ({"a": 110.0, "b": 100.0}, [{"a": [101, 101, 102], "b": [100, 100, 100]}], "a", (True, 1.01, "b")),
        # 5% slower, but the pick's own rounds spread 6 us: noise, no key
        ({"a": 110.0, "b": 100.0}, [{"a": [101, 105, 107], "b": [100, 100, 100]}], "a", (True, 1.05, "b")),
        # 10% slower beyond the spread: not served, b is the config for a key there
        ({"a": 110.0, "b": 100.0}, [{"a": [110, 110, 111], "b": [100, 100, 101]}], "a", (False, 1.1, "b")),
        ({"b": 100.0}, [], "a", (False, math.inf, "b")),  # the pick failed at this M
    ],
)
def test_judge(screen, rounds, pick, expected):
    verdict = judge(_evidence(screen, rounds), pick, THRESHOLD)
    if expected is None:
        assert verdict is None
    else:
        assert (verdict.served, round(verdict.ratio, 3), verdict.best) == expected


def test_the_worst_probe_gets_a_key_and_its_neighbours_are_judged_again():
    # Keys 32 (a) and 48 (b); from M = 33 to 40 the loader runs a, which is 10% slower than c there.
    evidence = {M: _evidence({"a": 110.0, "b": 104.0, "c": 100.0}) for M in range(33, 41)}
    evidence.update({M: _evidence({"a": 120.0, "b": 100.0, "c": 100.5}) for M in range(41, 48)})
    held = []

    def deciding_round(M, pick):  # each round repeats the screen three times, with no spread
        held.append((M, pick))
        screen = evidence[M].screen
        evidence[M].rounds.append({label: [screen[label]] * 3 for label in (pick, min(screen, key=screen.get))})

    before, after, added = decide({32: "a", 48: "b"}, evidence, THRESHOLD, deciding_round)
    assert not before[40].served and before[41].served  # 41 is nearer 48, whose b is served there
    assert nearest_entry({32: "a", 48: "b"}, 40) == "a"  # a tie goes to the smaller key, as the loaders break it
    assert added == {33: "c"}  # the first worst: every M from 33 to 40 is then nearer 33 than 32
    assert all(v.served for v in after.values())
    assert len(held) == len(set(held))  # a round is held once per M and pick


def test_a_pick_that_fails_at_an_m_gets_a_key_with_what_runs_there():
    evidence = {40: _evidence({"b": 100.0})}  # a failed at 40
    _, after, added = decide({32: "a", 48: "b"}, evidence, THRESHOLD)
    assert added == {40: "b"} and after[40].served


# --- the whole check in replay ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """The dense synthetic landscape of SHAPE, and its benchmarker."""
    path = write_dense_landscape(tmp_path_factory.mktemp("dense") / "dense.csv", [SHAPE])
    return path, ReplayBenchmarker.from_file(path)


class Counting:
    """A benchmarker that notes the M and rounds of every probe call it answers (and can stop at one)."""

    def __init__(self, bench, *, stop_at: int | None = None) -> None:
        self._bench, self.calls, self._stop_at = bench, [], stop_at

    def __getattr__(self, name):
        return getattr(self._bench, name)

    def probe(self, problem, configs, *, rounds, quick=False):
        if self._stop_at is not None and len(self.calls) == self._stop_at:
            raise KeyboardInterrupt  # as Ctrl-C mid-check
        result = self._bench.probe(problem, configs, rounds=rounds, quick=quick)
        self.calls.append((problem.M, rounds))
        return result


def _tune(tmp_path, bench, *, coverage=THRESHOLD, batch_sizes=DEFAULT_BATCH_SIZES, storage=None):
    storage = storage or make_storage(f"sqlite:///{tmp_path}/s.db")
    problems = [Problem(N=SHAPE[0], K=SHAPE[1], M=M) for M in batch_sizes]
    options = TuneOptions(trials=TRIALS, seed=0, coverage=coverage)
    clock = RunClock()
    results, paths = tune_shape(storage, bench, problems, options, tmp_path / "cfg", clock=clock)
    names = {p.M: study_name(p, bench.device_name, bench.kind, bench.software) for p in problems}
    return storage, problems, names, clock, read_config_file(paths[0])


def _ratios(bench, entries, batch_sizes):
    """The loader's pick at each M over the landscape's best of the configs the check compares there."""
    out = {}
    for M in batch_sizes:
        problem = Problem(N=SHAPE[0], K=SHAPE[1], M=M)
        out[M] = bench.latency(problem, nearest_entry(entries, M)) / bench.optimum(problem)[1]
    return out


def test_the_check_adds_the_keys_todays_file_lacks(tmp_path, dense):
    _, bench = dense
    storage, problems, names, clock, without = _tune(tmp_path / "off", bench, coverage=None)
    between = [M for M in DENSE_BATCH_SIZES if M not in DEFAULT_BATCH_SIZES]
    assert max(_ratios(bench, without, between).values()) > 1.1  # today's file is far off somewhere
    assert set(without) == set(DEFAULT_BATCH_SIZES)

    storage, problems, names, clock, checked = _tune(tmp_path, bench)
    coverage = stored_coverage(storage, problems, names, replay=True)
    assert [p.M for p in coverage.probes] == between  # every M the landscape records between the keys
    assert any(not p.served_before for p in coverage.probes)
    assert all(p.served and p.after_ratio <= 1 + THRESHOLD for p in coverage.probes)
    added = set(checked) - set(without)
    assert added == set(coverage.added) and added <= set(between)
    for M, config in coverage.added.items():  # each added key holds the fastest config timed at its M
        assert config.short() == next(p.best for p in coverage.probes if p.M == M)
    assert {M: checked[M] for M in without} == without  # the tuned keys are kept as they were
    # and the file, read as the loaders read it, is within the threshold of the best timed at every probe M
    for p in coverage.probes:
        problem = Problem(N=SHAPE[0], K=SHAPE[1], M=p.M)
        assert bench.latency(problem, nearest_entry(checked, p.M)) <= (1 + THRESHOLD) * p.best_us
    assert clock.seconds()[COVERAGE] > 0
    line = coverage.line()
    assert line.startswith(f"coverage N={SHAPE[0]} K={SHAPE[1]}: {len(between)} probe M from 3 to 3855; ")
    assert f"{len(between)} after" in line and "keys added: " + ", ".join(map(str, sorted(added))) in line


def test_a_rerun_reuses_the_check_and_times_nothing(tmp_path, dense):
    _, bench = dense
    first = Counting(bench)
    storage, problems, names, _, entries = _tune(tmp_path, first)
    assert first.calls
    again = Counting(bench)
    _, _, _, _, entries_again = _tune(tmp_path, again, storage=storage)
    assert again.calls == [] and entries_again == entries


def test_a_check_stopped_midway_times_only_what_is_missing(tmp_path, dense):
    _, bench = dense
    whole = Counting(bench)
    _tune(tmp_path / "whole", whole)
    stopped = Counting(bench, stop_at=len(whole.calls) // 2)
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, stopped)
    resumed = Counting(bench)
    storage, problems, names, _, entries = _tune(tmp_path, resumed)
    assert sorted(stopped.calls + resumed.calls) == sorted(whole.calls)  # nothing timed twice, nothing left out
    coverage = stored_coverage(storage, problems, names, replay=True)
    assert set(coverage.added) <= set(entries) and all(p.served for p in coverage.probes)


def test_a_study_with_more_trials_is_probed_anew(tmp_path, dense):
    _, bench = dense
    storage, problems, names, _, _ = _tune(tmp_path, bench)
    options = TuneOptions(trials=TRIALS + 8, seed=0, coverage=THRESHOLD)
    again = Counting(bench)
    tune_shape(storage, again, problems, options, tmp_path / "cfg")
    assert again.calls  # the candidates changed with the studies' bests: the old evidence is not reused


def test_a_landscape_of_the_keys_alone_has_nothing_to_probe(tmp_path):
    path = write_landscape(tmp_path / "keys.csv", [(512, 1024)], (1, 16, 256))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker.from_file(path)
    problems = [Problem(N=512, K=1024, M=M) for M in (1, 16, 256)]
    tune_shape(storage, bench, problems, TuneOptions(trials=4, coverage=THRESHOLD), tmp_path / "cfg")
    names = {p.M: study_name(p, bench.device_name, bench.kind, bench.software) for p in problems}
    line = stored_coverage(storage, problems, names, replay=True).line()
    assert line == "coverage N=512 K=1024: the landscape records no M between the keys 1, 16, 256; nothing to probe"


# --- the command line ------------------------------------------------------------------------------
def _run(tmp_path, landscape, *extra):
    command = [sys.executable, "-m", "tuner.run", "--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--replay",
               str(landscape), "--trials", str(TRIALS), "--storage", f"sqlite:///{tmp_path}/s.db", "--save-path",
               str(tmp_path / "cfg"), "--seed", "0", *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _coverage_records(url):
    storage = optuna.storages.RDBStorage(url)
    return {
        (s.user_attrs["M"], key): value
        for s in storage.get_all_studies()
        for key, value in s.user_attrs.items()
        if key.startswith(RECORD)
    }


def test_the_run_says_the_check_in_one_line_and_marks_added_keys_in_the_provenance(tmp_path, dense):
    landscape, _ = dense
    out = _run(tmp_path, landscape)
    (line,) = [line for line in out.splitlines() if line.startswith("coverage ")]
    assert "within 2% of the best timed config" in line and "keys added: none" not in line
    assert "coverage check" in next(line for line in out.splitlines() if line.startswith("replay worker 0:"))
    record = json.loads((tmp_path / "cfg" / (FILE + ".provenance")).read_text())["entries"]
    added = set(map(int, read_config_file(tmp_path / "cfg" / FILE))) - set(DEFAULT_BATCH_SIZES)
    assert added and all("coverage check" in record[str(M)]["coverage"] for M in added)
    assert all("coverage" not in record[str(M)] for M in DEFAULT_BATCH_SIZES)


def test_no_coverage_turns_the_check_off(tmp_path, dense):
    landscape, _ = dense
    out = _run(tmp_path, landscape, "--no-coverage")
    assert not any(line.startswith("coverage ") for line in out.splitlines()) and "coverage check" not in out
    assert set(read_config_file(tmp_path / "cfg" / FILE)) == set(DEFAULT_BATCH_SIZES)
    assert _coverage_records(f"sqlite:///{tmp_path}/s.db") == {}


def test_a_batch_sizes_run_checks_only_its_range(tmp_path, dense):
    landscape, _ = dense
    out = _run(tmp_path, landscape, "--batch-sizes", "64", "256", "1024")
    (line,) = [line for line in out.splitlines() if line.startswith("coverage ")]
    inside = [M for M in DENSE_BATCH_SIZES if 64 < M < 1024 and M not in (256,)]
    assert f": {len(inside)} probe M from {inside[0]} to {inside[-1]};" in line
    assert set(_coverage_records(f"sqlite:///{tmp_path}/s.db")) == {(64, RECORD + "256"), (256, RECORD + "1024")}
    assert all(64 < M < 1024 for M in set(read_config_file(tmp_path / "cfg" / FILE)) - {64, 256, 1024})


def test_workers_check_their_own_batch_sizes_and_the_parent_writes_every_added_key(tmp_path, dense):
    landscape, _ = dense
    out = _run(tmp_path, landscape, "--gpus", "0,1")
    (line,) = [line for line in out.splitlines() if line.startswith("coverage ")]
    records = _coverage_records(f"sqlite:///{tmp_path}/s.db")
    assert len(records) == len(DEFAULT_BATCH_SIZES) - 2  # one interval spans the two workers' halves
    (unchecked,) = [f"{a} and {b}" for a, b in zip(DEFAULT_BATCH_SIZES, DEFAULT_BATCH_SIZES[1:])
                    if (a, RECORD + str(b)) not in records]  # fmt: skip
    assert line.endswith(f"; not checked between {unchecked}")
    added = set(read_config_file(tmp_path / "cfg" / FILE)) - set(DEFAULT_BATCH_SIZES)
    assert f"keys added: {', '.join(map(str, sorted(added)))};" in line


# --- on a GPU: the benchmarker's side, with the CPU suite's fake session ---------------------------
def test_a_gpu_probe_compiles_checks_and_times_at_the_new_m_and_returns_each_configs_failure():
    # fake_compile fails this one, as Triton fails a config that does not compile
    failing = Config(block_m=64, block_n=256, block_k=128, group_m=1, num_warps=4, num_stages=2)
    problem = Problem(N=512, K=1024, M=37)
    clock = RunClock()
    with GpuBenchmarker(
        session_factory=FakeSession, compile_fn=fake_compile, compile_workers=1, software={}, clock=clock
    ) as bench:
        result = bench.probe(problem, [A, failing, B], rounds=3, quick=True)
    assert list(result) == [A, failing, B]
    assert isinstance(result[failing], Measurement) and result[failing].status == "compile_error"
    assert len(result[A]) == len(result[B]) == 3
    assert clock.seconds()[GPU] > 0  # outside a check's claim, the benchmarker's categories count as ever


def test_a_probe_compiles_again_where_the_compile_process_was_lost(tmp_path, monkeypatch):
    # The OOM killer of a busy host takes ONCE's compile process once; ALWAYS's compile kills its
    # process every time. Taken as ONCE's failure at this M, a pick would be judged failing there and
    # the M would get a key for the host's hiccup: ONCE is compiled again and timed, ALWAYS fails as
    # its own compile_error after every try, as a search and a sweep count it.
    monkeypatch.setenv(KILLED_FILE, str(tmp_path / "killed"))
    once = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=2)
    healthy = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)
    always = A  # four stages
    with GpuBenchmarker(session_factory=FakeSession, compile_fn=busy_host_compile, compile_workers=1,
                        software={}) as bench:  # fmt: skip
        result = bench.probe(Problem(N=512, K=1024, M=37), [once, always, healthy], rounds=3, quick=True)
    assert (tmp_path / "killed").exists()  # the kill happened
    assert len(result[once]) == len(result[healthy]) == 3
    assert result[always].status == "compile_error" and result[always].reason.endswith(f"{COMPILE_TRIES} tries)")


def test_on_a_gpu_the_checks_kernels_count_as_the_check(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    problems = [Problem(N=512, K=1024, M=M) for M in (16, 24, 32)]
    clock = RunClock()
    options = TuneOptions(trials=3, seed=0, coverage=THRESHOLD, prior_seeds=0)
    with GpuBenchmarker(
        session_factory=FakeSession, compile_fn=fake_compile, compile_workers=1, software={}, clock=clock
    ) as bench:
        calls = Counting(bench)
        tune_shape(storage, calls, problems, options, tmp_path / "cfg", clock=clock)
    assert sorted({M for M, _ in calls.calls}) == [*range(17, 24), *range(25, 32)]
    assert clock.seconds()[COVERAGE] > 0


# --- what stops a check ------------------------------------------------------------------------------
class _Failing:
    """A benchmarker of kind whose probe at M = 20 fails the first config with status (None: it fails nothing)."""

    def __init__(self, bench, kind: str, status: str | None = None) -> None:
        self._bench, self.kind, self._status = bench, kind, status

    def __getattr__(self, name):
        return getattr(self._bench, name)

    def probe(self, problem, configs, *, rounds, quick=False):
        result = self._bench.probe(problem, configs, rounds=rounds, quick=quick)
        if problem.M == 20 and self._status is not None:
            result[configs[0]] = Measurement(self._status, reason="planted")
        return result


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("replay", "wrong_result", WrongResult),  # a wrong result is a bug, as in a search
        ("gpu", "crash", GpuFailure),  # a config that ran at the keys crashes live: stop; the rerun resumes
        ("gpu", "timeout", GpuFailure),
    ],
)
def test_a_wrong_result_or_a_live_crash_at_a_probe_stops_the_run_and_a_rerun_resumes(tmp_path, dense, kind, status,
                                                                                    error):  # fmt: skip
    _, bench = dense
    with pytest.raises(error, match="M=20"):
        _tune(tmp_path, _Failing(bench, kind, status), batch_sizes=(16, 24, 32))
    healthy = Counting(_Failing(bench, kind))
    storage, problems, names, _, _ = _tune(tmp_path, healthy, batch_sizes=(16, 24, 32))
    assert {M for M, rounds in healthy.calls if rounds == 1} == {20, 21, 22, 23}  # the M screened before are kept
    assert all(p.served for p in stored_coverage(storage, problems, names).probes)


def test_a_failure_a_landscape_records_at_a_probe_is_a_fact_about_that_config_there(tmp_path, dense):
    # The loader's pick at M = 20 (key 16's entry: 20 is as near 24, and ties go to the smaller key)
    # recorded as out of resources there: no error, and M = 20 gets a key with a config that runs.
    _, bench = dense
    failing = _Failing(bench, "replay", "out_of_resources")
    storage, problems, names, _, entries = _tune(tmp_path, failing, batch_sizes=(16, 24))
    coverage = stored_coverage(storage, problems, names)
    (probe,) = [p for p in coverage.probes if p.M == 20]
    assert probe.before == entries[16].short() and probe.before_ratio == math.inf and probe.served
    assert entries[20] == coverage.added[20] != entries[16]


def test_in_replay_the_candidates_are_those_the_landscape_recorded_at_every_probe():
    # C lacks a row at M = 20: had it become a key's config nearby, M = 20 could not be judged.
    problem = Problem(N=512, K=1024, M=16)
    rows = [Row(DEVICE, problem.at(M), c, "ok", 10.0) for M in range(16, 25) for c in (A, B, C) if (M, c) != (20, C)]
    found = interval(16, 24, {16: A, 24: B}, [C], probe_batch_sizes((16, 24)))
    assert found.candidates == (A, B, C) and found.probes == tuple(range(17, 24))
    assert timeable(ReplayBenchmarker(rows), problem, found).candidates == (A, B)
    gpu = Counting(ReplayBenchmarker(rows))
    gpu.measurable = lambda problem: None  # a GPU times any config
    assert timeable(gpu, problem, found).candidates == (A, B, C)


class _Events:
    """A benchmarker that notes, in order, the M it is asked to compile for and the M it probes."""

    def __init__(self, bench) -> None:
        self._bench, self.events = bench, []

    def __getattr__(self, name):
        return getattr(self._bench, name)

    def prepare(self, problem, configs, *, replace=False):
        self.events.append(("prepare", problem.M))

    def probe(self, problem, configs, *, rounds, quick=False):
        self.events.append(("probe", problem.M))
        return self._bench.probe(problem, configs, rounds=rounds, quick=quick)


def test_what_the_check_probes_below_64_is_compiled_ahead_while_larger_batch_sizes_are_tuned(tmp_path, dense):
    # 17-23 are of another compile class than the keys 16 and 32: asked for before the studies of 32 and 48.
    _, bench = dense
    events = _Events(bench)
    _tune(tmp_path, events, batch_sizes=(16, 24, 32, 48))
    last_study = max(i for i, event in enumerate(events.events) if event == ("prepare", 48))  # its search's own
    ahead = {M for kind, M in events.events[:last_study] if kind == "prepare"}
    assert set(range(17, 24)) | set(range(25, 32)) <= ahead


# --- several files of a shape ------------------------------------------------------------------------
H100 = "NVIDIA_H100_80GB_HBM3"


@pytest.fixture(scope="module")
def hopper_dense(tmp_path_factory):
    """SHAPE at every M to 64 on an H100, over the Hopper check's grid: dense_us, where SWAP_AB saves a
    fifth up to M = 16 and costs 3% above, so SGLang's Hopper file and vLLM's base one differ there."""
    path = tmp_path_factory.mktemp("hopper") / "hopper.csv"
    with open(path, "w") as f:
        f.write(",".join(HOPPER_HEADER) + "\n")
        for M in range(1, 65):
            problem = Problem(N=SHAPE[0], K=SHAPE[1], M=M)
            for config in HOPPER_GRID:
                swap = (0.8 if M <= 16 else 1.03) if config.swap_ab else 1.0
                base = dense_us(problem, replace(config, split_k=1, swap_ab=False))
                row = Row(H100, problem, config, "ok", round(base * swap * (1 + 0.01 * (config.split_k - 1)), 3))
                f.write(",".join(row.as_csv(hopper=True)) + "\n")
    return path


@pytest.mark.parametrize("gpus", ["0", "0,1"])  # one process, or workers whose parent writes the files again
def test_each_search_of_a_shape_is_checked_and_its_keys_go_into_its_engines_files(tmp_path, hopper_dense, gpus):
    # --space hopper --format both: SGLang's file from the Hopper space, vLLM's from the base space,
    # two searches of the same batch sizes; each is checked between them on its own studies.
    out = _run(tmp_path, hopper_dense, "--batch-sizes", "1", "16", "32", "64", "--space", "hopper", "--format",
               "both", "--baseline", "none", "--gpus", gpus)  # fmt: skip
    bench = ReplayBenchmarker.from_file(hopper_dense)
    problems = [Problem(N=SHAPE[0], K=SHAPE[1], M=M) for M in (1, 16, 32, 64)]
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    lines = out.splitlines()
    for engine, space in ((SGLANG, "hopper"), (VLLM, "base")):
        path = tmp_path / "cfg" / engine.file_name(*SHAPE, H100, "fp8", 128, 128)
        names = {p.M: study_name(p, H100, "replay", bench.software, space) for p in problems}
        coverage = stored_coverage(storage, problems, names, replay=True)
        assert coverage is not None and coverage.added  # this search's check ran, and added keys
        table = lines.index(str(path))
        assert next(line for line in lines[table:] if line.startswith("coverage ")) == coverage.line()
        entries = read_config_file(path)
        assert {M: entries[M] for M in coverage.added} == coverage.added
        record = json.loads((tmp_path / "cfg" / (path.name + ".provenance")).read_text())["entries"]
        assert all("coverage check" in record[str(M)]["coverage"] for M in coverage.added)
    sglang, vllm = (
        read_config_file(tmp_path / "cfg" / e.file_name(*SHAPE, H100, "fp8", 128, 128)) for e in (SGLANG, VLLM)
    )
    assert sglang[1].swap_ab and not any(c.hopper for c in vllm.values())  # two searches, not one file twice


def test_one_search_for_two_engines_gives_both_files_the_keys_its_check_added(tmp_path, dense):
    # --format both on a GPU without Hopper entries: one search fills SGLang's and vLLM's files, whose
    # tuned entries are the same; the check reads the first, and each file gets its keys.
    landscape, _ = dense
    out = _run(tmp_path, landscape, "--format", "both", "--batch-sizes", "16", "24", "32")
    assert len([line for line in out.splitlines() if line.startswith("coverage ")]) == 1
    paths = [tmp_path / "cfg" / e.file_name(*SHAPE, DEVICE, "fp8", 128, 128) for e in (SGLANG, VLLM)]
    sglang, vllm = (read_config_file(path) for path in paths)
    assert sglang == vllm and set(sglang) > {16, 24, 32}
    for path in paths:
        record = json.loads(path.with_name(path.name + ".provenance").read_text())["entries"]
        assert all("coverage check" in record[str(M)]["coverage"] for M in set(sglang) - {16, 24, 32})
