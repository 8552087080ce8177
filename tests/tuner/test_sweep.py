"""The exhaustive sweep: every config at every M, GROUP_SIZE_M timed once where it cannot matter, resumable."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch

import tuner.benchmarkers
from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import failing_session
from tests.tuner.synthetic import synthetic_rows
from tuner.benchmarkers import COMPILE_TRIES, LandscapeWriter, Measurement, ReplayBenchmarker, read_rows
from tuner.cli.sweep import main, sweep
from tuner.space import Config, Problem, search_space

SHAPE = (256, 512)
BATCH_SIZES = [1, 48]  # M=48: GROUP_SIZE_M matters for BLOCK_SIZE_M 16 and 32 only


def _problems() -> list[Problem]:
    return [Problem(N=SHAPE[0], K=SHAPE[1], M=M) for M in BATCH_SIZES]


def test_every_config_at_every_m_with_group_timed_once_per_schedule(tmp_path):
    bench = ReplayBenchmarker(synthetic_rows([SHAPE], BATCH_SIZES))  # stands in for the GPU
    with LandscapeWriter(tmp_path / "l.csv") as writer:
        sweep(bench, _problems(), writer, progress=False)
    rows = list(read_rows(tmp_path / "l.csv"))
    assert len(rows) == len(search_space(128)) * len(BATCH_SIZES)
    assert {row.device for row in rows} == {bench.device_name}
    by_schedule = defaultdict(set)
    for row in rows:
        by_schedule[row.problem, row.config.schedule_key(row.problem.M)].add((row.status, row.us))
    assert all(len(outcomes) == 1 for outcomes in by_schedule.values())  # copies carry one timing
    assert bench.measurements == len(by_schedule)
    # 64 configs per BLOCK_SIZE_M and group: at M=1 one schedule per BLOCK_SIZE_M whatever the group
    # (5 x 64); at M=48 the 16 and 32 tiles have several rows, so their 4 groups count (2 x 4 x 64).
    assert sum(1 for p, _ in by_schedule if p.M == 1) == 5 * 64
    assert sum(1 for p, _ in by_schedule if p.M == 48) == 2 * 4 * 64 + 3 * 64


def test_a_resumed_sweep_measures_only_what_is_missing(tmp_path):
    path = tmp_path / "l.csv"
    first = ReplayBenchmarker(synthetic_rows([SHAPE], BATCH_SIZES))
    with LandscapeWriter(path) as writer:
        sweep(first, _problems()[:1], writer, progress=False)
    done = {(row.problem, row.config) for row in read_rows(path)}
    second = ReplayBenchmarker(synthetic_rows([SHAPE], BATCH_SIZES))
    with LandscapeWriter(path) as writer:
        sweep(second, _problems(), writer, done=done, progress=False)
    rows = list(read_rows(path))
    assert len(rows) == len({(row.problem, row.config) for row in rows}) == len(search_space(128)) * 2
    assert all(row.problem.M == 48 for row in rows[len(done) :])


class _LostCompiles(ReplayBenchmarker):
    """A GPU benchmarker's outcomes on a busy host: ONCE's compile process is killed the first time,
    ALWAYS's on every try (from the synthetic landscape otherwise)."""

    def __init__(self, once: Config, always: Config) -> None:
        super().__init__(synthetic_rows([SHAPE], BATCH_SIZES))
        self.once, self.always = once, always
        self.tries: Counter[Config] = Counter()

    def measure(self, problem, config, **kwargs):
        self.tries[config] += 1
        if config == self.always or (config == self.once and self.tries[config] == 1):
            return Measurement("compile_crash", reason="the compile process died (status -9)")
        return super().measure(problem, config, **kwargs)


def test_a_lost_compile_process_is_compiled_again_and_kept_out_of_the_landscape(tmp_path):
    # A landscape records the config's own outcome: a compile process lost once is the host's (the
    # writer refuses its status); one lost on every try is the config's compile_error.
    problem = _problems()[0]
    once, always = [c for c in search_space(128) if c.schedule_key(problem.M) == c][:2]
    bench = _LostCompiles(once, always)
    with LandscapeWriter(tmp_path / "l.csv") as writer:
        sweep(bench, [problem], writer, progress=False)
    rows = {row.config: row for row in read_rows(tmp_path / "l.csv")}
    assert (bench.tries[once], bench.tries[always]) == (2, COMPILE_TRIES)
    assert (rows[once].status, rows[once].us) == ("ok", bench.latency(problem, once))
    assert (rows[always].status, rows[always].us) == ("compile_error", None)
    assert len(rows) == len(search_space(128))


class _InterruptedGpu(ReplayBenchmarker):
    """Stands in for GpuBenchmarker in tuner.sweep's CLI: Ctrl-C arrives during the fifth measurement."""

    def __init__(self, **kwargs) -> None:
        super().__init__(synthetic_rows([SHAPE], BATCH_SIZES, out_dtype="bfloat16"))
        self.restarts = 0

    def measure(self, problem, config, **kwargs):
        if self.measurements == 4:
            raise KeyboardInterrupt
        return super().measure(problem, config, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_ctrl_c_keeps_the_rows_measured_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tuner.benchmarkers, "GpuBenchmarker", _InterruptedGpu)
    out = tmp_path / "l.csv"
    argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", *map(str, BATCH_SIZES), "--out", str(out)]
    assert main(argv) == 130  # as from every command, and as shells report a process that Ctrl-C stopped
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: every row measured is in {out}; rerun the same command to resume."
    )
    rows = list(read_rows(out))
    assert 4 <= len(rows) < len(search_space(128)) * len(BATCH_SIZES)  # copies of a timed schedule count too


class _ReplayGpu(ReplayBenchmarker):
    """Stands in for GpuBenchmarker in tuner.sweep's CLI, timing from the synthetic landscape."""

    def __init__(self, **kwargs) -> None:
        super().__init__(synthetic_rows([SHAPE], BATCH_SIZES))
        self.restarts = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


# A sweep into a gzip landscape killed after five rows: its last gzip member has no end marker.
_KILLED_SWEEP = """
import os, sys
from tuner.benchmarkers import LandscapeWriter, ReplayBenchmarker
from tuner.cli.sweep import sweep
from tuner.space import Problem
from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import failing_session
from tests.tuner.synthetic import synthetic_rows

class Dies(ReplayBenchmarker):
    def measure(self, problem, config, **kwargs):
        if self.measurements == 5:
            os._exit(1)
        return super().measure(problem, config, **kwargs)

shape, batch_sizes = (256, 512), [1, 48]
bench = Dies(synthetic_rows([shape], batch_sizes))
sweep(bench, [Problem(N=shape[0], K=shape[1], M=M) for M in batch_sizes], LandscapeWriter(sys.argv[1]), progress=False)
"""


def test_a_gzip_sweep_killed_mid_run_resumes(tmp_path, monkeypatch):
    out = tmp_path / "l.csv.gz"
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", _KILLED_SWEEP, str(out)], cwd=repo, capture_output=True, text=True)
    assert killed.returncode == 1, killed.stderr
    survived = list(read_rows(out))
    assert len(survived) == 5
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tuner.benchmarkers, "GpuBenchmarker", _ReplayGpu)
    argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", *map(str, BATCH_SIZES), "--out", str(out)]
    assert main(argv) == 0
    rows = list(read_rows(out))
    assert rows[:5] == survived
    assert len(rows) == len({(row.problem, row.config) for row in rows}) == len(search_space(128)) * len(BATCH_SIZES)


def test_a_timing_process_that_cannot_start_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = functools.partial(tuner.benchmarkers.GpuBenchmarker, session_factory=failing_session, compile_fn=fake_compile)
    monkeypatch.setattr(tuner.benchmarkers, "GpuBenchmarker", gpu)
    argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", "1", "--out", str(tmp_path / "l.csv"),
            "--compile-workers", "1"]  # fmt: skip
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "failed: the GPU timing process could not start on device 0: RuntimeError: CUDA error: no CUDA-capable "
        "device is detected"
    ]


def test_help_says_it_needs_a_gpu_and_gives_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for text in [
        "(needs a CUDA GPU)",
        "--batch-sizes M [M ...] the M to time (default: 1 16 64 256 1024 4096)",
        "processes compiling ahead of the timing (default: CPU cores - 1)",
    ]:
        assert text in shown


# A subset of the space, as a dense landscape records it: 64-row tiles (one row of tiles at M = 1 and
# 48: their GROUP_SIZE_M 16 twin is timed through its GROUP_SIZE_M 1 schedule, not in the list) and one
# 16-row tile, whose groups count at M = 48.
SUBSET = [
    c for c in search_space(128) if c.block_m == 64 and c.num_warps == 4 and c.num_stages == 3 and c.group_m == 16
]
SUBSET += [c for c in search_space(128) if c.block_m == 16 and c.block_n == 64 and c.num_stages == 4][:2]


class _Compiles(ReplayBenchmarker):
    """Notes what it is asked to compile ahead and what it times."""

    def __init__(self, rows) -> None:
        super().__init__(rows)
        self.prepared, self.timed = set(), set()

    def prepare(self, problem, configs, *, replace=False):
        self.prepared |= {(problem, c) for c in configs}

    def measure(self, problem, config, **kwargs):
        self.timed.add((problem, config))
        return super().measure(problem, config, **kwargs)


def test_a_sweep_of_given_configs_records_those_alone_and_compiles_ahead_what_it_times(tmp_path):
    bench = _Compiles(synthetic_rows([SHAPE], BATCH_SIZES))
    with LandscapeWriter(tmp_path / "l.csv") as writer:
        sweep(bench, _problems(), writer, progress=False, configs=SUBSET)
    rows = list(read_rows(tmp_path / "l.csv"))
    assert {(row.problem.M, row.config) for row in rows} == {(M, c) for M in BATCH_SIZES for c in SUBSET}
    timed = {(row.problem.M, row.config): row.us for row in synthetic_rows([SHAPE], BATCH_SIZES)}
    # a listed config's row holds its schedule's timing: the GROUP_SIZE_M 1 twin's, as a full sweep's would
    assert all(row.us == timed[row.problem.M, row.config.schedule_key(row.problem.M)] for row in rows)
    assert bench.measurements == len({(row.problem.M, row.config.schedule_key(row.problem.M)) for row in rows})
    assert bench.timed == bench.prepared  # the twin that stands for a listed config's schedule too


def test_the_configs_flag_reads_sglang_entries_or_a_config_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tuner.benchmarkers, "GpuBenchmarker", _ReplayGpu)
    listed, as_file = tmp_path / "list.json", tmp_path / "file.json"
    listed.write_text(json.dumps([c.as_sglang() for c in SUBSET]))
    as_file.write_text(json.dumps({str(M): c.as_sglang() for M, c in enumerate(SUBSET, start=1)}))
    for path in (listed, as_file):
        out = tmp_path / f"{path.stem}.csv"
        argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", *map(str, BATCH_SIZES), "--out",
                str(out), "--configs", str(path)]  # fmt: skip
        assert main(argv) == 0
        assert {row.config for row in read_rows(out)} == set(SUBSET)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not a readable JSON file"),
        ("[]", "must hold a non-empty JSON list of SGLang entries"),
        ('[{"BLOCK_SIZE_M": 64}]', "entry 0: a config needs exactly the keys"),
        (json.dumps([{**SUBSET[0].as_sglang(), "SPLIT_K": 2, "SWAP_AB": False}]), "not in the base space"),
    ],
)
def test_a_configs_file_that_is_not_a_list_of_entries_of_the_space_is_a_usage_error(tmp_path, capsys, content,
                                                                                      message):  # fmt: skip
    path = tmp_path / "c.json"
    path.write_text(content)
    argv = ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--out", str(tmp_path / "l.csv"), "--configs", str(path)]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --configs") and message in line
