"""The error the tuner raises on purpose to stop a run, so the command line can tell it from a bug."""

from __future__ import annotations


class TuningError(RuntimeError):
    """A run cannot go on, for a reason its message states in full: reported in one line, no traceback.

    Anything else that stops a run (a bug of ours, a CUDA error) keeps its traceback.
    """
