"""Kinesis -> DynamoDB serving table (TABLE_NAME): one document per invoice, holding its lines and
totals, and a customer -> invoices index. Nothing posted is lost, and a replayed batch changes nothing.

The model (schema in `schema.py`): one item per invoice, PK `INVOICE#<InvoiceNo>`, SK `INVOICE`:
- `lines`, a list with every posted line of the invoice in stream order, each with its `record_id`:
  the repeated (InvoiceNo, StockCode) lines and exact duplicates (they have their own record_id),
  cancellations (C...), adjustments (A...) and guest sales (no CustomerID attribute) included;
- customer, country, date (from the invoice's earliest line), type (sale / cancellation /
  adjustment), `total_amount` (sum of Quantity x UnitPrice, exact decimals), `total_quantity`,
  `line_count`;
- GSI1PK `CUSTOMER#<CustomerID>` / GSI1SK `INVOICE#<yyyy-mm-ddThh:mm>#<InvoiceNo>`, so index GSI1 lists
  a customer's invoices by date with their totals. Guest invoices have no GSI1 keys.
All ids are strings ("17850", never 17850.0), all keys are derived from the record alone.

Why one document: an invoice's lines are bounded and always read together, so `GET /invoices/{n}`
is one GetItem, and a batch of 1,000 records costs one BatchGetItem (its invoices' documents, up to
100) and one BatchWriteItem per 25 changed invoices instead of a put per line: on AWS, write units
are counted per KB of item, so a 150-byte line item costs a whole unit. A batch folds its lines into
the stored documents: lines whose record_id the document already lists are skipped, so a replay or
another batch boundary never counts a line twice (a shard is processed by one invocation at a time
and an invoice's lines share a shard, partition key InvoiceNo, so no two writers race on a
document). An item is at most 400 KB: the biggest invoice of the real file (1,114 lines) takes about
a third of it; lines that would push a document past ITEM_BUDGET_BYTES are quarantined with that reason.

The course's model, for comparison: one item per invoice too, but PK InvoiceNo and CustomerID as
*numbers* and one attribute per StockCode. Numbers fail on "C536379" and on a missing CustomerID; a
second line of the same StockCode in the invoice overwrites the first (10,684 such lines in the full
file); and its totals, if summed on write, double on every Lambda retry.

Records that can never be stored (not JSON, no InvoiceNo, unparseable Quantity/UnitPrice/InvoiceDate)
go to the quarantine queue with a reason and count as processed. A record whose writes failed is
reported in `batchItemFailures` (Powertools BatchProcessor), so Lambda retries from it without blocking
the shard on the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable

import boto3
from botocore.config import Config
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from boto3.dynamodb.types import DYNAMODB_CONTEXT
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

# Items are built here from validated records, and DynamoDB validates every request again: botocore's
# client-side validation of each attribute of each item was a third of this function's CPU time.
dynamodb = boto3.client("dynamodb", config=Config(parameter_validation=False))
sqs = boto3.client("sqs")
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

DATE_FORMAT = "%m/%d/%Y %H:%M"
INVOICE_RE = re.compile(r"[CA]?\d{6}")
CUSTOMER_RE = re.compile(r"\d+")
INVOICE_SK = "INVOICE"
ITEM_BUDGET_BYTES = 390 * 1024  # DynamoDB's item limit is 400 KB; the rest is headroom for the invoice's fields
BATCH_WRITE_SIZE, BATCH_GET_SIZE = 25, 100
MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))
SQS_BATCH, SQS_MAX_BYTES = 10, 256 * 1024
RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError"}

class Invalid(ValueError):
    """A record that can never be stored (quarantined, counted as processed)."""


# --------------------------------------------------------------------------------------------------
# Entry point


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write the whole batch in bulk, then let BatchProcessor report the records whose writes failed."""
    outcome = write_batch(event.get("Records") or [])
    logger.info("batch: %d lines, %d invoices, %d quarantined, %d failed", outcome.lines, outcome.invoices,
                outcome.quarantined, len(outcome.failed))

    def record_handler(record: KinesisStreamRecord) -> None:
        reason = outcome.failed.get(record.kinesis.sequence_number)
        if reason:
            raise RuntimeError(reason)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)


@dataclass
class Outcome:
    failed: dict[str, str] = field(default_factory=dict)  # sequence number -> why
    lines: int = 0
    invoices: int = 0
    quarantined: int = 0


def write_batch(records: list[dict[str, Any]]) -> Outcome:
    table, queue = os.environ["TABLE_NAME"], os.environ["QUARANTINE_QUEUE_URL"]
    lines, bad = decode_all(records)
    outcome = Outcome(lines=len(lines), invoices=len({line.invoice for line in lines}))
    failed, full = update_invoices(table, lines)
    outcome.failed.update(failed)
    bad += full
    outcome.quarantined = len(bad)
    for sequence in quarantine(queue, bad):
        outcome.failed[sequence] = "could not be quarantined"
    return outcome


# --------------------------------------------------------------------------------------------------
# Decode


@dataclass
class Line:
    record: dict[str, Any]
    sequence: str
    row: dict[str, Any]
    invoice: str
    record_id: str
    quantity: int
    price: Decimal
    moment: datetime

    @property
    def amount(self) -> Decimal:
        """Exact, or ArithmeticError past DynamoDB's 38 digits (Python's default context would round at 28)."""
        return DYNAMODB_CONTEXT.multiply(self.price, self.quantity)

    @property
    def invoice_time(self) -> str:
        """Sortable minute of the sale, as the index and the headers carry it."""
        return self.moment.strftime("%Y-%m-%dT%H:%M")

    @property
    def customer(self) -> str | None:
        return self.row.get("CustomerID")


@dataclass
class Bad:
    record: dict[str, Any]
    reason: str


def decode_all(records: list[dict[str, Any]]) -> tuple[list[Line], list[Bad]]:
    lines, bad = [], []
    for record in records:
        try:
            lines.append(decode(record))
        except Invalid as error:
            bad.append(Bad(record, str(error)))
    return lines, bad


def decode(record: dict[str, Any]) -> Line:
    kinesis = record["kinesis"]
    try:
        row = json.loads(base64.b64decode(kinesis["data"], validate=True).decode("utf-8"), parse_float=Decimal)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as error:
        raise Invalid(f"data is not base64 UTF-8 JSON: {error}") from None
    if not isinstance(row, dict):
        raise Invalid(f"data is JSON {type(row).__name__}, not an object")
    invoice = row.get("InvoiceNo")
    if not isinstance(invoice, str) or not invoice:
        raise Invalid("InvoiceNo is missing" if invoice in (None, "") else f"InvoiceNo {invoice!r} is not text")
    if not INVOICE_RE.fullmatch(invoice):
        raise Invalid(f"InvoiceNo '{invoice}' is not 6 digits with an optional C or A prefix")
    row["CustomerID"] = customer_id(row.get("CustomerID"))
    record_id = row.get("record_id")
    if not isinstance(record_id, str) or not record_id:
        # Not from ingest_api: the stream position is this record's stable identity under replay.
        record_id = f"seq-{kinesis['sequenceNumber']}"
    line = Line(record, kinesis["sequenceNumber"], row, invoice, record_id, quantity(row.get("Quantity")),
                price(row.get("UnitPrice")), moment(row.get("InvoiceDate")))
    try:  # DynamoDB numbers carry 38 significant digits: refuse here what it would refuse for the whole batch
        DYNAMODB_CONTEXT.create_decimal(line.price)
        line.amount  # noqa: B018 - computed to check it
    except ArithmeticError:
        raise Invalid(f"UnitPrice {line.price} or Quantity x UnitPrice does not fit a DynamoDB number") from None
    return line


def customer_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    text = text[:-2] if text.endswith(".0") else text
    if not CUSTOMER_RE.fullmatch(text):
        raise Invalid(f"CustomerID '{value}' is not digits")
    return text


def quantity(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (str, Decimal)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
            if number == number.to_integral_value():
                return int(number)
        except InvalidOperation:
            pass
    raise Invalid(f"Quantity {value!r} is not an integer")


def price(value: Any) -> Decimal:
    if isinstance(value, (int, Decimal, str)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
            if number.is_finite():
                return number
        except InvalidOperation:
            pass
    raise Invalid(f"UnitPrice {value!r} is not a number")


@lru_cache(maxsize=65536)
def _parse_date(text: str) -> datetime:
    """strptime is slow and an invoice's lines share their date: parsed once per distinct text."""
    return datetime.strptime(text.strip(), DATE_FORMAT)


def moment(value: Any) -> datetime:
    try:
        return _parse_date(str(value))
    except ValueError:
        raise Invalid(f"InvoiceDate {value!r} is not a date like 12/1/2010 8:26") from None


# --------------------------------------------------------------------------------------------------
# Invoice documents: the batch's new lines folded in


def invoice_type(invoice: str) -> str:
    return {"C": "cancellation", "A": "adjustment"}.get(invoice[0], "sale")


def line_entry(line: Line) -> dict[str, Any]:
    """The line as an element of the document's `lines`, in DynamoDB JSON, built directly (texts as S,
    Quantity/UnitPrice/amount as N: what TypeSerializer would give, at a fraction of its cost)."""
    row = line.row
    texts = {"record_id": line.record_id, "StockCode": str(row.get("StockCode") or ""),
             "Description": row.get("Description"), "InvoiceDate": str(row["InvoiceDate"]).strip()}
    entry = {key: {"S": str(value)} for key, value in texts.items() if value is not None and value != ""}
    entry.update(Quantity={"N": str(line.quantity)}, UnitPrice={"N": str(line.price)}, amount={"N": str(line.amount)})
    return {"M": entry}


def entry_bytes(entry: dict[str, Any]) -> int:
    """A line's size in the item, by DynamoDB's published rules, rounded up: 3 bytes for the map and one
    per element, attribute names and string values in UTF-8 bytes, a number counted as its text (DynamoDB
    stores about one byte per two digits, so the budget errs on the safe side)."""
    return 3 + sum(2 + len(name) + len(next(iter(value.values())).encode("utf-8"))
                   for name, value in entry["M"].items())


def update_invoices(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep
                    ) -> tuple[dict[str, str], list[Bad]]:
    """Fold the batch's lines into their invoices' documents: one BatchGetItem per 100 invoices, one
    BatchWriteItem per 25 changed documents. Answers the sequence numbers not stored (-> why) and the
    lines quarantined because their invoice's item is full."""
    by_invoice: dict[str, list[Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    try:
        stored = get_invoices(table, list(by_invoice), sleep)
    except Exception:  # noqa: BLE001 - reported, Lambda retries these records
        logger.exception("documents of %d invoices not read", len(by_invoice))
        return {line.sequence: "invoice not read" for line in lines}, []
    changed, full = [], []
    for invoice, new in by_invoice.items():
        document, overflow = fold_invoice(invoice, stored.get(invoice), new)
        if document is not None:
            changed.append(document)
        full += [Bad(line.record, f"invoice {invoice} is full: this line would take its item past "
                                  f"{ITEM_BUDGET_BYTES // 1024} KB (DynamoDB's limit is 400 KB)") for line in overflow]
    failed: dict[str, str] = {}
    for start in range(0, len(changed), BATCH_WRITE_SIZE):
        for pk, _ in write_chunk(table, changed[start:start + BATCH_WRITE_SIZE], sleep):
            failed.update((line.sequence, "invoice not written") for line in by_invoice[pk.removeprefix("INVOICE#")])
    return failed, full


def fold_invoice(invoice: str, stored: dict[str, Any] | None, lines: list[Line]
                 ) -> tuple[dict[str, Any] | None, list[Line]]:
    """The invoice's document with `lines` added (None when it already lists them all: a replay writes
    nothing), and the lines that did not fit in the item.

    The document's `lines` carry their record_ids, so a line is added once whatever the batch
    boundaries or replays (a record_id names one exact row). The descriptive fields come from the
    invoice's earliest line (invoice_time, then record_id), whichever batch brought it."""
    entries = stored["lines"]["L"] if stored else []
    counted = {entry["M"]["record_id"]["S"] for entry in entries}
    fresh: dict[str, Line] = {}
    for line in lines:
        if line.record_id not in counted:
            fresh.setdefault(line.record_id, line)
    if not fresh:
        return None, []
    size = 2048 + 3 + sum(1 + entry_bytes(entry) for entry in entries)  # 2 KB: the invoice's own fields
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


def text(item: dict[str, Any], name: str) -> str | None:
    """A string attribute of an item in DynamoDB JSON, None when absent."""
    value = item.get(name)
    return value["S"] if value else None


def get_invoices(table: str, invoices: list[str], sleep: Callable[[float], None]) -> dict[str, dict[str, Any]]:
    """The stored documents of these invoices in DynamoDB JSON (consistent reads, 100 keys a call,
    UnprocessedKeys retried)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invoices), BATCH_GET_SIZE):
        keys = [{"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": INVOICE_SK}} for invoice in invoices[start:start + BATCH_GET_SIZE]]
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
            answer = dynamodb.batch_write_item(RequestItems={table: requests})
        except ClientError as error:
            if error.response["Error"]["Code"] in RETRYABLE:
                continue
            logger.exception("BatchWriteItem failed")
            break
        except Exception:  # noqa: BLE001 - e.g. a connection error: these items are reported, not lost
            logger.exception("BatchWriteItem failed")
            break
        requests = answer.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return set()
    return {(r["PutRequest"]["Item"]["PK"]["S"], r["PutRequest"]["Item"]["SK"]["S"]) for r in requests}


# --------------------------------------------------------------------------------------------------
# Quarantine


def quarantine_message(bad: Bad) -> str:
    kinesis = bad.record.get("kinesis", {})
    message = {
        "source": "stream_to_dynamodb", "reason": bad.reason, "eventID": bad.record.get("eventID"),
        "eventSourceARN": bad.record.get("eventSourceARN"),
        "shardId": str(bad.record.get("eventID", "")).split(":", 1)[0],
        "sequenceNumber": kinesis.get("sequenceNumber"), "partitionKey": kinesis.get("partitionKey"),
        "approximateArrivalTimestamp": kinesis.get("approximateArrivalTimestamp"), "data": kinesis.get("data"),
    }
    text = json.dumps(message, default=str)
    if len(text.encode()) > SQS_MAX_BYTES:
        message.update(data=None, dataTruncated=True)
        text = json.dumps(message, default=str)
    return text


def quarantine(queue_url: str, bad: list[Bad]) -> list[str]:
    """SendMessageBatch (10 and 256 KB a call); sequence numbers that could not be quarantined."""
    bodies = [quarantine_message(b) for b in bad]
    sequences = [b.record["kinesis"]["sequenceNumber"] for b in bad]
    groups: list[list[int]] = []
    size = 0
    for index, body in enumerate(bodies):
        if not groups or len(groups[-1]) >= SQS_BATCH or size + len(body.encode()) > SQS_MAX_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += len(body.encode())
    failed: list[str] = []
    for group in groups:
        try:
            answer = sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in group])
        except Exception:  # noqa: BLE001
            logger.exception("could not quarantine %d records", len(group))
            failed += [sequences[i] for i in group]
            continue
        failed += [sequences[int(f["Id"])] for f in answer.get("Failed", [])]
    return failed
