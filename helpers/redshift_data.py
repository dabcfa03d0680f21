"""SQL through the `redshift-data` API, without the waiting and the parsing in the notebooks' way.

Notebook 06 shows the Data API's pattern once, written out: `execute_statement` submits and returns an
id, `describe_statement` says when it is FINISHED (or FAILED, with Redshift's message), and
`get_statement_result` pages the rows with their column metadata. Everything else calls these:

    execute(wh, sql)          # submit, wait; WarehouseSqlError with the SQL when it fails
    execute_batch(wh, sqls)   # BatchExecuteStatement: one transaction
    query(wh, sql)            # the rows as a typed pandas DataFrame (every page)
    scalar(wh, sql)           # the one value of a one-row, one-column query

`Warehouse` names where SQL runs (a provisioned cluster locally, a Serverless workgroup on AWS);
`warehouse(names)` looks up the one notebook 06 built. Only public boto3 calls, so the same code runs
on the local cloud (its warehouse runs Redshift's SQL on DuckDB) and on AWS.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import pandas as pd

from helpers import config
from helpers.resources import Names, names as resource_names

DATABASE = "dev"
POLL_FIRST_S, POLL_MAX_S = 0.02, 1.0
DONE = ("FINISHED", "FAILED", "ABORTED")


class WarehouseSqlError(RuntimeError):
    """A statement ended FAILED or ABORTED: Redshift's message, and the SQL that caused it."""

    def __init__(self, status: str, error: str, sql: str):
        self.status, self.error, self.sql = status, error, sql
        short = sql.strip() if len(sql.strip()) < 600 else sql.strip()[:600] + " ..."
        super().__init__(f"{status}: {error}\n--- SQL ---\n{short}")


@dataclass(frozen=True)
class Warehouse:
    """Where SQL runs: a provisioned cluster (local) or a Serverless workgroup (AWS)."""

    kind: Literal["cluster", "workgroup"]
    name: str
    database: str
    jdbc_url: str
    copy_role_arn: str
    admin_secret_arn: str | None = None

    @property
    def target(self) -> dict[str, str]:
        """The Data API's keywords naming this warehouse."""
        key = "ClusterIdentifier" if self.kind == "cluster" else "WorkgroupName"
        return {key: self.name, "Database": self.database}


def warehouse(names: Names | None = None) -> Warehouse:
    """The warehouse notebook 06 built (the cluster locally, the Serverless workgroup on AWS), read back
    from its service: database, JDBC URL, the COPY role, the admin secret. Creates nothing."""
    names = names or resource_names()
    copy_role_arn = f"arn:aws:iam::{names.account}:role/{names.warehouse_role}"
    if config.settings().is_local:
        cluster = config.client("redshift").describe_clusters(ClusterIdentifier=names.warehouse_cluster)["Clusters"][0]
        database, endpoint = cluster.get("DBName") or DATABASE, cluster["Endpoint"]
        return Warehouse("cluster", names.warehouse_cluster, database,
                         f"jdbc:redshift://{endpoint['Address']}:{endpoint['Port']}/{database}", copy_role_arn)
    serverless = config.client("redshift-serverless")
    namespace = serverless.get_namespace(namespaceName=names.warehouse_cluster)["namespace"]
    endpoint = serverless.get_workgroup(workgroupName=names.warehouse_cluster)["workgroup"]["endpoint"]
    database = namespace.get("dbName") or DATABASE
    return Warehouse("workgroup", names.warehouse_cluster, database,
                     f"jdbc:redshift://{endpoint['address']}:{endpoint['port']}/{database}", copy_role_arn,
                     namespace.get("adminPasswordSecretArn"))


def wait_serverless(name: str, timeout_s: float = 1200.0) -> None:
    """Wait until a Serverless namespace and its workgroup are AVAILABLE (minutes after creation)."""
    serverless = config.client("redshift-serverless")
    deadline = time.monotonic() + timeout_s
    while True:
        workgroup = serverless.get_workgroup(workgroupName=name)["workgroup"]["status"]
        namespace = serverless.get_namespace(namespaceName=name)["namespace"]["status"]
        if workgroup == namespace == "AVAILABLE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redshift Serverless {name}: workgroup {workgroup}, namespace {namespace} "
                               f"after {timeout_s:.0f} s")
        time.sleep(15)


# -------------------------------------------------------------------------------------------------
# Submit, wait, read


def wait(statement_id: str, sql: str = "", timeout_s: float = 600.0) -> dict[str, Any]:
    """Poll DescribeStatement with a growing pause (fast for quick statements, cheap for long ones) until
    the statement is done; its final description. Raises WarehouseSqlError when it failed."""
    data = config.client("redshift-data")
    deadline, pause = time.monotonic() + timeout_s, POLL_FIRST_S
    while True:
        described = data.describe_statement(Id=statement_id)
        if described["Status"] in DONE:
            break
        if time.monotonic() > deadline:
            data.cancel_statement(Id=statement_id)
            raise TimeoutError(f"statement still {described['Status']} after {timeout_s:.0f} s:\n{sql[:600]}")
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_S)
    if described["Status"] != "FINISHED":
        failed = [s for s in described.get("SubStatements", []) if s.get("Status") == "FAILED"]
        failed_sql = failed[0].get("QueryString", sql) if failed else (sql or described.get("QueryString", ""))
        raise WarehouseSqlError(described["Status"], described.get("Error", ""), failed_sql)
    return described


def execute(wh: Warehouse, sql: str, *, parameters: dict[str, Any] | None = None,
            timeout_s: float = 600.0) -> dict[str, Any]:
    """Run one statement and wait for it; its final DescribeStatement (ResultRows, HasResultSet...)."""
    extra: dict[str, Any] = {}
    if parameters:
        extra["Parameters"] = [{"name": k, "value": str(v)} for k, v in parameters.items()]
    statement_id = config.client("redshift-data").execute_statement(Sql=sql, **wh.target, **extra)["Id"]
    return wait(statement_id, sql, timeout_s)


def execute_batch(wh: Warehouse, sqls: Sequence[str], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run statements as one transaction (BatchExecuteStatement): all of them, or none."""
    statement_id = config.client("redshift-data").batch_execute_statement(Sqls=list(sqls), **wh.target)["Id"]
    return wait(statement_id, ";\n".join(sqls), timeout_s)


def result(statement_id: str) -> pd.DataFrame:
    """Every page of GetStatementResult of a finished statement, as a typed DataFrame."""
    data = config.client("redshift-data")
    pages, token = [], None
    while True:
        page = data.get_statement_result(Id=statement_id, **({"NextToken": token} if token else {}))
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            break
    return frame(pages[0]["ColumnMetadata"], [record for page in pages for record in page["Records"]])


def query(wh: Warehouse, sql: str, *, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame typed from the result's column metadata (all pages)."""
    described = execute(wh, sql, parameters=parameters)
    if not described.get("HasResultSet"):
        raise ValueError(f"the statement returned no rows to read:\n{sql[:300]}")
    return result(described["Id"])


def scalar(wh: Warehouse, sql: str) -> Any:
    """The single value of a one-row, one-column query (None for NULL)."""
    found = query(wh, sql)
    if found.shape != (1, 1):
        raise ValueError(f"expected one value, got {found.shape[0]} rows x {found.shape[1]} columns")
    value = found.iat[0, 0]
    return None if pd.isna(value) else value.item() if hasattr(value, "item") else value


def table_counts(wh: Warehouse, tables: Sequence[str]) -> pd.Series:
    """Rows per table, in one query."""
    union = " UNION ALL ".join(f"SELECT '{t}' AS table_name, COUNT(*) AS row_count FROM {t}" for t in tables)
    counts = query(wh, union)
    return counts.set_index("table_name")["row_count"].reindex(list(tables)).astype("int64")


# -------------------------------------------------------------------------------------------------
# Data API records -> pandas

_INTEGERS = {"int2", "int4", "int8"}
_FLOATS = {"float4", "float8", "numeric", "float", "double precision", "real"}
_TIMES = {"timestamp", "timestamptz", "date"}


def _field(value: dict[str, Any]) -> Any:
    if value.get("isNull"):
        return None
    if "blobValue" in value:
        return base64.b64decode(value["blobValue"]) if isinstance(value["blobValue"], str) else value["blobValue"]
    return next(iter(value.values()))


def frame(columns: list[dict[str, Any]], records: list[list[dict[str, Any]]]) -> pd.DataFrame:
    """Data API records as a DataFrame: integers Int64, numeric/float float64, booleans boolean,
    dates and timestamps datetime64, text string (decimals arrive as text and are converted)."""
    names = [column["name"] for column in columns]
    found = pd.DataFrame([[_field(value) for value in record] for record in records], columns=names, dtype=object)
    for column, name in zip(columns, names):
        kind = column.get("typeName", "").lower()
        values = found[name]
        if kind in _INTEGERS:
            found[name] = pd.array(values, dtype="Int64")
        elif kind in _FLOATS:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            whole = kind == "numeric" and not column.get("scale") and (numbers.dropna() % 1 == 0).all()
            found[name] = numbers.astype("Int64") if whole else numbers  # SUM(integer) is an integer
        elif kind == "bool":
            found[name] = values.astype("boolean")
        elif kind in _TIMES:
            found[name] = pd.to_datetime(values)
        else:
            found[name] = values.astype("string")
    return found
