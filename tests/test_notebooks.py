"""Every research notebook runs headless (a fresh kernel, smoke-size parameters) and its ``.py``/``.ipynb`` pair
agrees; the ``.py`` (jupytext percent format) is the source of truth: ``jupytext --sync notebooks/NAME.py``
rewrites the ``.ipynb`` after an edit."""

import glob
import os

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOK_DIR = os.path.join(REPO_ROOT, "notebooks")
NOTEBOOKS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(NOTEBOOK_DIR, "[0-9][0-9]_*.py")))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_there_are_the_seven_notebooks():
    assert len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_pair_in_sync(name):
    """The .ipynb holds exactly the cells of the .py (after an edit of the .py: ``jupytext --sync``)."""
    source = jupytext.read(os.path.join(NOTEBOOK_DIR, name + ".py"))
    path = os.path.join(NOTEBOOK_DIR, name + ".ipynb")
    assert os.path.exists(path), f"{name}.ipynb is missing: run jupytext --sync notebooks/{name}.py"
    paired = nbformat.read(path, as_version=4)
    assert _cells(paired) == _cells(source), f"{name}.ipynb differs from {name}.py: run jupytext --sync"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch, tmp_path):
    """Execute the .py's cells in a fresh kernel (cwd: notebooks/); any failing cell fails the test."""
    monkeypatch.setenv("CNNJAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("CNNJAX_NOTEBOOK_OUTPUT", str(tmp_path))  # where notebooks that train put their runs
    monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = jupytext.read(os.path.join(NOTEBOOK_DIR, name + ".py"))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOK_DIR}})
    client.execute()
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 1, f"{name} drew no figure"
