"""Kinesis -> Lambda through an event source mapping, on a local cloud of its own.

- drain: 50,000 records already in a 4-shard stream, then a mapping (BatchSize 500, TRIM_HORIZON) on a
  no-op handler: records/s from creating the mapping to the last record handled.
- latency: a paced producer (batches of 50) with the mapping live: p50/p99 of handler time minus the
  producer's timestamp in the data, and minus the record's approximateArrivalTimestamp.
The handler reports each batch (count + per-record lags) to an SQS queue that the benchmark drains.
Run: `python -m benchmarks --only kinesis` (or `python -m benchmarks.kinesis_drain`).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from typing import Any

RECORDS = int(os.environ.get("BENCH_KINESIS_RECORDS", "50000"))
SHARDS = 4
BATCH_SIZE = 500
LIVE_PUTS, LIVE_BATCH, LIVE_PAUSE_S = 40, 50, 0.05
TIMEOUT_S = 300.0

HANDLER = '''
import json, os, time
import boto3

sqs = boto3.client("sqs")
QUEUE = os.environ["REPORT_QUEUE_URL"]


def handler(event, context):
    now = time.time()
    records = event["Records"]
    lags, arrival_lags = [], []
    for record in records:
        arrival_lags.append(now - record["kinesis"]["approximateArrivalTimestamp"])
        if record["kinesis"]["partitionKey"].startswith("live"):
            lags.append(now - float(record["kinesis"]["partitionKey"].split("-")[1]))
    sqs.send_message(QueueUrl=QUEUE, MessageBody=json.dumps(
        {"n": len(records), "end": time.time(), "lags": lags, "arrival_lags": arrival_lags}))
'''


def _bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return buffer.getvalue()


def _collect(sqs: Any, queue_url: str, expected: int) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while sum(r["n"] for r in reports) < expected and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in messages:
            reports.append(json.loads(message["Body"]))
        if messages:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return reports


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples) or [float("nan")]
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1), "n": len(samples)}


def run() -> dict[str, Any]:
    import boto3

    from localcloud import lifecycle

    os.environ["RETAIL_LOCALCLOUD_HOME"] = tempfile.mkdtemp(prefix="bench-kinesis-")
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)
    try:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        kinesis, sqs, awslambda, iam = (session.client(name, endpoint_url=endpoint)
                                        for name in ("kinesis", "sqs", "lambda", "iam"))
        role = iam.create_role(RoleName="bench-kinesis", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        queue_url = sqs.create_queue(QueueName="bench-kinesis-reports")["QueueUrl"]
        awslambda.create_function(FunctionName="bench-noop", Runtime="python3.11", Role=role, Handler="app.handler",
                                  Code={"ZipFile": _bundle()}, Timeout=30,
                                  Environment={"Variables": {"REPORT_QUEUE_URL": queue_url}})
        kinesis.create_stream(StreamName="bench", ShardCount=SHARDS)
        stream_arn = kinesis.describe_stream(StreamName="bench")["StreamDescription"]["StreamARN"]

        started = time.perf_counter()
        for start in range(0, RECORDS, 500):
            kinesis.put_records(StreamName="bench", Records=[
                {"Data": json.dumps({"i": i}).encode(), "PartitionKey": f"k{i}"} for i in range(start, min(start + 500, RECORDS))])
        put_s = time.perf_counter() - started

        mapped_at = time.time()
        awslambda.create_event_source_mapping(FunctionName="bench-noop", EventSourceArn=stream_arn,
                                              StartingPosition="TRIM_HORIZON", BatchSize=BATCH_SIZE)
        drained = _collect(sqs, queue_url, RECORDS)
        drain_s = max(r["end"] for r in drained) - mapped_at if drained else float("nan")
        handled = sum(r["n"] for r in drained)

        for _ in range(LIVE_PUTS):
            now = time.time()
            kinesis.put_records(StreamName="bench", Records=[
                {"Data": b"{}", "PartitionKey": f"live-{now:.6f}-{j}"} for j in range(LIVE_BATCH)])
            time.sleep(LIVE_PAUSE_S)
        live = _collect(sqs, queue_url, LIVE_PUTS * LIVE_BATCH)
    finally:
        lifecycle.down(port)
    return {
        "records": RECORDS, "shards": SHARDS, "batch_size": BATCH_SIZE,
        "put_records_per_s": round(RECORDS / put_s),
        "drained": handled,
        "drain_s": round(drain_s, 2),
        "drain_records_per_s": round(handled / drain_s) if drain_s == drain_s and drain_s > 0 else None,
        "invocations": len(drained),
        "put_to_invoke": _ms([lag for r in live for lag in r["lags"]]),
        "arrival_to_invoke": _ms([lag for r in live for lag in r["arrival_lags"]]),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
