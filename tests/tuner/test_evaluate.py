"""The replay benchmark's command line: which points it runs, what they reach, its summary, and its bad inputs."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from tests.tuner.stoppable import ctrl_c_as_in_a_terminal
from tests.tuner.synthetic import (
    HOPPER_GRID,
    synthetic_hopper_us,
    synthetic_rows,
    synthetic_us,
    write_dense_landscape,
    write_hopper_landscape,
    write_landscape,
)
from tuner.benchmarkers import HEADER
from tuner.cli.evaluate import Outcome, main, summarize
from tuner.space import Problem, search_space

SHAPES = [(512, 1024), (1024, 512)]
BATCH_SIZES = [1, 16, 64]


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    return write_landscape(tmp_path_factory.mktemp("land") / "l.csv", SHAPES, BATCH_SIZES)


def _recorded(problem: Problem) -> list[float]:
    """Every latency the synthetic landscape records for problem, fastest first."""
    return sorted(us for us in (synthetic_us(problem, c) for c in search_space(128)) if us is not None)


def test_chosen_batch_sizes_are_run_and_the_tuner_reaches_the_optimum(landscape, tmp_path, capsys):
    details = tmp_path / "details.csv"
    argv = [str(landscape), "--budgets", "4", "12", "--seeds", "0", "--strategies", "local", "random",
            "--batch-sizes", "1", "64", "--processes", "1", "--details", str(details)]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader(details.open()))
    points = {(int(r["N"]), int(r["K"]), int(r["M"])) for r in rows}
    assert points == {(N, K, M) for N, K in SHAPES for M in (1, 64)}
    assert len(rows) == len(points) * 2 * 2  # x strategies x budgets, one seed
    for r in rows:
        recorded = _recorded(Problem(N=int(r["N"]), K=int(r["K"]), M=int(r["M"])))
        found = float(r["ratio"]) * recorded[0]  # the ratio is a recorded latency over the optimum
        assert min(abs(found - us) for us in recorded) <= 1e-4 * found, r
        if r["strategy"] == "local":  # the prior from the other shape and local search find the optimum
            assert float(r["ratio"]) == 1.0, r

    # Each line of the table is what its rows of the details give (they hold ratios to 5 decimals).
    ratios = defaultdict(list)
    for r in rows:
        ratios[r["strategy"], r["budget"]].append(float(r["ratio"]))
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["strategy", "budget", "points", "<=1%", "<=2%", "<=5%", "geomean", "worst"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["local", "4", "4"], ["local", "12", "4"], ["random", "4", "4"], ["random", "12", "4"]
    ]  # fmt: skip
    for line in table[1:]:
        strategy, budget, n, *shares, geomean, worst = line.split()
        group = ratios[strategy, budget]
        assert int(n) == len(group)
        assert shares == [f"{sum(r <= 1 + t for r in group) / len(group):.0%}" for t in (0.01, 0.02, 0.05)]
        assert float(geomean) == pytest.approx(math.exp(sum(map(math.log, group)) / len(group)), abs=1e-4)
        assert float(worst) == pytest.approx(max(group), abs=1e-3)


def test_the_summary_counts_shares_within_1_2_5_percent_and_their_geomean_and_worst():
    ratios = [1.0, 1.015, 1.04, 1.2]  # within 1%, 2%, 5%, and none of them
    outcomes = [Outcome("tpe", 16, 0, "l.csv", 512, 1024, M, r) for M, r in zip((1, 16, 64, 256), ratios)]
    outcomes.append(Outcome("local", 16, 0, "l.csv", 512, 1024, 1, 1.0))
    header, local, tpe = summarize(outcomes).splitlines()
    assert local.split() == ["local", "16", "1", "100%", "100%", "100%", "1.0000", "1.000"]
    assert tpe.split() == ["tpe", "16", "4", "25%", "50%", "75%", f"{math.prod(ratios) ** 0.25:.4f}", "1.200"]


def test_says_what_it_evaluates_then_shows_progress_over_runs(landscape, capsys):
    argv = [str(landscape), "--budgets", "2", "3", "--seeds", "0", "--strategies", "random", "--batch-sizes", "1",
            "--processes", "1"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    plan, *progress = err.splitlines()
    assert plan == (
        f"evaluating {landscape}: 2 points of 2 shapes at M = 1; base space, prior from the other shapes; "
        "strategies random, budgets 2 3, seeds 0: 4 runs, 4 studies"
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


@pytest.mark.parametrize("space", ["hopper", "base"])
def test_a_space_is_searched_and_judged_over_the_configs_a_grid_recorded(tmp_path, capsys, space):
    # The Hopper check's grid: 216 of the 15,360 Hopper configs. Each point's optimum is the best
    # recorded config of the space searched; the base space's is among the grid's 18 base tiles.
    landscape = write_hopper_landscape(tmp_path / "hopper.csv", [(576, 7168)], [1, 64])
    details = tmp_path / "details.csv"
    argv = [str(landscape), "--space", space, "--no-prior", "--budgets", "32", "--seeds", "0", "--strategies",
            "local", "--processes", "1", "--details", str(details)]  # fmt: skip
    assert main(argv) == 0
    assert f"{space} space, no prior" in capsys.readouterr().err
    rows = list(csv.DictReader(details.open()))
    assert {int(r["M"]) for r in rows} == {1, 64}
    for r in rows:
        problem = Problem(N=576, K=7168, M=int(r["M"]))
        grid = [c for c in HOPPER_GRID if space == "hopper" or not c.hopper]
        found = float(r["ratio"]) * min(synthetic_hopper_us(problem, c) for c in grid)
        assert min(abs(found - synthetic_hopper_us(problem, c)) for c in grid) <= 1e-4 * found, r
        # Near the space's own optimum (the base space's is 2x the Hopper one's at M = 1 here).
        assert 1.0 <= float(r["ratio"]) <= 1.05, r


def test_ctrl_c_is_one_line_and_exit_130(landscape, tmp_path):
    # Ctrl-C reaches every process of the terminal: the pool's processes printed a traceback each.
    argv = [sys.executable, "-m", "tuner.evaluate", str(landscape), "--budgets", "64", "--seeds", *map(str, range(50)),
            "--processes", "2", "--details", str(tmp_path / "details.csv")]  # fmt: skip
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal)  # fmt: skip
    try:
        assert run.stderr.readline().startswith("evaluating ")
        time.sleep(4)  # the pool's processes are up and evaluating
        os.killpg(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted: nothing was written."
    assert out == "" and not (tmp_path / "details.csv").exists()


def test_one_shape_has_no_prior_and_is_one_shape(tmp_path, capsys):
    one = write_landscape(tmp_path / "one.csv", SHAPES[:1], [1])
    argv = [str(one), "--budgets", "2", "--seeds", "0", "--strategies", "random", "--processes", "1"]
    assert main(argv) == 0
    plan = capsys.readouterr().err.splitlines()[0]
    assert plan == (
        f"evaluating {one}: 1 point of 1 shape at M = 1; base space, no prior (one shape: no other shape to learn "
        "from); strategies random, budgets 2, seeds 0: 1 run, 1 study"
    )


def test_help_gives_every_option_a_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for text in [
        "--budgets T [T ...] configs timed per study, one evaluation each (default: 16 32 64)",
        "--seeds S [S ...] sampler seeds, one run each per budget and strategy (default: 0 1 2)",
        "the samplers compared (default: all, local tpe gp random)",
        "--processes PROCESSES runs in parallel, one process each (default: 2)",
    ]:
        assert text in shown


def test_the_prior_may_come_from_other_files_and_another_device_of_the_same_architecture(tmp_path, capsys):
    # An H200 landscape with an H100 one as the prior: what a run on an H200 without landscapes of its own gets.
    def write(path, device, shape):
        with open(path, "w") as f:
            f.write(",".join(HEADER) + "\n")
            for row in synthetic_rows([shape], [1, 64]):
                f.write(",".join(replace(row, device=device).as_csv()) + "\n")
        return str(path)

    h200 = write(tmp_path / "h200.csv", "NVIDIA_H200", (512, 1024))
    h100 = write(tmp_path / "h100.csv", "NVIDIA_H100_80GB_HBM3", (1024, 512))
    found = {}
    for name, extra in (("none", ["--no-prior"]), ("h100", ["--prior", h100])):
        details = tmp_path / f"{name}.csv"
        argv = [h200, "--budgets", "2", "--seeds", "0", "--strategies", "local", "--processes", "1",
                "--details", str(details), *extra]  # fmt: skip
        assert main(argv) == 0
        found[name] = [float(r["ratio"]) for r in csv.DictReader(details.open())]
    assert f"base space, prior from {h100};" in capsys.readouterr().err
    # Two configs: the default and its first neighbour, or the default and the H100's best of the other shape.
    assert min(found["none"]) > 1.1 and found["h100"] == [1.0, 1.0]


def test_a_dense_landscape_is_evaluated_at_the_batch_sizes_asked(tmp_path, capsys):
    # M between the keys are what a coverage check probes; a search evaluated on the keys alone reads
    # those rows of the same file.
    dense = write_dense_landscape(tmp_path / "dense.csv", [(512, 1024)], tuple(range(1, 17)))
    details = tmp_path / "details.csv"
    argv = [str(dense), "--budgets", "4", "--seeds", "0", "--strategies", "local", "--batch-sizes", "1", "16",
            "--processes", "1", "--details", str(details)]  # fmt: skip
    assert main(argv) == 0
    assert sorted(int(r["M"]) for r in csv.DictReader(details.open())) == [1, 16]
