"""Firehose transformation for the vehicle telemetry stream: each record is the course's space-separated
text line `<ts> <vin> <sensor_id> <speed_kmh> <lat> <lon>`; it leaves as a JSON line stamped with the time
Firehose received it (`ingested_at`).

The results are Firehose's contract: `Ok` (transformed), `Dropped` (a reading no working device sends:
speed below 0 or above 300 km/h, a position off the globe; those are the buggy devices' and the windowed
analytics route them), `ProcessingFailed` (a line that cannot be parsed: Firehose writes it under the
error prefix). Every recordId comes back exactly once. The counts of each result are printed as an EMF
line (namespace `Telemetry`), so CloudWatch can account for every record.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import time
from typing import Any

MAX_PLAUSIBLE_KMH = float(os.environ.get("MAX_PLAUSIBLE_KMH", "300"))
NAMESPACE = os.environ.get("METRICS_NAMESPACE", "Telemetry")


class BadLine(ValueError):
    """A line that is not six space-separated fields of the right types."""


def parse(line: str) -> dict[str, Any]:
    fields = line.split()
    if len(fields) != 6:
        raise BadLine(f"expected 6 fields, got {len(fields)}")
    ts, vin, sensor, speed, lat, lon = fields
    try:
        return {"ts": int(ts), "vin": vin, "sensor_id": sensor, "speed_kmh": float(speed), "lat": float(lat),
                "lon": float(lon)}
    except ValueError as error:
        raise BadLine(str(error)) from error


def plausible(reading: dict[str, Any]) -> bool:
    return (0 <= reading["speed_kmh"] <= MAX_PLAUSIBLE_KMH and abs(reading["lat"]) <= 90
            and abs(reading["lon"]) <= 180)


_compact = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps with options builds one per call


@functools.lru_cache(maxsize=4096)
def ingested_at(arrival_ms: float) -> str:
    """ISO 8601 UTC with milliseconds; cached: the records of one PutRecordBatch share their arrival."""
    arrived = dt.datetime.fromtimestamp(arrival_ms / 1000, dt.timezone.utc)
    return arrived.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transform(record: dict[str, Any]) -> dict[str, Any]:
    """One Firehose record -> {recordId, result, data}."""
    try:
        reading = parse(base64.b64decode(record["data"]).decode("utf-8"))
    except (BadLine, UnicodeDecodeError, ValueError):
        return {"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]}
    if not plausible(reading):
        return {"recordId": record["recordId"], "result": "Dropped", "data": record["data"]}
    reading["ingested_at"] = ingested_at(record["approximateArrivalTimestamp"])
    data = (_compact(reading) + "\n").encode()
    return {"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(data).decode()}


def emf(stream: str, counts: dict[str, int]) -> str:
    """An EMF line with one metric per result (what CloudWatch turns into metrics)."""
    names = ["Ok", "Dropped", "ProcessingFailed"]
    return json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": NAMESPACE, "Dimensions": [["DeliveryStream"]],
        "Metrics": [{"Name": f"Transform{name}", "Unit": "Count"} for name in names]}]},
        "DeliveryStream": stream, **{f"Transform{name}": counts.get(name, 0) for name in names}})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = [transform(record) for record in event["records"]]
    counts: dict[str, int] = {}
    for record in records:
        counts[record["result"]] = counts.get(record["result"], 0) + 1
    print(emf(event.get("deliveryStreamArn", "").rsplit("/", 1)[-1], counts))
    return {"records": records}
