"""The streaming pipelines end to end on the full real file, on a local cloud of its own.

Built by the notebooks themselves (`workbook.require`, prefix `bench`), then three measurements:

1. pipeline: every row of the real file (RETAIL_REAL_DATA, default ../shared/data/ecommerce/data.csv;
   skipped with a reason when absent) posted by the project's client (batches + concurrency) to the
   ingestion REST API (API Gateway -> ingest_api Lambda -> Kinesis), while two event source mappings
   (ReportBatchItemFailures) drain the stream into the S3 lake (stream_to_s3) and the DynamoDB serving
   table (stream_to_dynamodb). Phases: send (first POST -> last answer), drain to S3 and drain to
   DynamoDB (first POST -> the mapping's checkpoint reaches the end of every shard), then a
   reconciliation: rows sent = accepted + rejected; records in Kinesis (GetRecords over every shard,
   distinct record_id) = accepted; lines in the lake (distinct record_id) = records in Kinesis
   - quarantined by stream_to_s3; lines in DynamoDB + quarantined by stream_to_dynamodb = records
   in Kinesis. DynamoDB's lines are the record_ids in the invoice documents' `lines` (BatchGetItem
   over every invoice of the stream; none twice, each document's line_count = its lines), then
   DescribeTable's ItemCount is checked (= one document per invoice).
2. client: the same first SLICE rows sent the course's way (`per_row=True`: one POST per row,
   sequential) and the project's way (batches of 500, 4 threads) to an ingestion API on a stream of
   its own without consumers (the comparison is about the client): both times and the ratio.
3. query: the query API (query_api behind the customer authorizer, TOKEN, cached 300 s per token) at a
   paced QUERY_RATE requests/s for QUERY_S seconds (benchmarks/query_api's `paced_queries`), after 40 warm-up requests (the first two, cold,
   reported on their own), half GET /invoices/{n} (the invoice's customer's
   token, an admin token for guest invoices), half GET /customers/{id}/invoices (that customer's token),
   over invoices and customers of the file: p50/p99 latency, statuses, the achieved rate.

Shards (capacity arithmetic): a shard takes 1 MB/s and 1,000 records/s of writes, so the rows of the
file posted within the send budget (TARGET_S / 2 by default) need ceil(rows / budget / 1000) shards by
record count, ceil(rows x bytes per record / budget / 1 MB) by bytes; the larger one (plus none spare:
the local cloud does not throttle) unless --shards says otherwise.

Run: `.venv/bin/python -m benchmarks.pipeline_e2e [--rows N] [--shards N] [--esm-batch 1000] ...`
(or `python -m benchmarks --only pipeline` once registered). Environment: BENCH_PIPELINE_ROWS,
BENCH_PIPELINE_SHARDS, BENCH_PIPELINE_ESM_BATCH, BENCH_PIPELINE_SKIP (comma list of client,query).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from helpers.paths import PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"))
PREFIX = "bench"
TARGET_S = 120.0
ROWS = int(os.environ["BENCH_PIPELINE_ROWS"]) if os.environ.get("BENCH_PIPELINE_ROWS") else None
SHARDS = int(os.environ["BENCH_PIPELINE_SHARDS"]) if os.environ.get("BENCH_PIPELINE_SHARDS") else None
ESM_BATCH = int(os.environ.get("BENCH_PIPELINE_ESM_BATCH", "1000"))
ESM_WINDOW_S = 1  # MaximumBatchingWindowInSeconds: full batches while the producer runs
POST_BATCH, CONCURRENCY = 500, 4
SLICE = 5000
QUERY_RATE, QUERY_S = 50.0, 20.0
DRAIN_TIMEOUT_S = 900.0
SLICE_PREFIX = "benchslice"  # notebook 02 once more: the client comparison's stream, without consumers
RECORD_BYTES = 260  # a canonical record on the stream is about 230-280 bytes of JSON


# --------------------------------------------------------------------------------------------------
# Small helpers


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds) if seconds and seconds > 0 else None


def capacity_shards(rows: int, seconds: float, record_bytes: int = RECORD_BYTES) -> int:
    """Shards needed to take `rows` in `seconds`: 1,000 records/s and 1 MB/s of writes per shard."""
    per_second = rows / max(seconds, 1e-9)
    return max(1, math.ceil(per_second / 1000), math.ceil(per_second * record_bytes / (1024 * 1024)))


def cpu_seconds(server_pid: int) -> dict[str, float] | None:
    """CPU seconds (user + system) used so far by the local cloud's process, its Lambda workers (its
    children running worker.py), its other children (a snapshot being pickled) and this process (the
    client), from /proc; None where there is no /proc. A thread or child that ends meanwhile counts 0."""
    import resource

    tick = os.sysconf("SC_CLK_TCK")

    def used(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            return 0.0

    def children() -> list[int]:
        found = []
        for task in Path(f"/proc/{server_pid}/task").iterdir():  # each thread's children
            try:
                found += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    def is_worker(pid: int) -> bool:
        try:
            return b"worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    try:
        server = used(server_pid)
        kids = children()
    except OSError:
        return None
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"server": round(server, 2), "lambda_workers": round(sum(used(pid) for pid in kids if is_worker(pid)), 2),
            "other_children": round(sum(used(pid) for pid in kids if not is_worker(pid)), 2),
            "client": round(own.ru_utime + own.ru_stime, 2)}


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM) in MB, from /proc; None where there is no /proc."""
    try:
        line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _log(message: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Building the platform with helpers.deploy


def _build(shards: int, esm_batch: int) -> dict[str, Any]:
    """The platform as the notebooks build it: `workbook.require("05")` runs notebooks 00 and 02-05 with
    build_only=True (prefix `bench`), and notebook 02 once more under SLICE_PREFIX for the client
    comparison's stream without consumers. Then the benchmark's tuning, on top of what the notebooks made:
    the mappings' batch size and window (`update_event_source_mapping`), and 120 s for the stream consumers
    (batches of 1,000 records into files and documents)."""
    from helpers import apis, config, resources, waiting, workbook

    built = workbook.require("05", shards=shards)
    n = resources.names()
    awslambda = config.client("lambda")
    mappings = {"s3": built["lake_mapping"], "dynamodb": built["table_mapping"]}
    for uuid in mappings.values():
        waiting.mapping_ready(uuid)
        awslambda.update_event_source_mapping(UUID=uuid, BatchSize=esm_batch,
                                              MaximumBatchingWindowInSeconds=ESM_WINDOW_S)
        waiting.mapping_ready(uuid)
    for function in (built["lake_function"], built["table_function"]):
        awslambda.update_function_configuration(FunctionName=function, Timeout=120)
        waiting.function_ready(function)
    secret = config.client("ssm").get_parameter(Name=n.auth_secret_parameter, WithDecryption=True)["Parameter"]["Value"]

    config.configure(prefix=SLICE_PREFIX)
    try:
        slice_built = workbook.require("02", shards=shards)
    finally:
        config.configure(prefix=PREFIX)
    queue_url = config.client("sqs").get_queue_url(QueueName=built["quarantine_queue"])["QueueUrl"]
    query_api = apis.RestApi(built["query_api_id"], n.query_api, "v1", apis.invoke_url(built["query_api_id"], "v1"))
    return {"names": n, "queue_url": queue_url, "auth_secret": secret,
            "ingest_url": apis.invoke_url(built["ingest_api_id"], built["stage"]) + "/transactions",
            "slice_url": apis.invoke_url(slice_built["ingest_api_id"], slice_built["stage"]) + "/transactions",
            "query_api": query_api, "mappings": mappings,
            "functions": {"ingest": built["ingest_function"], "s3": built["lake_function"],
                          "dynamodb": built["table_function"], "query": built["query_function"]}}


def _warm(urls: list[str]) -> None:
    """One tiny POST per ingestion API, so the first timed POST does not pay a worker's cold start
    alone (the consumers' cold starts are inside the measurement: they start with the first records)."""
    import requests

    for url in urls:
        requests.post(url, data="[]", timeout=30)  # 400 "no rows": the function ran, nothing was stored


# --------------------------------------------------------------------------------------------------
# Drain monitor: the mappings' checkpoints (the local cloud persists them per shard)


class DrainMonitor:
    """Watches `<state>/event_sources/<uuid>.json` of each mapping: a mapping is drained when its
    per-shard checkpoints (moto's sequence numbers are contiguous from 1) add up to the records on
    the stream. The drain time is the checkpoint file's mtime at that moment (its last write)."""

    def __init__(self, state_dir: Path, mappings: dict[str, str], started: float):
        self.paths = {label: state_dir / "event_sources" / f"{uuid}.json" for label, uuid in mappings.items()}
        self.started = started
        self.expected: int | None = None
        self.done: dict[str, float] = {}
        self.timeline: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def positions(self, label: str) -> int:
        try:
            return sum(int(v) for v in json.loads(self.paths[label].read_text())["shards"].values())
        except (OSError, ValueError, KeyError):
            return 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last_log = 0.0
        while not self._stop.wait(0.25):
            now = time.time()
            snapshot = {label: self.positions(label) for label in self.paths}
            for label, count in snapshot.items():
                if label not in self.done and self.expected is not None and count >= self.expected:
                    self.done[label] = self.paths[label].stat().st_mtime - self.started
            if now - last_log >= 5:
                last_log = now
                self.timeline.append({"t": round(now - self.started, 1), **snapshot})
                _log(f"t={now - self.started:6.1f}s  consumed " + "  ".join(f"{k}={v:,}" for k, v in snapshot.items()))
            if self.expected is not None and len(self.done) == len(self.paths):
                return

    def wait(self, expected: int, timeout: float) -> dict[str, float]:
        _log(f"waiting for both mappings to consume {expected:,} records")
        self.expected = expected
        self._thread.join(timeout)
        self._stop.set()
        return dict(self.done)


# --------------------------------------------------------------------------------------------------
# Reconciliation


def _stream_records(stream: str) -> tuple[int, set[str], dict[str, int]]:
    """Every record on every shard (GetRecords from TRIM_HORIZON): count, distinct record_ids, invoices."""
    from helpers import pipelines

    count, ids, invoices = 0, set(), {}
    for _, record in pipelines.iter_stream(stream):
        row = json.loads(record["Data"])
        count += 1
        ids.add(row["record_id"])
        invoices[row["InvoiceNo"]] = invoices.get(row["InvoiceNo"], 0) + 1
    return count, ids, invoices


def _lake_lines(bucket: str) -> tuple[int, int, set[str]]:
    """Objects, lines and distinct record_ids under raw/ in the lake."""
    from helpers import config

    s3 = config.client("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/")
            for o in page.get("Contents", [])]

    def read(key: str) -> list[str]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        return [json.loads(line)["record_id"] for line in body.splitlines() if line]

    lines, ids = 0, set()
    with ThreadPoolExecutor(4) as pool:
        for found in pool.map(read, keys):
            lines += len(found)
            ids.update(found)
    return len(keys), lines, ids


def _dynamodb_lines(table: str, invoices: list[str]) -> tuple[set[str], int, int]:
    """The record_ids in the invoice documents' `lines` (BatchGetItem, 100 invoices a call), how many
    documents say a `line_count` other than their lines, and DescribeTable's ItemCount."""
    from helpers import config

    dynamodb = config.client("dynamodb")

    def read(chunk: list[str]) -> tuple[list[str], int]:
        keys = [{"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": "INVOICE"}} for invoice in chunk]
        ids, miscounted = [], 0
        while keys:
            answer = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys}})  # whole: moto projects lists slowly
            for item in answer["Responses"].get(table, []):
                lines = [line["M"]["record_id"]["S"] for line in item["lines"]["L"]]
                ids += lines
                miscounted += int(item["line_count"]["N"]) != len(lines)
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        return ids, miscounted

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(read, [invoices[i:i + 100] for i in range(0, len(invoices), 100)]))
    ids = [record_id for chunk_ids, _ in answers for record_id in chunk_ids]
    if len(set(ids)) != len(ids):
        raise AssertionError(f"{len(ids) - len(set(ids))} record_ids stored twice in the invoice documents")
    items = dynamodb.describe_table(TableName=table)["Table"]["ItemCount"]
    return set(ids), sum(miscounted for _, miscounted in answers), items


def _quarantined(queue_url: str) -> dict[str, int]:
    """Quarantine messages by the function that sent them (both consumers share the queue)."""
    from helpers import config

    sqs = config.client("sqs")
    by_source: dict[str, int] = {}
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=600).get("Messages", [])
        if not messages:
            return by_source
        for message in messages:
            source = json.loads(message["Body"]).get("source", "unknown")
            by_source[source] = by_source.get(source, 0) + 1


# --------------------------------------------------------------------------------------------------
# The three measurements


def _pipeline(built: dict[str, Any], rows: Any, state_dir: Path) -> dict[str, Any]:
    from helpers import client

    n = built["names"]
    started = time.time()
    monitor = DrainMonitor(state_dir, built["mappings"], started)
    monitor.start()
    _log(f"sending {len(rows):,} rows (batches of {POST_BATCH}, {CONCURRENCY} threads)")
    summary = client.send(built["ingest_url"], rows, batch_size=POST_BATCH, concurrency=CONCURRENCY, progress=False)
    send_s = time.time() - started
    _log(str(summary))
    drained = monitor.wait(summary.accepted, DRAIN_TIMEOUT_S)
    cpu_at_drain = cpu_seconds(built["server_pid"])
    server_peak_mb = peak_rss_mb(built["server_pid"])
    everything_s = max(drained.values()) if len(drained) == 2 else None
    _log(f"drained: {drained}; reconciling")

    reconcile_started = time.perf_counter()
    on_stream, stream_ids, invoices = _stream_records(n.stream)
    objects, lake_lines, lake_ids = _lake_lines(n.lake_bucket)
    _log(f"lake: {objects:,} objects, {lake_lines:,} lines")
    _log(f"stream read back: {on_stream:,} records, {len(invoices):,} invoices")
    table_ids, miscounted, table_items = _dynamodb_lines(n.table, sorted(invoices))
    table_lines = len(table_ids)
    _log(f"table: {table_items:,} invoice documents holding {table_lines:,} lines")
    quarantined = _quarantined(built["queue_url"])
    reconcile_s = time.perf_counter() - reconcile_started

    q_s3, q_ddb = quarantined.get("stream_to_s3", 0), quarantined.get("stream_to_dynamodb", 0)
    checks = {
        "sent == accepted + rejected": summary.sent == summary.accepted + len(summary.rejected),
        "failed == 0": summary.failed == 0,
        "kinesis records == accepted": on_stream == summary.accepted,
        "kinesis distinct record_id == records": len(stream_ids) == on_stream,
        "lake distinct record_id == kinesis - quarantined(s3)": len(lake_ids) == len(stream_ids) - q_s3,
        "lake record_ids are the stream's": lake_ids <= stream_ids,
        "dynamodb lines + quarantined(dynamodb) == kinesis": table_lines + q_ddb == len(stream_ids),
        "dynamodb record_ids are the stream's": table_ids <= stream_ids,
        "dynamodb line_count == lines in each document": miscounted == 0,
        "dynamodb ItemCount == one document per invoice": table_items == len(invoices),
    }
    return {
        "file": str(REAL_FILE),
        "rows_sent": summary.sent, "accepted": summary.accepted, "rejected": len(summary.rejected),
        "failed": summary.failed, "requests": summary.requests, "retries": summary.retries,
        "rejected_reasons": sorted({r.reason for r in summary.rejected})[:5],
        "kinesis_records": on_stream, "kinesis_distinct_record_ids": len(stream_ids), "invoices": len(invoices),
        "lake_objects": objects, "lake_lines": lake_lines, "lake_distinct_record_ids": len(lake_ids),
        "dynamodb_lines": table_lines, "dynamodb_item_count": table_items,
        "quarantined": quarantined,
        "send_s": round(send_s, 2), "send_rows_per_s": _rate(summary.sent, send_s),
        "drain_s3_s": round(drained["s3"], 2) if "s3" in drained else None,
        "drain_dynamodb_s": round(drained["dynamodb"], 2) if "dynamodb" in drained else None,
        "first_post_to_drained_s": round(everything_s, 2) if everything_s else None,
        "end_to_end_rows_per_s": _rate(summary.sent, everything_s) if everything_s else None,
        "reconcile_s": round(reconcile_s, 2),
        "cpu_s_when_drained": cpu_at_drain,  # the budget on 2 cores: 2 x the drain time
        "server_peak_rss_mb_when_drained": server_peak_mb,
        "first_post_to_reconciled_s": round(everything_s + reconcile_s, 2) if everything_s else None,
        "target_s": TARGET_S,
        # The target is the pipeline's time (first POST -> both consumers checkpointed the last record),
        # with every count reconciled; reading it all back to check is reported apart (reconcile_s).
        "met_target": bool(everything_s and everything_s <= TARGET_S and all(checks.values())),
        "consumed_timeline": monitor.timeline,
        "checks": checks,
        "reconciled": all(checks.values()) and len(drained) == 2,
    }


def _client_comparison(url: str, rows: Any) -> dict[str, Any]:
    from helpers import client

    _log(f"client comparison on {len(rows):,} rows: per row, then batched")
    per_row = client.send(url, rows, per_row=True, progress=False)
    batched = client.send(url, rows, batch_size=POST_BATCH, concurrency=CONCURRENCY, progress=False)
    return {
        "rows": len(rows),
        "per_row_s": round(per_row.seconds, 2), "per_row_rows_per_s": round(per_row.rows_per_s),
        "per_row_requests": per_row.requests,
        "batched_s": round(batched.seconds, 3), "batched_rows_per_s": round(batched.rows_per_s),
        "batched_requests": batched.requests,
        "ratio": round(per_row.seconds / batched.seconds, 1) if batched.seconds else None,
        "target_ratio": 30, "all_answered": per_row.ok and batched.ok,
        "accepted": [per_row.accepted, batched.accepted],
    }


def _query_latency(api: Any, rows: Any, rate: float, seconds: float, secret: str) -> dict[str, Any]:
    """benchmarks/query_api's paced load over the invoices and customers of the rows sent."""
    from benchmarks.query_api import paced_queries

    by_invoice: dict[str, str] = {}
    for record in rows.records:
        by_invoice.setdefault(record["InvoiceNo"], record.get("CustomerID") or "")
    measured = paced_queries(api, by_invoice, rate, seconds, secret)
    for internal in ("_answered", "_window"):
        measured.pop(internal)
    return measured


# --------------------------------------------------------------------------------------------------
# Entry point


def run(rows: int | None = ROWS, shards: int | None = SHARDS, esm_batch: int = ESM_BATCH,
        skip: tuple[str, ...] = tuple(filter(None, os.environ.get("BENCH_PIPELINE_SKIP", "").split(",")))) -> dict[str, Any]:
    if not REAL_FILE.exists():
        from helpers import dataset

        return {"skipped": f"{REAL_FILE} not found ({dataset.REAL_FILE_HINT}; or set RETAIL_REAL_DATA)"}
    from helpers import client, config
    from localcloud import lifecycle

    loading = time.perf_counter()
    selected = client.read_rows(REAL_FILE, nrows=rows)
    load_s = time.perf_counter() - loading
    shards = shards or capacity_shards(len(selected), TARGET_S / 2)
    _log(f"{len(selected):,} rows read in {load_s:.1f} s; {shards} shards, ESM batch {esm_batch}")

    saved = {name: os.environ.get(name) for name in ("RETAIL_TARGET", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                     "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RETAIL_PREFIX")}
    os.environ.pop("RETAIL_TARGET", None)
    home = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    result: dict[str, Any] = {"rows": len(selected), "shards": shards, "esm_batch_size": esm_batch,
                              "esm_batching_window_s": ESM_WINDOW_S, "post_batch": POST_BATCH,
                              "client_concurrency": CONCURRENCY, "read_rows_s": round(load_s, 2)}
    try:
        with lifecycle.running(home) as endpoint:
            os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                              AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
            config.configure(target="local", endpoint_url=endpoint, region="us-east-1", prefix=PREFIX)
            building = time.perf_counter()
            built = _build(shards, esm_batch)
            built["server_pid"] = lifecycle.health(urlsplit(endpoint).port).pid
            _warm([built["ingest_url"], built["slice_url"]])
            result["deploy_s"] = round(time.perf_counter() - building, 2)
            state_dir = lifecycle.state_dir(urlsplit(endpoint).port)
            result["pipeline"] = _pipeline(built, selected, state_dir)
            if "client" not in skip:
                result["client"] = _client_comparison(built["slice_url"], client.Rows(
                    selected.records[:SLICE], selected.times.iloc[:SLICE].reset_index(drop=True)))
            if "query" not in skip:
                result["query"] = _query_latency(built["query_api"], selected, QUERY_RATE, QUERY_S, built["auth_secret"])
    finally:
        config._current = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return result


def main(argv: list[str] | None = None) -> int:
    global POST_BATCH, CONCURRENCY, ESM_WINDOW_S, QUERY_S
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="only the first N rows (default: the whole file)")
    parser.add_argument("--shards", type=int, default=SHARDS, help="Kinesis shards (default: capacity arithmetic)")
    parser.add_argument("--esm-batch", type=int, default=ESM_BATCH, help="event source mapping BatchSize")
    parser.add_argument("--esm-window", type=int, default=ESM_WINDOW_S, help="MaximumBatchingWindowInSeconds")
    parser.add_argument("--post-batch", type=int, default=POST_BATCH, help="rows per POST of the client")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="client threads")
    parser.add_argument("--query-seconds", type=float, default=QUERY_S)
    parser.add_argument("--skip", nargs="*", choices=("client", "query"), default=[])
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    POST_BATCH, CONCURRENCY, ESM_WINDOW_S, QUERY_S = args.post_batch, args.concurrency, args.esm_window, args.query_seconds
    result = run(rows=args.rows, shards=args.shards, esm_batch=args.esm_batch, skip=tuple(args.skip))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
