"""The notebook runner: ordering, parameters from the command line, the summary."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import workbook


def test_notebooks_are_numbered_and_ordered():
    found = workbook.notebooks()
    assert [path.name for path in found] == sorted(path.name for path in found)
    assert found[0].name.startswith("00_")
    assert [path.name[:2] for path in workbook.notebooks(["01"])] == ["01"]


def test_command_line_parameters_get_python_types():
    assert workbook._literal("500") == 500
    assert workbook._literal("2.5") == 2.5
    assert workbook._literal("True") is True and workbook._literal("false") is False
    assert workbook._literal("none") is None
    assert workbook._literal("aws") == "aws"
    assert workbook._literal("2011-11-01") == "2011-11-01"


def test_result_lines_and_summary(tmp_path: Path):
    executed = tmp_path / "01_x.ipynb"
    executed.write_text(json.dumps({"cells": [
        {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout",
                                           "text": ["noise\n", "RESULT: 10 rows stored, 2 quarantined\n"]}]}]}))
    ok = workbook.NotebookRun(executed, executed, 1.25, None, workbook._result_lines(executed))
    failed = workbook.NotebookRun(tmp_path / "02_y.ipynb", tmp_path / "none", 0.5, "cell 3: AssertionError: 1 | 2", ())
    assert ok.results == ("10 rows stored, 2 quarantined",)
    text = workbook.write_summary([ok, failed], tmp_path / "summary.md")
    assert "1 of 2 notebooks passed" in text
    assert "| 01_x | ok | 1.2 | 10 rows stored, 2 quarantined |" in text
    assert "| 02_y | FAILED | 0.5 | cell 3: AssertionError: 1 \\| 2 |" in text
    assert (tmp_path / "summary.md").read_text() == text
