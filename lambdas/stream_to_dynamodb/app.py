"""Kinesis -> DynamoDB serving table (TABLE_NAME): one document per invoice, holding its lines and
totals, and a customer -> invoices index. Nothing posted is lost, and a replayed batch changes nothing.

The model (schema in `schema.py`; the document code is the `retail_records` layer's `documents`, shared
with the batch import): one item per invoice, PK `INVOICE#<InvoiceNo>`, SK `INVOICE`:
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
a third of it; lines that would push a document past its budget (390 KB) are quarantined with that reason.

The course's model, for comparison: one item per invoice too, but PK InvoiceNo and CustomerID as
*numbers* and one attribute per StockCode. Numbers fail on "C536379" and on a missing CustomerID; a
second line of the same StockCode in the invoice overwrites the first (10,684 such lines in the full
file); and its totals, if summed on write, double on every Lambda retry.

Records that can never be stored (not JSON, no InvoiceNo, or a value the record contract refuses: the
ingest API's rules and reasons, `retail_records`) go to the quarantine queue with a reason and count as processed. A record whose writes failed is
reported in `batchItemFailures` (Powertools BatchProcessor), so Lambda retries from it without blocking
the shard on the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import boto3
import retail_records as contract  # the record contract and the document model, from the layer the deploy step attaches
from botocore.config import Config
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from retail_records import document_writes, documents
from retail_records import quarantine as quarantine_writer
from retail_records.documents import Line

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

# Items are built here from validated records, and DynamoDB validates every request again: botocore's
# client-side validation of each attribute of each item was a third of this function's CPU time.
dynamodb = boto3.client("dynamodb", config=Config(parameter_validation=False))
sqs = boto3.client("sqs")
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))


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
    record_id = row.get("record_id")
    if not isinstance(record_id, str) or not record_id:
        # Not from ingest_api: the stream position is this record's stable identity under replay.
        record_id = f"seq-{kinesis['sequenceNumber']}"
    try:  # the contract's rules, so a record put on the stream by anyone is judged as the API judges a row
        if not contract.INVOICE_RE.fullmatch(invoice):
            raise contract.BadRow(contract.reason("InvoiceNo", invoice, contract.NOT_INVOICE))
        row["CustomerID"] = contract.customer_id(row.get("CustomerID"))
        return documents.line_of(row, record_id, contract.quantity(row.get("Quantity")),
                                 contract.unit_price(row.get("UnitPrice")), source=record)
    except contract.BadRow as error:
        raise Invalid(str(error)) from None


def sequence(line: Line) -> str:
    """The line's Kinesis sequence number (its source is the stream record)."""
    return line.source["kinesis"]["sequenceNumber"]


# --------------------------------------------------------------------------------------------------
# Invoice documents: the batch's new lines folded in


def update_invoices(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep
                    ) -> tuple[dict[str, str], list[Bad]]:
    """Fold the batch's lines into their invoices' documents (the layer's `document_writes`: one
    BatchGetItem per 100 invoices, one BatchWriteItem per 25 changed documents). Answers the sequence
    numbers not stored (-> why) and the lines quarantined because their invoice's item is full."""
    try:
        folded = document_writes.fold_lines(dynamodb, table, lines, sleep, MAX_ATTEMPTS, BASE_BACKOFF_S)
    except Exception:  # noqa: BLE001 - reported, Lambda retries these records
        logger.exception("documents of %d invoices not read", len({line.invoice for line in lines}))
        return {sequence(line): "invoice not read" for line in lines}, []
    failed: dict[str, str] = {}
    for chunk in document_writes.chunks(folded.changed):
        try:
            unwritten = document_writes.write_chunk(dynamodb, table, chunk, sleep, MAX_ATTEMPTS, BASE_BACKOFF_S)
        except Exception:  # noqa: BLE001 - e.g. a connection error: these records are reported, not lost
            logger.exception("BatchWriteItem failed")
            unwritten = {(item["PK"]["S"], item["SK"]["S"]) for item in chunk}
        for pk, _ in unwritten:
            failed.update((sequence(line), "invoice not written")
                          for line in folded.by_invoice[pk.removeprefix("INVOICE#")])
    return failed, [Bad(line.source, reason) for line, reason in folded.full]


# --------------------------------------------------------------------------------------------------
# Quarantine


def quarantine(queue_url: str, bad: list[Bad]) -> list[str]:
    """The layer's quarantine writer; the sequence numbers that could not be quarantined."""
    bodies = [quarantine_writer.stream_message("stream_to_dynamodb", b.record, b.reason) for b in bad]
    return [bad[i].record["kinesis"]["sequenceNumber"] for i in quarantine_writer.send(sqs, queue_url, bodies)]
