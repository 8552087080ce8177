"""What every command shares: flags spelled out in full, the name each is run by, this project's own `kernels`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kernels.bench
import w8a8_block_tuner
from tests.tuner.synthetic import write_landscape
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


def _shadowing(tmp_path: Path, *names: str) -> Path:
    """A folder of other projects' packages of these names, as pip would install Hugging Face's `kernels`."""
    folder = tmp_path / "other"
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f'"""Another project\'s {name}: no relation to the tuner\'s."""\n')
    return folder


@pytest.mark.parametrize(
    "argv",
    [
        ["tuner.run", "--N", "576", "--K", "7168", "--dry-run"],
        ["tuner.report", "--storage", "sqlite:///s.db", "--out", "r.html"],
    ],
    ids=["run", "report"],
)
def test_another_kernels_package_ahead_of_ours_is_named_in_one_line(tmp_path, argv):
    other = _shadowing(tmp_path, "kernels")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: `import kernels` finds {other / 'kernels'}, not this tuner's {ROOT / 'kernels'}: another package "
        "named kernels (e.g. Hugging Face's) is installed in this Python; run the tuner as `w8a8-block-tuner run ...` "
        "(the same commands under a name of their own, importing this project's kernels first), or uninstall the "
        "other package, or install the tuner into a Python of its own.\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # nothing run


def test_the_command_of_its_own_name_runs_this_project_whatever_else_is_installed(tmp_path):
    other = _shadowing(tmp_path, "kernels", "tuner")  # both names taken, ahead of this project on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other), str(ROOT)]), "TRITON_INTERPRET": "1"}
    landscape = write_landscape(tmp_path / "l.csv", [(256, 512)], [1])
    argv = [sys.executable, "-m", "w8a8_block_tuner", "run", "--N", "256", "--K", "512", "--batch-size", "1",
            "--trials", "2", "--replay", str(landscape), "--storage", f"sqlite:///{tmp_path}/s.db", "--save-path",
            str(tmp_path / "cfg"), "--no-prior"]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "cfg").glob("*.json"))) == 1
    usage = subprocess.run(argv[:3], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert (usage.returncode, usage.stderr) == (2, f"{w8a8_block_tuner.USAGE}\n")
