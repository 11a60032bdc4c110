"""examples/walkthrough.ipynb runs from top to bottom (nbclient, a kernel on this test's own
Python) and shows what it says: the summary, both plots, and a diff naming the function the
second run slowed down.  A cell that fails fails the test."""

import json
import sys
from pathlib import Path

import pytest

from test_analyze_support import spyrec_available

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "walkthrough.ipynb"


def kernel_manager(folder):
    """A kernel running sys.executable, from a kernel spec written just for this test (nothing
    is installed in the user's Jupyter folders)."""
    kernels = folder / "kernels"
    kernelspec.write_kernel_spec(path=str(kernels / "spyrec-test"))
    spec = json.loads((kernels / "spyrec-test" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    return KernelManager(kernel_name="spyrec-test",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


def outputs(cell, kind):
    return [out for out in cell.get("outputs", ()) if out.get("output_type") == kind]


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_walkthrough_runs_and_finds_the_slowed_function(tmp_path):
    if not spyrec_available():
        pytest.skip("the spyrec recorder CLI is not available")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    km = kernel_manager(tmp_path)
    client = nbclient.NotebookClient(notebook, km=km, timeout=120,
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    try:
        client.execute()      # raises CellExecutionError when a cell fails
    finally:
        if km.has_kernel:     # (nbclient stops only the kernels it made itself)
            km.shutdown_kernel(now=True)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    summary = next(cell for cell in code if cell.source.strip().endswith("\nrec"))
    page = outputs(summary, "execute_result")[0]["data"]["text/html"]
    for thread in ("MainThread", "compressor", "deliveries"):
        assert thread in page
    assert "price_order" in page
    images = [out for cell in code for kind in ("display_data", "execute_result")
              for out in outputs(cell, kind) if "image/png" in out["data"]]
    assert len(images) == 2                      # by-thread bars and the timeline, each shown once
    printed = "".join(out["text"] for out in outputs(code[-1], "stream"))
    assert printed.startswith("grew the most: price_order"), printed
