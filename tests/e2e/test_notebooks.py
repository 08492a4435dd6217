"""The example notebooks run top to bottom, and their saved copies show what they render."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
PLANS = NOTEBOOKS / "01-plans.ipynb"


def load_builder():
    """notebooks/build_01_plans.py as a module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_01_plans", NOTEBOOKS / "build_01_plans.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def svg_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [out["data"]["image/svg+xml"] for out in outputs(nb)
            if "image/svg+xml" in out.get("data", {})]


def text_outputs(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in outputs(nb))


def check_plans_notebook(nb: nbformat.NotebookNode) -> None:
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    svgs = svg_outputs(nb)
    assert len(svgs) == 3    # the plan before and after optimization, and the logical graph
    assert "not optimized" in svgs[0] and 'class="cluster"' not in svgs[0]
    assert "physical plan (optimized)" in svgs[1] and 'class="cluster"' in svgs[1]
    text = text_outputs(nb)
    assert "== Physical Plan (not optimized) ==" in text
    assert "[CALL standardize+clip+scale]" in text and "Not fused:" in text
    assert "the plan agrees with numpy" in text


def test_the_saved_notebook_holds_its_rendered_plans() -> None:
    check_plans_notebook(nbformat.read(PLANS, as_version=4))


def test_the_saved_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(PLANS, as_version=4)
    built = load_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_plans_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / PLANS.name
    shutil.copy(PLANS, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_plans_notebook(nbformat.read(copy, as_version=4))


# --------------------------------------------------------------------------- 02-etl
ETL = NOTEBOOKS / "02-etl.ipynb"


def load_etl_builder():
    """notebooks/build_02_etl.py as a module."""
    spec = importlib.util.spec_from_file_location("build_02_etl", NOTEBOOKS / "build_02_etl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [out["data"]["image/png"] for out in outputs(nb) if "image/png" in out.get("data", {})]


def check_etl_notebook(nb: nbformat.NotebookNode) -> None:
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    svgs = svg_outputs(nb)
    assert len(svgs) == 1    # the plan of the job
    assert "ReadParquet" in svgs[0] and "MapBatches(add_speed)" in svgs[0]
    assert len(png_outputs(nb)) == 1    # the chart of the result
    text = text_outputs(nb)
    reads = text[text.index("Reads:"):].splitlines()[1]
    assert "filter=(distance_km > 0)" in reads and "columns=['day', 'zone'" in reads
    assert "ReadParquet+MapBatches(add_speed)+PartialAggregate(day, zone)" in text
    assert "318,000 rows" in text and "answered from metadata" in text
    assert "Dataset execution" in text and "WriteParquet" in text
    assert "_SUCCESS" in text and "35 rows (day x zone)" in text
    assert "the job agrees with pandas" in text


def test_the_saved_etl_notebook_holds_its_outputs() -> None:
    check_etl_notebook(nbformat.read(ETL, as_version=4))


def test_the_saved_etl_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(ETL, as_version=4)
    built = load_etl_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_etl_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / ETL.name
    shutil.copy(ETL, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_etl_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_etl_notebook(nbformat.read(copy, as_version=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ETL.name]   # its data went to a temp folder
