"""The vehicle telemetry functions called with the events AWS sends them (Firehose transformation
events, S3 notifications, an HTTP API payload 2.0 request, Kinesis tumbling-window batches) against the
session local cloud; results checked in the services themselves and against pandas on the same fleet."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pandas as pd
import pytest

from helpers import fleet

pytestmark = pytest.mark.localcloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
ACCOUNT, REGION = "123456789012", "us-east-1"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/telemetry"


def load(name: str) -> ModuleType:
    module_name = f"lambda_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, LAMBDAS / name / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def firehose_event(lines: list[bytes], stream: str = "telemetry-readings") -> dict[str, Any]:
    """What Firehose sends a transformation function."""
    return {"invocationId": str(uuid.uuid4()), "region": REGION,
            "deliveryStreamArn": f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{stream}",
            "records": [{"recordId": f"4960{i:04d}", "approximateArrivalTimestamp": 1_767_225_600_123 + i,
                         "data": base64.b64encode(line).decode()} for i, line in enumerate(lines)]}


def decoded(record: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(record["data"]))


@pytest.fixture(scope="module")
def bucket(aws: Callable[[str], Any]) -> str:
    name = f"telemetry-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(Bucket=name)
    return name


# --------------------------------------------------------------------------------------------------
# telemetry_transform


def test_transform_stamps_ok_drops_impossible_and_fails_unparsable(capsys: pytest.CaptureFixture[str]):
    transform = load("telemetry_transform")
    lines = [b"1767225600 1HGCM82633A004352 SN-123456 88.5 51.5 -0.12\n",
             b"1767225600 1HGCM82633A004353 SN-222222 999.0 51.5 -0.12\n",
             b"1767225601 1HGCM82633A004353 SN-222222\n",
             b"1767225601 1HGCM82633A004353 SN-222222 fast 51.5 -0.12\n",
             b"1767225601 1HGCM82633A004354 SN-333333 70.0 123.0 -0.12\n"]
    event = firehose_event(lines)
    answer = transform.handler(event, None)
    assert [r["recordId"] for r in answer["records"]] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in answer["records"]] == ["Ok", "Dropped", "ProcessingFailed", "ProcessingFailed", "Dropped"]
    assert decoded(answer["records"][0]) == {"ts": 1767225600, "vin": "1HGCM82633A004352", "sensor_id": "SN-123456",
                                             "speed_kmh": 88.5, "lat": 51.5, "lon": -0.12,
                                             "ingested_at": "2026-01-01T00:00:00.123Z"}
    assert base64.b64decode(answer["records"][0]["data"]).endswith(b"\n")
    assert answer["records"][2]["data"] == event["records"][2]["data"]  # failed records keep their data
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emf["DeliveryStream"] == "telemetry-readings"
    assert (emf["TransformOk"], emf["TransformDropped"], emf["TransformProcessingFailed"]) == (1, 2, 2)
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Telemetry"


def test_transform_accounts_for_every_fleet_reading():
    transform = load("telemetry_transform")
    readings = fleet.Fleet(vehicles=8, speeders=1, buggy=2).readings(60)
    lines = fleet.text_lines(readings, truncate_every=4)
    results = [r["result"] for r in transform.handler(firehose_event([l.encode() for l in lines]), None)["records"]]
    short = sum(len(line.split()) != 6 for line in lines)
    assert results.count("ProcessingFailed") == short > 0
    assert results.count("Dropped") == int(fleet.impossible(readings).sum()) - short
    assert results.count("Ok") == int((~fleet.impossible(readings)).sum())


# --------------------------------------------------------------------------------------------------
# feedback_sentiment (Comprehend through the local cloud)


def test_feedback_gets_comprehend_sentiment_in_batches_of_25():
    sentiment = load("feedback_sentiment")
    messages = fleet.Fleet(vehicles=3).feedback(30)
    lines = [json.dumps({"ts": int(m.ts), "vin": m.vin, "text": m.text}).encode() for m in messages.itertuples()]
    lines += [b"not json", json.dumps({"vin": "X", "text": ""}).encode()]
    answer = sentiment.handler(firehose_event(lines, "telemetry-feedback"), None)
    results = answer["records"]
    assert [r["result"] for r in results] == ["Ok"] * 30 + ["ProcessingFailed"] * 2
    enriched = [decoded(r) for r in results[:30]]
    assert all(e["sentiment"] in {"POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED"} for e in enriched)
    assert all(abs(sum(e["scores"].values()) - 1) < 0.01 for e in enriched)
    by_tone = {tone: {e["sentiment"] for e, t in zip(enriched, messages["tone"]) if t == tone} for tone in ("positive", "negative")}
    assert by_tone["positive"] == {"POSITIVE"} and by_tone["negative"] == {"NEGATIVE"}
    assert enriched[0]["text"] == messages["text"].iloc[0] and enriched[0]["vin"] == messages["vin"].iloc[0]


# --------------------------------------------------------------------------------------------------
# speeders_report: S3 notification and HTTP API payload 2.0


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
                         "eventTime": "2026-01-01T00:05:00.000Z", "eventName": "ObjectCreated:Put",
                         "s3": {"s3SchemaVersion": "1.0", "configurationId": "speeders",
                                "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                                "object": {"key": key, "size": 1, "eTag": "0", "sequencer": "0"}}}]}


def http_event(query: dict[str, str] | None) -> dict[str, Any]:
    raw = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    return {"version": "2.0", "routeKey": "GET /speeders", "rawPath": "/speeders", "rawQueryString": raw,
            "headers": {"host": "local", "user-agent": "pytest"}, "queryStringParameters": query,
            "requestContext": {"accountId": ACCOUNT, "apiId": "abc123", "domainName": "local", "domainPrefix": "abc123",
                               "http": {"method": "GET", "path": "/speeders", "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "pytest"},
                               "requestId": "r", "routeKey": "GET /speeders", "stage": "$default",
                               "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000},
            "isBase64Encoded": False}


def lake_lines(readings: pd.DataFrame) -> list[str]:
    transform = load("telemetry_transform")
    answer = transform.handler(firehose_event([l.encode() for l in fleet.text_lines(readings)]), None)
    return [base64.b64decode(r["data"]).decode() for r in answer["records"] if r["result"] == "Ok"]


def test_speeders_report_from_the_days_objects_equals_pandas(aws: Callable[[str], Any], bucket: str,
                                                             monkeypatch: pytest.MonkeyPatch):
    report_fn = load("speeders_report")
    monkeypatch.setenv("BUCKET", bucket)
    readings = fleet.Fleet(vehicles=10, speeders=3, buggy=1).readings(120)
    lines = lake_lines(readings)
    today = dt.datetime.now(dt.timezone.utc).date()
    prefix = f"readings/{today:%Y/%m/%d}/"
    half = len(lines) // 2
    aws("s3").put_object(Bucket=bucket, Key=prefix + "part-1", Body="".join(lines[:half]).encode())
    aws("s3").put_object(Bucket=bucket, Key=prefix + "part-2", Body="".join(lines[half:]).encode())
    aws("s3").put_object(Bucket=bucket, Key="readings/2020/01/01/old", Body=lines[0].encode())
    assert report_fn.handler(s3_event(bucket, prefix + "part-2"), None) == {
        "reports": [f"reports/speeders/{today.isoformat()}.json"]}
    stored = json.loads(aws("s3").get_object(Bucket=bucket, Key=f"reports/speeders/{today.isoformat()}.json")["Body"].read())
    expected = fleet.speeders(readings)
    assert stored["readings"] == len(lines) and stored["objects"] == 2
    assert pd.DataFrame(stored["speeders"]).equals(expected)

    answer = report_fn.handler(http_event({"date": today.isoformat()}), None)
    assert answer["statusCode"] == 200 and answer["headers"]["content-type"] == "application/json"
    assert json.loads(answer["body"])["speeders"] == stored["speeders"]
    assert report_fn.handler(http_event({"date": "2019-02-03"}), None)["statusCode"] == 404
    assert report_fn.handler(http_event({"date": "yesterday"}), None)["statusCode"] == 400
    assert report_fn.handler(http_event(None), None)["statusCode"] == 400
    assert report_fn.handler(s3_event(bucket, "reports/speeders/x.json"), None) == {"reports": []}  # no loop


# --------------------------------------------------------------------------------------------------
# telemetry_windows: tumbling-window batches, the reference join, the buggy Firehose


@pytest.fixture(scope="module")
def windows_env(aws: Callable[[str], Any], bucket: str) -> Iterator[dict[str, str]]:
    import os

    stream = f"telemetry-buggy-{uuid.uuid4().hex[:6]}"
    aws("firehose").create_delivery_stream(
        DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose", "BucketARN": f"arn:aws:s3:::{bucket}",
                                            "Prefix": "buggy/", "ErrorOutputPrefix": "buggy-errors/",
                                            "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 1}})
    env = {"REFERENCE_BUCKET": bucket, "REFERENCE_KEY": "reference/vehicles.csv", "BUGGY_STREAM": stream,
           "RESULTS_BUCKET": bucket, "POWERTOOLS_METRICS_NAMESPACE": "TelemetryTest"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def window_event(readings: list[dict[str, Any]], state: dict[str, Any], final: bool) -> dict[str, Any]:
    records = [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["vin"], "sequenceNumber": str(100 + i),
                            "data": base64.b64encode(json.dumps(r).encode()).decode(),
                            "approximateArrivalTimestamp": 1767225600.5},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:{100 + i}",
                "eventName": "aws:kinesis:record", "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/windows",
                "awsRegion": REGION, "eventSourceARN": STREAM_ARN} for i, r in enumerate(readings)]
    return {"Records": records, "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z"},
            "state": state, "shardId": "shardId-000000000000", "eventSourceARN": STREAM_ARN,
            "isFinalInvokeForWindow": final, "isWindowTerminatedEarly": False}


def test_windows_fold_state_route_buggy_readings_and_close_with_results_and_metrics(
        aws: Callable[[str], Any], bucket: str, windows_env: dict[str, str], capsys: pytest.CaptureFixture[str]):
    from localcloud.firehose.executor import flush

    f = fleet.Fleet(vehicles=6, speeders=1, buggy=1)
    readings = f.readings(30)
    reference = f.reference()
    stranger = {"ts": 1767225630, "vin": "ZZZZZZZZZZZZZZZZZ", "sensor_id": "SN-0", "speed_kmh": 50.0, "lat": 51.0, "lon": 0.0}
    swapped = {**fleet.json_records(readings.iloc[:1])[0], "sensor_id": "SN-999999"}
    aws("s3").put_object(Bucket=bucket, Key="reference/vehicles.csv", Body=reference.to_csv(index=False).encode())
    windows = load("telemetry_windows")
    windows._reference = None
    records = fleet.json_records(readings) + [stranger, swapped]
    first = windows.handler(window_event(records[:100], {}, False), None)
    second = windows.handler(window_event(records[100:], first["state"], False), None)
    assert first["batchItemFailures"] == [] and set(second) == {"state", "batchItemFailures"}
    final = windows.handler(window_event([], second["state"], True), None)
    assert final["state"] == second["state"]

    good = readings[~fleet.impossible(readings)]
    expected = good.groupby("vin").agg(readings=("speed_kmh", "size"), avg_speed_kmh=("speed_kmh", "mean"),
                                       max_speed_kmh=("speed_kmh", "max")).reset_index()
    body = aws("s3").get_object(Bucket=bucket, Key="windows/2026-01-01T00:00:00Z/shardId-000000000000.json")
    rows = pd.DataFrame([json.loads(line) for line in body["Body"].read().decode().splitlines()])
    assert body["Metadata"]["buggy-readings"] == str(int(fleet.impossible(readings).sum()) + 2)
    merged = rows.merge(expected, on="vin", suffixes=("", "_pandas"))
    assert len(merged) == len(expected) == len(rows)
    assert (merged["readings"] == merged["readings_pandas"]).all()
    assert (merged["avg_speed_kmh"] - merged["avg_speed_kmh_pandas"]).abs().max() < 0.01
    assert (merged["max_speed_kmh"] == merged["max_speed_kmh_pandas"]).all()
    assert (rows["sensor_id"] == rows["vin"].map(dict(zip(reference["vin"], reference["sensor_id"])))).all()

    assert flush(None, windows_env["BUGGY_STREAM"])["Records"] == int(fleet.impossible(readings).sum()) + 2
    routed = [json.loads(line) for obj in aws("s3").list_objects_v2(Bucket=bucket, Prefix="buggy/")["Contents"]
              for line in aws("s3").get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode().splitlines()]
    reasons = {r["reason"] for r in routed}
    assert {"unknown VIN", "sensor id is not the VIN's registered sensor", "impossible speed"} <= reasons
    assert all(r["registered_sensor_id"] == dict(zip(reference["vin"], reference["sensor_id"])).get(r["vin"]) for r in routed)

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    emf = [document for document in emf if "WindowReadings" in document]  # not Powertools' own (cold start...)
    assert len(emf) == 1  # the final invoke publishes the window's metrics, once
    assert emf[0]["BuggyReadings"] == [float(len(routed))] and emf[0]["WindowReadings"] == [float(len(good))]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TelemetryTest"
