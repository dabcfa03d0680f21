"""The serving table's invoice documents, written from batch rows exactly as the stream path writes them.

A copy of `lambdas/stream_to_dynamodb/app.py`'s document model (one item per invoice, its lines with
their record_ids, exact totals, the customer index keys; see that module and its `schema.py`) and of its
idempotency: a line whose record_id the document already lists is never added again, so a rerun, a
continued file or the same rows arriving by the stream change nothing. Lines that would take a document
past the 400 KB item limit, and numbers past DynamoDB's 38 digits, are refused with the stream path's
reasons. tests/unit/test_batch_import.py feeds the same rows through both functions and compares the
items; a change to the model must be made in both places until they share a module.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT
from botocore.config import Config
from botocore.exceptions import ClientError

logger = logging.getLogger()

dynamodb = boto3.client("dynamodb", config=Config(parameter_validation=False))
_prepared = threading.local()


def _use_prepared_body(request: Any, **_: Any) -> None:
    """botocore's JSON serializer walks every attribute of every line of every document (a third of this
    function's CPU on a bulk load), although DynamoDB JSON built here is already the wire format. A
    BatchWriteItem made by `batch_write` is sent with the body it prepared (before it is signed)."""
    body = getattr(_prepared, "body", None)
    if body is not None:
        request.data = body
        _prepared.body = None


dynamodb.meta.events.register("before-sign.dynamodb.BatchWriteItem", _use_prepared_body)


def batch_write(table: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """BatchWriteItem of requests already in DynamoDB JSON (strings and numbers only), serialized once."""
    _prepared.body = json.dumps({"RequestItems": {table: requests}}, ensure_ascii=False).encode("utf-8")
    try:
        return dynamodb.batch_write_item(RequestItems={table: []})
    finally:
        _prepared.body = None

DATE_FORMAT = "%m/%d/%Y %H:%M"
INVOICE_SK = "INVOICE"
ITEM_BUDGET_BYTES = 390 * 1024  # DynamoDB's item limit is 400 KB; the rest is headroom for the invoice's fields
BATCH_WRITE_SIZE, BATCH_GET_SIZE = 25, 100
MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))
RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError"}


class Invalid(ValueError):
    """A line DynamoDB can never store (quarantined with this reason)."""


@dataclass
class Line:
    index: int  # the row's position in its file
    row: dict[str, Any]  # canonical values (records.canonical) + record_id
    invoice: str
    record_id: str
    quantity: int
    price: Decimal
    moment: datetime
    exact: Decimal | None = None  # Quantity x UnitPrice, computed once

    @property
    def amount(self) -> Decimal:
        """Exact, or ArithmeticError past DynamoDB's 38 digits."""
        if self.exact is None:
            self.exact = DYNAMODB_CONTEXT.multiply(self.price, self.quantity)
        return self.exact

    @property
    def invoice_time(self) -> str:
        return _minute(self.moment)

    @property
    def customer(self) -> str | None:
        return self.row.get("CustomerID")


@lru_cache(maxsize=65536)
def _minute(moment: datetime) -> str:
    """Sortable minute of the sale (strftime once per distinct minute: an invoice's lines share it)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


@lru_cache(maxsize=65536)
def _parse_date(text: str) -> datetime:
    return datetime.strptime(text.strip(), DATE_FORMAT)


def line_of(index: int, row: dict[str, Any], price: Decimal) -> Line:
    """A canonical row as a document line; Invalid when DynamoDB could not hold its numbers."""
    line = Line(index, row, row["InvoiceNo"], row["record_id"], int(row["Quantity"]), price,
                _parse_date(row["InvoiceDate"]))
    try:
        DYNAMODB_CONTEXT.create_decimal(line.price)
        line.amount  # noqa: B018 - computed to check it
    except ArithmeticError:
        raise Invalid(f"UnitPrice {line.price} or Quantity x UnitPrice does not fit a DynamoDB number") from None
    return line


def invoice_type(invoice: str) -> str:
    return {"C": "cancellation", "A": "adjustment"}.get(invoice[0], "sale")


def line_entry(line: Line) -> dict[str, Any]:
    """The line as an element of the document's `lines`, in DynamoDB JSON."""
    row = line.row
    texts = {"record_id": line.record_id, "StockCode": str(row.get("StockCode") or ""),
             "Description": row.get("Description"), "InvoiceDate": str(row["InvoiceDate"]).strip()}
    entry = {key: {"S": str(value)} for key, value in texts.items() if value is not None and value != ""}
    entry.update(Quantity={"N": str(line.quantity)}, UnitPrice={"N": str(line.price)}, amount={"N": str(line.amount)})
    return {"M": entry}


def entry_bytes(entry: dict[str, Any]) -> int:
    """A line's size in the item by DynamoDB's published rules, rounded up (as the stream path counts it)."""
    return 3 + sum(2 + len(name) + len(next(iter(value.values())).encode("utf-8"))
                   for name, value in entry["M"].items())


def text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value else None


def fold_invoice(invoice: str, stored: dict[str, Any] | None, lines: list[Line]
                 ) -> tuple[dict[str, Any] | None, list[Line]]:
    """The invoice's document with `lines` added (None when it already lists them all), and the lines that
    did not fit in the item."""
    entries = stored["lines"]["L"] if stored else []
    counted = {entry["M"]["record_id"]["S"] for entry in entries}
    fresh: dict[str, Line] = {}
    for line in lines:
        if line.record_id not in counted:
            fresh.setdefault(line.record_id, line)
    if not fresh:
        return None, []
    size = 2048 + 3 + sum(1 + entry_bytes(entry) for entry in entries)
    added, overflow = [], []
    for line in fresh.values():
        entry = line_entry(line)
        grown = 1 + entry_bytes(entry)
        if size + grown > ITEM_BUDGET_BYTES:
            overflow.append(line)
            continue
        size += grown
        added.append((line, entry))
    if not added:
        return None, overflow
    first = min((line for line, _ in added), key=lambda line: (line.invoice_time, line.record_id))
    fields: dict[str, str | None] = {
        "InvoiceDate": str(first.row["InvoiceDate"]).strip(), "invoice_time": first.invoice_time,
        "Country": first.row.get("Country"), "CustomerID": first.customer, "first_record_id": first.record_id}
    if stored and (text(stored, "invoice_time"), text(stored, "first_record_id")) < (first.invoice_time, first.record_id):
        fields = {key: text(stored, key) for key in fields}
    amount = Decimal(stored["total_amount"]["N"]) if stored else Decimal(0)
    quantity = int(stored["total_quantity"]["N"]) if stored else 0
    document = {
        "PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": INVOICE_SK}, "entity": {"S": "INVOICE"},
        "InvoiceNo": {"S": invoice}, "invoice_type": {"S": invoice_type(invoice)},
        **{key: {"S": value} for key, value in fields.items() if value},
        "total_amount": {"N": str(amount + sum((line.amount for line, _ in added), Decimal(0)))},
        "total_quantity": {"N": str(quantity + sum(line.quantity for line, _ in added))},
        "line_count": {"N": str(len(entries) + len(added))},
        "lines": {"L": entries + [entry for _, entry in added]},
    }
    if fields["CustomerID"]:
        document["GSI1PK"] = {"S": f"CUSTOMER#{fields['CustomerID']}"}
        document["GSI1SK"] = {"S": f"INVOICE#{fields['invoice_time']}#{invoice}"}
    return document, overflow


def update_invoices(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep
                    ) -> list[tuple[Line, str]]:
    """Fold the lines into their invoices' documents (one BatchGetItem per 100 invoices, one
    BatchWriteItem per 25 changed documents). Answers the lines refused because their invoice is full;
    raises when a document could not be read or written (the caller retries the whole chunk, which
    adds nothing twice)."""
    by_invoice: dict[str, list[Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    stored = get_invoices(table, list(by_invoice), sleep)
    changed, full = [], []
    for invoice, new in by_invoice.items():
        document, overflow = fold_invoice(invoice, stored.get(invoice), new)
        if document is not None:
            changed.append(document)
        full += [(line, f"invoice {invoice} is full: this line would take its item past "
                        f"{ITEM_BUDGET_BYTES // 1024} KB (DynamoDB's limit is 400 KB)") for line in overflow]
    for start in range(0, len(changed), BATCH_WRITE_SIZE):
        unwritten = write_chunk(table, changed[start:start + BATCH_WRITE_SIZE], sleep)
        if unwritten:
            raise RuntimeError(f"{len(unwritten)} invoice documents not written (e.g. {sorted(unwritten)[0][0]})")
    return full


def get_invoices(table: str, invoices: list[str], sleep: Callable[[float], None]) -> dict[str, dict[str, Any]]:
    """The stored documents of these invoices (consistent reads, 100 keys a call, UnprocessedKeys retried)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invoices), BATCH_GET_SIZE):
        keys = [{"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": INVOICE_SK}}
                for invoice in invoices[start:start + BATCH_GET_SIZE]]
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                sleep(BASE_BACKOFF_S * 2 ** (attempt - 1))
            try:
                answer = dynamodb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
            except ClientError as error:
                if error.response["Error"]["Code"] in RETRYABLE:
                    continue
                raise
            for item in answer.get("Responses", {}).get(table, []):
                found[item["InvoiceNo"]["S"]] = item
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not keys:
                break
        else:
            raise RuntimeError(f"{len(keys)} documents still unprocessed after {MAX_ATTEMPTS} attempts")
    return found


def write_chunk(table: str, items: list[dict[str, Any]], sleep: Callable[[float], None]) -> set[tuple[str, str]]:
    """BatchWriteItem of up to 25 items, UnprocessedItems retried with backoff: the keys not written."""
    requests = [{"PutRequest": {"Item": item}} for item in items]
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            sleep(BASE_BACKOFF_S * 2 ** (attempt - 1))
        try:
            answer = batch_write(table, requests)
        except ClientError as error:
            if error.response["Error"]["Code"] in RETRYABLE:
                continue
            raise
        requests = answer.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return set()
    return {(r["PutRequest"]["Item"]["PK"]["S"], r["PutRequest"]["Item"]["SK"]["S"]) for r in requests}
