"""The daily speeders report of the vehicle telemetry lake.

Two triggers, one computation:
- S3 `ObjectCreated` under `readings/YYYY/MM/DD/` (the Firehose date prefix): the report of that day is
  recomputed from all of the day's objects and written to `reports/speeders/YYYY-MM-DD.json`;
- the HTTP API route `GET /speeders?date=YYYY-MM-DD` (API Gateway payload format 2.0): today's report is
  recomputed on demand (objects may have landed since the last write; concurrent S3 invocations may have
  finished out of order), an earlier day's is read as written; 400 without a valid date, 404 when that
  day has no report.

A speeder is a vehicle with at least one reading above SPEED_LIMIT_KMH; the report lists, by VIN, how
many such readings and the top speed. Readings are the transform's JSON lines.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.parse
from typing import Any

import boto3

s3 = boto3.client("s3")
SPEED_LIMIT_KMH = float(os.environ.get("SPEED_LIMIT_KMH", "120"))
READINGS_PREFIX = os.environ.get("READINGS_PREFIX", "readings/")
REPORTS_PREFIX = os.environ.get("REPORTS_PREFIX", "reports/speeders/")
DAY_IN_KEY = re.compile(r"(\d{4})/(\d{2})/(\d{2})/")


def day_prefix(day: dt.date) -> str:
    return f"{READINGS_PREFIX}{day:%Y/%m/%d}/"


def compute(bucket: str, day: dt.date) -> dict[str, Any]:
    """The report of `day` from every object under its prefix."""
    speeders: dict[str, dict[str, Any]] = {}
    readings = objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=day_prefix(day)):
        for item in page.get("Contents", []):
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8")
            for line in body.splitlines():
                if not line.strip():
                    continue
                reading = json.loads(line)
                readings += 1
                if reading["speed_kmh"] > SPEED_LIMIT_KMH:
                    entry = speeders.setdefault(reading["vin"], {"vin": reading["vin"], "readings": 0,
                                                                 "max_speed_kmh": 0.0})
                    entry["readings"] += 1
                    entry["max_speed_kmh"] = max(entry["max_speed_kmh"], reading["speed_kmh"])
    return {"date": day.isoformat(), "speed_limit_kmh": SPEED_LIMIT_KMH, "objects": objects, "readings": readings,
            "speeders": [speeders[vin] for vin in sorted(speeders)]}


def write(bucket: str, report: dict[str, Any]) -> str:
    key = f"{REPORTS_PREFIX}{report['date']}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(report, indent=1).encode(), ContentType="application/json")
    return key


def on_s3(event: dict[str, Any]) -> dict[str, Any]:
    written = []
    days = set()
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        found = DAY_IN_KEY.search(key[len(READINGS_PREFIX):]) if key.startswith(READINGS_PREFIX) else None
        if found:
            days.add((bucket, dt.date(*map(int, found.groups()))))
    for bucket, day in sorted(days):
        written.append(write(bucket, compute(bucket, day)))
    return {"reports": written}


def _answer(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def on_http(event: dict[str, Any]) -> dict[str, Any]:
    bucket = os.environ["BUCKET"]
    text = (event.get("queryStringParameters") or {}).get("date", "")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return _answer(400, {"message": "query parameter date=YYYY-MM-DD is required"})
    if day == dt.datetime.now(dt.timezone.utc).date():
        report = compute(bucket, day)
        write(bucket, report)
        return _answer(200, report)
    try:
        stored = s3.get_object(Bucket=bucket, Key=f"{REPORTS_PREFIX}{day.isoformat()}.json")
    except s3.exceptions.NoSuchKey:
        return _answer(404, {"message": f"no speeders report for {day.isoformat()}"})
    return _answer(200, json.loads(stored["Body"].read()))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("version") == "2.0" and "requestContext" in event:
        return on_http(event)
    return on_s3(event)
