"""The post as a notebook: examples/spotting-the-difference.ipynb runs top to bottom at small sizes."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "spotting-the-difference.ipynb"


def test_notebook_executes_with_small_sizes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "STEPS =" in first_code.source  # the sizes cell the notebook promises to keep first
    first_code.source = (
        # JAX's modes only: two cells per comparison, none paying TensorFlow's import (~3 s a cell);
        # every framework x mode is run by tests/test_exponent.py and tests/test_digits.py.
        "STEPS = 60\nEPOCHS = 1\nREPEATS = 1\n"
        "EXPONENT_MODES = ['jit', 'fused']\nDIGITS_MODES = ['jit', 'jit-cached']\n"
        "DIGITS_OPTIONS = {'limit_train': 192, 'limit_test': 60, 'batch_size': 32}\n"
        f"OUT = {str(tmp_path / 'runs')!r}\n"
    )
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "Error" not in outputs and "Traceback" not in outputs
    assert "max |Δphi(t)|" in outputs and "max |Δlogits|" in outputs
    assert (tmp_path / "runs" / "sgd" / "report.html").exists()
