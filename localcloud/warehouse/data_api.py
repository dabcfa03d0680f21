"""The Data API's words: its errors, statement records, typed values and column metadata, paging, and
who is calling."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping

from localcloud.executor_base import json_response
from localcloud.executors import WSGIApp
from localcloud.warehouse import sql as wsql
from localcloud.warehouse.targets import Target

DEFAULT_MAX_RESULTS = 100


class ApiError(Exception):
    """An error answer of the Data API (`__type` and message as botocore reads them)."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: str):
        super().__init__(message)
        self.code, self.message, self.status, self.extra = code, message, status, extra


def _validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)



@dataclass
class SubStatement:
    index: int
    sql: str
    status: str = "SUBMITTED"
    error: str | None = None
    outcome: wsql.Outcome | None = None
    started: float | None = None
    ended: float | None = None
    query_id: int = -1
    updated_at: float = field(default_factory=time.time)


@dataclass
class StatementRecord:
    """One ExecuteStatement or BatchExecuteStatement, as DescribeStatement reports it."""

    id: str
    target: Target
    subs: list[SubStatement]
    is_batch: bool
    parameters: list[dict[str, str]]
    name: str | None
    db_user: str | None
    secret_arn: str | None
    status: str = "SUBMITTED"
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    done: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None

    def set_status(self, status: str, error: str | None = None) -> None:
        self.status, self.error, self.updated_at = status, error, time.time()
        if status in ("FINISHED", "FAILED", "ABORTED"):
            self.done.set()


def _finished_at(sub: SubStatement) -> float:
    return sub.ended or time.time()


def _duration_ns(sub: SubStatement) -> int:
    return int(((sub.ended or time.time()) - sub.started) * 1e9) if sub.started else 0


_TYPE_NAMES = {
    "BOOLEAN": "bool", "TINYINT": "int2", "SMALLINT": "int2", "INTEGER": "int4", "BIGINT": "int8",
    "HUGEINT": "numeric", "UTINYINT": "int2", "USMALLINT": "int4", "UINTEGER": "int8", "UBIGINT": "numeric",
    "FLOAT": "float4", "DOUBLE": "float8", "VARCHAR": "varchar", "DATE": "date", "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIME": "time", "INTERVAL": "interval", "BLOB": "varbyte",
    "UUID": "varchar", "JSON": "super",
}
_SIGNED = {"int2", "int4", "int8", "numeric", "float4", "float8"}


def redshift_type_name(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return "numeric"
    return _TYPE_NAMES.get(duckdb_type, "super" if duckdb_type.endswith(("[]", ")")) else duckdb_type.lower())


def result_column(name: str, duckdb_type: str) -> dict[str, Any]:
    type_name = redshift_type_name(duckdb_type)
    precision = scale = 0
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", duckdb_type)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
    return {
        "isCaseSensitive": type_name == "varchar", "isCurrency": False, "isSigned": type_name in _SIGNED,
        "label": name, "name": name, "nullable": 1, "precision": precision, "scale": scale,
        "schemaName": "", "tableName": "", "typeName": type_name, "length": 0,
    }


def field_value(value: Any) -> dict[str, Any]:
    """One value as a Data API Field."""
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value} if -2**63 <= value < 2**63 else {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"stringValue": str(value)}
    if isinstance(value, dt.datetime):
        return {"stringValue": value.isoformat(sep=" ")}
    if isinstance(value, (dt.date, dt.time)):
        return {"stringValue": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"blobValue": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, dict)):
        return {"stringValue": json.dumps(value, default=str)}
    return {"stringValue": str(value)}


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset":
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise _validation("The NextToken is invalid.")


def _page(items: list[Any], params: Mapping[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """MaxResults / NextToken paging of a list answer."""
    start = _offset(params.get("NextToken"))
    size = int(params.get("MaxResults") or DEFAULT_MAX_RESULTS)
    end = start + size
    return items[start:end], ({"NextToken": _token(end)} if end < len(items) else {})


def _like(pattern: str | None) -> re.Pattern[str]:
    """A SQL LIKE pattern ('%', '_') as a regex; no pattern matches everything."""
    if not pattern:
        return re.compile(".*", re.DOTALL)
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _table_column(schema: str, table: str, spec: wsql.ColumnSpec) -> dict[str, Any]:
    """A table column as DescribeTable reports it (lengths and precisions as Redshift declared them)."""
    return {
        "name": spec.name, "label": spec.name, "typeName": spec.kind, "schemaName": schema, "tableName": table,
        "length": spec.length or 0, "precision": spec.precision or spec.length or 0, "scale": spec.scale or 0,
        "nullable": 0 if spec.not_null else 1, "isSigned": spec.kind in _SIGNED,
        "isCaseSensitive": spec.kind in ("varchar", "bpchar"), "isCurrency": False,
    }


def _snake(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


def _respond(status: int, body: Mapping[str, Any]) -> WSGIApp:
    return json_response(status, body, "application/x-amz-json-1.1", request_id=True)

