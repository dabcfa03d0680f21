"""Every numbered notebook runs top to bottom under papermill, with its defaults and with other
parameters, against the session's local cloud, and ends by printing its RESULT line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import workbook

NOTEBOOKS = workbook.notebooks()
# A second, parameterized run per notebook: the parameters cell really drives it.
PARAMETERIZED: dict[str, dict[str, Any]] = {
    "00_setup_and_iam": {"prefix": "papermill"},
    "01_dataset_and_quality": {"nrows": 1500},
    "02_ingestion_api_lambda_kinesis": {"prefix": "papermill", "nrows": 600, "shards": 2, "batch_size": 100},
    "03_stream_to_s3_raw": {"prefix": "papermill", "nrows": 600, "shards": 2},
    "04_stream_to_dynamodb": {"prefix": "papermill", "nrows": 600, "shards": 2},
    "05_query_api": {"prefix": "papermill", "nrows": 600, "shards": 2, "page_size": 2},
    "06_firehose_to_warehouse": {"prefix": "papermill", "nrows": 800, "shards": 2},
    "08_bi_dashboards": {"prefix": "papermill", "nrows": 1200, "report_dir": "../build/papermill-report"},
    "99_teardown": {"prefix": "papermill"},
}
CELL_TIMEOUT_S = 300


def run(notebook: Path, output: Path, parameters: dict[str, Any]) -> workbook.NotebookRun:
    result = workbook.execute(notebook, output, parameters, cell_timeout=CELL_TIMEOUT_S)
    assert result.ok, f"{notebook.name} failed at {result.error} (executed copy: {output})"
    assert result.results, f"{notebook.name} must prove its result and print a RESULT: line"
    return result


def test_every_notebook_is_covered():
    assert [path.stem for path in NOTEBOOKS if path.stem not in PARAMETERIZED] == [], "add a parameterized case"
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_with_defaults(notebook: Path, tmp_path: Path):
    run(notebook, tmp_path / notebook.name, {})


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_with_parameters(notebook: Path, tmp_path: Path):
    run(notebook, tmp_path / notebook.name, PARAMETERIZED[notebook.stem])
