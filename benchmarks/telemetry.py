"""One simulated hour of a 100-vehicle fleet at 1 Hz (360,000 readings) through notebook 09's two paths,
on a local cloud of its own, every reading accounted:

- Firehose: `put_record_batch` of the text lines -> the transform Lambda -> S3 `readings/`; delivered +
  dropped (the transform's EMF counts) + failed (`errors/`) must equal the lines sent;
- Kinesis: `put_records` of the JSON readings -> the tumbling-window mapping -> the windows Lambda; the
  window rows' readings + the buggy readings routed must equal the records sent.
Reports the seconds from the first put to the last reading accounted, per path and in all, and the CPU
seconds spent meanwhile by the producers (this process), the local cloud's server and its function workers.
Each path has BENCH_TELEMETRY_PRODUCERS producer threads (default 4), as a gateway's AWS client runs several.
Run: `python -m benchmarks --only telemetry` (or `python -m benchmarks.telemetry`);
BENCH_TELEMETRY_VEHICLES / BENCH_TELEMETRY_SECONDS shrink it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

VEHICLES = int(os.environ.get("BENCH_TELEMETRY_VEHICLES", "100"))
SECONDS = int(os.environ.get("BENCH_TELEMETRY_SECONDS", "3600"))
WINDOW_S = 5
SHARDS = 2
PRODUCERS = int(os.environ.get("BENCH_TELEMETRY_PRODUCERS", "4"))  # threads per path (the two paths run in parallel)
TIMEOUT_S = 600.0
BUCKET = "bench-telemetry"


def _wait(done: Callable[[], bool], what: str) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not accounted after {TIMEOUT_S:.0f} s")
        time.sleep(0.25)
    return time.perf_counter()


def _cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the producers (this process), the server, and its function workers (the live
    ones and those it reaped), read from Linux's /proc: empty elsewhere."""
    def stat(pid: str) -> list[str]:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return []

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    server = stat(str(server_pid))
    if not server:
        return {}
    workers = [fields for entry in os.scandir("/proc") if entry.name.isdigit()
               for fields in [stat(entry.name)] if fields and int(fields[1]) == server_pid]
    return {"producers": time.process_time(), "server": (int(server[11]) + int(server[12])) / tick,
            "functions": (int(server[13]) + int(server[14]) + sum(int(w[11]) + int(w[12]) for w in workers)) / tick}


def run() -> dict[str, Any]:
    import boto3

    from helpers import fleet, packaging
    from localcloud import lifecycle
    from localcloud.firehose.executor import flush

    os.environ["RETAIL_LOCALCLOUD_HOME"] = tempfile.mkdtemp(prefix="bench-telemetry-")
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)
    try:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3, firehose, kinesis, awslambda, iam, cloudwatch = (session.client(name, endpoint_url=endpoint) for name in (
            "s3", "firehose", "kinesis", "lambda", "iam", "cloudwatch"))
        role = iam.create_role(RoleName="bench-telemetry", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
                "Service": ["lambda.amazonaws.com", "firehose.amazonaws.com"]}}]}))["Role"]["Arn"]
        iam.put_role_policy(RoleName="bench-telemetry", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
                "s3:*", "kinesis:*", "firehose:*", "lambda:*", "logs:*"], "Resource": "*"}]}))
        s3.create_bucket(Bucket=BUCKET)
        car_fleet = fleet.Fleet(vehicles=VEHICLES, speeders=max(1, VEHICLES // 20), buggy=max(1, VEHICLES // 25))
        s3.put_object(Bucket=BUCKET, Key="reference/vehicles.csv", Body=car_fleet.reference().to_csv(index=False).encode())
        functions = {}
        for folder, env in (("telemetry_transform", {"METRICS_NAMESPACE": "Telemetry"}),
                            ("telemetry_windows", {"REFERENCE_BUCKET": BUCKET, "REFERENCE_KEY": "reference/vehicles.csv",
                                                   "BUGGY_STREAM": "bench-buggy", "RESULTS_BUCKET": BUCKET,
                                                   "POWERTOOLS_SERVICE_NAME": "bench-windows"})):
            functions[folder] = awslambda.create_function(
                FunctionName=f"bench-{folder}", Runtime=packaging.RUNTIME, Role=role, Handler="app.handler",
                Code={"ZipFile": packaging.package(folder)}, Timeout=120, MemorySize=512,
                Environment={"Variables": env})["FunctionArn"]
        for name, prefix, transform in (("bench-readings", "readings/", functions["telemetry_transform"]),
                                        ("bench-buggy", "buggy/", None)):
            destination: dict[str, Any] = {"RoleARN": role, "BucketARN": f"arn:aws:s3:::{BUCKET}", "Prefix": prefix,
                                           "ErrorOutputPrefix": f"errors/{prefix}!{{firehose:error-output-type}}/",
                                           "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}}
            if transform:
                destination["ProcessingConfiguration"] = {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": transform},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"}]}]}
            firehose.create_delivery_stream(DeliveryStreamName=name, DeliveryStreamType="DirectPut",
                                            ExtendedS3DestinationConfiguration=destination)
        kinesis.create_stream(StreamName="bench-telemetry", ShardCount=SHARDS)
        kinesis.get_waiter("stream_exists").wait(StreamName="bench-telemetry")
        stream_arn = kinesis.describe_stream_summary(StreamName="bench-telemetry")["StreamDescriptionSummary"]["StreamARN"]
        awslambda.create_event_source_mapping(FunctionName=functions["telemetry_windows"], EventSourceArn=stream_arn,
                                              StartingPosition="TRIM_HORIZON", BatchSize=1000,
                                              TumblingWindowInSeconds=WINDOW_S)

        generated = time.perf_counter()
        readings = car_fleet.readings(SECONDS)
        lines = fleet.text_lines(readings, truncate_every=4)
        records = fleet.json_records(readings)
        generate_s = time.perf_counter() - generated

        def objects(prefix: str) -> list[str]:
            return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                    for o in page.get("Contents", [])]

        def line_count(prefix: str) -> int:
            return sum(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().count(b"\n") for key in objects(prefix))

        def dropped() -> int:
            points = cloudwatch.get_metric_statistics(
                Namespace="Telemetry", MetricName="TransformDropped", Statistics=["Sum"], Period=60,
                Dimensions=[{"Name": "DeliveryStream", "Value": "bench-readings"}],
                StartTime=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1),
                EndTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1))["Datapoints"]
            return int(sum(p["Sum"] for p in points))

        # Producers in parallel, as a fleet's gateways would be: Firehose lines in halves, Kinesis records in
        # groups of vehicles (a vehicle's readings stay in order within its group).
        groups = [[r for r in records if zlib.crc32(r["vin"].encode()) % PRODUCERS == g] for g in range(PRODUCERS)]
        halves = [lines[g::PRODUCERS] for g in range(PRODUCERS)]
        finished: dict[str, float] = {}

        def produce(name: str, send: Callable[[], int]) -> None:
            send()
            finished[name] = time.perf_counter()

        health = lifecycle.health(port)
        assert health is not None, "the local cloud stopped answering"
        server_pid = health.pid
        cpu_before = _cpu_seconds(server_pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2 * PRODUCERS) as pool:
            jobs = [pool.submit(produce, f"firehose{g}", lambda g=g: fleet.send_to_firehose(
                        firehose, "bench-readings", halves[g], progress=False)) for g in range(PRODUCERS)]
            jobs += [pool.submit(produce, f"kinesis{g}", lambda g=g: fleet.send_to_kinesis(
                         kinesis, "bench-telemetry", groups[g], progress=False)) for g in range(PRODUCERS)]
            for job in jobs:
                job.result()
        firehose_put_s = max(t for k, t in finished.items() if k.startswith("firehose")) - started
        kinesis_put_s = max(t for k, t in finished.items() if k.startswith("kinesis")) - started

        while flush(endpoint, "bench-readings").get("Records"):
            pass
        delivered, failed = line_count("readings/"), line_count("errors/readings/")
        firehose_done = _wait(lambda: delivered + dropped() + failed >= len(lines), "firehose path")
        accounted = {"delivered": delivered, "dropped": dropped(), "failed": failed}

        state: dict[str, int] = {}

        def windows_accounted() -> bool:
            rows = buggy = 0
            for key in objects("windows/"):
                answer = s3.get_object(Bucket=BUCKET, Key=key)
                rows += sum(json.loads(line)["readings"] for line in answer["Body"].read().decode().splitlines())
                buggy += int(answer["Metadata"].get("buggy-readings", 0))
            state.update(window_readings=rows, buggy_routed=buggy, windows=len(objects("windows/")))
            return rows + buggy >= len(records)

        windows_done = _wait(windows_accounted, "windows path")
        cpu_after = _cpu_seconds(server_pid)
        cpu = {name: round(cpu_after[name] - cpu_before[name], 1) for name in cpu_after if name in cpu_before}
    finally:
        lifecycle.down(port)
    impossible = int(fleet.impossible(readings).sum())
    truncated = sum(len(line.split()) != 6 for line in lines)
    assert accounted["delivered"] + accounted["dropped"] + accounted["failed"] == len(lines), accounted
    assert accounted["failed"] == truncated and accounted["dropped"] == impossible - truncated, accounted
    assert state["window_readings"] + state["buggy_routed"] == len(records), state
    assert state["buggy_routed"] == impossible, state
    return {
        "readings": len(readings), "vehicles": VEHICLES, "simulated_s": SECONDS, "window_s": WINDOW_S, "shards": SHARDS,
        "producers_per_path": PRODUCERS,
        "generate_s": round(generate_s, 2),
        "firehose_put_s": round(firehose_put_s, 2), "kinesis_put_s": round(kinesis_put_s, 2),
        "firehose_accounted_s": round(firehose_done - started, 2),
        "windows_accounted_s": round(windows_done - started, 2),
        "total_s": round(max(firehose_done, windows_done) - started, 2),
        "cpu_s": cpu, "load_average": [round(x, 1) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "firehose": accounted, **state,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
