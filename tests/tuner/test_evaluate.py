"""The replay benchmark's command line: which points it runs, what it writes, and its bad inputs."""

from __future__ import annotations

import csv

import pytest

from tests.tuner.synthetic import write_landscape
from tuner.benchmarkers import ReplayBenchmarker
from tuner.cli.evaluate import main
from tuner.space import Problem, search_space

SHAPES = [(512, 1024), (1024, 512)]
BATCH_SIZES = [1, 16, 64]


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    return write_landscape(tmp_path_factory.mktemp("land") / "l.csv", SHAPES, BATCH_SIZES)


def test_chosen_batch_sizes_of_every_shape_are_run_and_their_ratios_recorded(landscape, tmp_path, capsys):
    details = tmp_path / "details.csv"
    argv = [str(landscape), "--budgets", "4", "12", "--seeds", "0", "--strategies", "local", "random",
            "--batch-sizes", "1", "64", "--processes", "1", "--details", str(details)]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader(details.open()))
    points = {(int(r["N"]), int(r["K"]), int(r["M"])) for r in rows}
    assert points == {(N, K, M) for N, K in SHAPES for M in (1, 64)}
    assert len(rows) == len(points) * 2 * 2  # x strategies x budgets, one seed
    replay = ReplayBenchmarker.from_file(landscape)
    for r in rows:
        problem = Problem(N=int(r["N"]), K=int(r["K"]), M=int(r["M"]))
        worst = max(us for us in (replay.latency(problem, c) for c in search_space(128)) if us is not None)
        assert 1.0 <= float(r["ratio"]) <= worst / replay.optimum(problem)[1] + 1e-9
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["strategy", "budget", "points", "<=1%", "<=2%", "<=5%", "geomean", "worst"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["local", "4", "4"], ["local", "12", "4"], ["random", "4", "4"], ["random", "12", "4"]
    ]  # fmt: skip


def test_says_what_it_evaluates_then_shows_progress_over_runs(landscape, capsys):
    argv = [str(landscape), "--budgets", "2", "3", "--seeds", "0", "--strategies", "random", "--batch-sizes", "1",
            "--processes", "1"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    plan, *progress = err.splitlines()
    assert plan == (
        f"evaluating {landscape}: 2 points of 2 shapes at M = 1; strategies random, budgets 2 3, seeds 0: "
        "4 runs, 4 studies"
    )
    assert "runs: 100%" in progress[-1] and "4/4" in progress[-1]  # tqdm's bar, on stderr
    assert out.splitlines()[0].split()[0] == "strategy"  # stdout holds the table alone


def test_a_batch_size_no_landscape_holds_is_a_usage_error(landscape, capsys):
    assert main([str(landscape), "--batch-sizes", "1", "256", "--processes", "1"]) == 2
    assert "[256] are in no landscape" in capsys.readouterr().err


def test_every_sampler_is_compared_by_default_each_with_the_warm_starts(landscape, tmp_path, capsys):
    details = tmp_path / "details.csv"
    argv = [str(landscape), "--budgets", "3", "--seeds", "0", "--batch-sizes", "16", "--processes", "1",
            "--details", str(details)]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["local", "tpe", "gp", "random"]
    # With as many configs as warm starts, every sampler times exactly the warm starts: the same
    # configs, so the same best (SGLang's default and the other shape's best configs come first).
    ratios = {(r["strategy"], r["N"]): r["ratio"] for r in csv.DictReader(details.open())}
    for N, _ in SHAPES:
        assert len({ratios[s, str(N)] for s in ("local", "tpe", "gp", "random")}) == 1
