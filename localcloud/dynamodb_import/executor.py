"""DynamoDB's ImportTable, DescribeImport and ListImports, performed on moto's state.

ImportTable creates the new table from TableCreationParameters (moto's own validation and CreateTable)
and answers IN_PROGRESS; a thread then reads every object under S3BucketSource (moto's S3, in-process)
in the InputFormat (CSV or DYNAMODB_JSON; `formats.py`) and compression (GZIP or NONE), writes the
items, and ends COMPLETED with ProcessedItemCount, ImportedItemCount (distinct keys in the table: AWS
overwrites duplicates without counting them as errors), ErrorCount and ProcessedSizeBytes. Items that
fail (a missing or mistyped key, bad JSON, an item DynamoDB refuses) are counted in ErrorCount and
logged to CloudWatch Logs, group `/aws-dynamodb/imports`, one stream per import, as AWS does. A missing
bucket or an empty prefix ends FAILED with a FailureCode. ION and ZSTD are refused at the request
(ValidationException naming them): the local cloud does not read them. ClientToken makes a retried
request answer the same import (IdempotentParameterMismatchException when the parameters differ).

The imports live in moto's DynamoDB backend (`table_imports`, which moto already has), so they are
saved and restored with the rest of its state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request

from localcloud.dynamodb_import import formats
from localcloud.executor_base import caller, read_body
from localcloud.executors import CloudContext, WSGIApp

log = logging.getLogger("localcloud")

TARGET_PREFIX = "DynamoDB_20120810."
ACTIONS = ("ImportTable", "DescribeImport", "ListImports")
LOG_GROUP = "/aws-dynamodb/imports"
CONTENT_TYPE = "application/x-amz-json-1.0"


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class TableImportRecord:
    """One import, in the words of ImportTableDescription."""

    arn: str
    account: str
    region: str
    request: dict[str, Any]
    table_arn: str
    table_id: str
    status: str = "IN_PROGRESS"
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    processed: int = 0
    processed_bytes: int = 0
    imported: int = 0
    errors: int = 0
    failure_code: str | None = None
    failure_message: str | None = None

    @property
    def log_group_arn(self) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{LOG_GROUP}:*"

    def description(self) -> dict[str, Any]:
        request = self.request
        answer = {
            "ImportArn": self.arn, "ImportStatus": self.status, "TableArn": self.table_arn, "TableId": self.table_id,
            "S3BucketSource": request["S3BucketSource"], "ErrorCount": self.errors,
            "CloudWatchLogGroupArn": self.log_group_arn, "InputFormat": request["InputFormat"],
            "InputCompressionType": request.get("InputCompressionType") or "NONE",
            "TableCreationParameters": request["TableCreationParameters"], "StartTime": self.start_time,
            "ProcessedSizeBytes": self.processed_bytes, "ProcessedItemCount": self.processed,
            "ImportedItemCount": self.imported,
        }
        for key, value in (("ClientToken", request.get("ClientToken")), ("InputFormatOptions", request.get("InputFormatOptions")),
                           ("EndTime", self.end_time), ("FailureCode", self.failure_code),
                           ("FailureMessage", self.failure_message)):
            if value is not None:
                answer[key] = value
        return answer

    def summary(self) -> dict[str, Any]:
        answer = {key: value for key, value in self.description().items() if key in (
            "ImportArn", "ImportStatus", "TableArn", "S3BucketSource", "CloudWatchLogGroupArn", "InputFormat",
            "StartTime", "EndTime")}
        return answer


def _validate_creation(creation: dict[str, Any], billing: str) -> None:
    """What CreateTable checks before it creates anything (key schema, attribute definitions, billing)."""
    keys = creation.get("KeySchema") or []
    defined = {a.get("AttributeName"): a.get("AttributeType") for a in creation.get("AttributeDefinitions") or []}
    if not keys or len(keys) > 2 or [k.get("KeyType") for k in keys][0] != "HASH" or \
            any(k.get("KeyType") not in ("HASH", "RANGE") for k in keys):
        raise ApiError("ValidationException", "KeySchema must be one HASH key, optionally followed by one RANGE key")
    index_keys = [k for index in creation.get("GlobalSecondaryIndexes") or [] for k in index.get("KeySchema") or []]
    for key in [*keys, *index_keys]:
        if key.get("AttributeName") not in defined:
            raise ApiError("ValidationException", "One or more parameter values were invalid: Some index key "
                                                  "attributes are not defined in AttributeDefinitions")
    if any(kind not in ("S", "N", "B") for kind in defined.values()):
        raise ApiError("ValidationException", "AttributeType must be S, N or B")
    if billing == "PROVISIONED" and not creation.get("ProvisionedThroughput"):
        raise ApiError("ValidationException", "One or more parameter values were invalid: ReadCapacityUnits and "
                                              "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    if billing == "PAY_PER_REQUEST" and creation.get("ProvisionedThroughput"):
        raise ApiError("ValidationException", "ProvisionedThroughput cannot be specified when BillingMode is PAY_PER_REQUEST")


def _page_start(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(token[:16], 16)
    except ValueError:
        raise ApiError("ValidationException", "Invalid NextToken") from None


def _respond(status: int, body: Any) -> WSGIApp:
    data = json.dumps(body).encode()

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(data))),
                        ("x-amzn-RequestId", str(uuid.uuid4()))])
        return [data]
    return app


class DynamoDBImportExecutor:
    name = "dynamodb-import"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self, cloud: CloudContext) -> None:
        self.cloud = cloud

    def stop(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)
        self.threads = []

    def route(self, request: Request) -> WSGIApp | None:
        target = request.environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX) or target[len(TARGET_PREFIX):] not in ACTIONS:
            return None
        action = target[len(TARGET_PREFIX):]
        try:
            params = json.loads(read_body(request.environ) or b"{}")
            account, region = caller(request.environ)
            handler = {"ImportTable": self.import_table, "DescribeImport": self.describe_import,
                       "ListImports": self.list_imports}[action]
            return _respond(200, handler(params, account, region))
        except ApiError as error:
            return _respond(error.status, {"__type": f"com.amazonaws.dynamodb.v20120810#{error.code}",
                                           "message": error.message})
        except ValueError as error:
            return _respond(400, {"__type": "com.amazon.coral.validate#ValidationException", "message": str(error)})
        except Exception as error:  # noqa: BLE001 - answered like AWS, never a dropped connection
            log.exception("DynamoDB.%s failed", action)
            return _respond(500, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                                  "message": f"{type(error).__name__}: {error}"})

    # -- the API

    @staticmethod
    def _backend(account: str, region: str) -> Any:
        from localcloud.motoapi import dynamodb_backends

        return dynamodb_backends[account][region]

    def _imports(self, account: str, region: str) -> dict[str, Any]:
        return self._backend(account, region).table_imports

    def import_table(self, params: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        source, creation = params.get("S3BucketSource") or {}, params.get("TableCreationParameters") or {}
        if not source.get("S3Bucket") or not creation.get("TableName") or not params.get("InputFormat"):
            raise ApiError("ValidationException", "S3BucketSource.S3Bucket, InputFormat and "
                                                  "TableCreationParameters.TableName are required")
        if params["InputFormat"] not in ("CSV", "DYNAMODB_JSON"):
            raise ApiError("ValidationException", f"ImportTable: InputFormat {params['InputFormat']} is not read by "
                                                  "the local cloud (CSV and DYNAMODB_JSON are)")
        if (params.get("InputCompressionType") or "NONE") not in ("GZIP", "NONE"):
            raise ApiError("ValidationException", f"ImportTable: InputCompressionType {params['InputCompressionType']} "
                                                  "is not read by the local cloud (GZIP and NONE are)")
        if params.get("InputFormatOptions") and params["InputFormat"] != "CSV":
            raise ApiError("ValidationException", "InputFormatOptions is only valid with InputFormat CSV")
        with self.lock:
            imports = self._imports(account, region)
            token = params.get("ClientToken")
            for record in imports.values():
                if token and isinstance(record, TableImportRecord) and record.request.get("ClientToken") == token:
                    if record.request != params:
                        raise ApiError("IdempotentParameterMismatchException",
                                       "ClientToken was used with different parameters")
                    return {"ImportTableDescription": record.description()}
            table = self._create_table(creation, account, region)
            record = TableImportRecord(f"{table.table_arn}/import/{uuid.uuid4().hex}", account, region, params,
                                       table.table_arn, str(uuid.uuid4()))
            imports[record.arn] = record
        answer = {"ImportTableDescription": record.description()}  # IN_PROGRESS, as AWS answers, however quick
        thread = threading.Thread(target=self._run, args=(record,), daemon=True, name=f"import-{record.table_id[:8]}")
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()
        return answer

    def _create_table(self, creation: dict[str, Any], account: str, region: str) -> Any:
        """CreateTable with the import's TableCreationParameters (moto's CreateTable; its errors as AWS's)."""
        billing = creation.get("BillingMode") or "PROVISIONED"
        _validate_creation(creation, billing)
        try:
            return self._backend(account, region).create_table(
                creation["TableName"], schema=creation["KeySchema"], throughput=creation.get("ProvisionedThroughput"),
                attr=creation["AttributeDefinitions"], global_indexes=creation.get("GlobalSecondaryIndexes"),
                indexes=None, streams=None, billing_mode=billing, sse_specification=creation.get("SSESpecification"),
                tags=[], deletion_protection_enabled=False, warm_throughput=None)
        except Exception as error:
            code = getattr(error, "error_type", None)
            if code is None:
                raise
            raise ApiError(code.split("#")[-1], getattr(error, "message", str(error))) from None

    def describe_import(self, params: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        record = self._imports(account, region).get(params.get("ImportArn", ""))
        if not isinstance(record, TableImportRecord):
            raise ApiError("ImportNotFoundException", f"Import not found: {params.get('ImportArn')}")
        return {"ImportTableDescription": record.description()}

    def list_imports(self, params: dict[str, Any], account: str, region: str) -> dict[str, Any]:
        size = int(params.get("PageSize") or 25)
        if not 1 <= size <= 25:
            raise ApiError("ValidationException", "PageSize must be between 1 and 25")
        records = sorted((r for r in self._imports(account, region).values() if isinstance(r, TableImportRecord)
                          and (not params.get("TableArn") or r.table_arn == params["TableArn"])),
                         key=lambda r: (r.start_time, r.arn))
        start = _page_start(params.get("NextToken"))
        page = records[start:start + size]
        answer: dict[str, Any] = {"ImportSummaryList": [r.summary() for r in page]}
        if start + size < len(records):
            answer["NextToken"] = f"{start + size:016x}" * 7  # AWS's shape: 16-hex-digit groups, 112 characters at least
        return answer

    # -- the import itself

    def _run(self, record: TableImportRecord) -> None:
        try:
            self._import(record)
        except Exception as error:  # noqa: BLE001 - the import ends FAILED with the reason, never hangs
            log.exception("import %s failed", record.arn)
            record.failure_code, record.failure_message = "UNKNOWN", f"{type(error).__name__}: {error}"
            record.status = "FAILED"
        else:
            record.status = "FAILED" if record.failure_code else "COMPLETED"
        record.end_time = time.time()

    def _import(self, record: TableImportRecord) -> None:
        from localcloud.motoapi import s3_backends

        request, source = record.request, record.request["S3BucketSource"]
        s3 = s3_backends[record.account]["aws"]
        bucket = s3.buckets.get(source["S3Bucket"])
        if bucket is None:
            record.failure_code, record.failure_message = "S3NoSuchBucket", "The specified bucket does not exist"
            return
        prefix = source.get("S3KeyPrefix") or ""
        keys = sorted(name for name in list(bucket.keys.keys()) if name.startswith(prefix))
        if not keys:
            record.failure_code = "S3NoSuchKey"
            record.failure_message = f"No objects under s3://{source['S3Bucket']}/{prefix}"
            return
        dynamo = self._backend(record.account, record.region)
        table = dynamo.get_table(request["TableCreationParameters"]["TableName"])
        creation = request["TableCreationParameters"]
        types = {a["AttributeName"]: a["AttributeType"] for a in creation.get("AttributeDefinitions", [])}
        key_names = [k["AttributeName"] for k in creation["KeySchema"]]
        index_keys = {k["AttributeName"] for index in creation.get("GlobalSecondaryIndexes") or [] for k in index["KeySchema"]}
        csv_options = (request.get("InputFormatOptions") or {}).get("Csv") or {}
        errors: list[dict[str, Any]] = []
        written: set[tuple[str, ...]] = set()
        for key in keys:
            body = getattr(bucket.keys.get(key), "value", None)
            if body is None:  # a delete marker: no object to read
                continue
            try:
                data = formats.decompress(body, request.get("InputCompressionType") or "NONE")
                record.processed_bytes += len(data)
                if request["InputFormat"] == "CSV":
                    items = formats.csv_items(data, {name: types[name] for name in [*key_names, *index_keys] if name in types},
                                              csv_options.get("Delimiter") or ",", csv_options.get("HeaderList"))
                else:
                    items = formats.dynamodb_json_items(data)
                for position, item, problem in items:
                    record.processed += 1
                    if problem is None:
                        problem = self._put(dynamo, table.name, item, key_names, types, written)
                    if problem:
                        record.errors += 1
                        errors.append({"itemS3Pointer": {"bucket": source["S3Bucket"], "key": key, "itemIndex": position},
                                       "importArn": record.arn, "errorMessages": [problem]})
            except formats.ObjectError as error:
                record.errors += 1
                errors.append({"itemS3Pointer": {"bucket": source["S3Bucket"], "key": key}, "importArn": record.arn,
                               "errorMessages": [str(error)]})
        record.imported = len(written)
        self._log(record, errors)

    @staticmethod
    def _put(dynamo: Any, table: str, item: dict[str, Any] | None, key_names: list[str], types: dict[str, str],
             written: set[tuple[str, ...]]) -> str | None:
        """Write one item; the reason it was refused, or None."""
        assert item is not None
        for name in key_names:
            value = item.get(name)
            if not isinstance(value, dict) or types.get(name) not in value:
                return (f"One or more parameter values were invalid: Missing the key {name} in the item"
                        if value is None else f"Type mismatch for key {name}: expected {types.get(name)}")
        for name, value in item.items():
            if name in types and isinstance(value, dict) and value.get(types[name]) == "":
                return ("One or more parameter values are not valid. The AttributeValue for a key attribute "
                        f"cannot contain an empty string value. Key: {name}")
        try:
            dynamo.put_item(table, item)
        except Exception as error:  # noqa: BLE001 - moto's validation errors, item by item
            return getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        written.add(tuple(json.dumps(item[name], sort_keys=True) for name in key_names))
        return None

    def _log(self, record: TableImportRecord, errors: list[dict[str, Any]]) -> None:
        """One CloudWatch Logs event per item error (cheap: moto's logs backend, in-process)."""
        if not errors:
            return
        from localcloud.motoapi import logs_backends

        logs = logs_backends[record.account][record.region]
        try:
            logs.create_log_group(LOG_GROUP, {})
        except Exception:  # noqa: BLE001 - it exists already
            pass
        stream = record.arn.rsplit("/", 1)[-1]
        logs.create_log_stream(LOG_GROUP, stream)
        now = int(time.time() * 1000)
        for start in range(0, len(errors), 1000):
            logs.put_log_events(LOG_GROUP, stream, [{"timestamp": now, "message": json.dumps(error)}
                                                    for error in errors[start:start + 1000]])


def make_executor() -> DynamoDBImportExecutor:
    return DynamoDBImportExecutor()
