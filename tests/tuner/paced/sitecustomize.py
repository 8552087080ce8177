"""Hooks for runs that a test stops: Python loads this in each process whose PYTHONPATH names this folder.

TUNER_TEST_REPLAY_DELAY_S paces replay runs. A replay measurement takes microseconds, so a whole run
can end between two looks of the test that means to stop it; this gives each measurement at least
that many seconds of simulated GPU time, in the run's own process and in every replay worker it starts.

TUNER_TEST_CTRL_C_AT_EXIT sends the process a Ctrl-C in its last moments, after every other clean-up
callback of the interpreter has begun: a Ctrl-C pressed as a command ends.
"""

import os

if pace := os.environ.get("TUNER_TEST_REPLAY_DELAY_S"):
    from tuner.benchmarkers import _replay

    _unpaced_init = _replay.ReplayBenchmarker.__init__

    def _paced_init(self, rows, *, delay_s=0.0):
        _unpaced_init(self, rows, delay_s=max(delay_s, float(pace)))

    _replay.ReplayBenchmarker.__init__ = _paced_init

if os.environ.get("TUNER_TEST_CTRL_C_AT_EXIT"):
    import atexit
    import signal
    import time

    def _ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the interpreter acts on the signal here, if it takes it at all

    atexit.register(_ctrl_c)  # registered first, so called last
