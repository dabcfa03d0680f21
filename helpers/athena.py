"""Waiting for Glue and Athena, and Athena's answers as pandas: notebook 10 makes each call once by hand,
then uses these so the lesson stays on the SQL.

- `crawler_ready(name)`: polls `get_crawler` until the crawl is over (State READY) and returns the crawler;
- `finished(query_id)`: polls `get_query_execution` until SUCCEEDED and returns the execution; FAILED or
  CANCELLED raise `QueryFailed` with Athena's reason, so a bad query never looks like an empty answer;
- `frame(query_id)`: every page of `get_query_results`, typed by its `ColumnInfo` (a SELECT's header row
  dropped);
- `query(sql, ...)`: the three in a row; returns the DataFrame and the execution (for its Statistics).
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from helpers import config

ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
INTEGERS = ("tinyint", "smallint", "integer", "bigint")  # Athena's result types -> nullable Int64
FLOATS = ("double", "float", "real")


class QueryFailed(RuntimeError):
    """An Athena query that ended FAILED or CANCELLED; the message is Athena's StateChangeReason."""


def crawler_ready(name: str, timeout_s: float = 300.0, interval_s: float = 0.5) -> dict[str, Any]:
    """The crawler once its crawl is over (State READY with a LastCrawl); raises TimeoutError."""
    glue = config.client("glue")
    deadline = time.monotonic() + timeout_s
    while True:
        crawler = glue.get_crawler(Name=name)["Crawler"]
        if crawler["State"] == "READY" and "LastCrawl" in crawler:
            return crawler
        if time.monotonic() > deadline:
            raise TimeoutError(f"crawler {name} still {crawler['State']} after {timeout_s:.0f} s")
        time.sleep(interval_s)


def finished(query_id: str, timeout_s: float = 300.0, interval_s: float = 0.2) -> dict[str, Any]:
    """The execution once it SUCCEEDED; QueryFailed with Athena's reason when it FAILED or was CANCELLED."""
    athena = config.client("athena")
    deadline = time.monotonic() + timeout_s
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        state = execution["Status"]["State"]
        if state == "SUCCEEDED":
            return execution
        if state in ENDED:
            raise QueryFailed(f"query {query_id} {state}: {execution['Status'].get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"query {query_id} still {state} after {timeout_s:.0f} s")
        time.sleep(interval_s)


def frame(query_id: str) -> pd.DataFrame:
    """Every row of a finished query as a DataFrame typed by ColumnInfo. The first row of a SELECT's
    answer holds the column names, not data (a DDL statement's has none): it is dropped when it does."""
    athena = config.client("athena")
    columns: list[dict[str, Any]] = []
    values: list[list[str | None]] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        columns = columns or page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        values += [[cell.get("VarCharValue") for cell in row["Data"]] for row in page["ResultSet"]["Rows"]]
    names = [column["Name"] for column in columns]
    if values and values[0] == names:
        values = values[1:]
    result = pd.DataFrame(values, columns=names, dtype=object)
    for name, kind in zip(names, (column["Type"].lower() for column in columns)):
        if kind == "boolean":
            result[name] = result[name].map({"true": True, "false": False}).astype("boolean")
        elif kind in INTEGERS:
            result[name] = pd.to_numeric(result[name]).astype("Int64")
        elif kind in FLOATS or kind.startswith("decimal"):
            result[name] = pd.to_numeric(result[name]).astype("float64")
        elif kind in ("timestamp", "date"):
            result[name] = pd.to_datetime(result[name])
        else:  # varchar and the rest: text, a NULL stays missing
            result[name] = result[name].astype("string")
    return result


def query(sql: str, *, workgroup: str, database: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run one statement in `workgroup` (its result location) against `database`; its rows and execution."""
    athena = config.client("athena")
    query_id = athena.start_query_execution(QueryString=sql, WorkGroup=workgroup,
                                            QueryExecutionContext={"Database": database})["QueryExecutionId"]
    execution = finished(query_id)
    return frame(query_id), execution
