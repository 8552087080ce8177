"""How a run stops: by a TuningError raised on purpose, on Ctrl-C or SIGTERM where it waits, or with its parent.

Ctrl-C never acts inside Optuna's or SQLAlchemy's code.
A KeyboardInterrupt that lands while Optuna stores a result, or starts or stops a trial's heartbeat
thread, can leave that thread running (the process then hangs at exit) or raise Optuna's own
UnboundLocalError; one that lands in a garbage-collector callback is swallowed, and the run goes
on. So while a process tunes, Ctrl-C acts at once only inside `interruptible()` (blocking waits:
for a compile, a timing, other workers' decisions), and otherwise is held until the next such
wait, the next trial's start or the end of the work, moments later. A second Ctrl-C while one is
held acts at once.

SIGTERM (what `kill`, a batch scheduler or a process manager sends) takes the same path, as
Terminated, a KeyboardInterrupt: stored results are kept and the command exits with 143, as a
shell reports a process that SIGTERM ended (130 after Ctrl-C).

Child processes (compilation, timing) die with their parent, even when it is killed outright.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TuningError(RuntimeError):
    """A run cannot go on, for a reason its message states in full: reported in one line, no traceback.

    Anything else that stops a run (a bug of ours, a CUDA error) keeps its traceback.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that it stops a run as cleanly."""


# What each handled signal raises, and the handler that was in place when none is installed.
_RAISES: dict[int, type[KeyboardInterrupt]] = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
_DEFAULTS: dict[int, object] = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
_held: int | None = None  # the signal held since the last wait
_interruptible = False


def _on_signal(signum: int, frame: object) -> None:
    global _held
    if _interruptible or _held is not None:
        _held = None
        raise _RAISES[signum]
    _held = signum


def raise_if_held() -> None:
    """Act on a Ctrl-C (or SIGTERM) held since the last wait; call it where stopping loses nothing."""
    global _held
    if _held is not None:
        signum, _held = _held, None
        raise _RAISES[signum]


@contextmanager
def held_outside_waits() -> Iterator[None]:
    """Around a process's tuning. Only the main thread receives signals; elsewhere nothing changes.

    A signal whose handler someone else set (not Python's default) is left to that handler.
    """
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _RAISES}
    ours = [signum for signum, handler in previous.items() if handler is _DEFAULTS[signum]]
    for signum in ours:
        signal.signal(signum, _on_signal)
    try:
        yield
    except BaseException:
        _held = None  # the work stops anyway; a held signal must not outlive it
        raise
    finally:
        for signum in ours:
            signal.signal(signum, previous[signum])
    raise_if_held()


@contextmanager
def interruptible() -> Iterator[None]:
    """A blocking wait that Ctrl-C may cut short; a Ctrl-C held until now is raised on entry."""
    global _interruptible
    raise_if_held()
    _interruptible = True
    try:
        yield
    finally:
        _interruptible = False


def stopped_by_ctrl_c(error: BaseException | None) -> bool:
    """Whether error is Ctrl-C (or SIGTERM, its Terminated) or came from handling one.

    A Ctrl-C that lands while Optuna stores a trial's result surfaces as the UnboundLocalError of
    Optuna's own clean-up code (5.0.0), with the KeyboardInterrupt as its context. tuner.stopping
    keeps a first Ctrl-C out of there; a second one, which acts at once, can still land there.
    """
    return _stop(error) is not None


def exit_status(error: BaseException | None) -> int:
    """The exit status of a command that error stopped, as a shell reports the signal: 143 after SIGTERM, else 130."""
    return 128 + (signal.SIGTERM if isinstance(_stop(error), Terminated) else signal.SIGINT)


def stopped_by(error: BaseException | None) -> str:
    """What stopped the work, as a stopped trial's reason says it: SIGTERM's Terminated is no Ctrl-C."""
    return "stopped by SIGTERM" if isinstance(_stop(error), Terminated) else "stopped by Ctrl-C"


def _stop(error: BaseException | None) -> KeyboardInterrupt | None:
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return error
        error = error.__cause__ or error.__context__
    return None


def ignore_ctrl_c() -> None:
    """In a child process that leaves Ctrl-C to its parent, which stops the work and ends the child.

    Ctrl-C reaches every process of the terminal; a child that took it would print a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """In a child process: receive signum when the parent dies, even of SIGKILL; exit now if it is gone already.

    Otherwise a killed tuner leaves its compile and timing processes running (fifteen interpreters
    holding torch per GPU). Linux sends the signal when the thread that started the child ends, so
    children are started from a thread that lives as long as they should. Elsewhere only the check
    at start is made. parent_pid is the parent's os.getpid(), passed down: a parent that died before
    this call made the child an orphan, whose parent is then another process.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent_pid:
        os._exit(1)
