"""Query executions as Athena keeps them: one record per QueryExecutionId (what GetQueryExecution
describes), stored on moto's Athena backend so they are saved with moto's state, and ExecutionParameters
bound into the query text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from localcloud.athena.tables import QueryFailed

ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class Query:
    """One query execution as GetQueryExecution describes it."""

    id: str
    sql: str
    database: str
    catalog: str
    workgroup: str
    output: str  # the result file: s3://.../<id>.csv or .txt
    submitted: float = field(default_factory=time.time)
    state: str = "QUEUED"
    reason: str | None = None
    error: dict[str, Any] | None = None
    started: float | None = None
    completed: float | None = None
    engine_ms: int = 0
    scanned: int = 0
    statement_type: str = "DML"
    substatement: str = "SELECT"
    columns: list[dict[str, Any]] = field(default_factory=list)
    header: bool = True
    row_count: int = 0
    token: str | None = None
    parameters: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.error:
            status["AthenaError"] = self.error
        queued = int(((self.started or time.time()) - self.submitted) * 1000)
        total = int(((self.completed or time.time()) - self.submitted) * 1000)
        described = {
            "QueryExecutionId": self.id, "Query": self.sql, "StatementType": self.statement_type,
            "SubstatementType": self.substatement,
            "ResultConfiguration": {"OutputLocation": self.output},
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": {"Database": self.database, "Catalog": self.catalog},
            "Status": status,
            "Statistics": {"EngineExecutionTimeInMillis": self.engine_ms, "DataScannedInBytes": self.scanned,
                           "TotalExecutionTimeInMillis": total, "QueryQueueTimeInMillis": queued,
                           "ServicePreProcessingTimeInMillis": 0, "QueryPlanningTimeInMillis": 0,
                           "ServiceProcessingTimeInMillis": max(0, total - queued - self.engine_ms),
                           "ResultReuseInformation": {"ReusedPreviousResult": False}},
            "WorkGroup": self.workgroup,
            "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
        }
        if self.parameters:
            described["ExecutionParameters"] = self.parameters
        return described


def queries_of(backend: Any) -> dict[str, Query]:
    found = getattr(backend, "localcloud_queries", None)
    if found is None:
        found = backend.localcloud_queries = {}
    return found


def bind(sql: str, parameters: list[str] | None) -> str:
    """ExecutionParameters replace the `?` placeholders in order, as literal SQL text."""
    if not parameters:
        return sql
    out, values, quote = [], list(parameters), ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            if not values:
                raise QueryFailed("line 1:1: Incorrect number of parameters: expected more than "
                                  f"{len(parameters)}", error_type=1004)
            out.append(values.pop(0))
            continue
        out.append(char)
    if values:
        raise QueryFailed(f"line 1:1: Incorrect number of parameters: expected {len(parameters) - len(values)} "
                          f"but found {len(parameters)}", error_type=1004)
    return "".join(out)
