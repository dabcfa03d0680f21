"""Redshift COPY of the full real file (541,909 rows, ~45 MB CSV) from local S3 into the warehouse.

On a local cloud of its own with only the warehouse executor: the file is put in S3 once, then
`COPY ... CSV IGNOREHEADER 1 TIMEFORMAT 'MM/DD/YYYY HH24:MI' ACCEPTINVCHARS EMPTYASNULL` runs through the
`redshift-data` API three times (TRUNCATE between); the time is from ExecuteStatement to FINISHED as a
polling caller sees it. Skipped when the real file is absent.
Run: `python -m benchmarks.warehouse_copy` (or `python -m benchmarks --only warehouse` once registered).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers.paths import PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"))
EXPECTED_ROWS = 541_909
REPEAT = 3
CLUSTER, DATABASE, BUCKET, KEY = "bench-wh", "dev", "bench-raw", "ecommerce/data.csv"
DDL = """CREATE TABLE sales_raw (
    invoice_no VARCHAR(10) NOT NULL, stock_code VARCHAR(20) NOT NULL, description VARCHAR(255),
    quantity INTEGER NOT NULL, invoice_date TIMESTAMP NOT NULL, unit_price DECIMAL(10, 2) NOT NULL,
    customer_id VARCHAR(10), country VARCHAR(32)) DISTSTYLE EVEN SORTKEY (invoice_date)"""
COPY = (f"COPY sales_raw FROM 's3://{BUCKET}/{KEY}' IAM_ROLE 'arn:aws:iam::123456789012:role/bench' "
        "CSV IGNOREHEADER 1 TIMEFORMAT 'MM/DD/YYYY HH24:MI' ACCEPTINVCHARS EMPTYASNULL")


def _run(data: Any, sql: str) -> tuple[dict[str, Any], float]:
    """Execute and poll like a boto3 caller; (final description, seconds to FINISHED)."""
    started = time.perf_counter()
    statement_id = data.execute_statement(ClusterIdentifier=CLUSTER, Database=DATABASE, Sql=sql)["Id"]
    while True:
        described = data.describe_statement(Id=statement_id)
        if described["Status"] in ("FINISHED", "FAILED", "ABORTED"):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if described["Status"] != "FINISHED":
        raise RuntimeError(f"{sql[:40]}...: {described['Status']}: {described.get('Error')}")
    return described, elapsed


def run() -> dict[str, Any]:
    if not REAL_FILE.exists():
        return {"skipped": f"{REAL_FILE} not found"}
    import boto3

    from localcloud import lifecycle

    with lifecycle.running(tempfile.mkdtemp(prefix="bench-warehouse-"), {"RETAIL_LOCALCLOUD_EXECUTORS": "warehouse"}) as endpoint:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        redshift, s3, data = (session.client(name, endpoint_url=endpoint) for name in ("redshift", "s3", "redshift-data"))
        redshift.create_cluster(ClusterIdentifier=CLUSTER, NodeType="ra3.xlplus", MasterUsername="admin",
                                MasterUserPassword="Passw0rd!", DBName=DATABASE)
        s3.create_bucket(Bucket=BUCKET)
        started = time.perf_counter()
        s3.upload_file(str(REAL_FILE), BUCKET, KEY)
        upload_s = time.perf_counter() - started
        _run(data, DDL)
        timings, loaded = [], 0
        for _ in range(REPEAT):
            _run(data, "TRUNCATE sales_raw")
            described, elapsed = _run(data, COPY)
            timings.append(elapsed)
            loaded = described["ResultRows"]
        count = data.get_statement_result(Id=_run(data, "SELECT count(*) FROM sales_raw")[0]["Id"])
    return {
        "file": str(REAL_FILE), "bytes": REAL_FILE.stat().st_size, "rows_loaded": loaded,
        "rows_in_table": count["Records"][0][0]["longValue"], "rows_expected": EXPECTED_ROWS,
        "s3_upload_s": round(upload_s, 2), "copy_s_median": round(statistics.median(timings), 2),
        "copy_s_all": [round(t, 2) for t in timings],
        "rows_per_s": round(loaded / statistics.median(timings)),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
