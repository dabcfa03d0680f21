"""moto fixes of the local cloud: concurrent writers on one Kinesis shard lose nothing (moto alone
did), and the faster DynamoDB projection builds exactly the item moto's own builds."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

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

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    item = Item(DynamoType(ITEM["PK"]), DynamoType(ITEM["SK"]), ITEM)
    projected, expected = Item.project(item, expressions), Item.project.moto_original(item, expressions)
    assert projected.to_json() == expected.to_json()
    assert list(projected.attrs) == list(expected.attrs)
    assert projected.size() == expected.size()


NESTED = [ITEM["Address"], ITEM["Lines"], ITEM["Tags"], {"NS": ["1", "2.5"]}, {"B": b"\x00\x01"}, {"BOOL": False},
          {"NULL": True}, {"S": "héllo"}, {"N": "-0.0010"},
          {"M": {"lines": {"L": [{"M": {"q": {"N": "6"}, "d": {"S": "RABBIT"}}}, {"L": [{"SS": ["x"]}]}]}}}]


@pytest.mark.parametrize("value", NESTED)
def test_dynamo_type_builds_and_measures_as_moto_does(value: dict[str, Any]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    ours = DynamoType(value)
    theirs = DynamoType.__new__(DynamoType)
    DynamoType.__init__.moto_original(theirs, value)
    assert ours.to_json() == theirs.to_json() and ours == theirs
    assert ours.size() == DynamoType.size.moto_original(theirs) > 0
    assert DynamoType(ours).to_json() == ours.to_json()  # re-wrapping an existing value, as moto does
    with pytest.raises(IndexError):
        DynamoType({})


def test_batch_write_refuses_two_requests_on_one_key_as_aws_does(aws: Callable[[str], Any]) -> None:
    dynamodb = aws("dynamodb")
    table = f"dupes-{uuid.uuid4().hex[:8]}"

    def create(name: str) -> None:
        dynamodb.create_table(TableName=name, KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"},
                                                         {"AttributeName": "SK", "KeyType": "RANGE"}],
                              AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                                    {"AttributeName": "SK", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")

    create(table)

    def put(pk: str, sk: str, note: str) -> dict[str, Any]:
        return {"PutRequest": {"Item": {"PK": {"S": pk}, "SK": {"S": sk}, "note": {"S": note}}}}

    same_key = [put("a", "1", "first"), put("a", "1", "second")]  # moto alone compared whole items
    put_and_delete = [put("a", "1", "x"), {"DeleteRequest": {"Key": {"PK": {"S": "a"}, "SK": {"S": "1"}}}}]
    for requests in (same_key, put_and_delete):
        with pytest.raises(dynamodb.exceptions.ClientError, match="Provided list of item keys contains duplicates"):
            dynamodb.batch_write_item(RequestItems={table: requests})
    assert dynamodb.scan(TableName=table)["Count"] == 0  # nothing of a refused batch is written
    unchecked = boto3.client("dynamodb", endpoint_url=dynamodb.meta.endpoint_url, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing",
                             config=Config(parameter_validation=False))  # what boto3 would check first, sent
    with pytest.raises(dynamodb.exceptions.ClientError, match=r"Value '\{%s=\[\]\}' at 'requestItems' failed to "
                       r"satisfy constraint: .*Member must have length greater than or equal to 1" % table):
        unchecked.batch_write_item(RequestItems={table: []})
    with pytest.raises(dynamodb.exceptions.ClientError, match="Member must have length less than or equal to 25"):
        unchecked.batch_write_item(RequestItems={table: [put("a", str(n), "x") for n in range(26)]})
    other = f"{table}-other"
    create(other)
    with pytest.raises(dynamodb.exceptions.ClientError, match="Too many items requested for the BatchWriteItem call"):
        unchecked.batch_write_item(RequestItems={table: [put("a", str(n), "x") for n in range(13)],
                                                other: [put("a", str(n), "x") for n in range(13)]})
    assert dynamodb.scan(TableName=table)["Count"] == 0 and dynamodb.scan(TableName=other)["Count"] == 0
    dynamodb.delete_table(TableName=other)
    answer = dynamodb.batch_write_item(RequestItems={table: [put("a", "1", "x"), put("a", "2", "x"), put("b", "1", "x")]})
    assert answer["UnprocessedItems"] == {} and dynamodb.scan(TableName=table)["Count"] == 3
    dynamodb.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": {"PK": {"S": "a"}, "SK": {"S": "2"}}}}]})
    assert dynamodb.scan(TableName=table)["Count"] == 2


def test_a_request_leaves_no_cycle_holding_its_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask's debug form helper made a class and a cycle per request (the body lived until a full GC)."""
    import gc
    import json

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.test import EnvironBuilder

    from localcloud.motoapi import patches as moto_patches

    monkeypatch.setenv("MOTO_PORT", "5999")
    moto_patches.apply()
    app = DomainDispatcherApplication(create_backend_app)

    def list_tables() -> bytes:
        environ = EnvironBuilder(method="POST", path="/", data=json.dumps({}), headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0",
            "Host": "localhost:5999", "Authorization": "AWS4-HMAC-SHA256 Credential=t/20200101/us-east-1/dynamodb/"
                                                       "aws4_request, SignedHeaders=host, Signature=x"}).get_environ()
        return b"".join(app(environ, lambda status, headers, exc_info=None: None))

    assert json.loads(list_tables()) == {"TableNames": []}
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            list_tables()
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not kinds & {"BackendRequest", "BytesIO", "ImmutableMultiDict", "type"}, kinds


def test_answers_convert_dynamodb_values_as_moto_does() -> None:
    """dynamo_to_dict by type gives moto's result for every kind of value, in items (a dict subclass),
    table descriptions and plain nests, falling back to moto's own for what it does not convert itself."""
    from datetime import datetime

    from moto.dynamodb import responses
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    fast, moto = responses.dynamo_to_dict, responses.dynamo_to_dict.moto_original
    item = Item(DynamoType(ITEM["PK"]), DynamoType(ITEM["SK"]), {**ITEM, "Raw": {"B": "AAE="}, "Sizes": {"NS": ["1"]}})
    for value in [item.describe_attrs(None), {"Items": [item.attrs], "Count": 1, "LastEvaluatedKey": None},
                  {"Table": {"CreationDateTime": datetime(2026, 12, 7), "ItemCount": 3, "Name": "t"}},
                  [DynamoType(v) for v in NESTED], {"nested": [{"deep": DynamoType(ITEM["Lines"])}], "n": 1.5}]:
        assert fast(value) == moto(value)
    assert responses.DynamoResult(item.describe_attrs(None)).result == moto(item.describe_attrs(None))


def test_json_answers_skip_the_request_id_scan_xml_ones_keep_it() -> None:
    from moto.core.responses import BaseResponse

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    headers, body = BaseResponse._enrich_response({"status": 200}, '{"a": "<RequestId>x</RequestId> no"}')
    assert headers["status"] == "200" and len(headers["x-amzn-requestid"]) == 52
    headers, xml = BaseResponse._enrich_response({}, "<R><RequestId>old</RequestId></R>")
    assert xml == f"<R><RequestId>{headers['x-amzn-requestid']}</RequestId></R>"
    headers, body = BaseResponse._enrich_response({}, '{"Item": {"S": "x"}}')
    assert body == '{"Item": {"S": "x"}}' and "x-amzn-requestid" in headers


def _listing(client: Any, **extra: Any) -> list[dict[str, Any]]:
    """Every page of customer 1's invoices through the index, newest first, 4 a page."""
    pages, start = [], None
    values = {":c": {"S": "CUSTOMER#1"}, **extra.pop("values", {})}
    while True:
        answer = client.query(TableName="serving", IndexName="GSI1", KeyConditionExpression="GSI1PK = :c",
                              ExpressionAttributeValues=values, Limit=4, ScanIndexForward=False,
                              **({"ExclusiveStartKey": start} if start else {}), **extra)
        answer.pop("ResponseMetadata")
        pages.append(answer)
        start = answer.get("LastEvaluatedKey")
        if not start:
            return pages


def test_an_index_query_reads_projected_items_and_answers_as_moto_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer's invoices through an INCLUDE index: the same pages, counts and keys as moto's own query
    (which copies every whole item, lines and all, before projecting), with and without a filter."""
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    line = {"M": {"StockCode": {"S": "85123A"}, "Quantity": {"N": "6"}, "UnitPrice": {"N": "2.55"}}}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="serving", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GSI1PK", "GSI1SK")],
            GlobalSecondaryIndexes=[{"IndexName": "GSI1", "KeySchema": [
                {"AttributeName": "GSI1PK", "KeyType": "HASH"}, {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total_amount", "Country"]}}])
        for n in range(11):
            customer = "1" if n % 4 else "2"
            client.put_item(TableName="serving", Item={
                "PK": {"S": f"INVOICE#{n}"}, "SK": {"S": "INVOICE"}, "GSI1PK": {"S": f"CUSTOMER#{customer}"},
                "GSI1SK": {"S": f"INVOICE#2011-0{n % 9 + 1}#{n}"}, "total_amount": {"N": f"{n}.5"},
                "Country": {"S": "France"}, "lines": {"L": [line] * (n + 1)}})
        ours = _listing(client), _listing(client, FilterExpression="total_amount > :a", values={":a": {"N": "4"}})
        assert [i["GSI1SK"]["S"] for page in ours[0] for i in page["Items"]] == sorted(
            (f"INVOICE#2011-0{n % 9 + 1}#{n}" for n in range(11) if n % 4), reverse=True)
        assert all("lines" not in i for page in ours[0] for i in page["Items"])
        monkeypatch.setattr(Table, "query", Table.query.moto_original)
        theirs = _listing(client), _listing(client, FilterExpression="total_amount > :a", values={":a": {"N": "4"}})
    assert ours == theirs
