"""How `python -m tuner.run` reports a failed run: one line for a stop the tuner means, a traceback for the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tuner.study
from tests.tuner.synthetic import synthetic_rows
from tuner.benchmarkers import HEADER, Row
from tuner.cli.run import main
from tuner.space import default_config

SHAPE = (256, 512)


def _landscape(path: Path, failing) -> Path:
    """The synthetic landscape of SHAPE at M=1 and 16, with failing(config) as the status where it gives one."""
    with open(path, "w") as f:
        f.write(",".join(HEADER) + "\n")
        for row in synthetic_rows([SHAPE], [1, 16]):
            if (status := failing(row.config)) is not None:
                row = Row(row.device, row.problem, row.config, status, None)
            f.write(",".join(row.as_csv()) + "\n")
    return path


def _argv(tmp_path: Path, landscape: Path, *extra: str) -> list[str]:
    return ["--N", str(SHAPE[0]), "--K", str(SHAPE[1]), "--batch-sizes", "1", "16", "--trials", "4",
            "--replay", str(landscape), "--storage", f"sqlite:///{tmp_path}/s.db", "--save-path", str(tmp_path / "cfg"),
            "--no-prior", "--seed", "0", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("failing", "line"),
    [
        (lambda config: "compile_error", "failed: TuningError: no config of the space ran for"),  # nothing ran
        (lambda config: "wrong_result" if config == default_config(128, 128) else None, "failed: WrongResult: "),
    ],
    ids=["no-config-ran", "wrong-result"],
)
def test_a_stop_the_tuner_means_is_one_line_and_exit_1(tmp_path, capsys, failing, line):
    landscape = _landscape(tmp_path / "l.csv", failing)
    assert main(_argv(tmp_path, landscape)) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(line)  # after the progress bar
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA error: an illegal memory access was encountered"), ValueError("a bug of ours")],
    ids=["cuda-error", "a-bug"],
)
def test_any_other_error_keeps_its_traceback(tmp_path, monkeypatch, error):
    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(tuner.study, "tune_units", fails)
    landscape = _landscape(tmp_path / "l.csv", lambda config: None)
    with pytest.raises(type(error), match=str(error)):  # out of main, so Python prints the traceback, exit 1
        main(_argv(tmp_path, landscape))


def test_a_worker_reports_a_stop_the_tuner_means_in_one_line(tmp_path):
    landscape = _landscape(tmp_path / "l.csv", lambda config: "compile_error")
    argv = [sys.executable, "-m", "tuner.run", *_argv(tmp_path, landscape, "--gpus", "0,1")]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed: TuningError: no config")]
    assert len(failed) == 2  # one per worker, one batch size each
