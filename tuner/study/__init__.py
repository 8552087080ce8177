"""Optuna studies: storage and names, one trial's objective, tuning a shape, several workers at once."""

from __future__ import annotations

from tuner.study._confirm import (
    CONFIRM_DEFAULT_US,
    CONFIRM_REASON,
    CONFIRM_ROUND,
    CONFIRMED,
    CONFIRMED_US,
    Confirmation,
    confirm,
    decide,
)
from tuner.study._objective import MEASURED, ConfigFailed, Objective, WrongResult
from tuner.study._parallel import WorkerSpec, collect, run_workers, spec_software, split_work, tune_units
from tuner.study._storage import (
    DEFAULT_STORAGE,
    best,
    is_timed,
    latency_of,
    make_storage,
    masked_url,
    open_study,
    raise_unusable,
    study_name,
    timed_counts,
    timed_trials,
)
from tuner.study._tuning import (
    StudyResult,
    TuneOptions,
    format_table,
    searchable,
    study_result,
    tune_problem,
    tune_shape,
    warm_starts,
)

__all__ = [
    "CONFIRMED",
    "CONFIRMED_US",
    "CONFIRM_DEFAULT_US",
    "CONFIRM_REASON",
    "CONFIRM_ROUND",
    "Confirmation",
    "confirm",
    "decide",
    "DEFAULT_STORAGE",
    "MEASURED",
    "ConfigFailed",
    "Objective",
    "StudyResult",
    "TuneOptions",
    "WorkerSpec",
    "WrongResult",
    "best",
    "collect",
    "format_table",
    "is_timed",
    "latency_of",
    "make_storage",
    "masked_url",
    "open_study",
    "raise_unusable",
    "run_workers",
    "spec_software",
    "searchable",
    "split_work",
    "study_name",
    "study_result",
    "timed_counts",
    "timed_trials",
    "tune_problem",
    "tune_shape",
    "tune_units",
    "warm_starts",
]
