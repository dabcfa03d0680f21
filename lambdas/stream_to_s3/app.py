"""Kinesis -> S3 raw lake: JSON-lines files partitioned by event date, idempotent under replays.

Each record of the batch is decoded (base64 -> UTF-8 JSON object with a parseable InvoiceDate) and
grouped by its event date into `raw/year=YYYY/month=MM/day=DD/<shard id>.jsonl`: a file per shard and
day (a file per hour made five times as many objects, and S3 calls: 15,755 files of 34 lines on average
for the full file on 10 shards, against 3,029 of 179).
A batch *merges* its records into those files (read, add the records whose `record_id` is not there
yet, write back sorted): the content of a file depends only on which records it holds, not on how
they were batched, so a retried batch, a bisected batch or the same rows posted again leave the lake
byte-for-byte identical. It is safe because one shard is processed by one invocation at a time
(ParallelizationFactor 1) and the ingest API keys records by InvoiceNo, so a replayed row lands in
the same shard. A record without a `record_id` (not from the ingest API) gets `seq-<sequence number>`.

A record that cannot be decoded or has no usable InvoiceDate goes to the quarantine queue (raw data,
reason, shard and sequence number) and counts as handled: retrying it would never help. Only records
whose partition object could not be written (or whose quarantine message could not be sent) are
returned in `batchItemFailures`, so Lambda retries from the first of them (the mapping needs
FunctionResponseTypes=["ReportBatchItemFailures"]).

Why no Powertools BatchProcessor here: the unit of work is a partition file, not a record; the
partial-batch answer is built directly from the files that failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import retail_records as contract  # the record contract, from the layer the deploy step attaches
from retail_records import quarantine as quarantine_writer

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

s3 = boto3.client("s3")
sqs = boto3.client("sqs")

PREFIX = os.environ.get("RAW_PREFIX", "raw")


class Invalid(ValueError):
    """A record that can never be stored (quarantined)."""


@dataclass
class Decoded:
    sequence: str
    line: str
    day: datetime
    record_id: str
    invoice: str

    @property
    def order(self) -> tuple[datetime, str, str]:
        """Its place in a lake file: date, InvoiceNo, record_id (as `_line` reads it back)."""
        return self.day, self.invoice, self.record_id


@dataclass
class Quarantined:
    record: dict[str, Any]
    reason: str


@dataclass
class Batch:
    shard: str
    first: str
    last: str
    partitions: dict[tuple[int, int, int], list[Decoded]] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write the batch's partition files and quarantine what cannot be stored; report what failed."""
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    batch = split(records)
    failed = write_partitions(batch, os.environ["LAKE_BUCKET"])
    failed += quarantine(batch.quarantined, os.environ["QUARANTINE_QUEUE_URL"])
    logger.info("shard %s %s..%s: %d records, %d files, %d quarantined, %d failed", batch.shard, batch.first,
                batch.last, len(records), len(batch.partitions), len(batch.quarantined), len(failed))
    order = {r["kinesis"]["sequenceNumber"]: i for i, r in enumerate(records)}
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sorted(set(failed), key=order.__getitem__)]}


# --------------------------------------------------------------------------------------------------
# Decode and group


def shard_of(record: dict[str, Any]) -> str:
    """The shard id from eventID "shardId-000000000000:4954...", as Lambda sends it."""
    return str(record.get("eventID", "unknown")).split(":", 1)[0]


def decode(record: dict[str, Any]) -> Decoded:
    kinesis = record["kinesis"]
    try:
        raw = base64.b64decode(kinesis["data"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid("data is not base64") from None
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Invalid("data is not UTF-8 text") from None
    except ValueError as error:
        raise Invalid(f"data is not JSON: {error}") from None
    if not isinstance(row, dict):
        raise Invalid(f"data is JSON {type(row).__name__}, not an object")
    value = row.get("InvoiceDate")
    if not isinstance(value, str):
        raise Invalid("InvoiceDate is missing" if value is None else f"InvoiceDate '{value}' is not text")
    try:
        day = invoice_date(value)
    except ValueError:
        raise Invalid(contract.reason("InvoiceDate", value, contract.NOT_DATE)) from None
    row["record_id"] = str(row.get("record_id") or f"seq-{kinesis['sequenceNumber']}")  # every lake line has one
    line = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    return Decoded(kinesis["sequenceNumber"], line, day, row["record_id"], str(row.get("InvoiceNo", "")))


def split(records: list[dict[str, Any]]) -> Batch:
    """Group decodable records by event date; collect the rest for quarantine."""
    sequences = [r["kinesis"]["sequenceNumber"] for r in records]
    ordered = sorted(sequences, key=int)
    batch = Batch(shard=shard_of(records[0]), first=ordered[0], last=ordered[-1])
    for record in sorted(records, key=lambda r: int(r["kinesis"]["sequenceNumber"])):
        try:
            decoded = decode(record)
        except Invalid as error:
            batch.quarantined.append(Quarantined(record, str(error)))
            continue
        key = (decoded.day.year, decoded.day.month, decoded.day.day)
        batch.partitions.setdefault(key, []).append(decoded)
    return batch


# --------------------------------------------------------------------------------------------------
# Write


def object_key(batch: Batch, day: tuple[int, int, int]) -> str:
    year, month, dom = day
    return f"{PREFIX}/year={year:04d}/month={month:02d}/day={dom:02d}/{batch.shard}.jsonl"


invoice_date = contract.parse_date  # the file's date text -> datetime (cached per distinct text)


Line = tuple[tuple[datetime, str, str], str]  # (file order: date, InvoiceNo, record_id), the line


def _line(text: str) -> Line:
    row = json.loads(text)
    return (invoice_date(row["InvoiceDate"]), str(row.get("InvoiceNo", "")), str(row.get("record_id", ""))), text


def _existing_lines(bucket: str, key: str) -> dict[str, Line]:
    """record_id -> line of the file as it is now (empty when it does not exist yet)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except s3.exceptions.NoSuchKey:
        return {}
    lines = {}
    for text in body.splitlines():
        line = _line(text)
        lines[line[0][2]] = line
    return lines


def write_partitions(batch: Batch, bucket: str) -> list[str]:
    """Merge each day's records into its file; the sequence numbers of the records whose file failed."""
    failed: list[str] = []
    for day, rows in sorted(batch.partitions.items()):
        key = object_key(batch, day)
        try:
            lines = _existing_lines(bucket, key)
            new = {r.record_id: (r.order, r.line) for r in rows if r.record_id not in lines}
            if not new:
                continue  # a replay: the file already holds every record
            body = ("\n".join(text for _, text in sorted({**lines, **new}.values())) + "\n").encode("utf-8")
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        except Exception:  # noqa: BLE001 - any failure: Lambda retries these records
            logger.exception("could not write %s", key)
            failed += [r.sequence for r in rows]
    return failed


def quarantine(items: list[Quarantined], queue_url: str) -> list[str]:
    """The layer's quarantine writer; the sequence numbers that could not be quarantined."""
    bodies = [quarantine_writer.stream_message("stream_to_s3", item.record, item.reason) for item in items]
    return [items[i].record["kinesis"]["sequenceNumber"] for i in quarantine_writer.send(sqs, queue_url, bodies)]
