"""What every command shares: flags spelled out in full, and the name each is run by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kernels.bench
from tuner.cli import compare, evaluate, report, run, sweep

ROOT = Path(__file__).resolve().parents[2]


# Each command with a flag that is the prefix of exactly one of its own (what argparse would take for it),
# and the rest of a command line it accepts.
@pytest.mark.parametrize(
    ("main", "argv", "abbreviated"),
    [
        (run.main, ["--N", "256", "--K", "512", "--dry-run"], ["--n"]),  # --no-prior
        (report.main, ["--storage", "sqlite:///x.db", "--out", "r.html"], ["--tit", "x"]),  # --title
        (sweep.main, ["--N", "256", "--K", "512", "--out", "l.csv"], ["--batch-size", "1"]),  # --batch-sizes
        (evaluate.main, ["l.csv"], ["--budget", "1"]),  # --budgets
        (compare.main, ["--N", "256", "--K", "512", "--out", "c.csv"], ["--batch-size", "1"]),  # --batch-sizes
    ],
    ids=["run", "report", "sweep", "evaluate", "compare"],
)
def test_a_flag_is_never_taken_from_its_prefix(tmp_path, monkeypatch, capsys, main, argv, abbreviated):
    monkeypatch.chdir(tmp_path)
    try:
        status = main([*argv, *abbreviated])
    except SystemExit as exit_:  # argparse's own usage error
        status = exit_.code
    assert status == 2
    assert f"unrecognized arguments: {' '.join(abbreviated)}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was run


def test_kernels_bench_spells_its_flags_out_and_names_itself_as_it_is_run():
    with pytest.raises(SystemExit) as refused:
        kernels.bench.build_parser().parse_args(["--skip"])  # --skip-check
    assert refused.value.code == 2
    done = subprocess.run([sys.executable, "-m", "kernels.bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m kernels.bench ")
