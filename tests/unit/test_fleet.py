"""The fleet simulator: deterministic readings, the speeders and buggy devices it promises, the course's
text records, and producers that retry only refused entries and pace a replay."""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd
import pytest

from helpers import fleet


def test_same_seed_same_readings_and_another_seed_differs():
    a, b = fleet.Fleet(vehicles=5, seed=3).readings(30), fleet.Fleet(vehicles=5, seed=3).readings(30)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(fleet.Fleet(vehicles=5, seed=4).readings(30))


def test_one_reading_a_vehicle_a_second_in_time_order():
    f = fleet.Fleet(vehicles=6, speeders=1, buggy=1)
    readings = f.readings(40)
    assert list(readings.columns) == fleet.COLUMNS and len(readings) == 6 * 40
    assert readings["ts"].is_monotonic_increasing and readings["ts"].iloc[0] == int(f.start)
    assert (readings.groupby("vin")["ts"].diff().dropna() == 1).all()
    assert readings["vin"].str.len().eq(17).all() and not readings["vin"].str.contains("[IOQ]").any()
    reference = f.reference()
    assert set(reference["vin"]) == set(readings["vin"])
    assert readings.merge(reference, on="vin", suffixes=("", "_ref")).eval("sensor_id == sensor_id_ref").all()


def test_speeders_speed_and_only_buggy_devices_send_impossible_values():
    f = fleet.Fleet(vehicles=10, speeders=2, buggy=2)
    cars, readings = f.cars(), f.readings(120)
    bad = readings[fleet.impossible(readings)]
    assert set(bad["vin"]) == {c.vin for c in cars if c.buggy}
    report = fleet.speeders(readings)
    assert set(report["vin"]) == {c.vin for c in cars if c.speeder}
    assert (report["max_speed_kmh"] > fleet.SPEED_LIMIT_KMH).all()
    assert (report["max_speed_kmh"] <= fleet.MAX_PLAUSIBLE_KMH).all()  # 999 km/h is a bug, not a speeder


def test_text_records_are_space_separated_and_some_buggy_lines_are_truncated():
    readings = fleet.Fleet(vehicles=4, speeders=1, buggy=1).readings(60)
    lines = fleet.text_lines(readings)
    ts, vin, sensor, speed, lat, lon = lines[0].split()
    assert lines[0].endswith("\n") and int(ts) == readings["ts"].iloc[0] and vin == readings["vin"].iloc[0]
    assert float(speed) == readings["speed_kmh"].iloc[0] and float(lat) == readings["lat"].iloc[0]
    cut = fleet.text_lines(readings, truncate_every=3)
    short = [i for i, line in enumerate(cut) if len(line.split()) != 6]
    assert short and all(fleet.impossible(readings.iloc[short]))


def test_feedback_messages_are_deterministic_text():
    messages = fleet.Fleet(vehicles=3).feedback(12)
    assert len(messages) == 12 and messages.equals(fleet.Fleet(vehicles=3).feedback(12))
    assert set(messages["tone"]) <= {"positive", "negative", "neutral"} and messages["text"].str.len().gt(5).all()


class FlakyFirehose:
    """Refuses every third entry of a call the first time it sees it, as a throttled stream does."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.seen: set[bytes] = set()
        self.calls = 0

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Records) <= 500
        self.calls += 1
        answers = []
        for i, record in enumerate(Records):
            if i % 3 == 2 and record["Data"] not in self.seen:
                self.seen.add(record["Data"])
                answers.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
            else:
                self.received.append(record["Data"])
                answers.append({"RecordId": str(len(self.received))})
        return {"FailedPutCount": sum("ErrorCode" in a for a in answers), "RequestResponses": answers}


def test_firehose_producer_retries_only_refused_entries_and_loses_none():
    readings = fleet.Fleet(vehicles=7).readings(100)
    lines = fleet.text_lines(readings)
    client = FlakyFirehose()
    assert fleet.send_to_firehose(client, "s", lines, progress=False) == 700
    assert sorted(client.received) == sorted(line.encode() for line in lines)  # each exactly once
    assert client.calls > 2  # two batches and their retries


def test_a_record_refused_for_good_fails_loudly():
    class Refusing:
        def put_record_batch(self, **kwargs: Any) -> dict[str, Any]:
            return {"RequestResponses": [{"ErrorCode": "InternalFailure"} for _ in kwargs["Records"]]}

    with pytest.raises(RuntimeError, match="still refused"):
        fleet._retrying(lambda entries: [False] * len(entries), [1, 2], attempts=2)
    with pytest.raises(RuntimeError):
        fleet.send_to_firehose(Refusing(), "s", ["a\n"], progress=False)


def test_replay_is_paced_by_simulated_time():
    readings = fleet.Fleet(vehicles=2).readings(4)  # 4 simulated seconds
    began = time.monotonic()
    batches = list(fleet.paced(list(range(len(readings))), 2, readings["ts"].tolist(), speedup=10, progress=False))
    assert len(batches) == 4 and 0.28 <= time.monotonic() - began < 2  # the last batch is due at 0.3 s


def test_kinesis_producer_keys_by_vin_in_process(monkeypatch: pytest.MonkeyPatch):
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    readings = fleet.Fleet(vehicles=3).readings(250)
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="telemetry", ShardCount=1)
        assert fleet.send_to_kinesis(kinesis, "telemetry", fleet.json_records(readings), progress=False) == 750
        iterator = kinesis.get_shard_iterator(StreamName="telemetry", ShardId="shardId-000000000000",
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]
    assert len(records) == 750 and records[0]["PartitionKey"] == readings["vin"].iloc[0]
    assert json.loads(records[5]["Data"]) == fleet.json_records(readings)[5]
