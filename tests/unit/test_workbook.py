"""The notebook runner: ordering, parameters from the command line, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_require_trusts_a_record_only_in_the_same_cloud_with_its_parameters_and_resources(tmp_path, monkeypatch):
    from helpers import config

    monkeypatch.setattr(workbook, "STATE_DIR", tmp_path)
    built: list[tuple[str, dict]] = []
    monkeypatch.setattr(workbook, "_build", lambda notebook, output, parameters: built.append((notebook.stem, parameters)))
    config.configure(target="local", region="us-east-1", prefix="wbtest")
    queues = config.client("sqs")
    url = queues.create_queue(QueueName="wbtest-probe")["QueueUrl"]
    try:
        workbook.record("00", probe=("sqs", "get_queue_url", {"QueueName": "wbtest-probe"}), role_arns={"a": "arn"})
        workbook.record("02", probe=[("sqs", "get_queue_url", {"QueueName": "wbtest-probe"})], parameters={"shards": 1},
                        stream="wbtest-transactions")
        assert workbook.require("02", shards=1) == {"role_arns": {"a": "arn"}, "stream": "wbtest-transactions"}
        assert built == [], "a valid record is a read, nothing runs"

        with pytest.raises(RuntimeError, match="recorded nothing"):
            workbook.require("02", shards=2)  # other parameters: the notebook runs again (here: records nothing)
        assert built[-1] == ("02_ingestion_api_lambda_kinesis", {
            "target": "local", "region": "us-east-1", "prefix": "wbtest", "allow_aws_create": False,
            "build_only": True, "shards": 2})

        state = workbook.state_path("02", "local", "wbtest")
        record = json.loads(state.read_text())
        state.write_text(json.dumps({**record, "endpoint": "http://127.0.0.1:1"}))
        with pytest.raises(RuntimeError):
            workbook.require("02", shards=1)  # made in another cloud
        state.write_text(json.dumps(record))
        queues.delete_queue(QueueUrl=url)
        with pytest.raises(RuntimeError):
            workbook.require("02", shards=1)  # its resource is gone
        workbook.forget("02")
        assert not state.exists()
    finally:
        config._current = None


def test_a_build_only_stop_is_not_a_failure(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("build_only = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from helpers import workbook\nif build_only:\n    workbook.stop_after_build()"),
        nbformat.v4.new_code_cell("raise SystemExit('never reached with build_only')"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)
    assert workbook.execute(path, tmp_path / "out.ipynb", {"build_only": True}).ok
    assert not workbook.execute(path, tmp_path / "out2.ipynb", {}).ok
