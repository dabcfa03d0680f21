"""Athena in the local cloud: moto stores workgroups, named queries and data catalogs (still answered by
moto), but its queries always succeed with no rows. This executor claims the query-execution operations
of the Athena API (AWS JSON 1.1, `X-Amz-Target: AmazonAthena.*`) and runs the SQL for real:

- StartQueryExecution queues the query (QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED) and answers
  its id; the output location comes from the request or the workgroup (the workgroup's wins when it
  enforces its configuration), and none at all is refused as Athena refuses it;
- a query runs on DuckDB over the Glue tables' S3 objects (`engine.py`, `tables.py`); DDL and utility
  statements write the Glue Data Catalog (`ddl.py`);
- results are written where Athena writes them: `<OutputLocation>/<id>.csv` (quoted CSV with a header)
  or `<id>.txt` for DDL, each with its `.metadata`; GetQueryResults pages them (header row first for a
  SELECT, typed ColumnInfo), from memory or, after a restart, from those files;
- Statistics: DataScannedInBytes (bytes of the objects read), engine and total times;
- ListDatabases, GetDatabase, ListTableMetadata, GetTableMetadata read the Glue Data Catalog
  (`catalog_api.py`), as AwsDataCatalog is Glue on AWS.

Query records live on moto's Athena backend, so they are saved with moto's state."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request

from localcloud.athena import ddl, engine
from localcloud.athena.catalog_api import CatalogApi
from localcloud.athena.named_queries import NamedQueryApi
from localcloud.athena.queries import ENDED, Query, bind, queries_of
from localcloud.athena.results import csv_text, read_csv, rows_page
from localcloud.athena.tables import COLUMNAR, QueryFailed, Reading
from localcloud.executors import CloudContext, WSGIApp
from localcloud.glue.lake import ApiError, Lake, LakeError, answer, folder, split_url
from localcloud.persistence.journal import journaled

log = logging.getLogger("localcloud.athena")

PREFIX = "AmazonAthena."
OPERATIONS = {"StartQueryExecution", "GetQueryExecution", "BatchGetQueryExecution", "ListQueryExecutions",
              "StopQueryExecution", "GetQueryResults", "GetQueryRuntimeStatistics",
              # AwsDataCatalog is the Glue Data Catalog: its databases and tables are Glue's, not moto's own list
              "ListDatabases", "GetDatabase", "ListTableMetadata", "GetTableMetadata",
              # moto has no DeleteNamedQuery/UpdateNamedQuery/BatchGetNamedQuery and ignores RecursiveDeleteOption
              "GetNamedQuery", "DeleteNamedQuery", "UpdateNamedQuery", "BatchGetNamedQuery", "DeleteWorkGroup"}
MUTATING = {"StartQueryExecution", "StopQueryExecution", "DeleteNamedQuery", "UpdateNamedQuery", "DeleteWorkGroup"}
WORKERS = 2
_TEXT_OUTPUT = re.compile(r"^\s*(CREATE\s+(EXTERNAL\s+)?TABLE(?!.*\bAS\s*\(?\s*(SELECT|WITH)\b)|CREATE\s+(DATABASE|SCHEMA)"
                          r"|DROP|ALTER|MSCK|SHOW|DESCRIBE|DESC\s)", re.I | re.S)


class Athena(CatalogApi, NamedQueryApi):
    name = "athena"

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._cache: Path | None = None
        self._rows: dict[str, list[tuple[Any, ...]]] = {}  # results of this process, by query id

    # -- executor contract

    def start(self, cloud: CloudContext) -> None:
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="athena")
        self._cache = cloud.state_dir / "athena-cache"
        shutil.rmtree(self._cache, ignore_errors=True)
        self._cache.mkdir(parents=True, exist_ok=True)
        self._fail_interrupted()
        COLUMNAR.restart()
        threading.Thread(target=_warm_up, name="athena-warm-up", daemon=True).start()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._fail_interrupted()
        COLUMNAR.stop()
        if self._cache is not None:
            shutil.rmtree(self._cache, ignore_errors=True)

    def route(self, request: Request) -> WSGIApp | None:
        target = request.environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(PREFIX) or target[len(PREFIX):] not in OPERATIONS:
            return None
        operation = target[len(PREFIX):]
        handler = getattr(self, "_api_" + re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        app = answer(handler, log)
        # the query records live in moto's backend: a start or stop is journaled like moto's own writes and
        # replayed through here after a crash (the id is drawn from moto's recorded random numbers)
        return journaled(app) if operation in MUTATING else app  # type: ignore[return-value,arg-type]

    # -- state

    @staticmethod
    def _backend(account_id: str, region: str) -> Any:
        from localcloud.motoapi import athena_backends

        return athena_backends[account_id][region]

    def _query(self, params: dict[str, Any], account_id: str, region: str) -> Query:
        query_id = str(params.get("QueryExecutionId") or "")
        found = queries_of(self._backend(account_id, region)).get(query_id)
        if found is None:
            raise ApiError("InvalidRequestException", f"QueryExecution {query_id} was not found")
        return found

    def _fail_interrupted(self) -> None:
        from localcloud.motoapi import athena_backends

        for regions in list(athena_backends.values()):
            for backend in list(regions.values()):
                for query in list(queries_of(backend).values()):
                    if query.state not in ENDED:
                        query.state, query.completed = "FAILED", time.time()
                        query.reason = "the local cloud stopped while the query ran; run it again"
                        query.error = {"ErrorCategory": 1, "ErrorType": 401, "Retryable": True,
                                       "ErrorMessage": query.reason}

    # -- operations

    def _api_start_query_execution(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        sql = params.get("QueryString")
        if not isinstance(sql, str) or not sql.strip():
            raise ApiError("InvalidRequestException", "QueryString must not be empty")
        backend = self._backend(account_id, region)
        queries = queries_of(backend)
        token = params.get("ClientRequestToken")
        if token:
            for query in queries.values():
                if query.token == token:
                    if query.sql != sql:
                        raise ApiError("InvalidRequestException", "Idempotent parameters do not match")
                    return {"QueryExecutionId": query.id}
        workgroup_name = params.get("WorkGroup") or "primary"
        workgroup = backend.work_groups.get(workgroup_name)
        if workgroup is None:
            raise ApiError("InvalidRequestException", f"WorkGroup {workgroup_name} is not found.")
        configuration = workgroup.configuration or {}
        group_output = (configuration.get("ResultConfiguration") or {}).get("OutputLocation")
        asked = (params.get("ResultConfiguration") or {}).get("OutputLocation")
        output = group_output if (group_output and configuration.get("EnforceWorkGroupConfiguration")) \
            else (asked or group_output)
        if not output:
            raise ApiError("InvalidRequestException", "No output location provided. An output location is required "
                           "either through the Workgroup result configuration setting or as an API input.")
        try:
            split_url(output)
        except LakeError as error:
            raise ApiError("InvalidRequestException", str(error)) from None
        context = params.get("QueryExecutionContext") or {}
        from localcloud.motoapi import mock_random

        query_id = str(mock_random.uuid4())
        if query_id in queries:  # a replayed start of a query the restored state already holds
            return {"QueryExecutionId": query_id}
        suffix = ".txt" if _TEXT_OUTPUT.match(sql) else ".csv"
        query = Query(query_id, sql, str(context.get("Database") or "default"),
                      str(context.get("Catalog") or "AwsDataCatalog"), workgroup_name,
                      folder(output) + query_id + suffix, token=token,
                      parameters=params.get("ExecutionParameters"))
        queries[query_id] = query
        assert self._pool is not None
        self._pool.submit(self._run, query, account_id, region)
        return {"QueryExecutionId": query_id}

    def _api_get_query_execution(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        return {"QueryExecution": self._query(params, account_id, region).describe()}

    def _api_batch_get_query_execution(self, params: dict[str, Any], account_id: str,
                                       region: str) -> dict[str, Any]:
        queries = queries_of(self._backend(account_id, region))
        found, missing = [], []
        for query_id in params.get("QueryExecutionIds") or []:
            if query_id in queries:
                found.append(queries[query_id].describe())
            else:
                missing.append({"QueryExecutionId": query_id, "ErrorCode": "INVALID_INPUT",
                                "ErrorMessage": f"QueryExecution {query_id} was not found"})
        return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}

    def _api_list_query_executions(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        workgroup = params.get("WorkGroup") or "primary"
        ids = [q.id for q in sorted(queries_of(self._backend(account_id, region)).values(),
                                    key=lambda q: q.submitted, reverse=True) if q.workgroup == workgroup]
        start = int(params.get("NextToken") or 0)
        limit = min(int(params.get("MaxResults") or 50), 50)
        out: dict[str, Any] = {"QueryExecutionIds": ids[start:start + limit]}
        if start + limit < len(ids):
            out["NextToken"] = str(start + limit)
        return out

    def _api_stop_query_execution(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        query = self._query(params, account_id, region)
        if query.state not in ENDED:
            query.state, query.completed = "CANCELLED", time.time()
            query.reason = "Query cancelled by user"
        return {}

    def _api_get_query_runtime_statistics(self, params: dict[str, Any], account_id: str,
                                          region: str) -> dict[str, Any]:
        query = self._query(params, account_id, region)
        described = query.describe()["Statistics"]
        return {"QueryRuntimeStatistics": {
            "Timeline": {k: described[k] for k in ("QueryQueueTimeInMillis", "QueryPlanningTimeInMillis",
                                                   "EngineExecutionTimeInMillis", "ServiceProcessingTimeInMillis",
                                                   "TotalExecutionTimeInMillis")},
            "Rows": {"InputBytes": query.scanned, "OutputRows": query.row_count}}}

    def _api_get_query_results(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        query = self._query(params, account_id, region)
        if query.state in ("QUEUED", "RUNNING"):
            raise ApiError("InvalidRequestException", f"Query has not yet finished. Current state: {query.state}")
        if query.state != "SUCCEEDED":
            raise ApiError("InvalidRequestException",
                           f"Query did not finish successfully. Final query state: {query.state}")
        rows = self._rows.get(query.id)
        if rows is None:  # a restart: read the result file back, as Athena does
            try:
                text = Lake(account_id).read(query.output).decode("utf-8")
            except LakeError as error:
                raise ApiError("InvalidRequestException", f"Unable to read the query results: {error}") from None
            rows = read_csv(text, query.header)
            self._rows[query.id] = rows
        return rows_page(query.columns, rows, query.header, params.get("NextToken"), params.get("MaxResults"))

    # -- running

    def _run(self, query: Query, account_id: str, region: str) -> None:
        if query.state != "QUEUED":
            return
        query.state, query.started = "RUNNING", time.time()
        glue = self._glue(account_id, region)
        if "default" not in glue.databases:  # every account's catalog has it on AWS
            glue.create_database("default", {"Name": "default", "Description": "Default Hive database"})
        lake = Lake(account_id)
        assert self._cache is not None
        reading = Reading(lake, self._cache)
        began = time.monotonic()
        try:
            if query.catalog.lower() != engine.CATALOG:
                raise QueryFailed(f"CATALOG_NOT_FOUND: Catalog '{query.catalog}' does not exist", error_type=1003)
            sql = bind(query.sql, query.parameters)
            result = ddl.utility(sql, glue, query.database.lower(), lake)
            if result is None:
                tree = engine.parse(sql)
                from sqlglot import exp

                if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() != "TABLE":
                    raise QueryFailed(f"NOT_SUPPORTED: the local Athena does not create "
                                      f"{str(tree.args.get('kind') or 'that').upper()}S", error_type=1005)
                if isinstance(tree, exp.Create) and tree.expression is not None:
                    result = engine.ctas(tree, glue, query.database.lower(), reading,
                                         query.output.rsplit("/", 1)[0] + "/", query.id)
                elif isinstance(tree, (exp.Select, exp.Union, exp.Subquery, exp.Values)) or tree.find(exp.Select) \
                        and not isinstance(tree, (exp.Insert, exp.Delete, exp.Update, exp.Merge, exp.Create,
                                                  exp.Command, exp.Drop, exp.Alter)):
                    result = engine.select(tree, glue, query.database.lower(), reading)
                else:
                    raise QueryFailed(f"NOT_SUPPORTED: the local Athena does not run "
                                      f"{type(tree).__name__.upper()} statements", error_type=1005)
            query.engine_ms = int((time.monotonic() - began) * 1000)
            query.scanned = reading.scanned
            if query.state == "CANCELLED":
                return
            self._store(query, result, lake)
            query.state = "SUCCEEDED"
        except QueryFailed as failure:
            self._fail(query, failure.message, failure.category, failure.error_type)
        except LakeError as failure:
            self._fail(query, f"HIVE_CANNOT_OPEN_SPLIT: {failure}", 2, 1003)
        except Exception as failure:  # a bug fails the query visibly, never SUCCEEDED with no rows
            log.exception("query %s failed", query.id)
            self._fail(query, f"GENERIC_INTERNAL_ERROR: {type(failure).__name__}: {failure}", 1, 1001)
        finally:
            query.engine_ms = query.engine_ms or int((time.monotonic() - began) * 1000)
            if query.completed is None:
                query.completed = time.time()

    @staticmethod
    def _fail(query: Query, message: str, category: int, error_type: int) -> None:
        if query.state == "CANCELLED":
            return
        query.state, query.reason = "FAILED", message
        query.error = {"ErrorCategory": category, "ErrorType": error_type, "Retryable": False,
                       "ErrorMessage": message}

    def _store(self, query: Query, result: engine.Result, lake: Lake) -> None:
        """Write the result file and its metadata where Athena writes them, then keep the rows."""
        rows = [tuple(engine.text_value(v) for v in row) for row in result.rows]
        query.statement_type, query.substatement = result.statement_type, result.substatement
        query.columns, query.header, query.row_count = result.columns, result.header, len(rows)
        if result.text_output and query.output.endswith(".csv"):
            query.output = query.output[:-4] + ".txt"
        elif not result.text_output and query.output.endswith(".txt"):
            query.output = query.output[:-4] + ".csv"
        if result.text_output:
            body = "".join("\t".join(v or "" for v in row) + "\n" for row in rows)
        else:
            body = csv_text([c["Name"] for c in result.columns], rows)
        lake.write(query.output, body.encode("utf-8"))
        lake.write(query.output + ".metadata", json.dumps({"ColumnInfo": result.columns}).encode())
        self._rows[query.id] = rows


def _warm_up() -> None:
    """Load sqlglot's dialects and DuckDB before the first query needs them (most of a second)."""
    try:
        engine.parse("SELECT 1").sql(dialect="duckdb")
        engine.connect().close()
    except Exception:  # noqa: BLE001 - only a head start; the first query loads them otherwise
        log.debug("warm-up failed", exc_info=True)


def make_executor() -> Athena:
    return Athena()
