"""The one-pass Kinesis PutRecords (localcloud/motoapi/kinesis_put.py) stores and answers exactly what
moto's own put_records does, record for record, and hands moto whatever it would treat differently."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Callable

import pytest

ARRIVAL = dt.datetime(2026, 1, 1, 12, 0, 0, 123456)


@pytest.fixture()
def backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An in-process Kinesis backend with the fast path installed and a clock that does not move."""
    from moto.kinesis import models

    from localcloud.motoapi import kinesis_put, patches

    monkeypatch.delenv("RETAIL_LOCALCLOUD_FASTPATH", raising=False)
    patches.apply()
    kinesis_put.apply()
    monkeypatch.setattr(models, "utcnow", lambda: ARRIVAL)
    return models.kinesis_backends["123456789012"]["us-east-1"]


def _twin_streams(backend: Any, shards: int) -> tuple[str, str]:
    names = (f"fast-{uuid.uuid4().hex[:8]}", f"moto-{uuid.uuid4().hex[:8]}")
    for name in names:
        backend.create_stream(name, shards)
    return names


def _stored(backend: Any, name: str) -> list[tuple[str, list[dict[str, Any]]]]:
    stream = backend.describe_stream(stream_arn=None, stream_name=name)
    return [(shard.shard_id, [vars(record) for record in shard.records.values()])
            for shard in stream.shards.values()]


def _metric_values(name: str) -> list[tuple[str, float]]:
    from moto.cloudwatch.models import cloudwatch_backends

    data = cloudwatch_backends["123456789012"]["us-east-1"].metric_data
    return [(d.name, d.value) for d in data if d.namespace == "AWS/Kinesis" and d.dimensions[0].value == name]


def _put_both(backend: Any, fast: str, slow: str, batches: list[list[dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    from moto.kinesis.models import KinesisBackend

    original = KinesisBackend.put_records.moto_original
    ours = [backend.put_records(None, fast, batch) for batch in batches]
    theirs = [original(backend, None, slow, batch) for batch in batches]
    return ours, theirs


def _records(count: int, keys: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"Data": f"reading {i}".encode(), "PartitionKey": f"VIN{i % keys:014d}"} for i in range(start, start + count)]


@pytest.mark.parametrize("shards", [1, 2, 5])
def test_stores_and_answers_what_moto_does(backend: Any, shards: int) -> None:
    fast, slow = _twin_streams(backend, shards)
    explicit = [{"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": str(h)} for h in (0, 2**127, 2**128 - 2)]
    batches = [_records(500, 37), _records(499, 100, start=500) + explicit[:1], explicit, [], _records(3, 1)]
    ours, theirs = _put_both(backend, fast, slow, batches)
    for a, b in zip(ours, theirs):
        assert a == b
    fast_shards, slow_shards = _stored(backend, fast), _stored(backend, slow)
    assert fast_shards == slow_shards
    assert sum(len(records) for _, records in fast_shards) == 1006
    assert all(r["created_at"] == ARRIVAL for _, records in fast_shards for r in records)
    assert _metric_values(fast) == _metric_values(slow) != []


def test_records_are_tracked_as_moto_tracks_its_models(backend: Any) -> None:
    from moto.kinesis.models import Record

    fast, _ = _twin_streams(backend, 1)
    before = len(Record.instances_tracked)
    backend.put_records(None, fast, _records(10, 2))
    assert len(Record.instances_tracked) == before + 10


@pytest.mark.parametrize("bad", [
    {"Data": b"x", "PartitionKey": "k" * 257},  # moto refuses the key: InvalidArgumentException
    {"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": str(2**128)},
    {"Data": b"x"},  # no partition key at all
])
def test_a_record_moto_refuses_goes_through_moto_whole(backend: Any, bad: dict[str, Any]) -> None:
    from moto.core.exceptions import JsonRESTError

    fast, slow = _twin_streams(backend, 2)
    batch = _records(5, 5) + [bad] + _records(5, 5, start=5)
    with pytest.raises(JsonRESTError) as ours:
        backend.put_records(None, fast, batch)
    from moto.kinesis.models import KinesisBackend

    with pytest.raises(JsonRESTError) as theirs:
        KinesisBackend.put_records.moto_original(backend, None, slow, batch)
    assert (ours.value.code, ours.value.message) == (theirs.value.code, theirs.value.message)
    assert _stored(backend, fast) == _stored(backend, slow)  # moto's partial put, as moto leaves it


@pytest.mark.parametrize("batch, error", [
    (lambda: _records(501, 3), "TooManyRecords"),
    (lambda: [{"Data": b"x" * 1048576, "PartitionKey": "kk"}], "RecordSizeExceedsLimit"),
    (lambda: [{"Data": b"x" * 1000000, "PartitionKey": "k"}] * 6, "TotalRecordsSizeExceedsLimit"),
])
def test_limits_are_moto_s(backend: Any, batch: Callable[[], list[dict[str, Any]]], error: str) -> None:
    from moto.kinesis import exceptions

    fast, _ = _twin_streams(backend, 1)
    with pytest.raises(getattr(exceptions, error)):
        backend.put_records(None, fast, batch())
    assert _stored(backend, fast)[0][1] == []


def test_a_stream_with_moto_s_inline_delivery_takes_moto_s_path(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from localcloud.motoapi import kinesis_put

    fast, _ = _twin_streams(backend, 1)
    stream = backend.describe_stream(stream_arn=None, stream_name=fast)
    calls: list[tuple[Any, ...]] = []
    replacement = kinesis_put.make(lambda *args: calls.append(args) or "moto's answer")
    monkeypatch.setattr(stream, "lambda_event_source_mappings", {"arn": object()})
    assert replacement(backend, None, fast, _records(2, 1)) == "moto's answer"
    assert len(calls) == 1 and _stored(backend, fast)[0][1] == []


def test_through_the_server_every_record_lands_once(aws: Callable[[str], Any]) -> None:
    kinesis = aws("kinesis")
    stream = f"fast-put-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    sent = [{"Data": f"{i}".encode(), "PartitionKey": f"key-{i % 7}"} for i in range(500)]
    answer = kinesis.put_records(StreamName=stream, Records=sent)
    assert answer["FailedRecordCount"] == 0 and len(answer["Records"]) == 500
    got: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got += kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    assert sorted(int(r["Data"]) for r in got) == list(range(500))
    assert len({r["ApproximateArrivalTimestamp"] for r in got}) == 1  # one request, one arrival
    by_sequence = {(a["ShardId"], a["SequenceNumber"]) for a in answer["Records"]}
    assert len(by_sequence) == 500
