"""`python -m benchmarks [--only NAME ...]`: measure and print; results also go to build/bench.json.

- localcloud: cold start of the local cloud (process spawn to healthy) and stop, median of 3;
  p50/p99 latency of small boto3 calls against it.
- dataset: the full real file read + parsed + classified (skipped when the file is absent).
- lambda: warm and cold invoke latency; kinesis: Kinesis -> Lambda drain rate and put-to-invoke
  latency; apigateway: Lambda proxy API requests/s and latency (each in its own module).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from helpers.paths import BUILD_DIR, PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"))


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "n": len(ordered)}


def _timed(call: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def bench_localcloud() -> dict[str, Any]:
    import boto3

    from localcloud import lifecycle

    os.environ["RETAIL_LOCALCLOUD_HOME"] = tempfile.mkdtemp(prefix="bench-localcloud-")
    starts, stops = [], []
    for _ in range(3):
        port = lifecycle.free_port()
        started = time.perf_counter()
        endpoint = lifecycle.up(port)
        starts.append(time.perf_counter() - started)
        started = time.perf_counter()
        lifecycle.down(port)
        stops.append(time.perf_counter() - started)
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)
    try:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=endpoint)
        kinesis = session.client("kinesis", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bench")
        kinesis.create_stream(StreamName="bench", ShardCount=1)
        s3.put_object(Bucket="bench", Key="warm", Body=b"x")  # first call of a service loads its backend
        kinesis.put_record(StreamName="bench", Data=b"x", PartitionKey="k")
        put = _timed(lambda: s3.put_object(Bucket="bench", Key="k", Body=b"x" * 512), 300)
        record = _timed(lambda: kinesis.put_record(StreamName="bench", Data=b"x" * 512, PartitionKey="k"), 300)
    finally:
        lifecycle.down(port)
    return {
        "cold_start_s": round(statistics.median(starts), 3),
        "stop_s": round(statistics.median(stops), 3),
        "s3_put_object": _percentiles(put),
        "kinesis_put_record": _percentiles(record),
    }


def bench_dataset() -> dict[str, Any]:
    from helpers import dataset

    if not REAL_FILE.exists():
        return {"skipped": f"{REAL_FILE} not found ({dataset.REAL_FILE_HINT})"}
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        frame = dataset.load(REAL_FILE)
        timings.append(time.perf_counter() - started)
    counts = frame["quality"].value_counts()
    return {
        "file": str(REAL_FILE),
        "rows": len(frame),
        "load_parse_classify_s": round(statistics.median(timings), 3),
        "classified_rows": int(counts.sum()),
        "by_quality": {str(name): int(count) for name, count in counts.items()},
    }


def _module(name: str) -> Callable[[], dict[str, Any]]:
    """A benchmark living in its own module `benchmarks/<name>.py` with a `run() -> dict`.

    Each starts a local cloud of its own, so they do not disturb one another."""
    def run() -> dict[str, Any]:
        return importlib.import_module(f"benchmarks.{name}").run()
    return run


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "localcloud": bench_localcloud,
    "dataset": bench_dataset,
    "lambda": _module("lambda_invoke"),
    "kinesis": _module("kinesis_drain"),
    "apigateway": _module("apigateway_proxy"),
    "warehouse": _module("warehouse_copy"),
    "dashboard": _module("bi_dashboard"),
    "lake": _module("lake_sql"),
    "pipeline": _module("pipeline_e2e"),  # the full file end to end: about 10-15 minutes
    "journal": _module("journal"),  # write-heavy workload with the journal fsync/flush/off, and replay after kill -9
    "alarms": _module("alarms"),  # put of a breaching datapoint -> alarm's SNS message on SQS
    "batch": _module("batch_import"),  # the full file cut by day and bulk-imported by the batch Lambda
    "telemetry": _module("telemetry"),  # a simulated fleet hour (360,000 readings) through Firehose and tumbling windows
    "dynamodb": _module("dynamodb_items"),  # the local cloud's CPU per GetItem and index Query, by invoice size
    "query": _module("query_api"),  # the query API at a paced 50 requests/s on the full serving table, and why it is slow
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = parser.parse_args(argv)
    results = {"python": sys.version.split()[0], "cores": os.cpu_count()}
    for name in args.only:
        print(f"== {name}", flush=True)
        try:
            results[name] = BENCHMARKS[name]()
        except Exception as error:  # one benchmark that cannot run (e.g. no Lambda runtime yet) skips
            results[name] = {"skipped": f"{type(error).__name__}: {error}"}
        print(json.dumps(results[name], indent=2), flush=True)
    BUILD_DIR.mkdir(exist_ok=True)
    (BUILD_DIR / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {BUILD_DIR / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
