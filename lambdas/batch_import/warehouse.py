"""The warehouse side of the batch import: one COPY per file, exactly once, through the `redshift-data` API.

A file's cleaned rows are staged under one S3 prefix (a gzipped CSV part per chunk) and loaded only
when the whole file is done, never half. The files an invocation finished are loaded together by one
COPY with a manifest listing their parts (Redshift's advice: one COPY of many files, not many COPYs),
and a row per file in `batch_import_loads` (object, ETag) commits in the same BatchExecuteStatement
transaction, so an invocation that dies after the COPY but before the ledger says DONE does not load a
file again: the next one finds its row.

Environment: WAREHOUSE_CLUSTER (provisioned) or WAREHOUSE_WORKGROUP (Serverless), WAREHOUSE_DATABASE
(default dev), WAREHOUSE_DB_USER or WAREHOUSE_SECRET_ARN when the cluster needs them, WAREHOUSE_TABLE
(default raw_sales, notebook 06's landing table), COPY_ROLE_ARN (the role the warehouse reads S3 with).
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3

data = boto3.client("redshift-data")

LOADS_TABLE = "batch_import_loads"
COLUMNS = ("record_id", "invoice_no", "stock_code", "description", "quantity", "invoice_date", "unit_price",
           "customer_id", "country")
TIMEFORMAT = "MM/DD/YYYY HH24:MI"
POLL_S, MAX_POLL_S, WAIT_S = 0.01, 0.1, 600.0  # a DescribeStatement is cheap; the COPY ends the invocation
_ready: set[str] = set()


class WarehouseError(RuntimeError):
    """A statement ended FAILED or ABORTED (Redshift's message and the SQL)."""


def target() -> dict[str, str]:
    found = {"Database": os.environ.get("WAREHOUSE_DATABASE", "dev")}
    if os.environ.get("WAREHOUSE_WORKGROUP"):
        found["WorkgroupName"] = os.environ["WAREHOUSE_WORKGROUP"]
    else:
        found["ClusterIdentifier"] = os.environ["WAREHOUSE_CLUSTER"]
    for variable, keyword in (("WAREHOUSE_DB_USER", "DbUser"), ("WAREHOUSE_SECRET_ARN", "SecretArn")):
        if os.environ.get(variable):
            found[keyword] = os.environ[variable]
    return found


def wait(statement_id: str, sql: str) -> dict[str, Any]:
    deadline, pause = time.monotonic() + WAIT_S, POLL_S
    while time.monotonic() < deadline:
        described = data.describe_statement(Id=statement_id)
        if described["Status"] == "FINISHED":
            return described
        if described["Status"] in ("FAILED", "ABORTED"):
            raise WarehouseError(f"{described['Status']}: {described.get('Error')}\n--- SQL ---\n{sql[:600]}")
        time.sleep(pause)
        pause = min(pause * 1.5, MAX_POLL_S)
    raise WarehouseError(f"statement {statement_id} still running after {WAIT_S:.0f} s\n--- SQL ---\n{sql[:600]}")


def execute(sql: str) -> dict[str, Any]:
    return wait(data.execute_statement(Sql=sql, **target())["Id"], sql)


def ensure_loads_table() -> None:
    key = repr(sorted(target().items()))
    if key not in _ready:
        execute(f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (object_key VARCHAR(1024) NOT NULL, "
                f"etag VARCHAR(100) NOT NULL, rows_loaded BIGINT NOT NULL, loaded_at TIMESTAMP)")
        _ready.add(key)


def already_loaded(files: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (object, ETag) versions a committed COPY already loaded."""
    ensure_loads_table()
    found: set[tuple[str, str]] = set()
    for start in range(0, len(files), 200):
        wanted = ", ".join(f"'{_quote(key)}'" for key, _ in files[start:start + 200])
        statement = execute(f"SELECT object_key, etag FROM {LOADS_TABLE} WHERE object_key IN ({wanted})")
        token = None
        while True:
            page = data.get_statement_result(Id=statement["Id"], **({"NextToken": token} if token else {}))
            found.update((record[0]["stringValue"], record[1]["stringValue"]) for record in page["Records"])
            token = page.get("NextToken")
            if not token:
                break
    return found


def copy_files(manifest_url: str, files: list[tuple[str, str, int]]) -> None:
    """One COPY of the manifest (every part of these files) and their rows in the loads table, committed
    together. `files`: (object, ETag, rows stored)."""
    table = os.environ.get("WAREHOUSE_TABLE", "raw_sales")
    copy = (f"COPY {table} ({', '.join(COLUMNS)}) FROM '{manifest_url}' IAM_ROLE '{os.environ['COPY_ROLE_ARN']}' "
            f"MANIFEST CSV IGNOREHEADER 1 GZIP TIMEFORMAT '{TIMEFORMAT}' EMPTYASNULL")
    values = ", ".join(f"('{_quote(key)}', '{_quote(etag)}', {int(rows)}, GETDATE())" for key, etag, rows in files)
    sqls = [copy, f"INSERT INTO {LOADS_TABLE} VALUES {values}"]
    wait(data.batch_execute_statement(Sqls=sqls, **target())["Id"], ";\n".join(sqls))


def _quote(text: str) -> str:
    return text.replace("'", "''")
