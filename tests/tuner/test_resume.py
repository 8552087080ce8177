"""A replay run killed (SIGKILL) or interrupted (Ctrl-C) mid-study resumes: budgets met, nothing measured twice."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from tests.tuner.stoppable import ctrl_c_as_in_a_terminal, paced, stored_so_far, stored_studies
from tests.tuner.synthetic import synthetic_rows, write_landscape
from tuner.benchmarkers import ReplayBenchmarker
from tuner.space import REASON, STATUS, TIMED, Problem, default_config
from tuner.study import MEASURED, TuneOptions, is_timed, make_storage, study_name, tune_problem

SHAPE = (256, 512)
BATCH_SIZES = (1, 16, 64)
TRIALS = 40
KILL_AFTER = 5  # timed trials in the storage before the kill
CONFIG_NAME = "N=256,K=512,device_name=Synthetic_GPU,dtype=fp8_w8a8,block_shape=[128, 128].json"
ENV = {**os.environ, "TRITON_INTERPRET": "1"}


def run_args(tmp_path, landscape) -> list[str]:
    return ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", *map(str, BATCH_SIZES),
            "--trials", str(TRIALS), "--replay", str(landscape), "--storage", f"sqlite:///{tmp_path}/s.db",
            "--save-path", str(tmp_path / "cfg"), "--no-prior"]  # fmt: skip


def timed(trials) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if is_timed(t)]


# SIGKILL leaves no chance to clean up; SIGINT is Ctrl-C, which must stop cleanly with one line. Both
# go to the whole process group, as from a terminal, so with two workers each worker gets it too.
@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGKILL, 1), (signal.SIGINT, 1), (signal.SIGINT, 2)],
    ids=["SIGKILL", "SIGINT", "SIGINT-2-workers"],
)
def test_stopped_run_resumes_without_timing_anything_twice(tmp_path, sig, workers):
    landscape = write_landscape(tmp_path / "land.csv", [SHAPE], BATCH_SIZES)
    url = f"sqlite:///{tmp_path}/s.db"
    gpus = ",".join(map(str, range(workers)))
    argv = [sys.executable, "-m", "tuner.run", *run_args(tmp_path, landscape), "--gpus", gpus]

    log = tmp_path / "first.err"
    with open(log, "w") as stderr:
        first = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=paced(ENV),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=ctrl_c_as_in_a_terminal,
        )
    try:
        deadline = time.monotonic() + 60
        seen = 0
        while seen < KILL_AFTER:
            assert first.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"only {seen} timed trials after 60 s"
            time.sleep(0.2)
            if (tmp_path / "s.db").exists():
                seen = sum(len(timed(trials)) for trials in stored_so_far(url).values())
        os.killpg(first.pid, sig)  # a trial may be left RUNNING (SIGKILL) or FAIL (SIGINT) mid-measure
        code = first.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    if sig == signal.SIGINT:
        assert code == 130  # as shells expect of a command stopped by Ctrl-C
        printed = log.read_text()
        assert "Traceback" not in printed, printed
        assert printed.strip().splitlines()[-1].startswith("interrupted: every finished measurement is stored")
    assert seen < TRIALS * len(BATCH_SIZES), "nothing was left to resume"

    rerun = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr

    found = stored_studies(url)
    assert len(found) == len(BATCH_SIZES) and all(name.rsplit("_", 1)[0].endswith("_replay") for name in found)
    for name, trials in found.items():
        # SIGKILL can leave a trial RUNNING mid-measure or before it decided: the rerun sees that its
        # process ended, fails it with the reason (giving back its claim) and retries its config, so
        # neither the report nor optuna-dashboard shows a trial running for good. Ctrl-C leaves none.
        assert not [t for t in trials if t.state == TrialState.RUNNING], name
        measured = [t for t in trials if t.user_attrs.get(STATUS) in MEASURED]
        assert len(timed(trials)) == len(measured) == TRIALS, name
        config_counts = Counter(tuple(sorted(t.params.items())) for t in measured)
        assert max(config_counts.values()) == 1, f"{name}: a config was measured twice"
        for t in trials:
            if t.state == TrialState.FAIL:  # every failed trial says why
                assert t.user_attrs.get(STATUS) and t.user_attrs.get(REASON), (name, t.number, t.user_attrs)
            if t.user_attrs.get(STATUS) == "interrupted":
                # workers stop on the SIGTERM their parent passes the Ctrl-C on as, and say so
                stopped = "stopped by Ctrl-C" if workers == 1 else "stopped by SIGTERM"
                assert t.user_attrs[TIMED] is False and t.user_attrs[REASON].startswith(stopped)
            if t.user_attrs.get(STATUS) == "lost":
                assert t.user_attrs[TIMED] is False and "ended before the trial did" in t.user_attrs[REASON]
    statuses = Counter(t.user_attrs.get(STATUS) for trials in found.values() for t in trials)
    if sig == signal.SIGKILL:
        assert not statuses["interrupted"] and statuses["lost"] <= workers
    else:
        # Ctrl-C acts in the measurement it lands in (that trial is interrupted) or, held, before the
        # next trial begins (no trial at all); a worker that had finished its share has none.
        assert statuses["interrupted"] <= workers and not statuses["lost"]
    entries = json.loads((tmp_path / "cfg" / CONFIG_NAME).read_text())
    assert list(entries) == [str(M) for M in BATCH_SIZES]


def test_rerun_right_after_a_kill_before_timing_still_times_the_full_budget(tmp_path):
    # The dead trial is waited for until this process has seen it undecided for the deciding
    # window (DECIDING_S in a run; short here, since the wait itself is tested with a fake clock).
    problem = Problem(N=SHAPE[0], K=SHAPE[1], M=16)
    bench = ReplayBenchmarker(synthetic_rows([SHAPE], [problem.M]))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(
        storage=storage,
        study_name=study_name(problem, bench.device_name, bench.kind, bench.software),
        direction="minimize",
    )
    study.ask()  # what SIGKILL leaves when it lands after the trial began but before it was timed
    options = TuneOptions(trials=4, seed=0, deciding_s=0.2)
    started = time.monotonic()
    result = tune_problem(storage, problem, bench, options, [default_config(128, 128)])
    assert result.timed == 4 and bench.measurements == 4
    assert time.monotonic() - started < 5


def _measure_forever(url: str, landscape: str) -> None:
    """A worker that claims a measurement and stays inside it: what kill -9 lands on mid-measure."""
    bench = ReplayBenchmarker.from_file(landscape, delay_s=300.0)
    tune_problem(make_storage(url), Problem(N=SHAPE[0], K=SHAPE[1], M=16), bench, TuneOptions(trials=4),
                 seeds=[default_config(128, 128)])  # fmt: skip


def test_a_trial_killed_mid_measure_is_failed_with_its_reason_by_the_next_run(tmp_path):
    # Its heartbeat is fresh (the grace period is 30 s): only that its process ended says it is dead.
    # Before, the rerun finished the study with the trial still RUNNING, for good, and its claim
    # counted as a measurement that was never made.
    landscape = write_landscape(tmp_path / "land.csv", [SHAPE], [16])
    url = f"sqlite:///{tmp_path}/s.db"
    worker = multiprocessing.get_context("spawn").Process(target=_measure_forever, args=(url, str(landscape)))
    worker.start()
    deadline = time.monotonic() + 60
    while not (
        running := [t for trials in stored_so_far(url).values() for t in trials if t.state == TrialState.RUNNING]
    ):
        assert time.monotonic() < deadline and worker.is_alive(), "the worker never started measuring"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    bench = ReplayBenchmarker.from_file(landscape)
    result = tune_problem(make_storage(url), Problem(N=SHAPE[0], K=SHAPE[1], M=16), bench, TuneOptions(trials=4),
                          seeds=[default_config(128, 128)])  # fmt: skip
    (trials,) = stored_studies(url).values()
    (killed,) = [t for t in trials if t.number == running[0].number]
    assert killed.state == TrialState.FAIL and killed.user_attrs[STATUS] == "lost"
    assert killed.user_attrs[TIMED] is False
    assert (
        killed.user_attrs[REASON]
        == f"its process (pid {worker.pid} on {socket.gethostname()}) ended before the trial did"
    )
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert result.timed == 4 == bench.measurements  # the killed claim was given back: four real measurements


def _optuna_cleanup_error():
    """What Optuna 5.0.0 raises when Ctrl-C lands while it stores a trial: its finally block's error."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            raise UnboundLocalError("cannot access local variable 'updated_state'")
        except UnboundLocalError as error:
            return error


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), _optuna_cleanup_error()], ids=["plain", "inside-optuna"])
def test_ctrl_c_anywhere_ends_with_the_resume_line(tmp_path, monkeypatch, capsys, raised):
    import tuner.cli.run

    def interrupted(*run):
        raise raised

    monkeypatch.setattr(tuner.cli.run, "_execute", interrupted)
    landscape = write_landscape(tmp_path / "land.csv", [SHAPE], BATCH_SIZES)
    argv = run_args(tmp_path, landscape)
    assert tuner.cli.run.main(argv) == 130
    assert capsys.readouterr().err.startswith("interrupted: every finished measurement is stored")


def test_an_error_not_from_ctrl_c_still_surfaces(tmp_path, monkeypatch):
    import tuner.cli.run

    def broken(*run):
        raise UnboundLocalError("a bug of ours")

    monkeypatch.setattr(tuner.cli.run, "_execute", broken)
    landscape = write_landscape(tmp_path / "land.csv", [SHAPE], BATCH_SIZES)
    argv = run_args(tmp_path, landscape)
    with pytest.raises(UnboundLocalError, match="a bug of ours"):
        tuner.cli.run.main(argv)


def test_a_paced_run_is_paced(tmp_path):
    # The stop tests above rely on it: unpaced, their runs could end before the signal lands.
    landscape = write_landscape(tmp_path / "land.csv", [SHAPE], [16])
    code = f"from tuner.benchmarkers import ReplayBenchmarker as R; print(R.from_file({str(landscape)!r}).delay_s)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=paced(ENV, delay_s=0.25),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "0.25"), done.stderr
