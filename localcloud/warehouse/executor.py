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
  (moto has no redshift-serverless, so any workgroup name is accepted; its API is refused by the
  unsupported executor), plus a Database;
- each (account, region, cluster or workgroup, database) is one DuckDB file under
  `<state_dir>/warehouse/`, so tables survive a restart; one connection and lock per file serialize work;
- DeleteCluster deletes a cluster's files, its snapshots copy them and a restore brings them back
  (`clusters.py`);
- GetStatementResult pages at 100 MB like AWS (RETAIL_WAREHOUSE_PAGE_BYTES lowers it, for tests).

SQL translation, COPY and UNLOAD live in `sql.py` and the modules it names; targets, files and S3 in
`targets.py`; the Data API's values, metadata and errors in `data_api.py`. Other executors (Firehose's
Redshift destination) call `execute_sql(...)` directly, and find the target from a JDBC URL with
`parse_jdbc_url` / `jdbc_target`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from werkzeug.wrappers import Request

from localcloud.executor_base import caller, read_body, signing_name
from localcloud.executors import DEFAULT_ACCOUNT, DEFAULT_REGION, CloudContext, WSGIApp
from localcloud.warehouse import sql as wsql
from localcloud.warehouse.clusters import ClusterFiles
from localcloud.warehouse.data_api import (
    ApiError, StatementRecord, SubStatement, _duration_ns, _finished_at, _like, _offset, _page,
    _respond, _snake, _table_column, _token, _validation, field_value, result_column,
)
from localcloud.warehouse.targets import Database, MotoS3, Target, jdbc_target, parse_jdbc_url

log = logging.getLogger("localcloud.warehouse")

TARGET_PREFIX = "RedshiftData."
WORKERS = 4
PAGE_BYTES = 100 * 1024 * 1024  # AWS pages GetStatementResult at 100 MB
MAX_WAIT_S = 30.0
REDSHIFT_PID = 1073807432  # one local "leader node" process
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:\d+)?")


class WarehouseError(Exception):
    """`execute_sql` failed; the message is Redshift's (e.g. the COPY load failure text)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
        if not self.cluster_files.installed and signing_name(request.environ) == "redshift":
            self.cluster_files.install()  # importing moto's Redshift (and EC2) takes a second: when first used
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

    @contextlib.contextmanager
    def cluster_files_still(self, account_id: str, region: str, name: str, *, forget: bool) -> Iterator[None]:
        """While the block runs, no connection is open on the cluster's files and none can open: its
        databases are closed under their locks, and new statements wait (they need `guard` to find a
        database). `forget`: the cluster is going (deleted, or restored over): running statements are
        interrupted and its databases forgotten. Lock order is guard, then a database's lock, as elsewhere."""
        key = (account_id, region, "cluster", name)
        with self.guard:
            mine = [(target, database) for target, database in self.databases.items()
                    if (target.account_id, target.region, target.kind, target.name) == key]
            with contextlib.ExitStack() as held:
                for target, database in mine:
                    if forget and self.running.get(target) is not None and database.connection is not None:
                        database.connection.interrupt()
                    held.enter_context(database.lock)
                    database.close()
                    if forget:
                        del self.databases[target]
                yield

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
            params = json.loads(read_body(environ) or b"{}")
            account_id, region = caller(environ)
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



def make_executor() -> Warehouse:
    return Warehouse()


__all__ = [  # jdbc_target and parse_jdbc_url live in targets.py; importable from here as before
    "Database", "MotoS3", "Target", "Warehouse", "WarehouseError", "jdbc_target", "make_executor", "parse_jdbc_url",
]

