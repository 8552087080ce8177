"""What a tuning storage found: pandas tables (computed) and the plotly report page (drawn from them)."""

from __future__ import annotations

from tuner.analysis._figures import (
    failures_figure,
    history_figure,
    importance_figure,
    latency_figure,
    render_html,
    shape_label,
)
from tuner.analysis._tables import (
    SHAPE_COLUMNS,
    STATUSES,
    SUMMARY_COLUMNS,
    StorageLike,
    StudyRecord,
    as_records,
    failed_trials,
    failures,
    history,
    importances,
    load_studies,
    open_storage,
    studies,
    summary_table,
    superseded,
)

__all__ = [
    "SHAPE_COLUMNS",
    "STATUSES",
    "SUMMARY_COLUMNS",
    "StorageLike",
    "StudyRecord",
    "as_records",
    "failed_trials",
    "failures",
    "failures_figure",
    "history",
    "history_figure",
    "importance_figure",
    "importances",
    "latency_figure",
    "load_studies",
    "open_storage",
    "render_html",
    "shape_label",
    "studies",
    "summary_table",
    "superseded",
]
