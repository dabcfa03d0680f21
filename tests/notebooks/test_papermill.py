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
    "07_batch_bulk_import": {"prefix": "papermill", "nrows": 600, "shards": 2, "rows_per_file": 250},
    "08_bi_dashboards": {"prefix": "papermill", "nrows": 1200, "report_dir": "../build/papermill-report"},
    "09_telemetry_streaming_analytics": {"prefix": "papermill", "vehicles": 8, "seconds": 40, "window_s": 3, "seed": 11},
    "10_lake_catalog_and_athena": {"prefix": "papermill", "start": "2011-10-15", "end": "2011-12-01", "shards": 2},
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


# Each notebook that builds, run once with cleanup=True on a prefix of its own: what it created is gone
# afterwards, and what the notebooks before it built (through workbook.require) is still there.
CLEANUP: dict[str, dict[str, Any]] = {
    "00_setup_and_iam": {},
    "02_ingestion_api_lambda_kinesis": {"nrows": 300},
    "03_stream_to_s3_raw": {"nrows": 300},
    "04_stream_to_dynamodb": {"nrows": 300},
    "05_query_api": {"nrows": 300},
    "09_telemetry_streaming_analytics": {"vehicles": 6, "seconds": 20},
    "10_lake_catalog_and_athena": {"start": "2011-10-25", "end": "2011-11-05"},
}


@pytest.mark.parametrize("notebook", [path for path in NOTEBOOKS if path.stem in CLEANUP], ids=lambda path: path.stem)
def test_cleanup_removes_what_the_notebook_created(notebook: Path, tmp_path: Path):
    from helpers import config, teardown

    number, prefix = notebook.stem[:2], f"clean{notebook.stem[:2]}"
    config.configure(target="local", region="us-east-1", prefix=prefix)
    try:
        for dependency in workbook.DEPENDS[number]:
            workbook.require(dependency)  # built before, so the snapshot below holds them
        before = teardown.inventory(prefix)
        run(notebook, tmp_path / notebook.name, {"prefix": prefix, "cleanup": True, **CLEANUP[notebook.stem]})
        after = teardown.inventory(prefix)
        # Running the earlier notebooks' functions makes their log groups: theirs, not this notebook's.
        functions = {f"/aws/lambda/{name}" for name in after["functions"]}
        after["log_groups"] = [group for group in after["log_groups"] if group not in functions or group in before["log_groups"]]
        left = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in after if set(after[kind]) - set(before[kind])}
        assert not left, f"{notebook.name} with cleanup=True left: {left}"
        gone = {kind: sorted(set(before[kind]) - set(after[kind])) for kind in before if set(before[kind]) - set(after[kind])}
        assert not gone, f"{notebook.name} with cleanup=True deleted what an earlier notebook built: {gone}"
        assert not workbook.state_path(number, "local", prefix).exists(), "its build record is forgotten"
    finally:
        teardown.everything(prefix)
        config._current = None
