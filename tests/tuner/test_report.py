"""Analysis tables and the report page, read back from a storage the real CLI filled in replay; bad inputs."""

from __future__ import annotations

import hashlib
import html
import math
import shutil
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tests.tuner.synthetic import (
    DEVICE,
    HOPPER_GRID,
    STORED_BATCH_SIZES,
    STORED_FILE_NAME,
    STORED_SHAPE,
    STORED_TRIALS,
    planted_failure,
    replay_storage,
    shared_replay_storage,
    synthetic_hopper_us,
    synthetic_rows,
    write_dense_landscape,
)
from tuner.analysis import (
    COVERAGE_COLUMNS,
    SHAPE_COLUMNS,
    SUMMARY_COLUMNS,
    coverage_figure,
    coverage_table,
    coverages,
    failed_trials,
    failures,
    history,
    history_figure,
    importances,
    latency_figure,
    load_studies,
    render_html,
    shape_label,
    studies,
    summary_table,
)
from tuner.benchmarkers import FAILURES, HEADER, HOPPER_HEADER, Row
from tuner.cli.report import main
from tuner.cli.run import main as run_main
from tuner.dispatch import HOPPER_NOTE, deepgemm_note
from tuner.export import config_file_name, nearest_entry, read_config_file, write_configs
from tuner.space import TIMED, Problem, config_of, default_config, search_space

N, K = STORED_SHAPE
H100 = "NVIDIA_H100_80GB_HBM3"
BATCH_SIZES = STORED_BATCH_SIZES
TRIALS = STORED_TRIALS
FILE_NAME = STORED_FILE_NAME


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[str, Path]:
    return shared_replay_storage(tmp_path_factory)


@pytest.fixture(scope="module")
def trials_by_m(tuned) -> dict[int, list[optuna.trial.FrozenTrial]]:
    """Each study's trials read straight from Optuna: what the report must agree with."""
    storage = optuna.storages.RDBStorage(tuned[0])
    return {
        s.user_attrs["M"]: optuna.load_study(study_name=s.study_name, storage=storage).trials
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }


def test_summary_has_one_row_per_batch_size_with_the_best_complete_trial(tuned, trials_by_m):
    table = summary_table(tuned[0])
    assert list(table.columns) == SUMMARY_COLUMNS
    assert list(table.M) == list(BATCH_SIZES)
    default = default_config(128, 128)
    for row in table.itertuples():
        complete = [t for t in trials_by_m[row.M] if t.state == TrialState.COMPLETE]
        best = min(complete, key=lambda t: t.value)
        assert row.best_us == best.value and row.best_config == config_of(best).short()
        assert row.best_tflops == pytest.approx(2 * row.M * N * K / best.value / 1e6)
        assert row.timed == TRIALS and row.trials == len(trials_by_m[row.M])
        # The default config is seeded first and never pruned, so every study has its latency.
        (default_trial,) = [t for t in complete if config_of(t) == default]
        assert row.default_us == default_trial.value
        assert row.speedup == pytest.approx(default_trial.value / best.value) and row.speedup >= 1
        assert row.file == "" and math.isnan(row.file_us)


def test_the_exported_file_compared_back_is_the_tuned_best(tuned):
    table = summary_table(tuned[0], [tuned[1]])
    assert (table.file == FILE_NAME).all() and (table.file_status == "ok").all()
    assert list(table.file_us) == list(table.best_us)
    assert list(table.file_config) == list(table.best_config)
    assert (table.file_speedup == 1.0).all() and table.attrs["unmatched_files"] == []


def test_a_file_pick_is_the_nearest_entry_and_shown_only_when_measured(tuned, trials_by_m, tmp_path):
    best_at_1 = config_of(min((t for t in trials_by_m[1] if t.state == TrialState.COMPLETE), key=lambda t: t.value))
    tried_at_256 = {config_of(t) for t in trials_by_m[256]}
    never_tried = next(c for c in search_space(128) if c not in tried_at_256 and planted_failure(c) is None)
    path = tmp_path / FILE_NAME
    write_configs(path, {1: best_at_1, 200: never_tried})
    table = summary_table(tuned[0], [path]).set_index("M")
    assert table.file_config[1] == table.file_config[16] == best_at_1.short()  # 16 is nearer to 1 than to 200
    assert table.file_us[1] == table.best_us[1] and table.file_status[1] == "ok"
    assert table.file_config[256] == never_tried.short() and table.file_status[256] == "not measured"
    assert math.isnan(table.file_us[256]) and math.isnan(table.file_speedup[256])


def test_history_is_the_non_increasing_best_so_far_over_timed_trials(tuned, trials_by_m):
    steps = history(tuned[0])
    table = summary_table(tuned[0]).set_index("M")
    for M, rows in steps.groupby("M"):
        assert list(rows["index"]) == list(range(1, TRIALS + 1))
        timed = [t for t in trials_by_m[M] if t.user_attrs.get(TIMED)]
        assert list(rows.trial) == [t.number for t in timed]
        best = rows.best_us.dropna()
        assert (best.diff().dropna() <= 0).all()
        assert best.iloc[-1] == table.best_us[M]
        values = [t.value if t.state == TrialState.COMPLETE else math.inf for t in timed]
        assert list(rows.best_us.fillna(math.inf)) == list(pd.Series(values).cummin())


def test_importances_sum_to_one_where_there_are_enough_complete_trials(tuned):
    weights = importances(tuned[0])
    skipped = weights.attrs["skipped"]
    assert len(set(weights.study)) + len(skipped) == len(BATCH_SIZES)
    assert not weights.empty
    for _, rows in weights.groupby("study"):
        assert rows.importance.sum() == pytest.approx(1.0)
        assert (rows.importance >= 0).all()
        assert set(rows.param) <= {"BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps",
                                   "num_stages"}  # fmt: skip


def test_failure_counts_match_trial_states(tuned, trials_by_m):
    counts = failures(tuned[0]).set_index("M")
    for M, trials in trials_by_m.items():
        states = [t.state for t in trials]
        row = counts.loc[M]
        assert row.trials == len(trials)
        assert row.ok == states.count(TrialState.COMPLETE)
        assert row.pruned == states.count(TrialState.PRUNED)
        failed = sum(row[s] for s in (*FAILURES, "repeat", "over_budget", "not_searched", "interrupted"))
        assert failed == states.count(TrialState.FAIL)
    assert counts[["compile_error", "timeout"]].to_numpy().sum() > 0, "the planted failures were never met"
    broken = failed_trials(tuned[0])
    assert len(broken) == counts[list(FAILURES)].to_numpy().sum()
    for row in broken.itertuples():
        config = next(config_of(t) for t in trials_by_m[row.M] if t.number == row.trial)
        assert row.config == config.short() and row.status == planted_failure(config)
        assert row.reason == "recorded in the landscape"


def test_main_writes_one_offline_page_and_the_csv(tuned, tmp_path, capsys):
    out, csv = tmp_path / "deep" / "report.html", tmp_path / "table.csv"
    code = main(["--storage", tuned[0], "--out", str(out), "--csv", str(csv), "--config-file", str(tuned[1])])
    assert code == 0, capsys.readouterr().err
    page = out.read_text()
    assert "plotly" in page and '<script src="http' not in page  # plotly.js inlined, no CDN
    assert page.count("<table") == 1 + 1 + 1  # the shape's table, the failed configs, all studies
    table = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert list(table.columns) == SUMMARY_COLUMNS and list(table.M) == list(BATCH_SIZES)
    expected = summary_table(tuned[0], [tuned[1]])
    assert list(table.best_us) == list(expected.best_us)
    for row in expected.itertuples():
        assert f"<td>{row.best_config}</td>" in page and f"<td>{row.best_us:.2f}</td>" in page


def test_the_page_notes_deepgemm_where_sglang_sends_the_shape_there(tmp_path, capsys):
    # One storage, one shape tuned in replay for two output dtypes on a landscape recorded on an H100.
    url, h100 = f"sqlite:///{tmp_path}/h100.db", "NVIDIA_H100_80GB_HBM3"
    for out_dtype in ("bfloat16", "float16"):
        landscape = tmp_path / f"{out_dtype}.csv"
        with open(landscape, "w") as f:
            f.write(",".join(HEADER) + "\n")
            for row in synthetic_rows([(N, K)], [16], out_dtype=out_dtype):
                f.write(",".join(Row(h100, row.problem, row.config, row.status, row.us).as_csv()) + "\n")
        argv = ["--N", str(N), "--K", str(K), "--batch-size", "16", "--out-dtype", out_dtype, "--trials", "4",
                "--replay", str(landscape), "--storage", url, "--save-path", str(tmp_path), "--no-prior"]  # fmt: skip
        assert run_main(argv) == 0, capsys.readouterr().err
    page, table = render_html(url), summary_table(url)
    sections = {part.split("</h2>")[0]: part for part in page.split("<h2>")[1:]}  # heading -> its section
    note = f"<p class=note>{html.escape(deepgemm_note(h100, 'bfloat16'))}</p>"
    for out_dtype, noted in (("bfloat16", True), ("float16", False)):
        (shape,) = table[table.out_dtype == out_dtype][SHAPE_COLUMNS].to_dict("records")
        assert shape_label(shape).startswith(f"fp8 N={N} K={K} block [128, 128] -> {out_dtype} on {h100}, base space")
        assert (note in sections[html.escape(shape_label(shape))]) is noted


def test_a_file_for_another_shape_is_a_warning_not_an_error(tuned, tmp_path, capsys):
    other = tmp_path / config_file_name(N, 2 * K, DEVICE, "fp8", 128, 128)
    write_configs(other, {1: default_config(128, 128)})
    assert main(["--storage", tuned[0], "--out", str(tmp_path / "r.html"), "--config-file", str(other)]) == 0
    assert capsys.readouterr().err.startswith(f"warning: --config-file {str(other)!r} serves no shape")


def test_studies_without_the_tuners_attributes_are_left_out(tuned, tmp_path):
    url = f"sqlite:///{tmp_path}/mixed.db"
    optuna.create_study(study_name="someone_else", storage=url).optimize(lambda t: t.suggest_float("x", 0, 1), 2)
    with pytest.raises(ValueError, match="no tuner studies"):
        load_studies(url)


def _bad_inputs(tmp_path: Path, tuned: tuple[str, Path]) -> dict[str, list[str]]:
    (tmp_path / "not_a_db.db").write_text("hello\n")
    sqlite3.connect(tmp_path / "empty.db").close()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / FILE_NAME).write_text(tuned[1].read_text())
    (tmp_path / "renamed.json").write_text(tuned[1].read_text())
    out = ["--out", str(tmp_path / "r.html")]
    return {
        "missing sqlite file": ["--storage", f"sqlite:///{tmp_path}/nothing.db", *out],
        "unknown driver": ["--storage", "nosuchdb://host/x", *out],
        "in-memory sqlite": ["--storage", "sqlite:///:memory:", *out],
        "not a database": ["--storage", f"sqlite:///{tmp_path}/not_a_db.db", *out],
        "no studies": ["--storage", f"sqlite:///{tmp_path}/empty.db", *out],
        "out folder not writable": ["--storage", tuned[0], "--out", str(tmp_path / "a_file" / "r.html")],
        "out is a folder": ["--storage", tuned[0], "--out", str(tmp_path)],
        "out where no file can be made": ["--storage", tuned[0], "--out", "/proc/r.html"],  # even by root
        "csv folder not writable": ["--storage", tuned[0], *out, "--csv", str(tmp_path / "a_file" / "t.csv")],
        "two files for one shape": [
            "--storage",
            tuned[0],
            *out,
            "--config-file",
            str(tuned[1]),
            str(tmp_path / "other" / FILE_NAME),
        ],  # fmt: skip
        "file name says no shape": ["--storage", tuned[0], *out, "--config-file", str(tmp_path / "renamed.json")],
        "no --out": ["--storage", tuned[0]],
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing sqlite file",
        "unknown driver",
        "in-memory sqlite",
        "not a database",
        "no studies",
        "out folder not writable",
        "out is a folder",
        pytest.param(
            "out where no file can be made",
            marks=pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc"),
        ),
        "csv folder not writable",
        "two files for one shape",
        "file name says no shape",
        "no --out",
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, tuned, tmp_path, capsys):
    argv = _bad_inputs(tmp_path, tuned)[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert not (tmp_path / "r.html").exists()
    assert not (tmp_path / "nothing.db").exists()  # a typo in the URL never creates a storage


@pytest.mark.parametrize("content", ["a table of its own", "an empty database", "text"])
def test_a_file_that_holds_no_storage_is_refused_and_left_as_it_is(tmp_path, capsys, content):
    # Opened with Optuna, the file would get Optuna's tables (and a write-ahead log) before the refusal.
    path = tmp_path / "notes.sqlite3"
    if content == "text":
        path.write_text("not a database\n")
    else:
        with closing(sqlite3.connect(path)) as connection:
            if content == "a table of its own":
                connection.execute("CREATE TABLE notes (line TEXT)")
                connection.execute("INSERT INTO notes VALUES ('keep me')")
            connection.commit()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["--storage", f"sqlite:///{path}", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --storage sqlite:///{path}: {path} ") and err.count("\n") == 1, err
    assert ("is not a SQLite database" if content == "text" else "holds no Optuna storage") in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite3"]  # no journal or log beside it


def test_a_missing_storage_points_to_a_replays_where_one_exists(tuned, tmp_path, monkeypatch, capsys):
    # README's report command names the live runs' storage; a machine without a GPU has only a replay's.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies" / "replay").mkdir(parents=True)
    shutil.copy(tuned[0].removeprefix("sqlite:///"), tmp_path / "studies" / "replay" / "tuner.sqlite3")
    assert main(["--storage", "sqlite:///studies/tuner.sqlite3", "--out", "studies/report.html"]) == 2
    assert capsys.readouterr().err == (
        f"error: --storage sqlite:///studies/tuner.sqlite3: no SQLite file at {tmp_path}/studies/tuner.sqlite3; a "
        "replay's studies are in sqlite:///studies/replay/tuner.sqlite3.\n"
    )
    assert main(["--storage", "sqlite:///studies/replay/tuner.sqlite3", "--out", "studies/report.html"]) == 0


def test_a_claim_given_back_is_not_counted_as_timed(tmp_path):
    # A trial whose process died mid-measure (FAIL, timed, no status) measured nothing: the tables
    # count the budget as the tuner does, so a study shows its --trials configs, not one more.
    url, _ = replay_storage(tmp_path, batch_sizes=(16,), trials=4)
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    measured = study.trials[0]
    dead = optuna.trial.create_trial(
        state=TrialState.FAIL, params=measured.params, distributions=measured.distributions, user_attrs={TIMED: True}
    )
    study.add_trial(dead)
    assert list(studies(url).timed) == [4]
    assert list(history(url)["index"]) == [1, 2, 3, 4]


def _h100_landscape(path: Path, *, slower_us: float = 0.0, hopper: bool = False) -> Path:
    """A synthetic landscape of (N, K) at M = 16 recorded on an H100; slower_us changes one row (other 'software')."""
    problem = Problem(N=N, K=K, M=16)
    if hopper:
        rows = [Row(H100, problem, c, "ok", synthetic_hopper_us(problem, c)) for c in HOPPER_GRID]
    else:
        rows = [replace(row, device=H100) for row in synthetic_rows([(N, K)], [16])]
    rows[0] = replace(rows[0], us=rows[0].us + slower_us)
    with open(path, "w") as f:
        f.write(",".join(HOPPER_HEADER if hopper else HEADER) + "\n")
        f.writelines(",".join(row.as_csv(hopper=hopper)) + "\n" for row in rows)
    return path


def test_studies_of_other_software_or_another_space_are_never_mixed_under_one_heading(tmp_path, capsys):
    # The state of a shared storage after an upgrade: the same shape tuned with old and new software
    # (in replay: two landscapes), and once more in the Hopper space.
    url = f"sqlite:///{tmp_path}/s.db"
    runs = [("old", _h100_landscape(tmp_path / "old.csv"), "base"),
            ("new", _h100_landscape(tmp_path / "new.csv", slower_us=1.0), "base"),
            ("hopper", _h100_landscape(tmp_path / "hopper.csv", hopper=True), "hopper")]  # fmt: skip
    names = {}
    for label, landscape, space in runs:
        argv = ["--N", str(N), "--K", str(K), "--batch-size", "16", "--trials", "4", "--replay", str(landscape),
                "--storage", url, "--save-path", str(tmp_path / label), "--no-prior", "--space", space]  # fmt: skip
        assert run_main(argv) == 0, capsys.readouterr().err
        names[label] = {name for name in studies(url).study} - set().union(*names.values())
    table = summary_table(url).set_index("study")
    assert len(set(table.software)) == 3 and set(table.space) == {"base", "hopper"}
    assert {name: table.superseded[name] for label in names for name in names[label]} == {
        **dict.fromkeys(names["old"], True), **dict.fromkeys(names["new"], False),
        **dict.fromkeys(names["hopper"], False)}  # fmt: skip
    page = render_html(url)
    headings = [part.split("</h2>")[0] for part in page.split("<h2>")[1:]]
    shapes = [heading for heading in headings if heading.startswith("fp8 ")]
    assert len(shapes) == 2  # the newest base studies and the Hopper ones; the old ones only listed
    assert [table.software[name] in heading for heading in shapes for name in names["new"]].count(True) == 1
    assert "Superseded studies" in headings
    superseded_part = page.split("<h2>Superseded studies</h2>")[1].split("<h2>")[0]
    assert all(name in superseded_part for name in names["old"])
    assert "1 studies were made with older software (or, in replay, another landscape)" in page
    # Only the Hopper space's section says which SGLang kernel its entries need.
    sections = {heading: part for heading, part in (p.split("</h2>", 1) for p in page.split("<h2>")[1:])}
    said = [heading for heading in shapes if html.escape(f"SGLang's Hopper space: {HOPPER_NOTE}") in sections[heading]]
    assert said == [heading for heading in shapes if "hopper" in heading]


def test_latency_axes_label_decades_and_2_5_not_every_minor_tick_and_long_cells_wrap(tuned):
    table = summary_table(tuned[0])
    assert latency_figure(table).layout.yaxis.dtick == "D2"
    assert history_figure(history(tuned[0])).layout.yaxis.dtick == "D2"
    page = render_html(tuned[0])
    assert "nowrap" not in page.split("</style>")[0]  # long configs and reasons wrap instead of widening the page


def test_a_device_without_measured_ceilings_is_said_in_its_section(tuned):
    page = render_html(tuned[0])
    assert f"<p class=note>no measured ceilings for {DEVICE}</p>" in page  # its roofline share stays blank
    assert summary_table(tuned[0]).best_roofline_pct.isna().all()


def test_the_coverage_checks_table_and_figure_show_the_loaders_pick_against_the_best_timed(tmp_path):
    # Keys 16, 24 and 32 of a shape whose best tile height steps at M = 17: the check adds a key there.
    shape = (7168, 18432)
    landscape = write_dense_landscape(tmp_path / "dense.csv", [shape], tuple(range(16, 33)))
    url = f"sqlite:///{tmp_path}/s.db"
    assert run_main(["--N", str(shape[0]), "--K", str(shape[1]), "--batch-sizes", "16", "24", "32", "--replay",
                     str(landscape), "--trials", "8", "--storage", url, "--save-path", str(tmp_path / "cfg"),
                     "--no-prior", "--seed", "0"]) == 0  # fmt: skip
    entries = read_config_file(tmp_path / "cfg" / config_file_name(*shape, DEVICE, "fp8", 128, 128))
    table = coverage_table(url)
    assert list(table.columns) == COVERAGE_COLUMNS
    assert list(table.M) == [M for M in range(17, 32) if M != 24]
    assert set(table.interval) == {"16-24", "24-32"}
    assert (table.before_ratio > 1.02).any() and table.served.all() and (table.after_ratio <= 1.02).all()
    assert set(table.M[table.key_added]) == set(entries) - {16, 24, 32} != set()
    assert list(table.after_config) == [nearest_entry(entries, M).short() for M in table.M]  # as the loader picks
    ((shape_columns, coverage),) = coverages(url)
    assert (shape_columns["N"], shape_columns["timing"]) == (shape[0], "replay")
    figure = coverage_figure(table, coverage.threshold)
    assert [trace.name for trace in figure.data] == ["before the check", "after the check", "key added"]
    assert list(figure.data[1].x) == list(table.M) and list(figure.data[1].y) == list(table.after_ratio)
    page = render_html(url)
    assert html.escape(coverage.line()) in page and "the best config timed at each M" in page  # the line, the figure
