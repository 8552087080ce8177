"""Paces replay runs that a test stops mid-way: Python loads it in each process whose PYTHONPATH names this folder.

A replay measurement takes microseconds, so a whole run can end between two looks of the test that
means to stop it. TUNER_TEST_REPLAY_DELAY_S gives each measurement that many seconds of simulated
GPU time, in the run's own process and in every replay worker it starts.
"""

import os

if delay := os.environ.get("TUNER_TEST_REPLAY_DELAY_S"):
    from tuner.benchmarkers import _replay

    _unpaced_init = _replay.ReplayBenchmarker.__init__

    def _paced_init(self, rows, *, delay_s=float(delay)):
        _unpaced_init(self, rows, delay_s=delay_s)

    _replay.ReplayBenchmarker.__init__ = _paced_init
