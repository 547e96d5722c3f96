"""examples/explore_a_run.ipynb runs top to bottom against sample_runs/ (it can never rot)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# in the test extra (scripts/setup.sh --test); skipped, and so reported, where it is missing
nbformat = pytest.importorskip("nbformat", reason="needs the test extra: pip install -e '.[test]'")
NotebookClient = pytest.importorskip(
    "nbclient", reason="needs the test extra: pip install -e '.[test]'").NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "explore_a_run.ipynb"


def test_example_notebook_executes(monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", env_path)  # the kernel imports this checkout's lcaviz
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError with the cell and traceback on any failure
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors
    plotly = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    figure_cells = [c for c in nb.cells if c.cell_type == "code" and "figure(" in c.source]
    assert len(plotly) == len(figure_cells) >= 8  # every figure cell rendered its figure
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "no per-example values" in text and "shift test p =" in text
    assert "wrote mnist_fc_sgd_mom0" in text  # the TensorBoard export cell
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert '<iframe src="http://127.0.0.1:' in html  # the inline dashboard
