"""Every notebook runs top to bottom on the tiny pipeline (NANOMATH_TINY=1) in a temporary work directory,
leaving the repository's data/ and out/ alone; the committed notebooks carry no outputs."""
import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def snapshot(*dirs):
    """(path, size, mtime) of every file under dirs: what a notebook must not create or change."""
    return sorted((path, os.path.getsize(path), os.path.getmtime(path))
                  for d in dirs for folder, _, files in os.walk(d) for path in (os.path.join(folder, f) for f in files))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One work directory for all the notebooks: the first trains the tiny pipeline, the others reuse it."""
    return tmp_path_factory.mktemp("notebooks")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) == 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, workdir, monkeypatch):
    monkeypatch.setenv("NANOMATH_TINY", "1")
    monkeypatch.setenv("NANOMATH_WORKDIR", str(workdir))   # the kernel inherits the environment
    before = snapshot(os.path.join(ROOT, "data"), os.path.join(ROOT, "out"))
    nb = nbformat.read(path, as_version=4)
    # run from notebooks/ as Jupyter would; ipykernel provides the python3 kernel of this interpreter
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    assert snapshot(os.path.join(ROOT, "data"), os.path.join(ROOT, "out")) == before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path}: strip the outputs"
