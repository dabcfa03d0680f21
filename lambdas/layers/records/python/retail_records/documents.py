"""The serving table's invoice document: one item per invoice with its lines, folded in idempotently.

Shared by the stream path (`stream_to_dynamodb`) and the batch path (`batch_import`), so the same rows
give the same items whichever way they came. The model (the table's schema is
`lambdas/stream_to_dynamodb/schema.py`): PK `INVOICE#<InvoiceNo>`, SK `INVOICE`; `lines`, every line with
its record_id, in arrival order; the descriptive fields (InvoiceDate, invoice_time, Country, CustomerID,
first_record_id) from the invoice's earliest line; exact `total_amount`, `total_quantity`, `line_count`;
GSI1PK `CUSTOMER#<id>` / GSI1SK `INVOICE#<yyyy-mm-ddThh:mm>#<InvoiceNo>` unless a guest sale.

Idempotent: a line whose record_id the document lists is never added again, so a replay, another batch
boundary or the same rows by the other path change nothing. An item is at most 400 KB: lines that would
take a document past ITEM_BUDGET_BYTES are returned as overflow (quarantined by the caller with
`full_reason`). Functions on DynamoDB JSON; the callers own the clients and their write policy (`get_invoices` takes
the client it reads with).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from boto3.dynamodb.types import DYNAMODB_CONTEXT

from retail_records.contract import BadRow, invoice_type, parse_date

INVOICE_SK = "INVOICE"
ITEM_BUDGET_BYTES = 390 * 1024  # DynamoDB's item limit is 400 KB; the rest is headroom for the invoice's fields
INVOICE_FIELDS_BYTES = 2048  # what the invoice's own attributes take, at most
BATCH_WRITE_SIZE, BATCH_GET_SIZE = 25, 100  # BatchWriteItem's and BatchGetItem's limits


@dataclass
class Line:
    """A canonical row (its values + record_id) as a line of its invoice's document."""

    row: dict[str, Any]
    invoice: str
    record_id: str
    quantity: int
    price: Decimal
    moment: datetime
    source: Any = None  # where it came from, for the caller: a Kinesis record, a row's index in its file
    exact: Decimal | None = None

    @property
    def amount(self) -> Decimal:
        """Quantity x UnitPrice, exact, or ArithmeticError past DynamoDB's 38 digits (Python's default
        context would round at 28)."""
        if self.exact is None:
            self.exact = DYNAMODB_CONTEXT.multiply(self.price, self.quantity)
        return self.exact

    @property
    def invoice_time(self) -> str:
        """Sortable minute of the sale, as the index and the headers carry it."""
        return _minute(self.moment)

    @property
    def customer(self) -> str | None:
        return self.row.get("CustomerID")


@lru_cache(maxsize=65536)
def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def line_of(row: dict[str, Any], record_id: str, quantity: int, price: Decimal, source: Any = None) -> Line:
    """A line of canonical values; BadRow when DynamoDB could not hold its numbers (refused here rather
    than failing the whole BatchWriteItem)."""
    try:
        moment = parse_date(str(row["InvoiceDate"]))
    except ValueError:
        raise BadRow(f"InvoiceDate '{row['InvoiceDate']}' is not a date like 12/1/2010 8:26") from None
    line = Line(row, row["InvoiceNo"], record_id, quantity, price, moment, source)
    try:
        DYNAMODB_CONTEXT.create_decimal(line.price)
        line.amount  # noqa: B018 - computed to check it
    except ArithmeticError:
        raise BadRow(f"UnitPrice {line.price} or Quantity x UnitPrice does not fit a DynamoDB number") from None
    return line


def invoice_key(invoice: str) -> dict[str, Any]:
    return {"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": INVOICE_SK}}


def full_reason(invoice: str) -> str:
    return (f"invoice {invoice} is full: this line would take its item past {ITEM_BUDGET_BYTES // 1024} KB "
            "(DynamoDB's limit is 400 KB)")


def line_entry(line: Line) -> dict[str, Any]:
    """The line as an element of the document's `lines`, in DynamoDB JSON, built directly (texts as S,
    Quantity/UnitPrice/amount as N: what TypeSerializer would give, at a fraction of its cost). Empty and
    missing texts are left out."""
    return _sized_entry(line)[0]


def _sized_entry(line: Line) -> tuple[dict[str, Any], int]:
    """line_entry and 1 + its entry_bytes (its size as an element of `lines`), in one pass: a bulk load
    builds one per row, so the fields are written out rather than looped over."""
    row = line.row
    entry: dict[str, Any] = {}
    size = 4  # the element (1) and its map (3); per attribute 2 + its name + its value, as entry_bytes counts
    if line.record_id is not None and line.record_id != "":
        value = str(line.record_id)
        entry["record_id"] = {"S": value}
        size += 11 + _utf8_len(value)
    value = str(row.get("StockCode") or "")
    if value:
        entry["StockCode"] = {"S": value}
        size += 11 + _utf8_len(value)
    description = row.get("Description")
    if description is not None and description != "":
        value = str(description)
        entry["Description"] = {"S": value}
        size += 13 + _utf8_len(value)
    value = str(row["InvoiceDate"]).strip()
    if value:
        entry["InvoiceDate"] = {"S": value}
        size += 13 + _utf8_len(value)
    quantity, price, amount = str(line.quantity), str(line.price), str(line.amount)  # ASCII: int and Decimal text
    entry["Quantity"], entry["UnitPrice"], entry["amount"] = {"N": quantity}, {"N": price}, {"N": amount}
    return {"M": entry}, size + 29 + len(quantity) + len(price) + len(amount)


def _utf8_len(value: str) -> int:
    """The UTF-8 size of a text: its length when it is ASCII (most are), without encoding it."""
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def entry_bytes(entry: dict[str, Any]) -> int:
    """A line's size in the item, by DynamoDB's published rules, rounded up: 3 bytes for the map and one
    per element, attribute names and string values in UTF-8 bytes, a number counted as its text (DynamoDB
    stores about one byte per two digits, so the budget errs on the safe side). (An ASCII text's length
    is its size in bytes: most values are measured without encoding them.)"""
    size = 3
    for name, value in entry["M"].items():
        for content in value.values():
            size += 2 + len(name) + _utf8_len(content)
            break
    return size


def text(item: dict[str, Any], name: str) -> str | None:
    """A string attribute of an item in DynamoDB JSON, None when absent."""
    value = item.get(name)
    return value["S"] if value else None


def fold_invoice(invoice: str, stored: dict[str, Any] | None, lines: list[Line]
                 ) -> tuple[dict[str, Any] | None, list[Line]]:
    """The invoice's document with `lines` added (None when it already lists them all: a replay writes
    nothing), and the lines that did not fit in the item. The descriptive fields come from the invoice's
    earliest line (invoice_time, then record_id), whichever batch brought it."""
    entries = stored["lines"]["L"] if stored else []
    counted = {entry["M"]["record_id"]["S"] for entry in entries}
    fresh: dict[str, Line] = {}
    for line in lines:
        if line.record_id not in counted:
            fresh.setdefault(line.record_id, line)
    if not fresh:
        return None, []
    size = INVOICE_FIELDS_BYTES + 3 + sum(1 + entry_bytes(entry) for entry in entries)
    added, overflow = [], []
    for line in fresh.values():
        entry, grown = _sized_entry(line)
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
        **invoice_key(invoice), "entity": {"S": "INVOICE"},
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


RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "InternalServerError"})


def get_invoices(dynamodb: Any, table: str, invoices: list[str], sleep: Callable[[float], None],
                 attempts: int = 6, backoff_s: float = 0.05) -> dict[str, dict[str, Any]]:
    """The stored documents of these invoices in DynamoDB JSON, by InvoiceNo (consistent reads, 100 keys
    a BatchGetItem, UnprocessedKeys retried with exponential backoff; RuntimeError if some never came)."""
    from botocore.exceptions import ClientError

    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invoices), BATCH_GET_SIZE):
        keys = [invoice_key(invoice) for invoice in invoices[start:start + BATCH_GET_SIZE]]
        for attempt in range(attempts):
            if attempt:
                sleep(backoff_s * 2 ** (attempt - 1))
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
            raise RuntimeError(f"{len(keys)} documents still unprocessed after {attempts} attempts")
    return found
