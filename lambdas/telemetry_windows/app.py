"""Tumbling-window analytics over the vehicle telemetry stream (a Kinesis event source mapping with
TumblingWindowInSeconds): the current AWS design for what the course did with Kinesis Data Analytics SQL,
which takes no new applications since 2025-10-15.

Lambda calls this function with each batch of a window and the `state` it returned for the window so far;
the window's last call has `isFinalInvokeForWindow` true. Per batch:
- each reading (JSON: ts, vin, sensor_id, speed_kmh, lat, lon) is joined with the VIN -> sensor id
  reference table (CSV in S3, REFERENCE_BUCKET/REFERENCE_KEY, read once per environment);
- readings of buggy devices (impossible values, a sensor id that is not the VIN's registered one, an
  unknown VIN) go to the buggy Firehose (BUGGY_STREAM, S3 prefix `buggy/`) with the registered sensor id
  and the reason; a refused entry is retried, and still refused raises, so Lambda retries the batch;
- the others are folded into the state: per VIN count, speed sum, max speed.
On the final call the window's per-vehicle averages and maxima go to S3 (`windows/<start>/<shard>.json`,
JSON lines) and its totals to CloudWatch as EMF metrics (Powertools Metrics). Every answer carries
`state`: AWS counts an answer without it as a failed invocation.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

s3 = boto3.client("s3")
firehose = boto3.client("firehose")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Telemetry"),
                  service=os.environ.get("POWERTOOLS_SERVICE_NAME", "telemetry-windows"))
SPEED_LIMIT_KMH = float(os.environ.get("SPEED_LIMIT_KMH", "120"))
MAX_PLAUSIBLE_KMH = float(os.environ.get("MAX_PLAUSIBLE_KMH", "300"))
_reference: dict[str, str] | None = None


def reference() -> dict[str, str]:
    """VIN -> registered sensor id, read once per execution environment."""
    global _reference
    if _reference is None:
        body = s3.get_object(Bucket=os.environ["REFERENCE_BUCKET"], Key=os.environ["REFERENCE_KEY"])["Body"].read()
        _reference = {row["vin"]: row["sensor_id"] for row in csv.DictReader(io.StringIO(body.decode("utf-8")))}
    return _reference


def fault(reading: dict[str, Any], registered: str | None) -> str | None:
    """Why a reading comes from a buggy device, or None."""
    if registered is None:
        return "unknown VIN"
    if reading["sensor_id"] != registered:
        return "sensor id is not the VIN's registered sensor"
    if not 0 <= reading["speed_kmh"] <= MAX_PLAUSIBLE_KMH:
        return "impossible speed"
    if abs(reading["lat"]) > 90 or abs(reading["lon"]) > 180:
        return "impossible position"
    return None


def route_buggy(readings: list[dict[str, Any]]) -> None:
    """PutRecordBatch to the buggy stream (500 a call), refused entries retried."""
    stream = os.environ["BUGGY_STREAM"]
    for first in range(0, len(readings), 500):
        pending = [(json.dumps(r, separators=(",", ":")) + "\n").encode() for r in readings[first:first + 500]]
        for attempt in range(6):
            answer = firehose.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": d} for d in pending])
            pending = [d for d, r in zip(pending, answer["RequestResponses"]) if "ErrorCode" in r]
            if not pending:
                break
            time.sleep(0.1 * 2 ** attempt)
        if pending:
            raise RuntimeError(f"{len(pending)} buggy readings refused by {stream}")


def fold(state: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    vehicles: dict[str, list[float]] = state.setdefault("vehicles", {})
    known = reference()
    buggy = []
    for record in records:
        reading = json.loads(base64.b64decode(record["kinesis"]["data"]))
        registered = known.get(reading["vin"])
        reason = fault(reading, registered)
        if reason:
            buggy.append({**reading, "registered_sensor_id": registered, "reason": reason})
            continue
        count, total, top, speeding = vehicles.get(reading["vin"], [0, 0.0, 0.0, 0])
        speed = reading["speed_kmh"]
        vehicles[reading["vin"]] = [count + 1, round(total + speed, 3), max(top, speed),
                                    speeding + (speed > SPEED_LIMIT_KMH)]
    if buggy:
        route_buggy(buggy)
    state["buggy"] = state.get("buggy", 0) + len(buggy)
    return state


def close(event: dict[str, Any], state: dict[str, Any]) -> None:
    """The window's results: per-vehicle rows to S3, totals as metrics."""
    window, vehicles = event["window"], state.get("vehicles", {})
    known = reference()
    rows = [{"window_start": window["start"], "window_end": window["end"], "vin": vin,
             "sensor_id": known.get(vin), "readings": n, "avg_speed_kmh": round(total / n, 2),
             "max_speed_kmh": top, "speeding_readings": speeding}
            for vin, (n, total, top, speeding) in sorted(vehicles.items())]
    if rows or state.get("buggy"):
        key = f"windows/{window['start']}/{event['shardId']}.json"
        s3.put_object(Bucket=os.environ["RESULTS_BUCKET"], Key=key,
                      Body="".join(json.dumps(r) + "\n" for r in rows).encode(),
                      Metadata={"buggy-readings": str(state.get("buggy", 0))})
    metrics.add_metric(name="WindowReadings", unit=MetricUnit.Count, value=sum(r["readings"] for r in rows))
    metrics.add_metric(name="BuggyReadings", unit=MetricUnit.Count, value=state.get("buggy", 0))
    metrics.add_metric(name="SpeedingReadings", unit=MetricUnit.Count,
                       value=sum(r["speeding_readings"] for r in rows))
    metrics.add_metric(name="MaxSpeed", unit=MetricUnit.NoUnit,
                       value=max((r["max_speed_kmh"] for r in rows), default=0))


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = fold(dict(event.get("state") or {}), event.get("Records", []))
    if event.get("isFinalInvokeForWindow"):
        close(event, state)
    return {"state": state, "batchItemFailures": []}
