"""What the streaming notebooks (02-05) use beside their build steps: the shard arithmetic, the serving
table's schema as its writer declares it, customer tokens, and the readers (stream, lake, table,
quarantine) they reconcile with. The notebooks build their resources themselves, call by call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from helpers import config
from helpers.resources import STREAM_TO_DYNAMODB

LAKE_PREFIX = "raw/"
# Kinesis quotas per shard, for the capacity arithmetic of notebook 02.
SHARD_WRITE_MB_S = 1.0
SHARD_WRITE_RECORDS_S = 1000


def shards_needed(rows_per_s: float, bytes_per_row: float) -> int:
    """Shards for a write rate: each takes 1 MB/s and 1,000 records/s, whichever binds first."""
    by_records = rows_per_s / SHARD_WRITE_RECORDS_S
    by_bytes = rows_per_s * bytes_per_row / (SHARD_WRITE_MB_S * 1024 * 1024)
    return max(1, int(-(-max(by_records, by_bytes) // 1)))


# --------------------------------------------------------------------------------------------------
# The serving table and the query API's tokens


def table_schema() -> dict[str, Any]:
    """The serving table's create_table arguments, from the function that writes it (one place)."""
    import importlib.util

    from helpers.paths import LAMBDAS_DIR

    spec = importlib.util.spec_from_file_location("serving_schema", LAMBDAS_DIR / STREAM_TO_DYNAMODB / "schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.TABLE_SCHEMA)


def customer_token(secret: str, subject: str, lifetime_s: int = 3600, now: float | None = None) -> str:
    """The Authorization header of a customer id, or of "admin", signed with the query API's secret and
    valid for `lifetime_s` (notebook 05; lambdas/customer_authorizer checks it: expired -> 401)."""
    expires = int(time.time() if now is None else now) + int(lifetime_s)
    message = f"{subject}.{expires}"
    signature = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()[:32]
    return f"Bearer {message}.{signature}"


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

