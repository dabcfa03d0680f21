"""What the write-ahead journal costs, and how long a restart after a crash takes to replay it.

The same write-heavy workload from 4 threads (20,000 Kinesis records in PutRecords batches of 500,
5,000 DynamoDB items in BatchWriteItem batches of 25, 500 S3 objects of 1 KB) against a fresh local
cloud of its own with RETAIL_LOCALCLOUD_JOURNAL=fsync, flush and off, alternating, median of 3 each;
the ratio is fsync (or flush) time over off. Then the last fsync cloud is killed with SIGKILL (no
snapshot since start: the whole workload is in the journal) and started again: time until `up` returns and the
replay's own time, with every record checked back.
Run: `python -m benchmarks --only journal` (or `python -m benchmarks.journal`). The sizes are settings:
BENCH_JOURNAL_KINESIS_RECORDS (20000), BENCH_JOURNAL_DYNAMODB_ITEMS (5000), BENCH_JOURNAL_S3_OBJECTS (500),
BENCH_JOURNAL_MODES (fsync,flush,off), BENCH_JOURNAL_ROUNDS (3); e.g. the full file's 541,909 records in
the journal, replayed once: BENCH_JOURNAL_KINESIS_RECORDS=542000 BENCH_JOURNAL_MODES=fsync BENCH_JOURNAL_ROUNDS=1.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

KINESIS_RECORDS, KINESIS_BATCH = int(os.environ.get("BENCH_JOURNAL_KINESIS_RECORDS", "20000")), 500
DYNAMODB_ITEMS, DYNAMODB_BATCH = int(os.environ.get("BENCH_JOURNAL_DYNAMODB_ITEMS", "5000")), 25
S3_OBJECTS = int(os.environ.get("BENCH_JOURNAL_S3_OBJECTS", "500"))
THREADS = 4
MODES = tuple(os.environ.get("BENCH_JOURNAL_MODES", "fsync,flush,off").split(","))  # the last round's fsync run is crashed and replayed
ROUNDS = int(os.environ.get("BENCH_JOURNAL_ROUNDS", "3"))
# Only the journal's own executor: the workload calls no function, and other executors' threads are noise.
ENV = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "0"}


def _clients(endpoint: str) -> Callable[[str], Any]:
    import boto3
    from botocore.config import Config

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=THREADS)
    return lambda service: session.client(service, endpoint_url=endpoint, config=config)


def _setup(client: Callable[[str], Any]) -> None:
    client("kinesis").create_stream(StreamName="bench", ShardCount=4)
    client("dynamodb").create_table(TableName="bench", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")
    client("s3").create_bucket(Bucket="bench-journal")


def _jobs() -> list[tuple[str, int]]:
    """(kind, index) of every call, interleaved so the threads mix the three services."""
    kinesis = [("kinesis", i) for i in range(KINESIS_RECORDS // KINESIS_BATCH)]
    dynamodb = [("dynamodb", i) for i in range(DYNAMODB_ITEMS // DYNAMODB_BATCH)]
    s3 = [("s3", i) for i in range(S3_OBJECTS)]
    mixed: list[tuple[str, int]] = []
    for i in range(max(len(kinesis), len(dynamodb), len(s3))):
        mixed += [group[i] for group in (kinesis, dynamodb, s3) if i < len(group)]
    return mixed


def _workload(client: Callable[[str], Any]) -> float:
    """Seconds for every job, from THREADS threads each with its own clients."""
    jobs: queue.Queue[tuple[str, int]] = queue.Queue()
    for job in _jobs():
        jobs.put(job)
    errors: list[BaseException] = []
    body = b"x" * 1024

    def work() -> None:
        kinesis, dynamodb, s3 = client("kinesis"), client("dynamodb"), client("s3")
        while True:
            try:
                kind, index = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                if kind == "kinesis":
                    answer = kinesis.put_records(StreamName="bench", Records=[
                        {"Data": f"{index}-{i}".encode().ljust(200, b"."), "PartitionKey": f"{index}-{i}"}
                        for i in range(KINESIS_BATCH)])
                    assert answer["FailedRecordCount"] == 0
                elif kind == "dynamodb":
                    answer = dynamodb.batch_write_item(RequestItems={"bench": [
                        {"PutRequest": {"Item": {"pk": {"S": f"{index}-{i}"}, "qty": {"N": str(i)},
                                                 "sku": {"S": f"SKU-{i:05d}"}}}} for i in range(DYNAMODB_BATCH)]})
                    assert not answer.get("UnprocessedItems")
                else:
                    s3.put_object(Bucket="bench-journal", Key=f"raw/{index:05d}.json", Body=body)
            except BaseException as error:  # noqa: BLE001 - reported after the run
                errors.append(error)
                return

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"the workload failed: {errors[0]!r}")
    return elapsed


def _counts(client: Callable[[str], Any]) -> dict[str, int]:
    kinesis = client("kinesis")
    records = 0
    for shard in kinesis.list_shards(StreamName="bench")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="bench", ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += len(answer["Records"])
            if not answer["Records"]:
                break
            iterator = answer["NextShardIterator"]
    items = sum(page["Count"] for page in client("dynamodb").get_paginator("scan").paginate(TableName="bench", Select="COUNT"))
    objects = sum(page.get("KeyCount", 0) for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket="bench-journal"))
    return {"kinesis_records": records, "dynamodb_items": items, "s3_objects": objects}


def _health(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{endpoint}/_localcloud/health", timeout=10) as response:
        return dict(json.loads(response.read()))


def _one_run(mode: str, crash: bool) -> dict[str, Any]:
    from localcloud import lifecycle

    home = Path(tempfile.mkdtemp(prefix=f"bench-journal-{mode}-"))
    with lifecycle.running(home, {**ENV, "RETAIL_LOCALCLOUD_JOURNAL": mode}) as endpoint:
        client = _clients(endpoint)
        _setup(client)
        seconds = _workload(client)
        result: dict[str, Any] = {"mode": mode, "seconds": round(seconds, 3)}
        if not crash:
            return result
        port = int(endpoint.rsplit(":", 1)[1])
        health = _health(endpoint)
        journal_bytes = sum(f.stat().st_size for f in (Path(health["state_dir"]) / "journal").glob("*.log"))
        os.kill(health["pid"], signal.SIGKILL)
        time.sleep(0.2)
        started = time.perf_counter()
        lifecycle.up(port)
        restart_s = time.perf_counter() - started
        replay = _health(endpoint)["journal"]
        counts = _counts(client)
        expected = {"kinesis_records": KINESIS_RECORDS, "dynamodb_items": DYNAMODB_ITEMS, "s3_objects": S3_OBJECTS}
        result["crash"] = {"journal_mb": round(journal_bytes / 1e6, 1), "up_after_crash_s": round(restart_s, 2),
                           "replayed_requests": replay["replayed"], "replay_s": replay["seconds"],
                           "mismatched": replay["mismatched"], "counts_after_restart": counts,
                           "everything_back": counts == expected}
        return result


def run() -> dict[str, Any]:
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    crash: dict[str, Any] = {}
    for round_ in range(ROUNDS):
        for mode in MODES:  # alternating, so a slow moment of the machine hits every mode alike
            last = round_ == ROUNDS - 1 and mode == "fsync"
            result = _one_run(mode, crash=last)
            runs[mode].append(result["seconds"])
            crash = result.get("crash", crash)
            print(f"  round {round_ + 1} {mode}: {result['seconds']:.2f} s", file=sys.stderr, flush=True)
    medians = {mode: round(statistics.median(times), 3) for mode, times in runs.items()}
    calls = len(_jobs())
    return {
        "workload": {"threads": THREADS, "kinesis_records": KINESIS_RECORDS, "kinesis_batch": KINESIS_BATCH,
                     "dynamodb_items": DYNAMODB_ITEMS, "dynamodb_batch": DYNAMODB_BATCH, "s3_objects": S3_OBJECTS,
                     "calls": calls},
        "seconds": runs,
        "median_s": medians,
        "calls_per_s": {mode: round(calls / medians[mode], 1) for mode in MODES},
        **{f"ratio_{mode}_to_off": round(medians[mode] / medians["off"], 3)
           for mode in MODES if mode != "off" and "off" in medians},
        "crash_and_replay": crash,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
