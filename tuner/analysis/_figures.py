"""The report's figures (plotly) and its one offline HTML page, drawn from tuner.analysis's tables.

Computing the numbers (tuner.analysis._tables) is kept apart from drawing them, so tests and
notebooks check data, not pixels.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import optuna
import pandas as pd

from tuner.analysis._tables import (
    SHAPE_COLUMNS,
    StorageLike,
    as_records,
    coverage_table,
    coverages,
    failed_trials,
    failures,
    history,
    importances,
    summary_table,
)
from tuner.benchmarkers import missing_ceilings
from tuner.dispatch import HOPPER_NOTE, deepgemm_note

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Figures: built from tuner.analysis's frames, one shape at a time.

_SERIES = (
    ("best", "tuned best", "#1f77b4"),
    ("default", "SGLang default", "#7f7f7f"),
    ("file", "config file", "#ff7f0e"),
)
_STATUS_COLOURS = {
    "ok": "#2ca02c",
    "pruned": "#bcbd22",
    "out_of_resources": "#d62728",
    "compile_error": "#9467bd",
    "crash": "#8c564b",
    "timeout": "#e377c2",
    "compile_crash": "#c49c94",
    "compile_timeout": "#9edae5",
    "wrong_result": "#000000",
    "repeat": "#c7c7c7",
    "over_budget": "#dbdb8d",
    "not_searched": "#f7b6d2",
    "interrupted": "#ff9896",
    "running": "#17becf",
}


def shape_label(shape: Mapping[str, object]) -> str:
    """A heading for one shape, e.g. 'fp8 N=512 K=1024 block [128, 128] -> float16 on NVIDIA_H100, base space
    (gpu, software 1a2b3c4d)'; a replay names its landscape's hash instead."""
    s = shape
    made_by = "landscape" if s["timing"] == "replay" else "software"
    return (
        f"{s['input_type']} N={s['N']} K={s['K']} block [{s['block_n']}, {s['block_k']}] -> {s['out_dtype']} "
        f"on {s['device']}, {s['space']} space ({s['timing']}, {made_by} {s['software'] or 'not recorded'})"
    )


def _log_m_axis(fig: go.Figure, batch_sizes: Sequence[int], **where: int) -> None:
    fig.update_xaxes(type="log", tickvals=list(batch_sizes), ticktext=[str(m) for m in batch_sizes], title="M", **where)


def latency_figure(table: pd.DataFrame) -> go.Figure:
    """Latency and TFLOP/s against M for one shape's rows of summary_table."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("latency (us, lower is better)", "TFLOP/s"))
    for prefix, name, colour in _SERIES:
        rows = table[table[f"{prefix}_us"].notna()]
        if rows.empty:
            continue
        for col, column in ((1, f"{prefix}_us"), (2, f"{prefix}_tflops")):
            fig.add_trace(
                go.Scatter(
                    x=rows.M,
                    y=rows[column],
                    mode="lines+markers",
                    name=name,
                    legendgroup=prefix,
                    showlegend=col == 1,
                    line={"color": colour},
                    text=rows[f"{prefix}_config"],
                    hovertemplate="M=%{x}: %{y:.2f}<br>%{text}<extra>" + name + "</extra>",
                ),
                row=1,
                col=col,
            )
    for col in (1, 2):
        _log_m_axis(fig, sorted(table.M), row=1, col=col)
    # latencies span 100x from M=1 to M=4096; labels at 1, 2 and 5 of each decade, not at every minor tick
    fig.update_yaxes(type="log", dtick="D2", row=1, col=1)
    fig.update_layout(height=380, margin={"t": 40, "b": 40})
    return fig


def coverage_figure(table: pd.DataFrame, threshold: float) -> go.Figure:
    """The loader's pick against the best config timed, per runtime M, before and after the coverage check.

    table is one shape's rows of coverage_table; a pick that fails at an M (ratio inf) is left out of
    the curve and named in the hover text of the added key that serves it.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for when, colour, mode in (("before", "#7f7f7f", "markers"), ("after", "#1f77b4", "lines+markers")):
        ratios = table[f"{when}_ratio"].replace(math.inf, math.nan)
        fig.add_trace(
            go.Scatter(
                x=table.M,
                y=ratios,
                mode=mode,
                name=f"{when} the check",
                line={"color": colour},
                text=table[f"{when}_config"] + " vs " + table.best_config,
                hovertemplate="M=%{x}: %{y:.3f}x<br>%{text}<extra>" + when + "</extra>",
            )
        )
    added = table[table.key_added]
    if not added.empty:
        fig.add_trace(
            go.Scatter(
                x=added.M,
                y=added.after_ratio,
                mode="markers",
                name="key added",
                marker={"color": "#d62728", "symbol": "diamond", "size": 10},
                text=added.best_config,
                hovertemplate="key M=%{x}: %{text}<extra>added</extra>",
            )
        )
    fig.add_hline(y=1 + threshold, line_dash="dash", line_color="#d62728", annotation_text=f"+{threshold:.0%}")
    fig.update_xaxes(type="log", title="runtime M")
    fig.update_layout(
        title="the loader's pick / the best config timed at each M (1 is the best)",
        yaxis_title="ratio",
        height=360,
        margin={"t": 40, "b": 40},
    )
    return fig


def history_figure(frame: pd.DataFrame) -> go.Figure:
    """Best-so-far latency against timed-trial index, one line per M, for one shape's rows of history."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for M, rows in frame.groupby("M", sort=True):
        fig.add_trace(
            go.Scatter(
                x=rows["index"],
                y=rows.best_us,
                mode="lines+markers",
                line_shape="hv",
                name=f"M={M}",
                text=rows.config,
                hovertemplate="trial %{x}: best %{y:.2f} us<br>%{text}",
            )
        )
    fig.update_layout(
        title="optimization history: best latency so far",
        xaxis_title="timed trial",
        yaxis_title="best us",
        yaxis={"type": "log", "dtick": "D2"},
        height=380,
        margin={"t": 40, "b": 40},
    )
    return fig


def importance_figure(frame: pd.DataFrame) -> go.Figure:
    """Parameter x M heatmap of importances for one shape's rows of importances."""
    import plotly.graph_objects as go

    grid = frame.pivot_table(index="param", columns="M", values="importance").fillna(0.0)
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=[f"M={m}" for m in grid.columns],
            y=list(grid.index),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            texttemplate="%{z:.2f}",
            hovertemplate="%{y} at %{x}: %{z:.2f}",
        )
    )
    fig.update_layout(
        title="parameter importance (where the search went, per study)", height=330, margin={"t": 40, "b": 40, "l": 110}
    )
    return fig


def failures_figure(frame: pd.DataFrame) -> go.Figure:
    """Trials per status, stacked, per M, for one shape's rows of failures."""
    import plotly.graph_objects as go

    statuses = [c for c in frame.columns[frame.columns.get_loc("trials") + 1 :] if frame[c].sum() > 0]
    fig = go.Figure()
    for status in statuses:
        fig.add_trace(
            go.Bar(
                x=[f"M={m}" for m in frame.M], y=frame[status], name=status, marker_color=_STATUS_COLOURS.get(status)
            )
        )
    fig.update_layout(
        barmode="stack", title="trials by outcome", yaxis_title="trials", height=330, margin={"t": 40, "b": 40}
    )
    return fig


# The page.

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td { max-width: 24em; overflow-wrap: anywhere; }
th { background: #f0f0f0; }
h2 { border-top: 2px solid #888; padding-top: 0.6em; margin-top: 2em; }
.note { color: #555; font-size: 13px; }
"""
_TABLE_COLUMNS = [
    "M",
    "timed",
    "best_config",
    "best_us",
    "best_tflops",
    "best_roofline_pct",
    "default_us",
    "speedup",
    "file_config",
    "file_status",
    "file_us",
    "file_speedup",
    "exported_config",
    "confirmed_us",
    "confirm_reason",
]


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}", border=0)


def render_html(storage: StorageLike, table: pd.DataFrame | None = None, *, title: str = "") -> str:
    """The whole page as one string, plotly.js inlined once so the file opens offline.

    table is summary_table's frame, when the caller already computed it (with its config files).
    Studies that newer software superseded are listed apart, after the shapes, without figures.
    """
    records = as_records(storage)
    table = summary_table(records) if table is None else table
    current, old = table[~table.superseded], table[table.superseded]
    steps, weights, fails = history(records), importances(records), failures(records)
    checked = {tuple(shape.values()): coverage for shape, coverage in coverages(records)}
    probes = coverage_table(records)
    replays = int((current.timing == "replay").sum())
    parts = [
        f"<h1>{html.escape(title or 'Tuning report')}</h1>",
        f"<p class=note>{len(records)} studies, generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"optuna {optuna.__version__}. Speedup = default us / best us; a baseline shows only where the study "
        "measured that exact config to completion.</p>",
    ]
    if replays:
        parts.append(f"<p class=note>{replays} of the studies shown are replays of recorded landscapes (timing "
                     "'replay'): their latencies are the landscape's, not timed by the run.</p>")  # fmt: skip
    if not old.empty:
        parts.append(f"<p class=note>{len(old)} studies were made with older software (or, in replay, another "
                     "landscape) than the newest of their shape; they are left out of the figures and listed "
                     "under 'Superseded studies'.</p>")  # fmt: skip
    plotlyjs = True  # inline the library with the first figure only
    for key, rows in current.groupby(SHAPE_COLUMNS, sort=False):
        shape = dict(zip(SHAPE_COLUMNS, key))

        def of(frame: pd.DataFrame, names: pd.Series = rows.study) -> pd.DataFrame:
            return frame[frame.study.isin(names)]

        figures = [latency_figure(rows)]
        coverage = checked.get(key)
        if coverage is not None and coverage.probes:
            probed = probes[(probes[SHAPE_COLUMNS] == pd.Series(shape)).all(axis=1)]
            figures.append(coverage_figure(probed, coverage.threshold))
        figures.append(history_figure(of(steps)))
        if not of(weights).empty:
            figures.append(importance_figure(of(weights)))
        figures.append(failures_figure(of(fails)))
        parts.append(f"<h2>{html.escape(shape_label(shape))}</h2>")
        notes = [deepgemm_note(str(shape["device"]), str(shape["out_dtype"])), missing_ceilings(str(shape["device"]))]
        if shape["space"] == "hopper":
            notes.append(f"SGLang's Hopper space: {HOPPER_NOTE}")
        if coverage is not None:
            notes.append(coverage.line())
        parts += [f"<p class=note>{html.escape(note)}</p>" for note in notes if note is not None]
        if rows.file.any():
            parts.append(f"<p class=note>config file: {html.escape(rows.file[rows.file != ''].iloc[0])}</p>")
        for fig in figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=plotlyjs))
            plotlyjs = False
        columns = _TABLE_COLUMNS if rows.file.any() else [c for c in _TABLE_COLUMNS if not c.startswith("file")]
        parts.append(_html_table(rows[columns]))
    skipped = {name: why for name, why in weights.attrs.get("skipped", {}).items() if name in set(current.study)}
    if skipped:
        items = "".join(f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in skipped.items())
        parts.append(f"<h2>Importances not computed</h2><ul class=note>{items}</ul>")
    broken = failed_trials(records)
    broken = broken[broken.study.isin(current.study)]
    parts.append("<h2>Failed configs</h2>")
    parts.append(_html_table(broken.drop(columns=SHAPE_COLUMNS)) if not broken.empty else "<p class=note>none</p>")
    if not old.empty:
        parts.append("<h2>Superseded studies</h2>" + _html_table(old.drop(columns=["file", "superseded"])))
    parts.append("<h2>All studies</h2>" + _html_table(table.drop(columns=["file"])))
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title or 'Tuning report')}"
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
