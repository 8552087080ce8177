"""Paces replay runs that a test stops mid-way: Python loads it in each process whose PYTHONPATH names this folder.

A replay measurement takes microseconds, so a whole run can end between two looks of the test that
means to stop it. TUNER_TEST_REPLAY_DELAY_S gives each measurement at least that many seconds of
simulated GPU time, in the run's own process and in every replay worker it starts.
"""

import os

if pace := os.environ.get("TUNER_TEST_REPLAY_DELAY_S"):
    from tuner.benchmarkers import _replay

    _unpaced_init = _replay.ReplayBenchmarker.__init__

    def _paced_init(self, rows, *, delay_s=0.0):
        _unpaced_init(self, rows, delay_s=max(delay_s, float(pace)))

    _replay.ReplayBenchmarker.__init__ = _paced_init
