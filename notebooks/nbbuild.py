"""What every notebook builder shares: cells to a notebook, run it, save it with outputs.

A builder (``build_01_plans.py``, ``build_02_etl.py``) lists its ``CELLS`` as
``("md" | "code", source)`` pairs and calls :func:`main`. The notebook runs top to
bottom in a fresh ``python3`` kernel with this checkout first on PYTHONPATH, and is
saved with its outputs, so the rendered plans and charts show in any viewer.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO_ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 120


def build_notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The notebook of ``cells``, without outputs."""
    nb_cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    return new_notebook(cells=nb_cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``.

    The kernel imports this checkout's sluice (it is put first on PYTHONPATH).
    Raises ``nbclient.exceptions.CellExecutionError`` at the first cell that fails.
    """
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    return client.execute(env=dict(os.environ, PYTHONPATH=path))


def main(cells: list[tuple[str, str]], notebook: Path) -> int:
    """Build, execute and save ``notebook``."""
    nb = execute_notebook(build_notebook(cells), notebook.parent)
    nbformat.write(nb, notebook)
    print(f"wrote {notebook.relative_to(REPO_ROOT)}")
    return 0
