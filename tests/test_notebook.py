"""notebooks/analysis.ipynb runs top to bottom, in a real kernel, against a storage the tuner filled in replay."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

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


def test_the_notebook_runs_top_to_bottom(tmp_path_factory, monkeypatch):
    url, _ = shared_replay_storage(tmp_path_factory)
    monkeypatch.setenv("TUNER_STORAGE", url)  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert all(cell.execution_count for cell in code)
    shown = "\n".join(_text(cell.outputs) for cell in code)
    assert f"{len(STORED_BATCH_SIZES)} studies in sqlite:///" in shown
    assert f"{len(failed_trials(url))} failed configs" in shown
    for config in summary_table(url).best_config:  # the best-config table shows each M's winner
        assert config in shown
    figures = [o for cell in code for o in cell.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 3, "the latency, history and importance figures were not displayed"
