"""moto fixes of the local cloud: concurrent writers on one Kinesis shard lose nothing (moto alone
did), and the faster DynamoDB projection builds exactly the item moto's own builds."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

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


ITEM = {"PK": {"S": "INVOICE#1"}, "SK": {"S": "LINE#a"}, "Quantity": {"N": "6"}, "amount": {"N": "15.30"},
        "big": {"N": "1E+2"}, "Guest": {"NULL": True}, "Paid": {"BOOL": True}, "Tags": {"SS": ["b", "a"]},
        "Address": {"M": {"city": {"S": "Paris"}}}, "Lines": {"L": [{"S": "x"}, {"N": "2"}]}}


@pytest.mark.parametrize("expressions", [
    [["Quantity"], ["amount"], ["big"]], [["Guest"], ["Paid"], ["missing"]], [["amount"], ["amount"]],
    [["SK"], ["PK"]], [["Tags"]], [["Address", "city"]], [["Lines[1]"]], [["Quantity"], ["Address"]], [],
])
def test_projection_builds_the_item_moto_builds(expressions: list[list[str]]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from helpers.localcloud import moto_patches

    moto_patches.apply()
    item = Item(DynamoType(ITEM["PK"]), DynamoType(ITEM["SK"]), ITEM)
    projected, expected = Item.project(item, expressions), Item.project.moto_original(item, expressions)
    assert projected.to_json() == expected.to_json()
    assert list(projected.attrs) == list(expected.attrs)
    assert projected.size() == expected.size()
