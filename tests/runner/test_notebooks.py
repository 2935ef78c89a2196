"""Every notebook runs headlessly from top to bottom, and is committed without outputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# ipykernel provides "python3" (its own interpreter, here the venv's) even when no
# kernelspec is installed on the machine.
KERNEL = "python3"


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))


def _plot_cells(nb: nbformat.NotebookNode) -> int:
    """Code cells that draw: each ends a figure with a top-level ``show(fig)`` line."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               and re.search(r"^show\(fig\)$", cell.source, re.M))


def test_the_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"compare_strategies.ipynb", "strace_explorer.ipynb"}
    assert KERNEL in KernelSpecManager().get_all_specs()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless_and_draws_every_plot(path: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WRITESHAPE_RESULTS", raising=False)
    nb = _execute(path, tmp_path)
    assert _figures(nb) == _plot_cells(nb) > 0


def test_compare_notebook_plots_a_saved_compare_json(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A `compare --json` file with unmeasured figures (no strace, cleartext only) loads
    and plots: missing figures are said to be missing, not drawn as zeros."""
    results = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "toolkit", "compare", "--strategies", "single,writev",
                    "--transports", "h2c", "--body-sizes", "16KiB,64KiB", "--requests", "32",
                    "--repeat", "2", "--no-strace", "--json", str(results)],
                   check=True, capture_output=True, timeout=300)
    monkeypatch.setenv("WRITESHAPE_RESULTS", str(results))
    nb = _execute(NOTEBOOK_DIR / "compare_strategies.ipynb", tmp_path)
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs)
    assert f"4 rows, loaded from {results}" in text
    assert _figures(nb) == _plot_cells(nb)
