"""The evaluation notebook runs top to bottom, headless, on small example data."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluation.ipynb"


def test_notebook_executes_and_draws():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[1].source.startswith("# Parameters")
    # parameters after the parameters cell, as papermill injects them: smaller data, no PyOD
    nb.cells.insert(2, new_code_cell("ROWS = 3000\nPYOD_VAE = False"))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on a cell error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # training curve, ROC + PR, scores + trade-off, latent space, marginals


def test_committed_notebook_has_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "commit the notebook executed, with outputs"
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) >= 5
