"""The notebook runs end to end offline and draws the map inline."""

from __future__ import annotations

import base64

import nbformat
import numpy as np
from nbclient import NotebookClient
from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "explore_store.ipynb"


def _length(values: list | dict) -> int:
    """Points in a plotly array, plain or typed (``{"dtype", "bdata"}``, base64)."""
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
    return len(values)


def test_the_notebook_runs_offline_and_shows_the_map(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGOS_DATA_DIR", str(tmp_path / "store"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1
    points = figures[0]["data"]["application/vnd.plotly.v1+json"]["data"]
    assert sum(_length(trace["x"]) for trace in points) >= 100  # every demo logo is on the map
    found = next(o for o in outputs if "text/html" in o.get("data", {}) and "confidence" in o["data"]["text/html"])
    assert "Coca-Cola" in found["data"]["text/html"]  # the example photo's logo is found and named
    assert (tmp_path / "store").is_dir()
