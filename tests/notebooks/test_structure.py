"""What every committed notebook must look like: an intro that says what you'll build / learn / need,
one `parameters` cell, outputs committed for nbval, no papermill residue, a final RESULT check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import workbook

NOTEBOOKS = workbook.notebooks()


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_shape(notebook: Path):
    all_cells = cells(notebook)
    intro = source(all_cells[0])
    assert all_cells[0]["cell_type"] == "markdown" and intro.startswith(f"# {notebook.stem[:2]} - ")
    for heading in ("What you'll build", "What you'll learn", "What you need"):
        assert heading in intro, f"{notebook.name}: the intro must say {heading!r}"
    tagged = [cell for cell in all_cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    code = [cell for cell in all_cells if cell["cell_type"] == "code"]
    assert code[0] is tagged[0], "the parameters cell is the first code cell"
    assert any(cell.get("outputs") for cell in code), "outputs are committed (nbval compares them)"
    assert all(cell.get("execution_count") for cell in code), "nbval treats a cell without a count as unrun"
    assert any("RESULT:" in source(cell) and "assert" in source(cell) for cell in code), "it ends with checks"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_papermill_residue(notebook: Path):
    text = notebook.read_text()
    assert '"papermill": {' not in text, "strip with `make refresh` (nbstripout --keep-output)"
    assert "PapermillExecutionError" not in text and "An Exception was encountered" not in text
    assert "injected-parameters" not in text
    for cell in cells(notebook):
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{notebook.name} was committed with an error output"
