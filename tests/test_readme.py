"""README, the one page a new user reads: its commands agree with CI and it sends nobody to a package host."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tuner.synthetic import shared_replay_storage

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_line():
    (ci_line,) = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci_line in _bash_lines(README)


def test_the_cpu_wheel_comes_before_the_main_job_pulls_cuda():
    main_job = README.index("pip install -e . && python -m tuner.run")
    advice = README.index("PyTorch's CPU-only wheel")
    assert main_job < advice < README.index("The tests, on any machine")  # right under the main-job line
    said = " ".join(README[advice : advice + 900].split())
    # how to get the CPU wheel, said plainly: pip's option, and where the exact command (index included) is
    assert "PyTorch's CPU-only package index, given to it with `--index-url`" in said
    assert "install selector" in said and "Compute Platform: CPU) prints the exact command" in said
    assert "<" not in said  # no placeholder left for the reader to fill in


@pytest.mark.skipif(torch.cuda.is_available(), reason="what the main job says on a machine without a GPU")
def test_without_a_gpu_the_main_job_names_itself_in_a_float16_replay_that_runs(tmp_path):
    # float16 is what SGLang's Triton path serves; a bfloat16 replay would tune what it sends to DeepGEMM.
    (line,) = [line for line in _bash_lines(README) if line.startswith("pip install -e . && ")]
    argv = shlex.split(line.split(" && ", 1)[1])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    (hint,) = done.stderr.splitlines()
    assert hint.startswith("No CUDA GPU is visible; the same run works in replay against a landscape"), hint
    command = shlex.split(hint.split(": ", 1)[1])
    assert command[command.index("--out-dtype") + 1] == "float16"
    where = ["--storage", f"sqlite:///{tmp_path}/s.db", "--save-path", str(tmp_path / "cfg")]
    replay = subprocess.run([sys.executable, *command[1:], *where], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "DeepGEMM" not in replay.stdout and len(list((tmp_path / "cfg").glob("*.json"))) == 1


def test_no_url_but_storage_urls():
    # Where packages come from is the user's pip configuration; README names no host.
    schemes = set(re.findall(r"([a-z+]+)://", README))
    assert schemes <= {"sqlite", "postgresql"}, schemes


def test_the_notebook_command_writes_its_html_from_the_repository_root(tmp_path_factory, tmp_path):
    live, replay = [line for line in _bash_lines(README) if "jupyter nbconvert" in line]
    # the same command for a replay's studies, the one storage a machine without a GPU has
    assert replay == live.replace("sqlite:///studies/tuner.sqlite3", "sqlite:///studies/replay/tuner.sqlite3")
    command = replay
    # A repository root of its own: the notebook, and a storage where the command's relative URL points.
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "analysis.ipynb", tmp_path / "notebooks")
    storage = tmp_path / re.search(r"TUNER_STORAGE=sqlite:///(\S+)", command).group(1)
    storage.parent.mkdir(parents=True)
    url, _ = shared_replay_storage(tmp_path_factory)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as source, sqlite3.connect(storage) as copy:
        source.backup(copy)
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "studies" / "analysis.html").read_text()
    assert f"studies in sqlite:///{storage}" in html
    assert html.count("Plotly.newPlot") >= 3  # the figures, drawable offline (plotly.js inline)


def test_the_report_commands_write_beside_the_studies_not_into_the_root():
    live, replay = re.findall(r"`(python -m tuner\.report [^`]*)`", README)
    assert replay == live.replace("sqlite:///studies/tuner.sqlite3", "sqlite:///studies/replay/tuner.sqlite3")
    outputs = re.findall(r"--(?:out|csv) (\S+)", live)
    assert outputs and all(path.startswith("studies/") for path in outputs), live
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/studies/*.html" in ignored and "/studies/*.csv" in ignored


def test_the_example_storages_leave_no_write_ahead_log_beside_them():
    # In WAL mode every reader (the report, optuna-dashboard, the notebook) makes -wal and -shm files,
    # which a killed reader leaves behind in the checkout; in rollback mode a reader writes nothing.
    examples = sorted(set(re.findall(r"studies/example/\w+\.sqlite3", README)))
    assert examples
    for example in examples:
        with sqlite3.connect(f"file:{ROOT / example}?mode=ro", uri=True) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",), example
