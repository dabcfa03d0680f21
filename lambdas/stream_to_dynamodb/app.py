"""Kinesis -> DynamoDB serving table (TABLE_NAME): invoice lines, invoice headers with totals, and a
customer -> invoices index. Nothing posted is lost, and a replayed batch leaves the table unchanged.

The model (schema in `schema.py`):
- one item per line, PK `INVOICE#<InvoiceNo>`, SK `LINE#<record_id>`: every posted line is kept,
  including the repeated (InvoiceNo, StockCode) lines and exact duplicates (they have their own
  record_id), cancellations (C...), adjustments (A...) and guest sales (no CustomerID attribute);
- one header per invoice, PK `INVOICE#<InvoiceNo>`, SK `HEADER`: customer, country, date, type
  (sale / cancellation / adjustment), `total_amount` (sum of Quantity x UnitPrice, exact decimals),
  `total_quantity`, `line_count`, and `line_ids`, the record_ids those totals include. After a batch
  writes its lines, its invoices' headers are read (BatchGetItem), the lines not yet in `line_ids`
  are added, and the changed headers are put whole (BatchWriteItem): a replay or another batch
  boundary finds its lines counted already, so totals cannot double, and a batch costs two calls
  for its headers rather than two per invoice (a shard is processed by one invocation at a time and
  an invoice's lines share a shard, so two writers never race on one header);
- the header carries GSI1PK `CUSTOMER#<CustomerID>` / GSI1SK `INVOICE#<yyyy-mm-ddThh:mm>#<InvoiceNo>`,
  so index GSI1 lists a customer's invoices by date with their totals. Guest invoices have no GSI1 keys.
  All ids are strings ("17850", never 17850.0), all keys are derived from the record alone.

The course's model, for comparison: one item per invoice, PK InvoiceNo and CustomerID as *numbers*,
one attribute per StockCode. Numbers fail on "C536379" and on a missing CustomerID; a second line of
the same StockCode in the invoice overwrites the first (10,684 such lines in the full file); and its
totals, if summed on write, double on every Lambda retry. Here each line is its own item and totals
are idempotent.

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
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
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
HEADER_SK = "HEADER"
BATCH_WRITE_SIZE, BATCH_GET_SIZE = 25, 100
MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))
SQS_BATCH, SQS_MAX_BYTES = 10, 256 * 1024
RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError"}

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


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
    outcome = Outcome(lines=len(lines), invoices=len({line.invoice for line in lines}), quarantined=len(bad))
    for sequence in put_lines(table, lines):
        outcome.failed[sequence] = "line item not written"
    written = [line for line in lines if line.sequence not in outcome.failed]  # counted once they are stored
    for sequence in update_headers(table, written):
        outcome.failed.setdefault(sequence, "invoice header not updated")
    for sequence in quarantine(queue, bad):
        outcome.failed[sequence] = "could not be quarantined"
    return outcome


# --------------------------------------------------------------------------------------------------
# Decode


@dataclass
class Line:
    sequence: str
    row: dict[str, Any]
    invoice: str
    record_id: str
    quantity: int
    price: Decimal
    moment: datetime

    @property
    def amount(self) -> Decimal:
        return self.price * self.quantity

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
    return Line(kinesis["sequenceNumber"], row, invoice, record_id, quantity(row.get("Quantity")),
                price(row.get("UnitPrice")), moment(row.get("InvoiceDate")))


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
# Items


def invoice_type(invoice: str) -> str:
    return {"C": "cancellation", "A": "adjustment"}.get(invoice[0], "sale")


def line_item(line: Line) -> dict[str, Any]:
    """The line's item in DynamoDB JSON, written directly (texts as S, Quantity/UnitPrice/amount as N;
    what TypeSerializer would give, at a fraction of its cost per attribute)."""
    row = line.row
    texts = {
        "PK": f"INVOICE#{line.invoice}", "SK": f"LINE#{line.record_id}", "entity": "LINE",
        "InvoiceNo": line.invoice, "record_id": line.record_id, "StockCode": str(row.get("StockCode") or ""),
        "Description": row.get("Description"), "InvoiceDate": str(row["InvoiceDate"]).strip(),
        "invoice_time": line.invoice_time, "CustomerID": line.customer,
        "Country": row.get("Country"),
    }
    item = {key: {"S": str(value)} for key, value in texts.items() if value is not None and value != ""}
    item.update(Quantity=_serialize(line.quantity), UnitPrice=_serialize(line.price), amount=_serialize(line.amount))
    return item


# --------------------------------------------------------------------------------------------------
# Line items: BatchWriteItem


def put_lines(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """BatchWriteItem by 25 (one per key), retrying UnprocessedItems; sequence numbers not written."""
    by_key: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for line in lines:
        item = line_item(line)
        key = (item["PK"]["S"], item["SK"]["S"])
        sequences = by_key[key][1] if key in by_key else []
        by_key[key] = (item, sequences + [line.sequence])
    entries = list(by_key.values())
    failed: list[str] = []
    for start in range(0, len(entries), BATCH_WRITE_SIZE):
        chunk = entries[start:start + BATCH_WRITE_SIZE]
        left = write_chunk(table, [item for item, _ in chunk], sleep)
        failed += [s for item, sequences in chunk if (item["PK"]["S"], item["SK"]["S"]) in left for s in sequences]
    return failed


def write_chunk(table: str, items: list[dict[str, Any]], sleep: Callable[[float], None]) -> set[tuple[str, str]]:
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
# Headers: the batch's new lines folded into their invoices' totals


def update_headers(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Fold the batch's lines into their invoices' headers: one BatchGetItem per 100 invoices, one
    BatchWriteItem per 25 changed headers. Sequence numbers of the invoices whose header failed."""
    by_invoice: dict[str, list[Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    try:
        stored = get_headers(table, list(by_invoice), sleep)
    except Exception:  # noqa: BLE001 - reported, Lambda retries these records
        logger.exception("headers of %d invoices not read", len(by_invoice))
        return [line.sequence for line in lines]
    changed = [header for invoice, new in by_invoice.items()
               if (header := fold_header(invoice, stored.get(invoice), new)) is not None]
    failed: list[str] = []
    for start in range(0, len(changed), BATCH_WRITE_SIZE):
        left = write_chunk(table, changed[start:start + BATCH_WRITE_SIZE], sleep)
        for pk, _ in left:
            failed += [line.sequence for line in by_invoice[pk.removeprefix("INVOICE#")]]
    return failed


def fold_header(invoice: str, stored: dict[str, Any] | None, lines: list[Line]) -> dict[str, Any] | None:
    """The header with `lines` counted, or None when they all are already (a replay writes nothing).

    `line_ids` holds the record_ids the totals include, so a line is counted once whatever the batch
    boundaries or replays (a record_id names one exact row). One invocation at a time handles a shard
    and an invoice's records share a shard (partition key InvoiceNo), so no two writers race on a header.
    The descriptive fields come from the invoice's earliest line (invoice_time, then record_id)."""
    counted = set(stored.get("line_ids", ())) if stored else set()
    fresh: dict[str, Line] = {}
    for line in lines:
        if line.record_id not in counted:
            fresh.setdefault(line.record_id, line)
    if not fresh:
        return None
    first = min(fresh.values(), key=lambda line: (line.invoice_time, line.record_id))
    first_fields = {"InvoiceDate": str(first.row["InvoiceDate"]).strip(),
                    "invoice_time": first.invoice_time, "Country": first.row.get("Country"),
                    "CustomerID": first.customer, "first_record_id": first.record_id}
    if stored and (stored.get("invoice_time", ""), stored.get("first_record_id", "")) < (
            first_fields["invoice_time"], first.record_id):
        first_fields = {key: stored.get(key) for key in first_fields}
    fields: dict[str, Any] = {
        "PK": f"INVOICE#{invoice}", "SK": HEADER_SK, "entity": "INVOICE", "InvoiceNo": invoice,
        "invoice_type": invoice_type(invoice), **first_fields,
        "total_amount": (stored["total_amount"] if stored else Decimal(0)) + sum(
            (line.amount for line in fresh.values()), Decimal(0)),
        "total_quantity": (int(stored["total_quantity"]) if stored else 0) + sum(line.quantity for line in fresh.values()),
        "line_count": len(counted) + len(fresh), "line_ids": counted | set(fresh),
    }
    if fields["CustomerID"]:
        fields["GSI1PK"] = f"CUSTOMER#{fields['CustomerID']}"
        fields["GSI1SK"] = f"INVOICE#{fields['invoice_time']}#{invoice}"
    return {key: _serialize(value) for key, value in fields.items() if value is not None and value != ""}


def get_headers(table: str, invoices: list[str], sleep: Callable[[float], None]) -> dict[str, dict[str, Any]]:
    """The stored headers of these invoices (consistent reads, 100 keys a call, UnprocessedKeys retried)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invoices), BATCH_GET_SIZE):
        keys = [{"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": HEADER_SK}} for invoice in invoices[start:start + BATCH_GET_SIZE]]
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
                header = {key: _deserialize(value) for key, value in item.items()}
                found[header["InvoiceNo"]] = header
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not keys:
                break
        else:
            raise RuntimeError(f"{len(keys)} headers still unprocessed after {MAX_ATTEMPTS} attempts")
    return found


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
