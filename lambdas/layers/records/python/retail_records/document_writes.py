"""The invoice documents' reads and writes, shared by the stream writer (`stream_to_dynamodb`) and the batch
import: one BatchGetItem per 100 invoices, the lines folded in (`documents.fold_invoice`), one
BatchWriteItem per 25 changed documents, UnprocessedItems retried with exponential backoff. Each caller
keeps its own policy for a document that could not be read or written (the stream reports its records
to Lambda, the batch redoes the chunk); both add nothing twice.

A BatchWriteItem of documents is sent as the JSON written here, not through botocore's serializer: it
walked every attribute of every line again (a document is already DynamoDB JSON), a third of a bulk
load's CPU, and the generic `json.dumps` of the lines another fifth. A line of the usual shape is
written from a template, anything else by `json.dumps`; the body is the same document either way.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Callable

from retail_records import documents
from retail_records.documents import Line

_prepared = threading.local()
_HOOK_ID = "retail-records-prepared-body"
# A line as `documents.line_entry` builds it, every attribute present, in this order.
LINE_ATTRIBUTES = ("record_id", "StockCode", "Description", "InvoiceDate", "Quantity", "UnitPrice", "amount")
_LINE = '{"M":{' + ",".join(f'"{name}":{{"{kind}":%s}}' for name, kind in zip(LINE_ATTRIBUTES, "SSSSNNN")) + "}}"


@dataclass
class Folded:
    """A set of lines folded into their invoices' stored documents."""

    changed: list[dict[str, Any]]  # the documents to write (an invoice already listing all its lines has none)
    by_invoice: dict[str, list[Line]]
    full: list[tuple[Line, str]] = field(default_factory=list)  # lines a full document cannot hold, and why


def fold_lines(client: Any, table: str, lines: list[Line], sleep: Callable[[float], None], attempts: int,
               backoff_s: float) -> Folded:
    """The lines grouped by invoice and folded into the stored documents (read with consistent reads;
    RuntimeError or ClientError when some could not be read)."""
    by_invoice: dict[str, list[Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    stored = documents.get_invoices(client, table, list(by_invoice), sleep, attempts, backoff_s)
    folded = Folded([], by_invoice)
    for invoice, new in by_invoice.items():
        document, overflow = documents.fold_invoice(invoice, stored.get(invoice), new)
        if document is not None:
            folded.changed.append(document)
        folded.full += [(line, documents.full_reason(invoice)) for line in overflow]
    return folded


def chunks(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The documents in BatchWriteItem's groups of 25."""
    size = documents.BATCH_WRITE_SIZE
    return [items[start:start + size] for start in range(0, len(items), size)]


def write_chunk(client: Any, table: str, items: list[dict[str, Any]], sleep: Callable[[float], None],
                attempts: int, backoff_s: float) -> set[tuple[str, str]]:
    """BatchWriteItem of up to 25 documents, UnprocessedItems and throttling retried with backoff: the
    keys (PK, SK) still not written. Any other error is raised."""
    from botocore.exceptions import ClientError

    pending = items
    for attempt in range(attempts):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        try:
            answer = batch_write(client, table, pending)
        except ClientError as error:
            if error.response["Error"]["Code"] in documents.RETRYABLE:
                continue
            raise
        pending = [r["PutRequest"]["Item"] for r in answer.get("UnprocessedItems", {}).get(table, [])]
        if not pending:
            return set()
    return {(item["PK"]["S"], item["SK"]["S"]) for item in pending}


def batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One BatchWriteItem putting these documents, its body written by `request_body`; the answer."""
    client.meta.events.register("before-sign.dynamodb.BatchWriteItem", _use_prepared_body, unique_id=_HOOK_ID)
    _prepared.body, _prepared.sent = request_body(table, items), False
    try:
        answer = client.batch_write_item(RequestItems={table: []})
    finally:
        sent, _prepared.body = _prepared.sent, None
    if not sent:  # the client never signed a request: nothing was written
        raise RuntimeError("BatchWriteItem was not sent with its documents")
    return answer


def _use_prepared_body(request: Any, **_: Any) -> None:
    """Before the request is signed, each attempt of it (botocore signs a retry again): its body is the
    one `batch_write` prepared in this thread."""
    body = getattr(_prepared, "body", None)
    if body is not None:
        request.data = body
        _prepared.sent = True


def request_body(table: str, items: list[dict[str, Any]]) -> bytes:
    """BatchWriteItem's JSON putting these items (DynamoDB JSON), in UTF-8, without blanks."""
    puts = ",".join(['{"PutRequest":{"Item":' + item_json(item) + "}}" for item in items])
    return ('{"RequestItems":{' + encode_basestring(table) + ":[" + puts + "]}}").encode("utf-8")


def item_json(item: dict[str, Any]) -> str:
    """An item in DynamoDB JSON as JSON text: its `lines` element by element, the rest in one json.dumps."""
    lines = item.get("lines")
    elements = lines.get("L") if type(lines) is dict and len(lines) == 1 else None
    if type(elements) is not list:
        return _dumps(item)
    rest = _dumps({name: value for name, value in item.items() if name != "lines"})  # "{...}", lines go last
    written = ",".join([line_json(line) for line in elements])
    return rest[:-1] + ("," if len(rest) > 2 else "") + '"lines":{"L":[' + written + "]}}"


def line_json(line: Any) -> str:
    """A line of `lines` as JSON text: from the template when it has the usual shape, else json.dumps."""
    attributes = line.get("M") if type(line) is dict and len(line) == 1 else None
    if type(attributes) is dict and tuple(attributes) == LINE_ATTRIBUTES:
        record_id, stock_code, description, date, quantity, price, amount = attributes.values()
        try:
            if len(record_id) == len(stock_code) == len(description) == len(date) == len(quantity) == \
                    len(price) == len(amount) == 1:
                return _LINE % (encode_basestring(record_id["S"]), encode_basestring(stock_code["S"]),
                                encode_basestring(description["S"]), encode_basestring(date["S"]),
                                encode_basestring(quantity["N"]), encode_basestring(price["N"]),
                                encode_basestring(amount["N"]))
        except (KeyError, TypeError):  # another type, or a value that is not a text: the generic way
            pass
    return _dumps(line)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
