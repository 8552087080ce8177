"""Runs that a test stops mid-way, with a signal, as a user would from a terminal."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def paced(env: dict[str, str], delay_s: float = 0.02) -> dict[str, str]:
    """env for a replay run that a test stops mid-way: each measurement takes delay_s (see paced/).

    Unpaced, a run of a hundred measurements ends in about a second and can finish between two
    looks of the test that means to stop it. Only for a run stopped after it began tuning: the
    pacing loads with Python's site module, where a Ctrl-C is a fatal error of the interpreter.
    """
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent / "paced"), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "TUNER_TEST_REPLAY_DELAY_S": str(delay_s)}


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn: Ctrl-C's default action in the run, as under a terminal.

    A shell starts background commands with SIGINT ignored, and Python keeps it ignored: a test
    suite started in the background would else hand its runs a Ctrl-C they never see.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
