"""The batch import's ledger: one DynamoDB item per S3 object version (key + ETag), so a rerun or an
overlapping schedule never loads a file twice and a file too big for one invocation is continued where
the last one stopped.

Item (table LEDGER_TABLE, hash key `object` = "<bucket>/<key>#<etag>"): `status` IN_PROGRESS | DONE | REFUSED,
`owner` (the invocation holding the file) and `lease_until` (epoch seconds; the lease of an invocation
that died or stopped expires, a released one is 0), `offset` (rows of the file already written to the
serving table and staged for the warehouse), `stored` and `quarantined` counts. Every change is a
conditional write, so two invocations never both own a file.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from clients import dynamodb

IN_PROGRESS, DONE, REFUSED = "IN_PROGRESS", "DONE", "REFUSED"
ATTRIBUTES = {f"#{name}": name for name in ("object", "status", "owner", "offset", "stored", "quarantined",
                                             "reason", "chunk")} | {"#lease": "lease_until", "#finished": "finished_at"}


@dataclass
class Entry:
    """The ledger's view of one object version, as this invocation found or claimed it."""

    key: str
    status: str
    offset: int = 0
    stored: int = 0
    quarantined: int = 0
    owned: bool = False  # True when this invocation holds the lease
    chunk: int = 0  # rows per staged part, fixed at the first claim


def entry_key(key: str, etag: str) -> str:
    return f"{key}#{etag.strip(chr(34))}"


def _entry(key: str, item: dict[str, Any], owned: bool) -> Entry:
    number = lambda name: int(item[name]["N"]) if name in item else 0  # noqa: E731
    return Entry(key, item["status"]["S"], number("offset"), number("stored"), number("quarantined"), owned,
                 number("chunk"))


def claim(table: str, key: str, owner: str, lease_s: float, chunk: int) -> Entry:
    """Take the lease of a new object or of one whose lease expired or was released; otherwise answer
    its state (DONE, REFUSED, or IN_PROGRESS held by another invocation: owned False). `chunk` (rows per
    staged part) is kept from the first claim, so a continuation cuts the same parts. A new object's entry
    is one conditional put (no update expression to evaluate: the usual case, and the cheap one)."""
    now = time.time()
    try:
        dynamodb.put_item(
            TableName=table, ConditionExpression="attribute_not_exists(#object)",
            ExpressionAttributeNames=_names("#object"),
            Item={"object": {"S": key}, "status": {"S": IN_PROGRESS}, "owner": {"S": owner},
                  "lease_until": {"N": f"{now + lease_s:.3f}"}, "offset": {"N": "0"}, "stored": {"N": "0"},
                  "quarantined": {"N": "0"}, "chunk": {"N": str(chunk)}})
        return Entry(key, IN_PROGRESS, owned=True, chunk=chunk)
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass  # it has an entry: taken over below only if its lease expired or was released
    try:
        answer = dynamodb.update_item(
            TableName=table, Key={"object": {"S": key}},
            UpdateExpression="SET #owner = :me, #lease = :lease, #status = if_not_exists(#status, :progress), "
                             "#offset = if_not_exists(#offset, :zero), #stored = if_not_exists(#stored, :zero), "
                             "#quarantined = if_not_exists(#quarantined, :zero), #chunk = if_not_exists(#chunk, :chunk)",
            ConditionExpression="attribute_not_exists(#object) OR (#status = :progress AND "
                                "(#lease < :now OR #owner = :me))",
            ExpressionAttributeNames=_names("#owner #lease #status #offset #stored #quarantined #object #chunk"),
            ExpressionAttributeValues={":me": {"S": owner}, ":lease": {"N": f"{now + lease_s:.3f}"},
                                       ":progress": {"S": IN_PROGRESS}, ":zero": {"N": "0"},
                                       ":now": {"N": f"{now:.3f}"}, ":chunk": {"N": str(chunk)}},
            ReturnValues="ALL_NEW")
    except dynamodb.exceptions.ConditionalCheckFailedException:
        item = dynamodb.get_item(TableName=table, Key={"object": {"S": key}}, ConsistentRead=True)["Item"]
        return _entry(key, item, owned=False)
    return _entry(key, answer["Attributes"], owned=True)


def _owned_update(table: str, key: str, owner: str, expression: str, values: dict[str, Any]) -> None:
    """An update made only while this invocation still holds the lease (ConditionalCheckFailed otherwise)."""
    dynamodb.update_item(
        TableName=table, Key={"object": {"S": key}}, UpdateExpression=expression,
        ConditionExpression="#owner = :me", ExpressionAttributeNames=_names(expression + " #owner"),
        ExpressionAttributeValues={":me": {"S": owner}, **values})


def _names(expression: str) -> dict[str, str]:
    """Every attribute goes by a placeholder (several are DynamoDB reserved words: status, owner, ...)."""
    return {name: ATTRIBUTES[name] for name in set(re.findall(r"#\w+", expression))}


def release(table: str, entry: Entry, owner: str) -> None:
    """Record the rows done so far and give the lease back, so the next invocation continues at once from
    there. (Between chunks nothing is written: a chunk redone after a crash adds nothing.)"""
    _owned_update(table, entry.key, owner,
                  "SET #offset = :offset, #stored = :stored, #quarantined = :quarantined, #lease = :zero",
                  {":offset": {"N": str(entry.offset)}, ":stored": {"N": str(entry.stored)},
                   ":quarantined": {"N": str(entry.quarantined)}, ":zero": {"N": "0"}})


def finish(table: str, entry: Entry, owner: str, status: str = DONE, reason: str | None = None) -> None:
    finish_many(table, [entry], owner, status, reason)


def finish_many(table: str, entries: list[Entry], owner: str, status: str = DONE, reason: str | None = None) -> None:
    """Mark files DONE (or REFUSED) with their counts: TransactWriteItems, 100 a call, each conditional on
    this invocation still holding the file."""
    expression = "SET #status = :status, #finished = :at, #offset = :offset, #stored = :stored, #quarantined = :quarantined"
    if reason:
        expression += ", #reason = :reason"
    for start in range(0, len(entries), 100):
        writes = []
        for entry in entries[start:start + 100]:
            values = {":me": {"S": owner}, ":status": {"S": status}, ":at": {"N": f"{time.time():.3f}"},
                      ":offset": {"N": str(entry.offset)}, ":stored": {"N": str(entry.stored)},
                      ":quarantined": {"N": str(entry.quarantined)}, **({":reason": {"S": reason}} if reason else {})}
            writes.append({"Update": {"TableName": table, "Key": {"object": {"S": entry.key}},
                                      "UpdateExpression": expression, "ConditionExpression": "#owner = :me",
                                      "ExpressionAttributeNames": _names(expression + " #owner"),
                                      "ExpressionAttributeValues": values}})
        dynamodb.transact_write_items(TransactItems=writes)
