"""notebooks/analysis.ipynb runs top to bottom, in a real kernel, against a storage the tuner filled in replay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.tuner.synthetic import STORED_BATCH_SIZES, shared_replay_storage
from tuner.analysis import failed_trials, summary_table

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analysis.ipynb"


def _text(outputs: list) -> str:
    """Everything a cell showed: printed streams and the plain/HTML forms of displayed values."""
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts += [output.data.get("text/plain", ""), output.data.get("text/html", "")]
    return "\n".join(parts)


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def _execute(repository: Path) -> nbformat.NotebookNode:
    """The notebook run as Jupyter runs it, in its own folder, here repository/notebooks/."""
    (repository / "notebooks").mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(repository / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    return notebook


def test_the_notebook_runs_top_to_bottom(tmp_path_factory, tmp_path, monkeypatch):
    url, _ = shared_replay_storage(tmp_path_factory)
    # README's own form: a path relative to the repository root, where the command runs.
    (tmp_path / "studies").mkdir()
    with (
        sqlite3.connect(url.removeprefix("sqlite:///")) as source,
        sqlite3.connect(tmp_path / "studies" / "t.db") as copy,
    ):
        source.backup(copy)
    monkeypatch.setenv("TUNER_STORAGE", "sqlite:///studies/t.db")  # the kernel inherits this process's environment
    notebook = _execute(tmp_path)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert all(cell.execution_count for cell in code)
    shown = "\n".join(_text(cell.outputs) for cell in code)
    assert f"{len(STORED_BATCH_SIZES)} studies in sqlite:///{tmp_path}/studies/t.db" in shown
    assert f"{len(failed_trials(url))} failed configs" in shown
    for config in summary_table(url).best_config:  # the best-config table shows each M's winner
        assert config in shown
    figures = [o for cell in code for o in cell.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 3, "the latency, history and importance figures were not displayed"


def test_a_missing_storage_names_the_variable_and_the_file_it_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_STORAGE", "sqlite:///studies/none.sqlite3")
    with pytest.raises(CellExecutionError) as error:
        _execute(tmp_path)
    message = str(error.value)
    assert f"TUNER_STORAGE=sqlite:///studies/none.sqlite3: no SQLite file at {tmp_path}/studies/none.sqlite3" in message
    assert "--storage" not in message  # the notebook has no such flag
