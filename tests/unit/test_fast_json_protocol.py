"""The local cloud's fast JSON-protocol path gives exactly what moto's own parser and serializer give.

Differential: every case goes through both and must be equal (the whole test session also runs the
local cloud with RETAIL_LOCALCLOUD_FASTPATH=check, which compares the two on every request served).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from moto.core.parse import JSONParser
from moto.core.serialize import JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model

from localcloud.motoapi import fast_json_protocol as fast

BLOB = b"\x00\xffbinary"
ATTRIBUTES = {
    "PK": {"S": "INVOICE#536365"}, "Quantity": {"N": "6"}, "Price": {"N": "2.55"}, "Guest": {"NULL": True},
    "Paid": {"BOOL": False}, "Tags": {"SS": ["a", "b"]}, "Sizes": {"NS": ["1", "2.5"]},
    "Raw": {"B": base64.b64encode(BLOB).decode()}, "Raws": {"BS": [base64.b64encode(b"x").decode()]},
    "Address": {"M": {"city": {"S": "Paris"}, "zip": {"N": "75001"}, "lines": {"L": [{"S": "1 rue"}, {"N": "2"}]}}},
    "Empty": {"S": ""},
}
REQUESTS = [
    ("dynamodb", "BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": ATTRIBUTES}},
                                                           {"DeleteRequest": {"Key": {"PK": {"S": "x"}}}}]},
                                    "ReturnConsumedCapacity": "TOTAL"}),
    ("dynamodb", "Query", {"TableName": "t", "KeyConditionExpression": "PK = :pk", "Limit": 10,
                           "ExpressionAttributeValues": {":pk": {"S": "INVOICE#1"}}, "ConsistentRead": True,
                           "ExclusiveStartKey": {"PK": {"S": "a"}, "SK": {"S": "b"}}, "Unknown": "dropped"}),
    ("dynamodb", "PutItem", {"TableName": "t", "Item": ATTRIBUTES, "ConditionExpression": None}),
    ("dynamodb", "BatchGetItem", {"RequestItems": {"t": {"Keys": [{"PK": {"S": "a"}}], "ConsistentRead": True}}}),
    ("kinesis", "PutRecords", {"StreamName": "s", "Records": [
        {"Data": base64.b64encode(BLOB).decode(), "PartitionKey": "536365"}]}),
    ("kinesis", "GetShardIterator", {"StreamName": "s", "ShardId": "shardId-000000000000",
                                     "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1291192000.5}),
    ("sqs", "SendMessageBatch", {"QueueUrl": "http://q", "Entries": [
        {"Id": "1", "MessageBody": "{}", "DelaySeconds": 2,
         "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": base64.b64encode(BLOB).decode()}}}]}),
    ("dynamodb", "ListTables", {}),
]
RESULTS = [
    ("dynamodb", "Query", {"Items": [ATTRIBUTES, {"PK": {"S": "2"}}], "Count": 2, "ScannedCount": 2,
                           "LastEvaluatedKey": {"PK": {"S": "2"}}}),
    ("dynamodb", "Query", {"Count": 0, "ScannedCount": 5}),
    ("dynamodb", "BatchWriteItem", {"UnprocessedItems": {}, "ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 1}]}),
    ("dynamodb", "BatchGetItem", {"Responses": {"t": [ATTRIBUTES]}, "UnprocessedKeys": {}}),
    ("dynamodb", "GetItem", {"Item": {"Raw": {"B": BLOB}, "Raws": {"BS": [BLOB]}}}),
    ("dynamodb", "PutItem", {}),
    ("kinesis", "PutRecords", {"FailedRecordCount": 0, "Records": [
        {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}]}),
    ("kinesis", "GetRecords", {"NextShardIterator": "it", "MillisBehindLatest": 0, "Records": [
        {"SequenceNumber": "1", "PartitionKey": "k", "Data": BLOB,
         "ApproximateArrivalTimestamp": datetime(2010, 12, 1, 8, 26, 0, 123456)}]}),
    ("sqs", "ReceiveMessage", {"Messages": [{"MessageId": "m", "Body": "b", "Attributes": {"SentTimestamp": "1"},
                                             "MD5OfBody": "x"}]}),
]


def _operation(service: str, name: str) -> Any:
    return get_service_model(service).operation_model(name)


def _moto_parse(operation: Any, body: bytes) -> dict[str, Any]:
    return JSONParser(operation).parse({"body": body, "headers": {}, "method": "POST", "values": {},
                                        "url_path": "/", "url_params": {}})


def _moto_serialize(operation: Any, result: Any) -> Any:
    serializer = JSONSerializer(operation_model=operation, value_picker=XFormedAttributePicker())
    return json.loads(serializer.serialize(result)["body"])


@pytest.mark.parametrize(("service", "name", "request_body"), REQUESTS, ids=[f"{s}.{n}" for s, n, _ in REQUESTS])
def test_requests_parse_as_moto_parses_them(service: str, name: str, request_body: dict[str, Any]) -> None:
    operation = _operation(service, name)
    body = json.dumps(request_body).encode()
    assert fast.parse_body(operation, body) == _moto_parse(operation, body)


@pytest.mark.parametrize(("service", "name", "result"), RESULTS, ids=[f"{s}.{n}" for s, n, _ in RESULTS])
def test_results_serialize_as_moto_serializes_them(service: str, name: str, result: dict[str, Any]) -> None:
    operation = _operation(service, name)
    assert json.loads(fast.serialize_result(operation, result)) == _moto_serialize(operation, result)


def test_binary_values_are_decoded_and_encoded_like_moto() -> None:
    parsed = fast.parse_body(_operation("dynamodb", "PutItem"), json.dumps({"TableName": "t", "Item": ATTRIBUTES}))
    assert parsed["Item"]["Raw"]["B"] == BLOB and parsed["Item"]["Raws"]["BS"] == [b"x"]
    answer = json.loads(fast.serialize_result(_operation("dynamodb", "GetItem"), {"Item": {"Raw": {"B": BLOB}}}))
    assert answer == {"Item": {"Raw": {"B": base64.b64encode(BLOB).decode()}}}


class Table:
    """A moto model object: only moto's attribute picker knows how to read it."""

    name = "t"


@pytest.mark.parametrize(("name", "result"), [
    ("DescribeTable", {"Table": Table()}),  # a model object
    ("Query", {"Items": [], "count": 1}),  # a key that is not a member: moto may read it as an alias
    ("Query", [1, 2]),  # not a structure at all
])
def test_what_it_cannot_be_sure_of_falls_back_to_moto(name: str, result: Any) -> None:
    with pytest.raises(fast.Fallback):
        fast.serialize_result(_operation("dynamodb", name), result)


def test_a_request_that_is_not_json_falls_back_to_moto() -> None:
    with pytest.raises(fast.Fallback):
        fast.parse_body(_operation("dynamodb", "Query"), b"TableName=t")
    with pytest.raises(fast.Fallback):
        fast.parse_body(_operation("dynamodb", "Query"), json.dumps({"TableName": "t", "ExpressionAttributeValues": []}))


@pytest.mark.parametrize(("value", "expected"), [("0", "off"), ("off", "off"), ("check", "check"), ("", "on"),
                                                 ("1", "on")])
def test_mode_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv(fast.MODE_ENV, value)
    assert fast.mode() == expected


def test_the_session_cloud_checks_every_fast_answer_against_moto(aws: Any) -> None:
    """The suite's local cloud runs in check mode, so a difference would fail the request."""
    import os

    assert os.environ.get(fast.MODE_ENV) == "check"
    dynamodb = aws("dynamodb")
    table = "fastpath-check"
    dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    item = {**ATTRIBUTES, "Raw": {"B": BLOB}, "Raws": {"BS": [b"x"]}}
    dynamodb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}}]})
    got = dynamodb.get_item(TableName=table, Key={"PK": item["PK"]}, ConsistentRead=True)["Item"]
    assert got["Raw"] == {"B": BLOB} and got["Address"] == item["Address"]
    answer = dynamodb.query(TableName=table, KeyConditionExpression="PK = :pk",
                            ExpressionAttributeValues={":pk": item["PK"]}, ProjectionExpression="Quantity, Paid")
    assert answer["Items"] == [{"Quantity": {"N": "6"}, "Paid": {"BOOL": False}}]
    dynamodb.delete_table(TableName=table)


# --------------------------------------------------------------------------------------------------
# DynamoDB's AttributeValue, walked by its one key: the same as the generic walk for any tree

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_texts = st.text(max_size=8)
_scalar_values = st.one_of(
    st.builds(lambda s: {"S": s}, _texts), st.builds(lambda n: {"N": n}, st.from_regex(r"-?[0-9]{1,5}(\.[0-9]{1,3})?", fullmatch=True)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()), st.just({"NULL": True}),
    st.builds(lambda s: {"SS": s}, st.lists(_texts, min_size=1, max_size=3, unique=True)),
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=6)))
ATTRIBUTE_VALUES = st.recursive(_scalar_values, lambda inner: st.one_of(
    st.builds(lambda m: {"M": m}, st.dictionaries(_texts.filter(bool), inner, max_size=4)),  # names: 1+ characters
    st.builds(lambda items: {"L": items}, st.lists(inner, max_size=4))), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_texts.filter(bool), ATTRIBUTE_VALUES, min_size=1, max_size=5))
def test_attribute_values_parse_and_serialize_as_moto_does(item: dict[str, Any]) -> None:
    put, get = _operation("dynamodb", "PutItem"), _operation("dynamodb", "GetItem")
    body = json.dumps({"TableName": "t", "Item": item}).encode()
    parsed = fast.parse_body(put, body)
    assert parsed == _moto_parse(put, body)
    answer = {"Item": parsed["Item"]}  # what moto answers holds binary as bytes, as the parse gives it
    assert json.loads(fast.serialize_result(get, answer)) == _moto_serialize(get, answer)


def test_none_inside_maps_and_lists_is_walked_as_moto_walks_it() -> None:
    put, get = _operation("dynamodb", "PutItem"), _operation("dynamodb", "GetItem")
    item = {"m": {"M": {"a": None, "b": {"S": "x"}}}, "l": {"L": [None, {"N": "1"}, {"M": {"c": None}}]}}
    body = json.dumps({"TableName": "t", "Item": item}).encode()
    assert fast.parse_body(put, body) == _moto_parse(put, body)
    assert json.loads(fast.serialize_result(get, {"Item": item})) == _moto_serialize(get, {"Item": item})


def test_a_plain_item_is_checked_not_copied() -> None:
    """Texts, numbers and maps and lists of them parse to themselves: the walk gives the decoded maps back
    as they are; a map holding binary is decoded into a new map."""
    put = _operation("dynamodb", "PutItem")
    document = {"TableName": "t", "Item": {"lines": {"L": [{"M": {"q": {"N": "1"}, "d": {"S": "x"}}}, None]},
                                          "blob": {"M": {"b": {"B": "AAE="}}}}}
    parsed = fast.parser(put.input_shape, id(put.service_model))[0](document)
    assert parsed["Item"]["lines"] is document["Item"]["lines"]
    assert parsed["Item"]["blob"] == {"M": {"b": {"B": b"\x00\x01"}}}
    assert document["Item"]["blob"]["M"]["b"]["B"] == "AAE="


def test_iam_and_the_parser_decode_a_body_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM reads a JSON call's parameters, then the parser reads the same document (an equal body, even
    another bytes object): one decode; a different body is decoded afresh."""
    from localcloud import executor_base
    from localcloud.iam.enforcement import json_asks

    decoded: list[Any] = []
    monkeypatch.setattr(executor_base, "json", SimpleNamespace(
        loads=lambda body: decoded.append(body) or json.loads(body)))
    operation = _operation("dynamodb", "BatchWriteItem")
    body = json.dumps(REQUESTS[0][2]).encode()
    environ: dict[str, Any] = {}
    params = json_asks.json_params(body, environ)
    assert params["RequestItems"]["t"][1] == {"DeleteRequest": {"Key": {"PK": {"S": "x"}}}}
    assert fast.parse_body(operation, bytes(bytearray(body)), environ) == _moto_parse(operation, body)
    assert len(decoded) == 1
    other = json.dumps({"RequestItems": {"u": []}}).encode()
    assert fast.parse_body(operation, other, environ) == _moto_parse(operation, other)
    assert len(decoded) == 2
    assert json_asks.json_params(b"not json", {}) == {} and json_asks.json_params(b"[1]", {}) == {}


def test_a_users_call_is_decoded_once_by_the_local_cloud(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the local cloud's app, with boto3: an IAM user's PutItem is authorized on its parameters
    and stored from the same decode of its body."""
    import threading

    import boto3
    from werkzeug.serving import make_server

    from localcloud import executor_base
    from localcloud.server import build_app

    app = build_app("127.0.0.1", 0, tmp_path)
    app.executors = []  # moto behind IAM, no executor started
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def client(service: str, key: str = "testing", secret: str = "testing") -> Any:
        return boto3.client(service, endpoint_url=f"http://127.0.0.1:{server.port}", region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret)

    iam = client("iam")
    try:
        client("dynamodb").create_table(TableName="t", KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                                        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                                        BillingMode="PAY_PER_REQUEST")
        iam.create_user(UserName="loader")
        iam.put_user_policy(UserName="loader", PolicyName="put", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem",
                                                    "Resource": "arn:aws:dynamodb:us-east-1:*:table/t"}]}))
        key = iam.create_access_key(UserName="loader")["AccessKey"]
        loader = client("dynamodb", key["AccessKeyId"], key["SecretAccessKey"])
        decoded: list[Any] = []
        monkeypatch.setattr(executor_base, "json", SimpleNamespace(
            loads=lambda body: decoded.append(body) or json.loads(body)))
        loader.put_item(TableName="t", Item={"PK": {"S": "INVOICE#536365"}, "lines": {"L": [{"S": "a"}]}})
        assert len(decoded) == 1
        with pytest.raises(Exception, match="AccessDenied"):  # IAM did read the parameters it decoded
            loader.put_item(TableName="other", Item={"PK": {"S": "x"}})
        monkeypatch.undo()
        assert client("dynamodb").get_item(TableName="t", Key={"PK": {"S": "INVOICE#536365"}})["Item"]["lines"] == \
            {"L": [{"S": "a"}]}
    finally:  # moto's state is this process's: leave none behind for the other tests
        client("dynamodb").delete_table(TableName="t")
        for access_key in iam.list_access_keys(UserName="loader")["AccessKeyMetadata"]:
            iam.delete_access_key(UserName="loader", AccessKeyId=access_key["AccessKeyId"])
        iam.delete_user_policy(UserName="loader", PolicyName="put")
        iam.delete_user(UserName="loader")
        server.shutdown()
