"""One offline HTML page that shows what a tuning storage found: python -m tuner.report --storage URL --out FILE.

    python -m tuner.report --storage sqlite:///studies/tuner.sqlite3 --out report.html --csv table.csv \\
        --config-file "benchmarks/sglang_shipped/N=7168,K=18432,...,block_shape=[128, 128].json"

For every shape in the storage: latency and TFLOP/s against M for the tuned best, SGLang's default
config and (with --config-file) the entry an existing file gives SGLang; each study's optimization
history; parameter importances; and which configs failed and why. The numbers are computed by the
plain functions below (studies, summary_table, history, importances, failures, failed_trials), apart
from the figures, so tests and notebooks check data rather than pixels.
Exit status: 0 on success, 2 on a usage error (one line says why), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner._cli import OneLineParser
from tuner.export import nearest_entry, read_config_file
from tuner.measure import FAILURES, Problem
from tuner.search import config_of
from tuner.space import Config, default_config
from tuner.study import masked_url, raise_unusable

if TYPE_CHECKING:
    import plotly.graph_objects as go

# What identifies a shape; studies that share these differ only in M. Timing is part of it so that
# a replay of a device's landscape and real timings on that device are never mixed in one curve.
SHAPE_COLUMNS = ["device", "input_type", "out_dtype", "N", "K", "block_n", "block_k", "timing"]
SUMMARY_COLUMNS = [
    *SHAPE_COLUMNS,
    "M",
    "study",
    "trials",
    "timed",
    "best_config",
    "best_us",
    "best_tflops",
    "best_roofline_pct",
    "default_config",
    "default_us",
    "default_tflops",
    "speedup",
    "file",
    "file_config",
    "file_status",
    "file_us",
    "file_tflops",
    "file_speedup",
]
# Every value the objective writes into a trial's `status`, in the order a reader wants them, then
# the trials it never finished: a FAIL without a status was interrupted (its process died).
STATUSES = ("ok", "pruned", *FAILURES, "repeat", "over_budget", "interrupted", "running")
# Fewer complete trials than this give importances that are noise, or make the evaluator raise.
MIN_COMPLETE_FOR_IMPORTANCE = 5
_CONFIG_FILE_NAME = re.compile(
    r"N=(?P<N>\d+),K=(?P<K>\d+),device_name=(?P<device>.+),dtype=(?P<input_type>fp8|int8)_w8a8,"
    r"block_shape=\[(?P<block_n>\d+), ?(?P<block_k>\d+)\]\.json"
)


@dataclass(frozen=True)
class StudyRecord:
    """One tuner study read from a storage: its problem, where it was timed, and its trials."""

    study: optuna.Study
    problem: Problem
    device: str
    timing: str
    trials: tuple[FrozenTrial, ...]

    @property
    def name(self) -> str:
        return self.study.study_name

    def shape(self) -> dict[str, object]:
        """The SHAPE_COLUMNS of this study."""
        p = self.problem
        return {
            "device": self.device,
            "input_type": p.input_type,
            "out_dtype": p.out_dtype,
            "N": p.N,
            "K": p.K,
            "block_n": p.block_n,
            "block_k": p.block_k,
            "timing": self.timing,
        }


StorageLike = str | BaseStorage | Sequence[StudyRecord]


def open_storage(url: str) -> RDBStorage:
    """Open an existing storage for reading; a URL that names nothing or cannot connect raises ValueError.

    A missing SQLite file is refused rather than created, so a typo never yields an empty report.
    """
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if not Path(path).is_file():
            raise ValueError(f"--storage {masked_url(url)!r}: no SQLite file at {path!r}.")
    try:
        return RDBStorage(url)
    except Exception as error:  # noqa: BLE001 - any driver or URL failure is a usage error here
        raise_unusable(url, error)


def load_studies(storage: str | BaseStorage) -> list[StudyRecord]:
    """Every tuner study in the storage, sorted by shape then M; raises ValueError if there is none.

    Studies without the tuner's user attributes (made by other code) are left out.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    records = []
    for frozen in storage.get_all_studies():
        attrs = frozen.user_attrs
        try:
            problem = Problem(*(attrs[key] for key in ("N", "K", "M", "block_n", "block_k", "input_type", "out_dtype")))
            device, timing = str(attrs["device"]), str(attrs["timing"])
        except (KeyError, ValueError):
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = tuple(sorted(study.get_trials(deepcopy=False), key=lambda t: t.number))
        records.append(StudyRecord(study, problem, device, timing, trials))
    if not records:
        raise ValueError("the storage holds no tuner studies (none with the user attributes N, K, M, device).")
    return sorted(records, key=lambda r: (*r.shape().values(), r.problem.M))


def _records(storage: StorageLike) -> list[StudyRecord]:
    """Accept what the data functions accept: a URL, a storage, or records loaded once already."""
    if isinstance(storage, (str, BaseStorage)):
        return load_studies(storage)
    return list(storage)


def _tflops(problem: Problem, us: float | None) -> float:
    return problem.flops / us / 1e6 if us else math.nan


def _complete_latency(record: StudyRecord, config: Config) -> float:
    """The latency of config if the study measured it to completion, else NaN."""
    for t in record.trials:
        if t.state == TrialState.COMPLETE and config_of(t) == config:
            return t.value
    return math.nan


def _status(trial: FrozenTrial) -> str:
    """What happened to a trial, in the vocabulary of STATUSES."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    status = trial.user_attrs.get("status")
    if status is None:
        return "interrupted" if trial.state == TrialState.FAIL else trial.state.name.lower()
    return str(status)


def studies(storage: StorageLike) -> pd.DataFrame:
    """One row per study: its shape, M, how many trials it holds and what it ran on."""
    rows = []
    for r in _records(storage):
        attrs = r.study.user_attrs
        rows.append(
            {
                **r.shape(),
                "M": r.problem.M,
                "study": r.name,
                "trials": len(r.trials),
                "timed": sum(1 for t in r.trials if t.user_attrs.get("timed")),
                "complete": sum(1 for t in r.trials if t.state == TrialState.COMPLETE),
                "torch": attrs.get("torch"),
                "triton": attrs.get("triton"),
                "python": attrs.get("python"),
            }
        )
    return pd.DataFrame(rows)


def _file_key(path: Path) -> tuple:
    """(device, input_type, N, K, block_n, block_k) from a config file's SGLang (or vLLM) name."""
    match = _CONFIG_FILE_NAME.fullmatch(path.name)
    if match is None:
        raise ValueError(
            f"--config-file {str(path)!r}: the name must be SGLang's, N={{N}},K={{K}},device_name={{device}},"
            "dtype={fp8|int8}_w8a8,block_shape=[{block_n}, {block_k}].json, to know which shape it serves."
        )
    g = match.groupdict()
    return g["device"], g["input_type"], int(g["N"]), int(g["K"]), int(g["block_n"]), int(g["block_k"])


def _config_files(paths: Iterable[str | Path]) -> dict[tuple, tuple[Path, dict[int, Config]]]:
    """Each config file under the shape it serves; two files for one shape are ambiguous."""
    files: dict[tuple, tuple[Path, dict[int, Config]]] = {}
    for path in map(Path, paths):
        key = _file_key(path)
        if key in files:
            raise ValueError(f"--config-file {str(path)!r} and {str(files[key][0])!r} serve the same shape; give one.")
        entries = read_config_file(path)
        if not entries:
            raise ValueError(f"--config-file {str(path)!r} holds no entries.")
        files[key] = (path, entries)
    return files


def summary_table(storage: StorageLike, config_files: Sequence[str | Path] = ()) -> pd.DataFrame:
    """One row per study (SUMMARY_COLUMNS): the tuned best against the default and an existing file's pick.

    A baseline's latency is given only when the study measured exactly that config to completion;
    file_status says what became of the file's pick otherwise ('not measured', 'pruned', a failure).
    The config files that serve no shape in the storage are listed in the frame's attrs['unmatched_files'].
    """
    files = _config_files(config_files)
    used = set()
    rows = []
    for r in _records(storage):
        p = r.problem
        complete = [t for t in r.trials if t.state == TrialState.COMPLETE]
        row: dict[str, object] = {
            **r.shape(),
            "M": p.M,
            "study": r.name,
            "trials": len(r.trials),
            "timed": sum(1 for t in r.trials if t.user_attrs.get("timed")),
        }
        best = min(complete, key=lambda t: t.value) if complete else None
        best_us = best.value if best else math.nan
        default = default_config(p.block_n, p.block_k)
        default_us = _complete_latency(r, default)
        row.update(
            best_config=config_of(best).short() if best else "",
            best_us=best_us,
            best_tflops=_tflops(p, best_us),
            best_roofline_pct=best.user_attrs.get("roofline_pct", math.nan) if best else math.nan,
            default_config=default.short(),
            default_us=default_us,
            default_tflops=_tflops(p, default_us),
            speedup=default_us / best_us,
        )
        file_key = (r.device, p.input_type, p.N, p.K, p.block_n, p.block_k)
        row.update(file="", file_config="", file_status="", file_us=math.nan, file_tflops=math.nan)
        if file_key in files:
            used.add(file_key)
            path, entries = files[file_key]
            pick = nearest_entry(entries, p.M)
            file_us = _complete_latency(r, pick)
            tried = [
                _status(t) for t in r.trials if config_of(t) == pick and _status(t) not in ("repeat", "over_budget")
            ]
            status = "ok" if not math.isnan(file_us) else tried[-1] if tried else "not measured"
            row.update(
                file=path.name,
                file_config=pick.short(),
                file_status=status,
                file_us=file_us,
                file_tflops=_tflops(p, file_us),
            )
        row["file_speedup"] = row["file_us"] / best_us
        rows.append(row)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    table.attrs["unmatched_files"] = [str(path) for key, (path, _) in files.items() if key not in used]
    return table


def history(storage: StorageLike) -> pd.DataFrame:
    """Each study's timed trials in order, with the best complete latency so far (non-increasing).

    The x axis is the timed-trial index, the budget's unit, so repeats and skipped configs (which
    cost nothing) do not stretch the curve. us is the trial's own latency (for a pruned trial, its
    cheap first estimate); best_us is NaN until the first config completes.
    """
    rows = []
    for r in _records(storage):
        best_us = math.nan
        timed = [t for t in r.trials if t.user_attrs.get("timed")]
        for index, t in enumerate(timed, start=1):
            if t.state == TrialState.COMPLETE and not t.value >= best_us:  # NaN compares false
                best_us = t.value
            config = config_of(t)
            rows.append(
                {
                    **r.shape(),
                    "M": r.problem.M,
                    "study": r.name,
                    "index": index,
                    "trial": t.number,
                    "status": _status(t),
                    "config": config.short() if config else "",
                    "us": t.user_attrs.get("us", math.nan),
                    "best_us": best_us,
                }
            )
    return pd.DataFrame(
        rows, columns=[*SHAPE_COLUMNS, "M", "study", "index", "trial", "status", "config", "us", "best_us"]
    )


def importances(storage: StorageLike) -> pd.DataFrame:
    """Optuna's parameter importances per study (normalized to sum to 1), long format.

    They describe where this search went, not the whole space: the tuner's local search samples
    near its incumbents, so a parameter it rarely moved can look unimportant. Studies with fewer
    than MIN_COMPLETE_FOR_IMPORTANCE complete trials, or on which the evaluator fails, are left out
    with their reason in the frame's attrs['skipped'].
    """
    rows = []
    skipped: dict[str, str] = {}
    for r in _records(storage):
        complete = sum(1 for t in r.trials if t.state == TrialState.COMPLETE)
        if complete < MIN_COMPLETE_FOR_IMPORTANCE:
            skipped[r.name] = f"{complete} complete trials (< {MIN_COMPLETE_FOR_IMPORTANCE})"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                values = optuna.importance.get_param_importances(r.study)
        except Exception as error:  # noqa: BLE001 - one study's evaluator failure must not sink the report
            skipped[r.name] = f"{type(error).__name__}: {error}"
            continue
        for param, importance in values.items():
            rows.append({**r.shape(), "M": r.problem.M, "study": r.name, "param": param, "importance": importance})
    frame = pd.DataFrame(rows, columns=[*SHAPE_COLUMNS, "M", "study", "param", "importance"])
    frame.attrs["skipped"] = skipped
    return frame


def failures(storage: StorageLike) -> pd.DataFrame:
    """Per study, how many trials ended in each status (STATUSES, then any others met, as columns)."""
    rows = []
    for r in _records(storage):
        counts = Counter(_status(t) for t in r.trials)
        rows.append({**r.shape(), "M": r.problem.M, "study": r.name, "trials": len(r.trials), **counts})
    extra = sorted({key for row in rows for key in row} - {*SHAPE_COLUMNS, "M", "study", "trials", *STATUSES})
    columns = [*SHAPE_COLUMNS, "M", "study", "trials", *STATUSES, *extra]
    frame = pd.DataFrame(rows, columns=columns)
    frame[[*STATUSES, *extra]] = frame[[*STATUSES, *extra]].fillna(0).astype(int)
    return frame


def failed_trials(storage: StorageLike) -> pd.DataFrame:
    """Every config that could not run (or whose process died), with its reason: where failures happened."""
    rows = []
    for r in _records(storage):
        for t in r.trials:
            status = _status(t)
            if status in (*FAILURES, "interrupted"):
                config = config_of(t)
                rows.append(
                    {
                        **r.shape(),
                        "M": r.problem.M,
                        "study": r.name,
                        "trial": t.number,
                        "status": status,
                        "config": config.short() if config else "",
                        "reason": t.user_attrs.get("reason", ""),
                    }
                )
    return pd.DataFrame(rows, columns=[*SHAPE_COLUMNS, "M", "study", "trial", "status", "config", "reason"])


# Figures: built from the frames above, one shape at a time.

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
    "wrong_result": "#000000",
    "repeat": "#c7c7c7",
    "over_budget": "#dbdb8d",
    "interrupted": "#ff9896",
    "running": "#17becf",
}


def shape_label(shape: Mapping[str, object]) -> str:
    """A heading for one shape, e.g. 'fp8 N=512 K=1024 block [128, 128] -> float16 on NVIDIA_H100 (gpu)'."""
    s = shape
    return (
        f"{s['input_type']} N={s['N']} K={s['K']} block [{s['block_n']}, {s['block_k']}] -> {s['out_dtype']} "
        f"on {s['device']} ({s['timing']})"
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
    fig.update_yaxes(type="log", row=1, col=1)  # latencies span 100x from M=1 to M=4096
    fig.update_layout(height=380, margin={"t": 40, "b": 40})
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
        yaxis_type="log",
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
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
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
    "default_us",
    "speedup",
    "file_config",
    "file_status",
    "file_us",
    "file_speedup",
]


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}", border=0)


def render_html(storage: StorageLike, table: pd.DataFrame | None = None, *, title: str = "") -> str:
    """The whole page as one string, plotly.js inlined once so the file opens offline.

    table is summary_table's frame, when the caller already computed it (with its config files).
    """
    records = _records(storage)
    table = summary_table(records) if table is None else table
    steps, weights, fails = history(records), importances(records), failures(records)
    parts = [
        f"<h1>{html.escape(title or 'Tuning report')}</h1>",
        f"<p class=note>{len(records)} studies, generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"optuna {optuna.__version__}. Speedup = default us / best us; a baseline shows only where the study "
        "measured that exact config to completion.</p>",
    ]
    plotlyjs = True  # inline the library with the first figure only
    for key, rows in table.groupby(SHAPE_COLUMNS, sort=False):
        shape = dict(zip(SHAPE_COLUMNS, key))

        def of(frame: pd.DataFrame, names: pd.Series = rows.study) -> pd.DataFrame:
            return frame[frame.study.isin(names)]

        figures = [latency_figure(rows), history_figure(of(steps))]
        if not of(weights).empty:
            figures.append(importance_figure(of(weights)))
        figures.append(failures_figure(of(fails)))
        parts.append(f"<h2>{html.escape(shape_label(shape))}</h2>")
        if rows.file.any():
            parts.append(f"<p class=note>config file: {html.escape(rows.file[rows.file != ''].iloc[0])}</p>")
        for fig in figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=plotlyjs))
            plotlyjs = False
        columns = _TABLE_COLUMNS if rows.file.any() else [c for c in _TABLE_COLUMNS if not c.startswith("file")]
        parts.append(_html_table(rows[columns]))
    skipped = weights.attrs.get("skipped", {})
    if skipped:
        items = "".join(f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in skipped.items())
        parts.append(f"<h2>Importances not computed</h2><ul class=note>{items}</ul>")
    broken = failed_trials(records)
    parts.append("<h2>Failed configs</h2>")
    parts.append(_html_table(broken.drop(columns=SHAPE_COLUMNS)) if not broken.empty else "<p class=note>none</p>")
    parts.append("<h2>All studies</h2>" + _html_table(table.drop(columns=["file"])))
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title or 'Tuning report')}"
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m tuner.report", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="Optuna storage URL the tuner wrote")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--csv", default=None, help="also write the summary table here")
    parser.add_argument(
        "--config-file",
        nargs="+",
        action="extend",
        default=[],
        help="existing SGLang config files to compare with (matched to shapes by file name)",
    )
    parser.add_argument("--title", default="", help="the page's heading")
    return parser


def _check_writable(path: Path, option: str) -> None:
    """Fail before the work, not after it, when the output cannot be written."""
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ValueError(f"{option} {str(path)!r}: its folder is not writable: {error.strerror or error}.") from None


def main(argv: Sequence[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        out = Path(args.out)
        _check_writable(out, "--out")
        if args.csv:
            _check_writable(Path(args.csv), "--csv")
        records = load_studies(open_storage(args.storage))
        table = summary_table(records, args.config_file)
        for path in table.attrs["unmatched_files"]:
            print(f"warning: --config-file {path!r} serves no shape in the storage; not shown.", file=sys.stderr)
        page = render_html(records, table, title=args.title or f"Tuning report: {masked_url(args.storage)}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out.write_text(page, encoding="utf-8")
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"wrote {out} ({len(records)} studies)" + (f" and {args.csv}" if args.csv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
