"""Trials whose process died: told apart from live ones, failed with a reason, their configs retried.

Every trial the tuner runs carries its owner (host, pid, and the kernel boot and PID namespace in
which that pid names one process) and a heartbeat from its first write, renewed every heartbeat
interval while it lives (Heartbeats). A running trial is dead when
- its owner shares this process's boot and PID namespace and its pid no longer runs: a kill -9 on
  this host, seen at once by the next run; or
- its heartbeat is older than the storage's grace period, by the storage's own clock: any host.
A dead trial is failed with the reason (giving back any claim on the budget it made) and retried
once through the storage's heartbeat callback, as Optuna's fail_stale_trials does, which leaves
no reason. Without this, a run killed between creating a trial and its first heartbeat left that
trial RUNNING for good, in the report and in optuna-dashboard.
"""

from __future__ import annotations

import copy
import functools
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import MEASURED, RunClock
from tuner.space import REASON, STATUS, TIMED
from tuner.study._store import StudyRows

OWNER = "owner"  # trial system attribute: who runs it (see owner())
LOST = "lost"  # the status of a trial whose process died before it ended


@functools.cache
def _namespace() -> str | None:
    """This kernel boot and PID namespace: where a pid names one process. None where /proc says nothing."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def owner() -> dict[str, Any]:
    """This process as the owner of the trials it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "namespace": _namespace()}


def _runs(pid: int) -> bool:
    """Whether pid names a process that has not ended (a zombie has ended; a reused pid counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def died_here(trial: FrozenTrial) -> bool:
    """Whether trial's owner ran in this boot and PID namespace and has ended."""
    who = trial.system_attrs.get(OWNER)
    if not isinstance(who, dict) or who.get("namespace") is None or who.get("namespace") != _namespace():
        return False
    return who.get("pid") != os.getpid() and not _runs(int(who["pid"]))


def has_owner(trial: FrozenTrial) -> bool:
    """Whether the tuner ran trial this way (an owner and heartbeats); other code's trials have neither."""
    return isinstance(trial.system_attrs.get(OWNER), dict)


def retire_dead(study: optuna.Study, trials: Iterable[FrozenTrial], *, clock: RunClock) -> int:
    """Fail and retry the running trials of study whose process died; how many were retired.

    trials is what the caller last read of the study: its running trials owned on this host are
    checked against their pids; the storage says which heartbeats went stale.
    """
    rows = StudyRows(study, clock)
    storage = rows.storage
    running = (t for t in trials if t.state == TrialState.RUNNING)
    dead = {t._trial_id: f"its process ({_who(t)}) ended" for t in running if died_here(t)}
    for trial_id in rows.stale_trial_ids():
        dead.setdefault(trial_id, f"its process stopped beating (no heartbeat for over {rows.grace_s} s)")
    retired = 0
    for trial_id, why in dead.items():
        trial = storage.get_trial(trial_id)
        measured = trial.user_attrs.get(STATUS) in MEASURED  # recorded before its process died: it stands
        attrs = {} if measured else {TIMED: False, STATUS: LOST, REASON: f"{why} before the trial did"}
        try:
            rows.update(trial, user_attrs=attrs, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process retired it, or it ended after all
        retired += 1
        retry = storage.get_heartbeat_stale_trial_callback() if rows.heartbeat_s is not None else None
        if retry is not None:
            retry(study, copy.deepcopy(storage.get_trial(trial_id)))
    return retired


def _who(trial: FrozenTrial) -> str:
    who = trial.system_attrs[OWNER]
    return f"pid {who['pid']} on {who['host']}"


class Heartbeats:
    """One thread that renews the heartbeat of each trial this process runs, every heartbeat interval.

    A trial's first heartbeat is written with the trial itself; most trials end within
    milliseconds, long before a second one is due, so they cost no further write. (Optuna's own
    heartbeat thread starts per trial and writes at once.) Used as a context manager around a
    study's search; the thread starts with the first trial that outlives an interval's wait.
    """

    def __init__(self, rows: StudyRows) -> None:
        self._storage = rows.storage
        self._interval = rows.heartbeat_s
        self._live: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeats:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def alive(self, trial_id: int) -> Iterator[None]:
        """Keep trial_id's heartbeat fresh while the block runs."""
        if self._interval is None:
            yield
            return
        with self._lock:
            self._live.add(trial_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="tuner-heartbeats", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._live.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                live = list(self._live)
            for trial_id in live:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried next interval; the grace period allows it
                    pass
