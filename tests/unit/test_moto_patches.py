"""Concurrent writers on one Kinesis shard through the local cloud lose nothing (moto alone did)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

WRITERS = 12


def test_concurrent_puts_on_one_shard_keep_every_record(aws: Callable[[str], Any]) -> None:
    kinesis = aws("kinesis")
    stream = f"concurrent-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)

    def put_many(writer: int) -> None:
        client = aws("kinesis")
        for chunk in range(4):
            client.put_records(StreamName=stream, Records=[
                {"Data": f"{writer}-{chunk}-{i}".encode(), "PartitionKey": "one"} for i in range(500)])

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(put_many, range(WRITERS)))
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator:
        answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        records += answer["Records"]
        iterator = answer["NextShardIterator"] if answer["Records"] else None
    assert len({r["Data"] for r in records}) == len(records) == WRITERS * 4 * 500
    assert len({r["SequenceNumber"] for r in records}) == len(records)
