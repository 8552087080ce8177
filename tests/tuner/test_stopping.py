"""Ctrl-C and SIGTERM while tuning: at once inside a blocking wait, held anywhere else until a safe point, never lost.

Also the children's side: a child process exits when its parent is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.tuner.stoppable import ctrl_c_as_in_a_terminal, ctrl_c_at_exit, paced, stored_so_far
from tests.tuner.synthetic import write_landscape
from tuner.space import REASON
from tuner.stopping import (
    Terminated,
    exit_status,
    held_outside_waits,
    interruptible,
    raise_if_held,
    stopped_by,
)
from tuner.study import is_timed


def ctrl_c(signum: int = signal.SIGINT) -> None:
    """Send SIGINT (or another signal) to this process and give the main thread a moment to run its handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


@pytest.fixture(autouse=True)
def default_handler():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, previous)
    signal.signal(signal.SIGTERM, previous_term)


def test_ctrl_c_outside_a_wait_is_held_until_the_next_one():
    with pytest.raises(KeyboardInterrupt), held_outside_waits():
        ctrl_c()  # as if inside Optuna's tell: nothing happens yet
        reached = True
        with interruptible():
            pytest.fail("a held Ctrl-C must be raised on entering the next wait")
    assert reached


def test_ctrl_c_inside_a_wait_acts_at_once():
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), held_outside_waits(), interruptible():
        ctrl_c()
        time.sleep(5)
    assert time.monotonic() - started < 2


def test_a_ctrl_c_held_at_the_end_of_the_work_is_raised_there():
    with pytest.raises(KeyboardInterrupt), held_outside_waits():
        ctrl_c()
    raise_if_held()  # and only once: nothing is left held for later work


def test_a_second_ctrl_c_while_one_is_held_acts_at_once():
    with pytest.raises(KeyboardInterrupt), held_outside_waits():
        ctrl_c()
        ctrl_c()
        pytest.fail("the second Ctrl-C must not be held")


def test_the_handler_is_restored_and_failing_work_leaves_nothing_held():
    with pytest.raises(RuntimeError), held_outside_waits():
        ctrl_c()
        raise RuntimeError("the work failed for its own reasons")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    raise_if_held()  # nothing held


def test_sigterm_takes_the_ctrl_c_path_and_exits_143():
    with pytest.raises(Terminated) as stopped, held_outside_waits():
        ctrl_c(signal.SIGTERM)  # held, as a Ctrl-C would be, instead of ending the process here
        reached = True
        with interruptible():
            pytest.fail("a held SIGTERM must be raised on entering the next wait")
    assert reached and isinstance(stopped.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    assert exit_status(stopped.value) == 143


@pytest.mark.parametrize(
    ("error", "status"),
    [(KeyboardInterrupt(), 130), (Terminated(), 143), (None, 130)],
    ids=["ctrl-c", "sigterm", "none"],
)
def test_exit_status_is_what_a_shell_reports_for_the_signal(error, status):
    assert exit_status(error) == status
    if error is not None:  # as Optuna's clean-up code surfaces it: another error, the signal as its context
        try:
            try:
                raise error
            except KeyboardInterrupt:
                raise UnboundLocalError("local variable 'frozen_trial' referenced before assignment")  # noqa: B904
        except UnboundLocalError as wrapped:
            assert exit_status(wrapped) == status


@pytest.mark.parametrize(
    ("error", "reason"),
    [(KeyboardInterrupt(), "stopped by Ctrl-C"), (Terminated(), "stopped by SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_is_named_by_what_sent_it(error, reason):
    assert stopped_by(error) == reason


@pytest.mark.parametrize("parent", ["alive", "gone"])
def test_a_child_whose_parent_is_gone_exits_at_once(parent):
    # The parent's pid as the child saw it at its start; "gone" stands for a parent that died before
    # the child could ask to die with it (the child's parent is then another process).
    code = (
        "import os, sys; from tuner.stopping import die_with_parent; "
        f"die_with_parent(os.getppid(){' + 1' if parent == 'gone' else ''}); print('alive')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == ((0, "alive") if parent == "alive" else (1, "")), done.stderr


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path):
    # What a batch scheduler or `kill` sends, to the run's process alone. The run stops at its next
    # safe point, keeps what it stored and says so in one line, and exits as a shell reports SIGTERM.
    url = f"sqlite:///{tmp_path}/s.db"
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [1, 16, 64, 256])
    argv = [sys.executable, "-m", "tuner.run", "--N", "256", "--K", "512", "--batch-sizes", "1", "16", "64", "256",
            "--trials", "40", "--replay", str(landscape), "--storage", url, "--save-path", str(tmp_path / "cfg"),
            "--no-prior"]  # fmt: skip
    env = paced({**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    run = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(stored_so_far(url).values()):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended, or stored nothing in 60 s"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 143, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted: every finished measurement is stored")
    trials = [t for study in stored_so_far(url).values() for t in study]
    assert trials and not [t for t in trials if t.state == TrialState.RUNNING]  # none left running for good
    reasons = [t.user_attrs.get(REASON, "") for t in trials if t.state == TrialState.FAIL]
    assert "stopped by SIGTERM before its measurement finished" in reasons, reasons
    assert not [reason for reason in reasons if "Ctrl-C" in reason], reasons


@pytest.mark.parametrize("stopped", [False, True], ids=["at-its-end", "while-it-stops"])
def test_a_ctrl_c_as_a_run_ends_prints_no_traceback(tmp_path, stopped):
    # A Ctrl-C in the process's last moments (its work done, or a first Ctrl-C already taken): Python
    # would print a traceback from its clean-up callbacks and still exit 0.
    url = f"sqlite:///{tmp_path}/s.db"
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [1, 16])
    argv = [sys.executable, "-m", "tuner.run", "--N", "256", "--K", "512", "--batch-sizes", "1", "16", "--trials",
            "40" if stopped else "4", "--replay", str(landscape), "--storage", url, "--save-path",
            str(tmp_path / "cfg"), "--no-prior"]  # fmt: skip
    env = ctrl_c_at_exit({**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    run = subprocess.Popen(argv, cwd=tmp_path, env=paced(env) if stopped else env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_in_a_terminal)  # fmt: skip
    try:
        if stopped:
            deadline = time.monotonic() + 60
            while not any(stored_so_far(url).values()):
                assert run.poll() is None and time.monotonic() < deadline, "the run ended, or stored nothing in 60 s"
                time.sleep(0.2)
            run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if stopped:
        assert run.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("interrupted: every finished measurement is stored"), err
    else:
        assert run.returncode == 0, err
        assert out.splitlines()[-1].startswith("replay of ")  # it ended as a run ends


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (Linux), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _descendants(pid: int) -> set[int]:
    """Every live process below pid."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone since the listing
            continue
        if fields[0] != "Z":  # a zombie is dead, only not reaped yet
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _all_gone(pids: set[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_state(pid) not in (None, "Z") for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _start_with_workers(tmp_path: Path) -> tuple[subprocess.Popen, list[str], str, set[int]]:
    """A replay run of 4 studies over two replay workers, paced so that a test stops it mid-way, once both
    workers have stored trials: the run, its command, its storage and the processes it started."""
    url = f"sqlite:///{tmp_path}/s.db"
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [1, 16, 64, 256])
    argv = [sys.executable, "-m", "tuner.run", "--N", "256", "--K", "512", "--batch-sizes", "1", "16", "64", "256",
            "--trials", "40", "--replay", str(landscape), "--storage", url, "--save-path", str(tmp_path / "cfg"),
            "--no-prior", "--gpus", "0,1"]  # fmt: skip
    env = paced({**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}, delay_s=0.05)
    run = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           preexec_fn=ctrl_c_as_in_a_terminal)  # fmt: skip
    deadline = time.monotonic() + 120
    while sum(1 for trials in stored_so_far(url).values() if trials) < 2:  # each worker tunes its own M
        assert run.poll() is None and time.monotonic() < deadline, "the run ended, or stored little in 120 s"
        time.sleep(0.2)
    return run, argv, url, _descendants(run.pid)


def _timed(url: str) -> int:
    return sum(1 for trials in stored_so_far(url).values() for t in trials if is_timed(t))


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_a_run_with_workers_stops_with_them_on_a_signal_to_it_alone(tmp_path, signum, status):
    # What `kill PID` or a Ctrl-C meant for the run sends: the run passes it on, its workers stop mid-way
    # as a single process does, and it reports the stop in its one line once they have.
    run, _, url, started = _start_with_workers(tmp_path)
    try:
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == status, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted: every finished measurement is stored"), err
    assert _all_gone(started, timeout_s=5)
    assert _timed(url) < 4 * 40  # stopped mid-way, not once the workers had done everything
    trials = [t for study in stored_so_far(url).values() for t in study]
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # each worker gave its claim back


def test_workers_stop_when_their_parent_is_killed_outright_and_the_run_resumes(tmp_path):
    run, argv, url, started = _start_with_workers(tmp_path)
    try:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    assert started and _all_gone(started, timeout_s=10), "workers outlived their parent"
    timed = _timed(url)
    assert 0 < timed < 4 * 40
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1].startswith("0 of 4 studies finished earlier, ")
    assert _timed(url) == 4 * 40
