"""Ctrl-C while tuning: at once inside a blocking wait, held anywhere else until a safe point, never lost."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tuner.stopping import held_outside_waits, interruptible, raise_if_held


def ctrl_c() -> None:
    """Send SIGINT to this process and give the main thread a moment to run its handler."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)


@pytest.fixture(autouse=True)
def default_handler():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


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
