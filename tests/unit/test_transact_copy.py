"""TransactWriteItems copies each table it writes once per request (localcloud/motoapi/transact_copy.py),
and a cancelled transaction still leaves every item as it was, as moto's rollback did."""

from __future__ import annotations

from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

from localcloud.motoapi import patches, transact_copy

TABLE = "ledger"


@pytest.fixture()
def dynamodb() -> Iterator[Any]:
    patches.apply()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing",  # moto in this process, not the session's cloud
                              endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "object", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "object", "AttributeType": "S"}])
        for i in range(150):
            client.put_item(TableName=TABLE, Item={"object": {"S": f"file-{i}"}, "owner": {"S": "me"},
                                                   "status": {"S": "IN_PROGRESS"}})
        yield client


def mark_done(keys: list[str], owner: str = "me") -> list[dict[str, Any]]:
    return [{"Update": {"TableName": TABLE, "Key": {"object": {"S": key}}, "UpdateExpression": "SET #s = :done",
                        "ConditionExpression": "#o = :me", "ExpressionAttributeNames": {"#s": "status", "#o": "owner"},
                        "ExpressionAttributeValues": {":done": {"S": "DONE"}, ":me": {"S": owner}}}}
            for key in keys]


def statuses(client: Any) -> dict[str, str]:
    items = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {item["object"]["S"]: item["status"]["S"] for item in items}


def test_a_transaction_of_100_items_copies_its_table_once(dynamodb: Any) -> None:
    shim = transact_copy.shim()
    assert shim is not None
    before = shim.copies
    dynamodb.transact_write_items(TransactItems=mark_done([f"file-{i}" for i in range(100)]))
    assert shim.copies - before == 1
    done = statuses(dynamodb)
    assert sorted(key for key, status in done.items() if status == "DONE") == sorted(f"file-{i}" for i in range(100))


def test_a_cancelled_transaction_leaves_every_item_as_it_was(dynamodb: Any) -> None:
    dynamodb.update_item(TableName=TABLE, Key={"object": {"S": "file-99"}}, UpdateExpression="SET #o = :other",
                         ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":other": {"S": "other"}})
    before = statuses(dynamodb)
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException) as raised:
        dynamodb.transact_write_items(TransactItems=mark_done([f"file-{i}" for i in range(100)]))
    reasons = [reason["Code"] for reason in raised.value.response["CancellationReasons"]]
    assert reasons == ["None"] * 99 + ["ConditionalCheckFailed"]
    assert statuses(dynamodb) == before
    dynamodb.transact_write_items(TransactItems=mark_done(["file-0", "file-1"]))  # the table is usable after
    assert statuses(dynamodb)["file-1"] == "DONE"


def test_other_deep_copies_are_moto_own(dynamodb: Any) -> None:
    """UpdateItem copies the item it changes: never answered from a transaction's copies."""
    shim = transact_copy.shim()
    assert shim is not None
    before = shim.copies
    dynamodb.update_item(TableName=TABLE, Key={"object": {"S": "file-3"}}, UpdateExpression="SET #s = :x",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":x": {"S": "X"}})
    assert shim.copies == before and statuses(dynamodb)["file-3"] == "X"
