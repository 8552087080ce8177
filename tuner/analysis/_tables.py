"""What a tuning storage found, as pandas tables: the data behind the report and the notebook.

Plain functions of a storage (a URL, a storage, or records loaded once): studies, summary_table,
history, importances, failures, failed_trials, and the coverage check's (coverages, coverage_table).
They compute and never draw, so tests check the numbers, and `tuner.report` and
`notebooks/analysis.ipynb` show the same ones.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.baselines import BASELINES
from tuner.benchmarkers import COMPILE_FAILURES, FAILURES, roofline_attrs
from tuner.export import nearest_entry, read_config_file
from tuner.space import REASON, STATUS, US, Config, Problem, config_of, default_config
from tuner.study import (
    CONFIRM_DEFAULT_US,
    CONFIRM_REASON,
    CONFIRMED,
    CONFIRMED_US,
    ShapeCoverage,
    best,
    check_storage_file,
    confirmation_of,
    coverage_of,
    is_timed,
    latency_of,
    raise_unusable,
)

# What identifies a shape; studies that share these differ only in M. Timing, space and software
# are part of it so that one curve never mixes a replay with real timings, the Hopper space with
# the base one, or timings of other software (in replay, another landscape): after an upgrade a
# storage holds both, and a rerun tunes anew beside the old studies.
SHAPE_COLUMNS = ["device", "input_type", "out_dtype", "N", "K", "block_n", "block_k", "timing", "space", "software"]
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
    "exported_config",
    "confirmed_us",
    "confirm_default_us",
    "confirm_reason",
    "superseded",
]
# Every value the objective writes into a trial's `status`, in the order a reader wants them, then
# the trials it never finished: a FAIL without a status was interrupted (its process died).
STATUSES = ("ok", "pruned", *FAILURES, *COMPILE_FAILURES, "repeat", "over_budget", "not_searched", "interrupted",
            "running")  # fmt: skip
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
    space: str
    software: str  # the study name's hash of its software (a replay's: of its landscape); "" before names had it
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
            "space": self.space,
            "software": self.software,
        }


StorageLike = str | BaseStorage | Sequence[StudyRecord]


def open_storage(url: str) -> RDBStorage:
    """Open an existing storage for reading; a URL that names nothing or cannot connect raises ValueError.

    A missing SQLite file, or one that holds no Optuna storage, is refused as it is (Optuna would make
    the one and write its tables into the other), so a typo never yields an empty report.
    """
    check_storage_file(url)
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
            problem = Problem(
                **{key: attrs[key] for key in ("N", "K", "M", "block_n", "block_k", "input_type", "out_dtype")}
            )
            device, timing = str(attrs["device"]), str(attrs["timing"])
        except (KeyError, ValueError):
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = tuple(sorted(study.get_trials(deepcopy=False), key=lambda t: t.number))
        space, software = str(attrs.get("space", "base")), _software_key(frozen.study_name)
        records.append(StudyRecord(study, problem, device, timing, space, software, trials))
    if not records:
        raise ValueError("the storage holds no tuner studies (none with the user attributes N, K, M, device).")
    return sorted(records, key=lambda r: (*r.shape().values(), r.problem.M))


def _software_key(name: str) -> str:
    """The last part of a study's name: the hash of the software behind its timings (tuner.study.study_name)."""
    key = name.rsplit("_", 1)[-1]
    return key if re.fullmatch(r"[0-9a-f]{8}", key) else ""


def superseded(storage: StorageLike) -> set[str]:
    """The studies whose shape (in its timing and space) has studies of newer software too: their names.

    After an upgrade (or, in replay, with another landscape) the same command tunes anew beside the
    old studies. The newest software of a shape is the one whose latest trial started last; the
    report shows its studies and lists the others apart.
    """
    groups: dict[tuple, dict[str, list[StudyRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in as_records(storage):
        groups[tuple(value for column, value in r.shape().items() if column != "software")][r.software].append(r)
    old = set()
    for by_software in groups.values():
        newest = max(by_software, key=lambda software: _last_start(by_software[software]))
        old |= {r.name for software, records in by_software.items() if software != newest for r in records}
    return old


def _last_start(records: Iterable[StudyRecord]) -> datetime:
    return max((t.datetime_start for r in records for t in r.trials if t.datetime_start), default=datetime.min)


def as_records(storage: StorageLike) -> list[StudyRecord]:
    """Accept what the data functions accept: a URL, a storage, or records loaded once already."""
    if isinstance(storage, (str, BaseStorage)):
        return load_studies(storage)
    return list(storage)


def _tflops(problem: Problem, us: float | None) -> float:
    return problem.flops / us / 1e6 if us else math.nan


def _latency(record: StudyRecord, config: Config) -> float:
    """The latency of config if the study measured it to completion, else NaN (a table's blank)."""
    us = latency_of(record.trials, config)
    return math.nan if us is None else us


def _status(trial: FrozenTrial) -> str:
    """What happened to a trial, in the vocabulary of STATUSES."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    status = trial.user_attrs.get(STATUS)
    if status is None:
        return "interrupted" if trial.state == TrialState.FAIL else trial.state.name.lower()
    return str(status)


def studies(storage: StorageLike) -> pd.DataFrame:
    """One row per study: its shape, M, how many trials it holds and what it ran on."""
    rows = []
    for r in as_records(storage):
        attrs = r.study.user_attrs
        rows.append(
            {
                **r.shape(),
                "M": r.problem.M,
                "study": r.name,
                "trials": len(r.trials),
                "timed": sum(1 for t in r.trials if is_timed(t)),
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

    The existing file is the one of config_files that serves the study's shape, else the fastest of
    the baseline files the run compared with (installed SGLang's or vLLM's, or --baseline DIR's).

    superseded marks the studies of a shape that newer software has studies for (see superseded).

    A baseline's latency is given only when the study measured exactly that config to completion;
    file_status says what became of the file's pick otherwise ('not measured', 'pruned', a failure).
    The config files that serve no shape in the storage are listed in the frame's attrs['unmatched_files'].
    """
    files = _config_files(config_files)
    used = set()
    rows = []
    records = as_records(storage)
    old = superseded(records)
    for r in records:
        p = r.problem
        row: dict[str, object] = {
            **r.shape(),
            "M": p.M,
            "study": r.name,
            "trials": len(r.trials),
            "timed": sum(1 for t in r.trials if is_timed(t)),
        }
        found = best(r.trials)
        best_us = found[1] if found else math.nan
        default = default_config(p.block_n, p.block_k)
        default_us = _latency(r, default)
        row.update(
            best_config=found[0].short() if found else "",
            best_us=best_us,
            best_tflops=_tflops(p, best_us),
            best_roofline_pct=roofline_attrs(p, best_us, r.device).get("roofline_pct", math.nan) if found else math.nan,
            default_config=default.short(),
            default_us=default_us,
            default_tflops=_tflops(p, default_us),
            speedup=default_us / best_us,
        )
        file_key = (r.device, p.input_type, p.N, p.K, p.block_n, p.block_k)
        row.update(file="", file_config="", file_status="", file_us=math.nan, file_tflops=math.nan)
        name, pick = None, None
        if file_key in files:
            used.add(file_key)
            path, entries = files[file_key]
            name, pick = path.name, nearest_entry(entries, p.M)
        elif baselines := r.study.user_attrs.get(BASELINES):  # the run's own: the fastest, unmeasured last
            picks = {file: Config.from_sglang(entry) for file, entry in baselines.items()}
            name = min(picks, key=lambda file: (math.isnan(_latency(r, picks[file])), _latency(r, picks[file])))
            pick = picks[name]
        if pick is not None:
            file_us = _latency(r, pick)
            tried = [
                _status(t) for t in r.trials if config_of(t) == pick and _status(t) not in ("repeat", "over_budget")
            ]
            status = "ok" if not math.isnan(file_us) else tried[-1] if tried else "not measured"
            row.update(
                file=name,
                file_config=pick.short(),
                file_status=status,
                file_us=file_us,
                file_tflops=_tflops(p, file_us),
            )
        row["file_speedup"] = row["file_us"] / best_us
        attrs = confirmation_of(r.study.user_attrs) or {}
        confirmed = Config.from_sglang(attrs[CONFIRMED]) if CONFIRMED in attrs else None
        row.update(
            exported_config=confirmed.short() if confirmed else row["best_config"],
            confirmed_us=attrs.get(CONFIRMED_US, math.nan),
            confirm_default_us=attrs.get(CONFIRM_DEFAULT_US) or math.nan,
            confirm_reason=attrs.get(CONFIRM_REASON, "not confirmed"),
            superseded=r.name in old,
        )
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
    for r in as_records(storage):
        best_us = math.nan
        timed = [t for t in r.trials if is_timed(t)]
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
                    "us": t.user_attrs.get(US, math.nan),
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
    for r in as_records(storage):
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
    for r in as_records(storage):
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
    for r in as_records(storage):
        for t in r.trials:
            status = _status(t)
            if status in (*FAILURES, *COMPILE_FAILURES, "interrupted"):
                config = config_of(t)
                rows.append(
                    {
                        **r.shape(),
                        "M": r.problem.M,
                        "study": r.name,
                        "trial": t.number,
                        "status": status,
                        "config": config.short() if config else "",
                        "reason": t.user_attrs.get(REASON, ""),
                    }
                )
    return pd.DataFrame(rows, columns=[*SHAPE_COLUMNS, "M", "study", "trial", "status", "config", "reason"])


COVERAGE_COLUMNS = [
    *SHAPE_COLUMNS,
    "M",
    "interval",
    "before_config",
    "before_ratio",
    "after_config",
    "after_ratio",
    "best_config",
    "best_us",
    "served_before",
    "served",
    "timed",
    "key_added",
]


def coverages(storage: StorageLike) -> list[tuple[dict[str, object], ShapeCoverage]]:
    """Each shape's coverage check (tuner.study's ShapeCoverage), with the shape's SHAPE_COLUMNS.

    A shape's intervals run between the batch sizes its studies tuned; shapes never checked are left out.
    """
    groups: dict[tuple, list[StudyRecord]] = defaultdict(list)
    for r in as_records(storage):
        groups[tuple(r.shape().values())].append(r)
    found = []
    for key, records in groups.items():
        attrs = {r.problem.M: r.study.user_attrs for r in records}
        coverage = coverage_of([r.problem for r in records], attrs, replay=records[0].timing == "replay")
        if coverage is not None:
            found.append((dict(zip(SHAPE_COLUMNS, key)), coverage))
    return found


def coverage_table(storage: StorageLike) -> pd.DataFrame:
    """One row per probe M of every checked shape (COVERAGE_COLUMNS): the loader's pick before and after the
    check, as a ratio to the best config timed there, and whether the check added a key at that M.

    A ratio is inf where the pick fails at that M; an interval with one tuned config is not timed
    (timed False, best_us NaN, ratios 1).
    """
    rows = []
    for shape, coverage in coverages(storage):
        added = coverage.added
        for interval in coverage.intervals:
            for p in interval.probes:
                rows.append(
                    {
                        **shape,
                        "M": p.M,
                        "interval": f"{interval.low}-{interval.high}",
                        "before_config": p.before,
                        "before_ratio": p.before_ratio,
                        "after_config": p.after,
                        "after_ratio": p.after_ratio,
                        "best_config": p.best,
                        "best_us": math.nan if p.best_us is None else p.best_us,
                        "served_before": p.served_before,
                        "served": p.served,
                        "timed": p.timed,
                        "key_added": p.M in added,
                    }
                )
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
