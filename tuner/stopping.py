"""How a run stops: with a TuningError it raises on purpose, or on Ctrl-C where the tuner waits.

Ctrl-C never acts inside Optuna's or SQLAlchemy's code.
A KeyboardInterrupt that lands while Optuna stores a result, or starts or stops a trial's heartbeat
thread, can leave that thread running (the process then hangs at exit) or raise Optuna's own
UnboundLocalError; one that lands in a garbage-collector callback is swallowed, and the run goes
on. So while a process tunes, Ctrl-C acts at once only inside `interruptible()` (blocking waits:
for a compile, a timing, other workers' decisions), and otherwise is held until the next such
wait, the next trial's start or the end of the work, moments later. A second Ctrl-C while one is
held acts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TuningError(RuntimeError):
    """A run cannot go on, for a reason its message states in full: reported in one line, no traceback.

    Anything else that stops a run (a bug of ours, a CUDA error) keeps its traceback.
    """


_held = False
_interruptible = False


def _on_ctrl_c(signum: int, frame: object) -> None:
    global _held
    if _interruptible or _held:
        _held = False
        raise KeyboardInterrupt
    _held = True


def raise_if_held() -> None:
    """Act on a Ctrl-C held since the last wait; call it where stopping loses nothing."""
    global _held
    if _held:
        _held = False
        raise KeyboardInterrupt


@contextmanager
def held_outside_waits() -> Iterator[None]:
    """Around a process's tuning. Only the main thread receives signals; elsewhere nothing changes."""
    global _held
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        yield
    except BaseException:
        _held = False  # the work stops anyway; a held Ctrl-C must not outlive it
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
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
    """Whether error is Ctrl-C or came from handling one.

    A Ctrl-C that lands while Optuna stores a trial's result surfaces as the UnboundLocalError of
    Optuna's own clean-up code (5.0.0), with the KeyboardInterrupt as its context. tuner.stopping
    keeps a first Ctrl-C out of there; a second one, which acts at once, can still land there.
    """
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False
