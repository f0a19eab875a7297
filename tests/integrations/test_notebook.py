"""Run examples/notebook.ipynb in a real IPython kernel (nbclient + ipykernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "examples" / "notebook.ipynb"


def _text(output: dict) -> str:  # type: ignore[type-arg]
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    return str(data.get("text/html", "")) + str(data.get("text/plain", ""))


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # jupyter_client's own import-time notices
def test_notebook_runs_sync_and_async_apis() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [
        "".join(_text(o) for o in cell.get("outputs", []))
        for cell in nb.cells
        if cell.cell_type == "code"
    ]
    assert not any(
        o.get("output_type") == "error"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    joined = "\n".join(outputs)
    assert "http://127.0.0.1:" in outputs[0]
    assert "<table>" in outputs[1] and "features" in outputs[1]  # metadata as HTML
    assert "['setosa', 'versicolor', 'virginica']" in outputs[2]
    assert "[0, 1, 2]" in outputs[4]  # top-level await with aio
    assert "HTTPStatusError" in outputs[6] and "400" in outputs[6]
    assert "100%" in outputs[7] and " rows/s" in outputs[7]  # execute_batched's tqdm bar
    assert "array([7075, 7413, 5512])" in outputs[7]
    assert "Traceback" not in joined
