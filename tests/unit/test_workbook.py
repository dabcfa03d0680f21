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


def test_a_run_that_starts_the_local_cloud_starts_from_an_empty_account(tmp_path, monkeypatch):
    """What an earlier run left (kept by `down` for exploring) must not leak into `make run`."""
    import boto3

    from localcloud import lifecycle

    monkeypatch.setenv("RETAIL_LOCALCLOUD_HOME", str(tmp_path))
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        s3.create_bucket(Bucket="left-by-an-earlier-run")
        lifecycle.down(port)  # state kept
        with workbook._cloud(keep=False):
            assert s3.list_buckets()["Buckets"] == []
        assert lifecycle.status(port) is None  # it started the cloud, so it stopped it
    finally:
        lifecycle.down(port, wipe=True)
