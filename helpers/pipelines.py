"""The streaming pipelines of notebooks 02-05 as steps, each ensuring the ones before it.

So every notebook runs on its own (it builds what it needs) and in sequence (it reuses what exists),
on the local cloud or on AWS: only public boto3 calls, through `helpers.deploy`. The readers at the
end (stream, lake, table, quarantine) are what the notebooks reconcile with.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from helpers import config, deploy, iam
from helpers.resources import CUSTOMER_AUTHORIZER, INGEST_API, QUERY_API, STREAM_TO_DYNAMODB, STREAM_TO_S3, names

LAKE_PREFIX = "raw/"
# How both stream consumers read the stream: big batches, partial batch responses, and a failing
# batch split in halves, retried a bounded number of times, then its metadata sent to the quarantine.
STREAM_MAPPING = {
    "StartingPosition": "TRIM_HORIZON",
    "BatchSize": 500,
    "MaximumBatchingWindowInSeconds": 1,
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 5,
    "ParallelizationFactor": 1,  # one invocation per shard at a time: the lake's merge relies on it
}
# Kinesis quotas per shard, for the capacity arithmetic of notebook 02.
SHARD_WRITE_MB_S = 1.0
SHARD_WRITE_RECORDS_S = 1000


def role_arn(folder: str) -> str:
    """The function's least-privilege execution role (helpers/iam.py), created or converged."""
    role = next(r for r in iam.course_roles(names()) if r.folder == folder)
    return iam.ensure_role(role)


def shards_needed(rows_per_s: float, bytes_per_row: float) -> int:
    """Shards for a write rate: each takes 1 MB/s and 1,000 records/s, whichever binds first."""
    by_records = rows_per_s / SHARD_WRITE_RECORDS_S
    by_bytes = rows_per_s * bytes_per_row / (SHARD_WRITE_MB_S * 1024 * 1024)
    return max(1, int(-(-max(by_records, by_bytes) // 1)))


# --------------------------------------------------------------------------------------------------
# 02: ingestion API -> Lambda -> Kinesis


@dataclass(frozen=True)
class Ingestion:
    stream: str
    stream_arn: str
    function_arn: str
    api: deploy.RestApi

    @property
    def batch_url(self) -> str:
        """POST a JSON list of rows (or a DataFrame's to_json): Lambda proxy integration."""
        return self.api.url_for("/transactions")

    @property
    def row_url(self) -> str:
        """POST one row, the course's way: non-proxy integration with the passthrough template."""
        return self.api.url_for("/transaction")


def ingestion(shards: int = 1) -> Ingestion:
    n = names()
    stream_arn = deploy.ensure_stream(n.stream, shards)
    function_arn = deploy.deploy_function(INGEST_API, role_arn=role_arn(INGEST_API),
                                          environment={"STREAM_NAME": n.stream})
    api = deploy.ensure_rest_api(n.ingestion_api, [
        deploy.Route("/transactions", "POST", function_arn, "AWS_PROXY"),
        deploy.Route("/transaction", "POST", function_arn, "AWS"),
    ])
    return Ingestion(n.stream, stream_arn, function_arn, api)


# --------------------------------------------------------------------------------------------------
# 03: stream -> S3 raw lake


@dataclass(frozen=True)
class Lake:
    ingestion: Ingestion
    bucket: str
    quarantine_url: str
    function_arn: str
    mapping: str


def _quarantine() -> tuple[str, str]:
    url = deploy.ensure_queue(names().quarantine_queue, {"MessageRetentionPeriod": str(14 * 24 * 3600)})
    return url, names().quarantine_queue_arn


def _stream_mapping(function_arn: str, stream_arn: str, on_failure_arn: str) -> str:
    return deploy.ensure_event_source_mapping(
        function_arn, stream_arn, **STREAM_MAPPING,
        DestinationConfig={"OnFailure": {"Destination": on_failure_arn}})


def raw_lake(shards: int = 1) -> Lake:
    source = ingestion(shards)
    n = names()
    deploy.ensure_bucket(n.lake_bucket)
    quarantine_url, quarantine_arn = _quarantine()
    function_arn = deploy.deploy_function(STREAM_TO_S3, role_arn=role_arn(STREAM_TO_S3), environment={
        "LAKE_BUCKET": n.lake_bucket, "QUARANTINE_QUEUE_URL": quarantine_url})
    mapping = _stream_mapping(function_arn, source.stream_arn, quarantine_arn)
    return Lake(source, n.lake_bucket, quarantine_url, function_arn, mapping)


# --------------------------------------------------------------------------------------------------
# 04: stream -> DynamoDB serving table


@dataclass(frozen=True)
class ServingStore:
    ingestion: Ingestion
    table: str
    quarantine_url: str
    function_arn: str
    mapping: str


def table_schema() -> dict[str, Any]:
    """The serving table's create_table arguments, from the function that writes it (one place)."""
    import importlib.util

    from helpers.paths import LAMBDAS_DIR

    spec = importlib.util.spec_from_file_location("serving_schema", LAMBDAS_DIR / STREAM_TO_DYNAMODB / "schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.TABLE_SCHEMA)


def serving_store(shards: int = 1) -> ServingStore:
    source = ingestion(shards)
    n = names()
    deploy.ensure_table(n.table, table_schema())
    quarantine_url, quarantine_arn = _quarantine()
    function_arn = deploy.deploy_function(STREAM_TO_DYNAMODB, role_arn=role_arn(STREAM_TO_DYNAMODB), environment={
        "TABLE_NAME": n.table, "QUARANTINE_QUEUE_URL": quarantine_url})
    mapping = _stream_mapping(function_arn, source.stream_arn, quarantine_arn)
    return ServingStore(source, n.table, quarantine_url, function_arn, mapping)


# --------------------------------------------------------------------------------------------------
# 05: query API -> Lambda -> DynamoDB, with a customer authorizer


@dataclass(frozen=True)
class QueryApi:
    store: ServingStore
    api: deploy.RestApi
    secret: str

    def token(self, subject: str) -> str:
        """The Authorization header of a customer id, or of "admin" (see lambdas/customer_authorizer)."""
        import hashlib
        import hmac

        signature = hmac.new(self.secret.encode(), subject.encode(), hashlib.sha256).hexdigest()[:32]
        return f"Bearer {subject}.{signature}"


def auth_secret() -> str:
    """The token-signing secret, kept in SSM Parameter Store (SecureString) and made once."""
    ssm = config.client("ssm")
    parameter = names().auth_secret_parameter
    try:
        return ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        config.require_create_allowed(f"SSM parameter {parameter}")
        value = secrets.token_hex(32)
        ssm.put_parameter(Name=parameter, Value=value, Type="SecureString",
                          Description="retail-pipelines: signs the query API's customer tokens")
        return value


def query_api(shards: int = 1) -> QueryApi:
    store = serving_store(shards)
    n = names()
    secret = auth_secret()
    authorizer_arn = deploy.deploy_function(CUSTOMER_AUTHORIZER, role_arn=role_arn(CUSTOMER_AUTHORIZER),
                                            environment={"AUTH_SECRET": secret})
    function_arn = deploy.deploy_function(QUERY_API, role_arn=role_arn(QUERY_API), environment={"TABLE_NAME": n.table})
    api = deploy.ensure_rest_api(n.query_api, [
        deploy.Route("/invoices/{invoiceNo}", "GET", function_arn),
        deploy.Route("/customers/{customerId}/invoices", "GET", function_arn),
        deploy.Route("/openapi.json", "GET", function_arn),
    ], authorizer=deploy.Authorizer(f"{n.prefix}-customer-token", authorizer_arn))
    return QueryApi(store, api, secret)


# --------------------------------------------------------------------------------------------------
# Readers: what is in the stream, the lake, the table and the quarantine


def iter_stream(stream: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(shard id, Kinesis record) for every record on the stream, every shard from its oldest."""
    kinesis = config.client("kinesis")
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in answer["Records"]:
                yield shard["ShardId"], record
            iterator = answer.get("NextShardIterator") if answer["Records"] else None


def stream_records(stream: str) -> pd.DataFrame:
    """Every record on the stream: shard, sequence, partition key, and the row it carries."""
    return pd.DataFrame([{"shard": shard, "sequence": record["SequenceNumber"], "partition_key": record["PartitionKey"],
                          **_json_object(record["Data"])} for shard, record in iter_stream(stream)])


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {"undecodable": base64.b64encode(data).decode()}
    return value if isinstance(value, dict) else {"undecodable": base64.b64encode(data).decode()}


def lake_objects(bucket: str, prefix: str = LAKE_PREFIX) -> pd.DataFrame:
    """The lake's files: key, size, lines."""
    s3 = config.client("s3")
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rows.append({"key": item["Key"], "bytes": item["Size"]})
    return pd.DataFrame(rows, columns=["key", "bytes"])


def lake_lines(bucket: str, prefix: str = LAKE_PREFIX) -> pd.DataFrame:
    """Every JSON line of the lake, with the key of its file."""
    s3 = config.client("s3")
    rows = []
    for key in lake_objects(bucket, prefix)["key"]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        rows += [{**json.loads(line), "key": key} for line in body.splitlines() if line]
    return pd.DataFrame(rows)


def invoice_documents(table: str) -> pd.DataFrame:
    """Every invoice document of the serving table, plain Python values (a scan: fine for a course-sized
    table). Items of other kinds, such as an older workbook's line items, are left out."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    items = [{k: deserializer.deserialize(v) for k, v in item.items()}
             for page in config.client("dynamodb").get_paginator("scan").paginate(
                 TableName=table, FilterExpression="SK = :document", ExpressionAttributeValues={":document": {"S": "INVOICE"}})
             for item in page["Items"]]
    return pd.DataFrame(items)


def invoice_lines(items: pd.DataFrame) -> pd.DataFrame:
    """One row per line of the serving table's invoice documents (their `lines`), with its InvoiceNo."""
    rows = [{"InvoiceNo": invoice, **line}
            for invoice, lines in zip(items.get("InvoiceNo", []), items.get("lines", [])) for line in lines]
    return pd.DataFrame(rows, columns=["InvoiceNo", "record_id", "StockCode", "Description", "Quantity",
                                       "UnitPrice", "amount", "InvoiceDate"])


def _peek(queue_url: str) -> list[tuple[dict[str, Any], str]]:
    """Every message (body, receipt handle), read without consuming: visible again at once."""
    sqs = config.client("sqs")
    seen: dict[str, tuple[dict[str, Any], str]] = {}
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                       WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = (json.loads(message["Body"]), message["ReceiptHandle"])
    handles = [handle for _, handle in seen.values()]
    for start in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start:start + 10])])
    return list(seen.values())


def quarantined(queue_url: str) -> pd.DataFrame:
    """The quarantine's messages, read without consuming them (they stay for an operator to replay)."""
    return pd.DataFrame([body for body, _ in _peek(queue_url)])


def wait_until(check: Callable[[], bool], timeout_s: float = 120.0, interval_s: float = 0.5,
               what: str = "the pipeline") -> float:
    """Poll until `check()` is true; seconds waited. A clear error when it never becomes true."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what} did not catch up within {timeout_s:.0f} s")
        time.sleep(interval_s)
    return time.monotonic() - started


def put_raw(stream: str, payloads: Iterable[bytes], partition_key: str = "poison") -> list[str]:
    """Put records straight on the stream (bypassing the API's validation): sequence numbers."""
    kinesis = config.client("kinesis")
    answer = kinesis.put_records(StreamName=stream, Records=[{"Data": p, "PartitionKey": partition_key} for p in payloads])
    return [r["SequenceNumber"] for r in answer["Records"]]


def drain(stream: str, quarantine_url: str, source: str, timeout_s: float = 180.0) -> float:
    """Wait until a stream consumer (`source`: "stream_to_s3" / "stream_to_dynamodb") has processed
    everything put on the stream so far; seconds waited.

    A marker that is not JSON is put on every shard; the consumer quarantines it. Shards are processed
    in order, so once every marker is in the quarantine, every record before it was handled. It uses
    nothing but the pipeline itself, so it works the same on AWS."""
    kinesis = config.client("kinesis")
    markers = set()
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
            continue  # a closed shard (after resharding) takes no new records
        answer = kinesis.put_record(StreamName=stream, Data=f"drain-marker {shard['ShardId']}".encode(),
                                    PartitionKey="drain-marker", ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"])
        markers.add(answer["SequenceNumber"])

    seen: list[str] = []

    def arrived() -> bool:
        mine = [(body, handle) for body, handle in _peek(quarantine_url)
                if body.get("source") == source and body.get("sequenceNumber") in markers]
        seen[:] = [handle for _, handle in mine]
        return {body["sequenceNumber"] for body, _ in mine} >= markers
    waited = wait_until(arrived, timeout_s, interval_s=1.0, what=f"{source} on {stream}")
    sqs = config.client("sqs")
    for handle in seen:  # markers are not bad data: they leave the quarantine once they served
        sqs.delete_message(QueueUrl=quarantine_url, ReceiptHandle=handle)
    return waited


def delete_auth_secret() -> bool:
    """Remove the query API's token secret (teardown). False when it did not exist."""
    ssm = config.client("ssm")
    try:
        ssm.delete_parameter(Name=names().auth_secret_parameter)
    except ssm.exceptions.ParameterNotFound:
        return False
    return True
