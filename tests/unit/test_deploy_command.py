"""`python -m helpers deploy ingestion` builds the ingestion pipeline through its notebook and prints
where it is: a URL that accepts rows, as the README tells a newcomer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from helpers import __main__ as command

pytestmark = pytest.mark.localcloud
PREFIX = "deploycmd"


def deploy(pipeline: str) -> dict:
    env = {**os.environ, "RETAIL_PREFIX": PREFIX}
    done = subprocess.run([sys.executable, "-m", "helpers", "deploy", pipeline], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_pipeline_names_a_notebook():
    from helpers import workbook

    numbers = {path.stem[:2] for path in workbook.notebooks()}
    assert set(command.PIPELINES.values()) <= numbers


def test_deploy_ingestion_prints_urls_that_accept_rows(endpoint):
    where = deploy("ingestion")
    assert where["stream"] == f"{PREFIX}-transactions"
    assert where["batch_url"].startswith(endpoint) and where["batch_url"].endswith("/transactions")
    row = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
           "Quantity": 6, "InvoiceDate": "12/1/2010 8:26", "UnitPrice": 2.55, "CustomerID": "17850",
           "Country": "United Kingdom"}
    answer = requests.post(where["batch_url"], json=[row], timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    again = deploy("ingestion")  # already built: the same pipeline, nothing rebuilt
    assert again["ingest_api_id"] == where["ingest_api_id"]
    from helpers import teardown

    teardown.everything(PREFIX)
