"""A Redshift-compatible warehouse in the local cloud, behind the real `redshift-data` API, on DuckDB.

moto stores Redshift clusters but runs no SQL, and its `redshift-data` answers canned results. This
executor claims every `RedshiftData.*` request (AWS JSON 1.1, `X-Amz-Target`), so boto3's
`redshift-data` client runs real SQL:

- ExecuteStatement / BatchExecuteStatement run asynchronously like AWS (SUBMITTED -> STARTED ->
  FINISHED | FAILED | ABORTED; callers poll DescribeStatement); a batch is one transaction;
- GetStatementResult pages typed values (longValue, doubleValue, stringValue, booleanValue, isNull)
  with ColumnMetadata; ListStatements, CancelStatement, ListDatabases, ListSchemas, ListTables and
  DescribeTable read the same databases;
- a statement names a ClusterIdentifier that exists in moto's `redshift` backend, or a WorkgroupName
  (moto 5.2.5 has no redshift-serverless, so any workgroup name is accepted), plus a Database;
- each (account, region, cluster or workgroup, database) is one DuckDB file under
  `<state_dir>/warehouse/`, so tables survive a restart; one connection and lock per file serialize work;
- DeleteCluster deletes a cluster's files, its snapshots copy them and a restore brings them back
  (`clusters.py`);
- GetStatementResult pages at 100 MB like AWS (RETAIL_WAREHOUSE_PAGE_BYTES lowers it, for tests).

SQL translation, COPY and UNLOAD live in `sql.py` and the modules it names. Other executors (Firehose's
Redshift destination) call `execute_sql(...)` directly, and find the target from a JDBC URL with
`parse_jdbc_url` / `jdbc_target`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import re
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from werkzeug.wrappers import Request

from localcloud.warehouse import sql as wsql
from localcloud.warehouse.clusters import ClusterFiles
from localcloud.executor_base import json_response
from localcloud.executors import DEFAULT_ACCOUNT, DEFAULT_REGION, CloudContext, WSGIApp

log = logging.getLogger("localcloud.warehouse")

TARGET_PREFIX = "RedshiftData."
WORKERS = 4
PAGE_BYTES = 100 * 1024 * 1024  # AWS pages GetStatementResult at 100 MB
DEFAULT_MAX_RESULTS = 100
MAX_WAIT_S = 30.0
REDSHIFT_PID = 1073807432  # one local "leader node" process
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:\d+)?")
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/")


class WarehouseError(Exception):
    """`execute_sql` failed; the message is Redshift's (e.g. the COPY load failure text)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ApiError(Exception):
    """An error answer of the Data API (`__type` and message as botocore reads them)."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: str):
        super().__init__(message)
        self.code, self.message, self.status, self.extra = code, message, status, extra


def _validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


# --------------------------------------------------------------------------------------------------
# Where SQL runs


@dataclass(frozen=True)
class Target:
    """A cluster or workgroup database: one DuckDB file."""

    account_id: str
    region: str
    kind: str  # "cluster" or "workgroup"
    name: str
    database: str

    def path(self, root: Path) -> Path:
        return root / self.account_id / self.region / f"{self.kind}-{self.name}" / f"{self.database}.duckdb"


def parse_jdbc_url(url: str) -> tuple[str, str]:
    """(cluster or workgroup, database) from a Redshift JDBC URL, as Firehose's ClusterJDBCURL holds it.

    Works for `jdbc:redshift://<cluster>.<id>.<region>.redshift.amazonaws.com:5439/<db>` (moto's
    cluster Endpoint.Address), `jdbc:redshift://<workgroup>.<account>.<region>.redshift-serverless.
    amazonaws.com:5439/<db>`, `jdbc:redshift:iam://...`, and locally any host whose first label is the
    cluster: `jdbc:redshift://retail-wh:5439/dev` or `jdbc:redshift://retail-wh.localhost:5439/dev`.
    """
    match = re.fullmatch(r"jdbc:redshift(?::iam)?://([^/:?]+)(?::\d+)?/([^?;/]+)(?:[?;].*)?", url.strip())
    if match is None:
        raise ValueError(f"not a Redshift JDBC URL: {url!r} (expected jdbc:redshift://<cluster>.<...>:5439/<db>)")
    host, database = match.groups()
    return host.split(".")[0], database


def jdbc_target(url: str) -> dict[str, str]:
    """`execute_sql` keywords for a JDBC URL: {"cluster" | "workgroup": name, "database": db}."""
    name, database = parse_jdbc_url(url)
    host = urlparse(url.strip()[len("jdbc:"):].replace("redshift:iam://", "redshift://")).hostname or ""
    return {"workgroup" if ".redshift-serverless." in host else "cluster": name, "database": database}


class Database:
    """One DuckDB file, its connection (opened on first use) and the lock that serializes it."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.connection: Any = None

    def connect(self) -> Any:
        import duckdb

        if self.connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = duckdb.connect(str(self.path))
            wsql.prepare(self.connection)
        return self.connection

    def close(self) -> None:
        with self.lock:
            if self.connection is not None:
                self.connection.close()
                self.connection = None


class MotoS3:
    """moto's S3, in-process, as COPY and UNLOAD read and write it (the bucket's own account)."""

    def __init__(self, account_id: str):
        self.account_id = account_id

    def _backend(self, bucket: str) -> Any:
        from localcloud.motoapi import s3_backends

        partition, account = s3_backends.bucket_accounts.get(bucket, ("aws", self.account_id))
        return s3_backends[account][partition]

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, key = url[len("s3://"):].partition("/")
        return bucket, key

    def _bucket(self, bucket: str) -> Any:
        from localcloud.motoapi import S3MissingBucket as MissingBucket

        try:
            return self._backend(bucket).get_bucket(bucket)
        except MissingBucket:
            raise wsql.SqlError(f"ERROR: S3ServiceException:The specified bucket does not exist,Status 404,"
                                f"Bucket {bucket}") from None

    def get(self, url: str) -> bytes | None:
        bucket, key = self._split(url)
        found = self._bucket(bucket).keys.get(key)
        return bytes(found.value) if found is not None else None

    def list(self, url: str) -> list[str]:
        bucket, prefix = self._split(url)
        keys = [key for key in list(self._bucket(bucket).keys.keys()) if key.startswith(prefix)]
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def put(self, url: str, data: bytes) -> None:
        bucket, key = self._split(url)
        self._bucket(bucket)
        self._backend(bucket).put_object(bucket, key, data)


# --------------------------------------------------------------------------------------------------
# Statements


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


# --------------------------------------------------------------------------------------------------
# Values and metadata as the Data API returns them


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


# --------------------------------------------------------------------------------------------------
# The executor


class Warehouse:
    """The redshift-data API over DuckDB files, and `execute_sql` for other executors."""

    name = "warehouse"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.root = Path()
        self.pool: ThreadPoolExecutor | None = None
        self.statements: dict[str, StatementRecord] = {}
        self.databases: dict[Target, Database] = {}
        self.guard = threading.Lock()
        self.running: dict[Target, StatementRecord] = {}
        self.page_bytes = PAGE_BYTES
        self.cluster_files = ClusterFiles(self)

    # -- lifecycle

    def start(self, cloud: CloudContext) -> None:
        import os

        self.cloud = cloud
        self.root = cloud.state_dir / "warehouse"
        self.page_bytes = int(os.environ.get("RETAIL_WAREHOUSE_PAGE_BYTES", PAGE_BYTES))
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="warehouse")
        self.cluster_files.install()

    def stop(self) -> None:
        self.cluster_files.uninstall()
        for target in list(self.running):
            database = self.databases.get(target)
            if database is not None and database.connection is not None:
                database.connection.interrupt()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        for database in list(self.databases.values()):
            database.close()
        self.databases.clear()
        self.cloud = None

    def route(self, request: Request) -> WSGIApp | None:
        target = request.environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX):
            return None
        return self._answer(target[len(TARGET_PREFIX):], request.environ)

    # -- the Python entry for other executors

    def execute_sql(self, sql: str, *, cluster: str | None = None, database: str, workgroup: str | None = None,
                    account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> int:
        """Run SQL now (every statement of it, in order); rows affected or loaded by the last one.

        Exactly one of `cluster` (must exist in moto) or `workgroup`; `jdbc_target(url)` gives both
        keywords from a JDBC URL. Raises WarehouseError with Redshift's message on failure."""
        try:
            target = self._target(account_id, region, cluster, workgroup, database)
        except ApiError as error:
            raise WarehouseError(error.message) from None
        record = self._record(target, [sql], is_batch=False, params={})
        self._run(record)
        if record.status != "FINISHED":
            raise WarehouseError(record.error or record.status)
        outcome = record.subs[0].outcome
        return outcome.affected if outcome else 0

    # -- targets and databases

    def _target(self, account_id: str, region: str, cluster: str | None, workgroup: str | None,
                database: str | None) -> Target:
        if bool(cluster) == bool(workgroup):
            raise _validation("Either ClusterIdentifier or WorkgroupName must be specified, but not both."
                              if cluster else "Either ClusterIdentifier or WorkgroupName must be specified.")
        if cluster and cluster not in self._clusters(account_id, region):
            raise _validation("Redshift endpoint doesn't exist in this region.")
        if not database:
            raise _validation("Database is required.")
        return Target(account_id, region, "cluster" if cluster else "workgroup", str(cluster or workgroup), database)

    def _clusters(self, account_id: str, region: str) -> dict[str, Any]:
        assert self.cloud is not None
        return dict(self.cloud.backend("redshift", account_id, region).clusters)

    def _database(self, target: Target) -> Database:
        with self.guard:
            if target not in self.databases:
                self.databases[target] = Database(target.path(self.root))
            return self.databases[target]

    def close_cluster(self, account_id: str, region: str, name: str, *, interrupt: bool) -> None:
        """Close a cluster's connections, so its files are complete on disk (the next statement opens them
        again). `interrupt`: the cluster is being deleted; its running statements are aborted and its
        databases forgotten."""
        key = (account_id, region, "cluster", name)
        with self.guard:
            closing = [(target, database) for target, database in self.databases.items()
                       if (target.account_id, target.region, target.kind, target.name) == key]
            if interrupt:
                for target, _ in closing:
                    del self.databases[target]
        for target, database in closing:
            if interrupt and self.running.get(target) is not None and database.connection is not None:
                database.connection.interrupt()
            database.close()

    # -- running statements

    def _record(self, target: Target, sqls: list[str], is_batch: bool, params: Mapping[str, Any]) -> StatementRecord:
        if not sqls or any(not (sql or "").strip() for sql in sqls):
            raise _validation("Sql must not be empty.")
        statement_id = str(uuid.uuid4())
        record = StatementRecord(
            id=statement_id, target=target, subs=[SubStatement(i, sql) for i, sql in enumerate(sqls, 1)],
            is_batch=is_batch, parameters=list(params.get("Parameters") or []), name=params.get("StatementName"),
            db_user=params.get("DbUser"), secret_arn=params.get("SecretArn"))
        with self.guard:
            self.statements[statement_id] = record
        return record

    def _submit(self, record: StatementRecord) -> None:
        assert self.pool is not None
        record.future = self.pool.submit(self._run, record)

    def _run(self, record: StatementRecord) -> None:
        database = self._database(record.target)
        with database.lock:
            if record.status == "ABORTED":
                return
            record.set_status("STARTED")
            self.running[record.target] = record
            try:
                self._run_subs(database.connect(), record)
            finally:
                self.running.pop(record.target, None)

    def _run_subs(self, con: Any, record: StatementRecord) -> None:
        import duckdb

        store = MotoS3(record.target.account_id)
        if record.is_batch:
            con.execute("BEGIN TRANSACTION")
        sub = record.subs[0]
        try:
            for sub in record.subs:
                sub.status, sub.started = "STARTED", time.time()
                sub.query_id = wsql.next_query_id(con)
                sql = wsql.bind_parameters(sub.sql, record.parameters)
                for statement in wsql.split_statements(sql):
                    sub.outcome = wsql.execute(con, statement, store, sub.query_id)
                sub.status, sub.ended = "FINISHED", time.time()
            if record.is_batch:
                con.execute("COMMIT")
            record.set_status("FINISHED")
        except duckdb.InterruptException:
            self._fail(con, record, sub, "ABORTED", "Query cancelled on user's request")
        except wsql.SqlError as error:
            self._fail(con, record, sub, "FAILED", error.message)
        except Exception as error:  # a bug here must fail the statement, not the worker
            log.exception("statement %s failed", record.id)
            self._fail(con, record, sub, "FAILED", f"ERROR: {type(error).__name__}: {error}")

    @staticmethod
    def _fail(con: Any, record: StatementRecord, sub: SubStatement, status: str, message: str) -> None:
        import duckdb

        if record.is_batch:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # DuckDB already rolled back the failed transaction
        sub.status, sub.error, sub.ended = status, message, time.time()
        for later in record.subs[sub.index:]:
            later.status = "ABORTED"
        record.set_status(status, message)

    # -- the HTTP side

    def _answer(self, action: str, environ: dict[str, Any]) -> WSGIApp:
        try:
            params = json.loads(_read_body(environ) or b"{}")
            account_id, region = _caller(environ)
            handler = getattr(self, f"_api_{_snake(action)}", None)
            if handler is None:
                raise _validation(f"Operation {action} is not supported by the local warehouse.")
            return _respond(200, handler(params, account_id, region))
        except ApiError as error:
            return _respond(error.status, {"__type": error.code, "Message": error.message, **error.extra})
        except ValueError as error:
            return _respond(400, {"__type": "ValidationException", "Message": f"Invalid request: {error}"})
        except Exception as error:  # a bug must answer like AWS, not kill the request
            log.exception("RedshiftData.%s failed", action)
            return _respond(500, {"__type": "InternalServerException", "Message": f"{type(error).__name__}: {error}"})

    def _request_target(self, params: Mapping[str, Any], account_id: str, region: str,
                        database_key: str = "Database") -> Target:
        database = params.get("ConnectedDatabase") or params.get(database_key)
        return self._target(account_id, region, params.get("ClusterIdentifier"), params.get("WorkgroupName"),
                            database)

    def _execute(self, sqls: list[str], params: Mapping[str, Any], account_id: str, region: str,
                 is_batch: bool) -> dict[str, Any]:
        target = self._request_target(params, account_id, region)
        record = self._record(target, sqls, is_batch, params)
        self._submit(record)
        wait = min(float(params.get("WaitTimeSeconds") or 0), MAX_WAIT_S)
        if wait:
            record.done.wait(wait)
        answer = {"Id": record.id, "CreatedAt": record.created_at, "Database": target.database,
                  "Status": record.status}
        answer.update(self._target_fields(record))
        return answer

    @staticmethod
    def _target_fields(record: StatementRecord) -> dict[str, Any]:
        target = record.target
        fields: dict[str, Any] = {"ClusterIdentifier" if target.kind == "cluster" else "WorkgroupName": target.name}
        if record.db_user:
            fields["DbUser"] = record.db_user
        if record.secret_arn:
            fields["SecretArn"] = record.secret_arn
        return fields

    def _api_execute_statement(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        return self._execute([params.get("Sql", "")], params, account_id, region, is_batch=False)

    def _api_batch_execute_statement(self, params: Mapping[str, Any], account_id: str,
                                     region: str) -> dict[str, Any]:
        return self._execute(list(params.get("Sqls") or []), params, account_id, region, is_batch=True)

    def _find(self, statement_id: str | None, account_id: str, region: str) -> tuple[StatementRecord, int | None]:
        """The statement (and sub-statement number for `<id>:<n>`) or AWS's not-found error."""
        if not statement_id or not _ID.fullmatch(statement_id):
            raise _validation(f"id must satisfy regex pattern: {_ID.pattern}")
        base, _, number = statement_id.partition(":")
        record = self.statements.get(base)
        if record is None or (record.target.account_id, record.target.region) != (account_id, region):
            raise ApiError("ResourceNotFoundException", "Query does not exist.", ResourceId=statement_id)
        if number and not 1 <= int(number) <= len(record.subs):
            raise ApiError("ResourceNotFoundException", "Query does not exist.", ResourceId=statement_id)
        return record, int(number) if number else None

    def _api_describe_statement(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        record, number = self._find(params.get("Id"), account_id, region)
        subs = [record.subs[number - 1]] if number else record.subs
        answer: dict[str, Any] = {
            "Id": params["Id"], "Status": subs[0].status if number else record.status,
            "CreatedAt": record.created_at, "UpdatedAt": max(record.updated_at, *(s.updated_at for s in subs)),
            "Database": record.target.database, "Duration": sum(_duration_ns(s) for s in subs),
            "HasResultSet": any(bool(s.outcome and s.outcome.columns is not None) for s in subs),
            "QueryString": ";\n".join(s.sql for s in subs), "RedshiftPid": REDSHIFT_PID,
            "RedshiftQueryId": subs[-1].query_id, "ResultRows": self._result_rows(subs[-1]), "ResultSize": 0,
            "ResultFormat": "JSON",
        }
        answer.update(self._target_fields(record))
        error = subs[0].error if number else record.error
        if error:
            answer["Error"] = error
        if record.parameters:
            answer["QueryParameters"] = record.parameters
        if record.is_batch and not number:
            answer["SubStatements"] = [self._sub_answer(record, sub) for sub in record.subs]
        return answer

    @staticmethod
    def _result_rows(sub: SubStatement) -> int:
        return sub.outcome.affected if sub.status == "FINISHED" and sub.outcome else -1

    def _sub_answer(self, record: StatementRecord, sub: SubStatement) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "Id": f"{record.id}:{sub.index}", "Status": sub.status, "QueryString": sub.sql,
            "CreatedAt": record.created_at, "UpdatedAt": _finished_at(sub), "Duration": _duration_ns(sub),
            "HasResultSet": bool(sub.outcome and sub.outcome.columns is not None),
            "ResultRows": self._result_rows(sub), "ResultSize": 0, "RedshiftQueryId": sub.query_id,
        }
        if sub.error:
            answer["Error"] = sub.error
        return answer

    def _api_get_statement_result(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        record, number = self._find(params.get("Id"), account_id, region)
        if record.is_batch and number is None:
            raise _validation("Batch statement results are per sub-statement: use the id <Id>:<n>.")
        sub = record.subs[(number or 1) - 1]
        outcome = sub.outcome
        if sub.status != "FINISHED" or outcome is None or outcome.columns is None:
            raise ApiError("ResourceNotFoundException",
                           "Query does not have result. Please check query status with DescribeStatement.",
                           ResourceId=params["Id"])
        start = _offset(params.get("NextToken"))
        records, size, end = [], 0, start
        while end < len(outcome.rows) and (not records or size < self.page_bytes):
            row = [field_value(value) for value in outcome.rows[end]]
            size += len(json.dumps(row))
            records.append(row)
            end += 1
        answer: dict[str, Any] = {
            "Records": records, "TotalNumRows": len(outcome.rows),
            "ColumnMetadata": [result_column(name, type_) for name, type_ in outcome.columns],
        }
        if end < len(outcome.rows):
            answer["NextToken"] = _token(end)
        return answer

    def _api_list_statements(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        status = params.get("Status") or "ALL"
        prefix = params.get("StatementName")
        wanted = {key: params.get(key) for key in ("ClusterIdentifier", "WorkgroupName", "Database")}
        chosen = []
        for record in sorted(list(self.statements.values()), key=lambda r: r.created_at, reverse=True):
            target = record.target
            actual = {"ClusterIdentifier": target.name if target.kind == "cluster" else None,
                      "WorkgroupName": target.name if target.kind == "workgroup" else None,
                      "Database": target.database}
            if (target.account_id, target.region) != (account_id, region) \
                    or status not in ("ALL", record.status) \
                    or (prefix and not (record.name or "").startswith(prefix)) \
                    or any(value and actual[key] != value for key, value in wanted.items()):
                continue
            chosen.append(record)
        page, token = _page(chosen, params)
        return {"Statements": [self._statement_data(record) for record in page], **token}

    @staticmethod
    def _statement_data(record: StatementRecord) -> dict[str, Any]:
        data: dict[str, Any] = {"Id": record.id, "Status": record.status, "CreatedAt": record.created_at,
                                "UpdatedAt": record.updated_at, "IsBatchStatement": record.is_batch,
                                "ResultFormat": "JSON"}
        if record.is_batch:
            data["QueryStrings"] = [sub.sql for sub in record.subs]
        else:
            data["QueryString"] = record.subs[0].sql
        if record.name:
            data["StatementName"] = record.name
        if record.secret_arn:
            data["SecretArn"] = record.secret_arn
        if record.parameters:
            data["QueryParameters"] = record.parameters
        return data

    def _api_cancel_statement(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        record, _ = self._find(params.get("Id"), account_id, region)
        if record.status in ("FINISHED", "FAILED", "ABORTED"):
            raise _validation(f"Could not cancel a query that is already in {record.status} state.")
        if record.status == "SUBMITTED":
            record.set_status("ABORTED", "Query cancelled on user's request")
            for sub in record.subs:
                sub.status = "ABORTED"
        elif self.running.get(record.target) is record:
            database = self.databases.get(record.target)
            if database is not None and database.connection is not None:
                database.connection.interrupt()
        return {"Status": True}

    def _metadata(self, target: Target, read: Callable[[Any], Any]) -> Any:
        """Run a catalog read on a target's database (serialized with its statements)."""
        database = self._database(target)
        with database.lock:
            return read(database.connect())

    def _api_list_databases(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        target = self._request_target(params, account_id, region)
        folder = target.path(self.root).parent
        names = {path.stem for path in folder.glob("*.duckdb")} | {target.database}
        if target.kind == "cluster":
            names.add(self._clusters(account_id, region)[target.name].db_name)
        page, token = _page(sorted(names), params)
        return {"Databases": page, **token}

    def _api_list_schemas(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        target = self._request_target(params, account_id, region)
        rows = self._metadata(target, lambda con: con.execute(
            "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
            "AND schema_name <> 'main'").fetchall())
        pattern = _like(params.get("SchemaPattern"))
        names = sorted(name for (name,) in rows if pattern.fullmatch(name))
        page, token = _page(names, params)
        return {"Schemas": page, **token}

    def _tables(self, target: Target, schema_pattern: str | None, table_pattern: str | None) -> list[dict[str, str]]:
        rows = self._metadata(target, lambda con: con.execute(
            "SELECT schema_name, table_name, 'TABLE' FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name <> 'main' UNION ALL SELECT schema_name, view_name, 'VIEW' FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal AND schema_name <> 'main' "
            "ORDER BY 1, 2").fetchall())
        schemas, tables = _like(schema_pattern), _like(table_pattern)
        return [{"schema": schema, "name": name, "type": kind} for schema, name, kind in rows
                if schemas.fullmatch(schema) and tables.fullmatch(name)]

    def _api_list_tables(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        target = self._request_target(params, account_id, region)
        tables = self._tables(target, params.get("SchemaPattern"), params.get("TablePattern"))
        page, token = _page(tables, params)
        return {"Tables": page, **token}

    def _api_describe_table(self, params: Mapping[str, Any], account_id: str, region: str) -> dict[str, Any]:
        target = self._request_target(params, account_id, region)
        tables = [t for t in self._tables(target, params.get("Schema"), params.get("Table")) if t["type"] == "TABLE"]
        columns = []
        for table in tables:
            _schema, _oid, specs = self._metadata(
                target, lambda con, t=table: wsql.table_columns(con, t["schema"], t["name"]))
            columns += [_table_column(table["schema"], table["name"], spec) for spec in specs]
        page, token = _page(columns, params)
        answer: dict[str, Any] = {"ColumnList": page, **token}
        if params.get("Table"):
            answer["TableName"] = params["Table"]
        return answer


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


def _caller(environ: Mapping[str, Any]) -> tuple[str, str]:
    """(account, region) of a signed request, the way moto decides them."""
    import os

    from localcloud.motoapi import get_account_id_from

    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region = match.group(2) if match else DEFAULT_REGION
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"], region
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"], region
    return get_account_id_from(match.group(1) if match else "AKIAEXAMPLE"), region


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if stream is None:
        return b""
    return stream.read(length) if length > 0 else stream.read() if environ.get("wsgi.input_terminated") else b""


def _respond(status: int, body: Mapping[str, Any]) -> WSGIApp:
    return json_response(status, body, "application/x-amz-json-1.1", request_id=True)


def make_executor() -> Warehouse:
    return Warehouse()


__all__ = ["Warehouse", "WarehouseError", "jdbc_target", "make_executor", "parse_jdbc_url"]
