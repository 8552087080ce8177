"""README, the one page a new user reads: its commands agree with CI and it sends nobody to a package host."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

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
    assert "--index-url" in README[advice : advice + 600]


def test_no_url_but_storage_urls():
    # Where packages come from is the user's pip configuration; README names no host.
    schemes = set(re.findall(r"([a-z+]+)://", README))
    assert schemes <= {"sqlite", "postgresql"}, schemes


def test_the_notebook_command_writes_its_html_from_the_repository_root(tmp_path_factory, tmp_path):
    (command,) = [line for line in _bash_lines(README) if "jupyter nbconvert" in line]
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


def test_the_report_command_writes_beside_the_studies_not_into_the_root():
    (report,) = re.findall(r"`(python -m tuner\.report [^`]*)`", README)
    outputs = re.findall(r"--(?:out|csv) (\S+)", report)
    assert outputs and all(path.startswith("studies/") for path in outputs), report
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
