"""EventBridge schedule -> this function: bulk import of the CSV files waiting under `incoming/` in the lake
bucket into the serving table (the stream path's invoice documents) and the warehouse (COPY).

The course's batch path: when hundreds of GB arrive, feeding them through the stream is wasteful; the
client cuts the file into daily CSVs (`python -m helpers.client upload`), and a schedule ("CloudWatch
trigger") runs this function, which for each object under INCOMING_PREFIX (FILE_THREADS at a time):
1. claims it in the ledger (bucket/key + ETag; `ledger.py`): a file already DONE is only moved, a file
   held by another live invocation is skipped, so overlapping schedules split the files and never load
   one twice;
2. validates its rows with the record contract (the `retail_records` layer, the ingest API's rules) and
   folds the good ones into the invoice documents with the layer's `documents`, the model
   stream_to_dynamodb uses (`serving_table.py` writes them: the same rows
   by stream or by batch give the same items), CHUNK_ROWS rows at a time; each chunk also writes its
   cleaned rows as a gzipped CSV part under `staged/<file>/<etag>/` and its refused rows, with their
   reasons, to `quarantine/<file>/<etag>/` (JSON lines). A chunk redone after a crash overwrites the
   same parts and adds no line to a document;
3. stops before the deadline (context.get_remaining_time_in_millis() below SAFETY_MS), records the row
   offset reached in the ledger and releases the file: the next invocation continues there;
4. loads the files it finished into the warehouse with one COPY of a manifest of their parts
   (`warehouse.py`, exactly once: the COPY commits with a row per file in `batch_import_loads`), marks
   them DONE and moves them to PROCESSED_PREFIX. A file is never half-loaded into the warehouse.
Every row read is stored or quarantined (counted in the answer and the ledger). A file whose header is
not the published one is refused whole and moved to QUARANTINE_PREFIX.

Environment: LAKE_BUCKET, TABLE_NAME, LEDGER_TABLE, the warehouse's (see warehouse.py); optional
STAGING_BUCKET (where the staged parts and manifests go, the bucket the warehouse's COPY role may read;
default LAKE_BUCKET), INCOMING_PREFIX (incoming/), PROCESSED_PREFIX (processed/), STAGED_PREFIX (staged/), QUARANTINE_PREFIX
(quarantine/), CHUNK_ROWS (5000), SAFETY_MS (20000), FILE_THREADS (16: a file spends much of its time
waiting for its requests' answers, so more files in flight keep the function and the services busy: 16
imported the full file's 305 days about 8% faster than 8, README). A file must fit in the function's memory:
the client cuts big files by day or by rows.
"""

from __future__ import annotations

import csv
import gc
import gzip
import io
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from botocore.exceptions import ClientError

import ledger
import retail_records as contract  # the record contract and the document model, from the layer the deploy step attaches
import serving_table
import warehouse
from clients import FILE_THREADS, s3
from retail_records import documents

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

ENCODING = "ISO-8859-1"  # the published file's encoding, kept by the client's daily files


@dataclass
class FileReport:
    key: str
    status: str  # loaded | continued | already_loaded | busy | refused | deferred (| staged, before the COPY)
    rows: int = 0
    stored: int = 0
    quarantined: int = 0
    offset: int = 0
    reason: str | None = None


@dataclass
class Work:
    """One object this invocation looked at: what became of it, and its ledger entry when it holds it."""

    report: FileReport
    etag: str
    size: int
    entry: ledger.Entry | None = None


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Import what waits under the incoming prefix, as far as this invocation's time allows."""
    with collector_paused():
        return import_incoming(event, context)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the invocation, back on after it. A file's rows, records,
    lines and documents are millions of small objects that all live until the file is done: the
    collector walked them again and again, about a third of the function's CPU on the full file, to find
    no garbage (they hold no cycles; reference counting frees them). The few cycles a request leaves
    wait for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def import_incoming(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The handler's work: stage every file it can, one COPY of those finished, then move them."""
    bucket = os.environ["LAKE_BUCKET"]
    owner = getattr(context, "aws_request_id", None) or f"local-{time.time_ns()}"
    started = time.perf_counter()
    objects = list_incoming(bucket, setting("INCOMING_PREFIX", "incoming/"))
    with ThreadPoolExecutor(FILE_THREADS) as pool:
        work = list(pool.map(lambda item: stage_object(bucket, item, owner, context), objects))
    staged = time.perf_counter()
    load_staged(bucket, [w for w in work if w.report.status == "staged"], owner)
    loaded = time.perf_counter()
    move_all(bucket, [w for w in work if w.report.status in ("loaded", "already_loaded")],
             setting("PROCESSED_PREFIX", "processed/"))
    move_all(bucket, [w for w in work if w.report.status == "refused"], setting("QUARANTINE_PREFIX", "quarantine/"))
    moved = time.perf_counter()
    reports = [w.report for w in work]
    answer: dict[str, Any] = {status: sum(1 for r in reports if r.status == status) for status in
                              ("loaded", "continued", "busy", "already_loaded", "refused", "deferred")}
    answer.update(rows=sum(r.rows for r in reports if r.status == "loaded"),
                  stored=sum(r.stored for r in reports if r.status == "loaded"),
                  quarantined=sum(r.quarantined for r in reports if r.status == "loaded"))
    answer["seconds"] = {"stage": round(staged - started, 2), "copy": round(loaded - staged, 2),
                         "move": round(moved - loaded, 2)}  # where the invocation's time went
    logger.info("batch import (%s): %s", event.get("source", "direct"), json.dumps(answer))
    answer["files"] = [asdict(r) for r in reports]
    return answer


def time_left_ms(context: Any) -> int:
    return int(context.get_remaining_time_in_millis()) if context is not None else 900_000


def list_incoming(bucket: str, prefix: str) -> list[dict[str, Any]]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [item for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return sorted(found, key=lambda item: item["Key"])


def file_name(key: str) -> str:
    prefix = setting("INCOMING_PREFIX", "incoming/")
    return key[len(prefix):] if key.startswith(prefix) else key


def stage_object(bucket: str, item: dict[str, Any], owner: str, context: Any) -> Work:
    """Claim an object and write its rows (documents, staged parts, quarantine) up to the end or the
    deadline. Its status: staged (all rows done, waiting for the COPY), continued, busy, refused, ..."""
    key, etag = item["Key"], item["ETag"].strip('"')
    work = Work(FileReport(key, "deferred"), etag, int(item.get("Size", 0)))
    safety = int(setting("SAFETY_MS", "20000"))
    if time_left_ms(context) < safety:
        return work
    table, ledger_table = os.environ["TABLE_NAME"], os.environ["LEDGER_TABLE"]
    entry = ledger.claim(ledger_table, ledger.entry_key(f"{bucket}/{key}", etag), owner,
                         time_left_ms(context) / 1000 + 60, max(1, int(setting("CHUNK_ROWS", "5000"))))
    report = work.report
    report.status, report.offset, report.stored, report.quarantined = "busy", entry.offset, entry.stored, entry.quarantined
    if not entry.owned:
        report.status = {ledger.DONE: "already_loaded", ledger.REFUSED: "refused"}.get(entry.status, "busy")
        return work
    work.entry = entry
    body = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"].read()
    rows, problem = read_rows(body)
    if problem:
        ledger.finish(ledger_table, entry, owner, ledger.REFUSED, problem)
        logger.error("%s refused: %s", key, problem)
        report.status, report.reason = "refused", problem
        return work
    report.rows = len(rows)
    accepted, refused = contract.prepare(rows)
    name = file_name(key)
    for start in part_offsets(len(rows), entry.chunk):
        if start < entry.offset:
            continue
        if time_left_ms(context) < safety:
            ledger.release(ledger_table, entry, owner)
            report.status, report.offset = "continued", entry.offset
            report.stored, report.quarantined = entry.stored, entry.quarantined
            logger.info("%s: stopped at row %d of %d before the deadline; the next run continues", key,
                        entry.offset, len(rows))
            return work
        end = min(start + entry.chunk, len(rows))
        stored, bad = import_chunk(bucket, table, name, etag, rows, accepted, refused, start, end)
        entry.offset, entry.stored, entry.quarantined = end, entry.stored + stored, entry.quarantined + bad
    if entry.stored + entry.quarantined != len(rows):
        raise RuntimeError(f"{key}: stored {entry.stored} + quarantined {entry.quarantined} != rows {len(rows)}")
    report.status, report.offset, report.stored, report.quarantined = "staged", entry.offset, entry.stored, entry.quarantined
    return work


def part_offsets(rows: int, chunk: int) -> range:
    """Where each staged part starts (one part, header only, for a file without rows)."""
    return range(0, max(rows, 1), chunk)


def load_staged(bucket: str, staged: list[Work], owner: str) -> None:
    """The finished files into the warehouse with one COPY (a manifest of their parts) unless a committed
    COPY already has them, then DONE in the ledger."""
    if not staged:
        return
    versions = [(f"s3://{bucket}/{w.report.key}", w.etag) for w in staged]
    done_before = warehouse.already_loaded(versions)
    fresh = [(version, w) for version, w in zip(versions, staged) if version not in done_before]
    if fresh:
        staging = setting("STAGING_BUCKET", bucket)
        entries = [{"url": f"s3://{staging}/{staged_prefix(file_name(w.report.key), w.etag)}part-{start:09d}.csv.gz",
                    "mandatory": True}
                   for _, w in fresh for start in part_offsets(w.report.rows, w.entry.chunk)]  # type: ignore[union-attr]
        manifest = f"{setting('STAGED_PREFIX', 'staged/')}manifests/{owner}.manifest"
        s3.put_object(Bucket=staging, Key=manifest, Body=json.dumps({"entries": entries}).encode())
        warehouse.copy_files(f"s3://{staging}/{manifest}", [(obj, etag, w.report.stored) for (obj, etag), w in fresh])
    ledger.finish_many(os.environ["LEDGER_TABLE"], [w.entry for w in staged if w.entry], owner)
    for w in staged:
        w.report.status = "loaded"
        logger.info("%s: %d rows, %d stored, %d quarantined", w.report.key, w.report.rows, w.report.stored,
                    w.report.quarantined)


def read_rows(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The CSV's rows as text dicts, or the reason the whole file cannot be read."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    reader = csv.reader(io.StringIO(body.decode(ENCODING), newline=""))
    header = next(reader, None)
    if header is None or tuple(h.lstrip("\ufeffï»¿") for h in header) != contract.COLUMNS:
        return [], f"header is {header!r}, expected {','.join(contract.COLUMNS)} (the published file's)"
    rows = []
    for values in reader:
        if not values:
            continue
        rows.append(dict(zip(contract.COLUMNS, values)))
    return rows, None


def staged_prefix(name: str, etag: str) -> str:
    return f"{setting('STAGED_PREFIX', 'staged/')}{name}/{etag}/"


def import_chunk(bucket: str, table: str, name: str, etag: str, rows: list[dict[str, Any]],
                 accepted: list[contract.Accepted], refused: list[contract.Refused], start: int, end: int
                 ) -> tuple[int, int]:
    """Rows [start, end) of a file: documents folded, cleaned rows staged, refused rows quarantined.
    Deterministic by (file, start): redone after a crash, it overwrites the same objects and adds no line."""
    bad: list[tuple[int, str]] = [(r.index, r.reason) for r in refused if start <= r.index < end]
    lines = []
    prices: dict[str, Any] = {}  # UnitPrice text -> as the stream path stores it (a file repeats its prices)
    for good in accepted:
        if start <= good.index < end:
            try:
                record = good.record  # UnitPrice as the stream path stores it, so both give the same items
                text = str(record["UnitPrice"])
                price = prices.get(text)
                if price is None:
                    price = prices[text] = contract.stream_number(record["UnitPrice"])
                lines.append(documents.line_of(record, record["record_id"], record["Quantity"], price,
                                               source=good.index))
            except contract.BadRow as error:
                bad.append((good.index, str(error)))
    full = serving_table.update_invoices(table, lines)
    bad += [(line.source, reason) for line, reason in full]
    held = {line.source for line, _ in full}
    staged = [line for line in lines if line.source not in held]
    s3.put_object(Bucket=setting("STAGING_BUCKET", bucket), Key=f"{staged_prefix(name, etag)}part-{start:09d}.csv.gz",
                  Body=staged_csv(staged))
    if bad:
        bad.sort()
        text = "".join(json.dumps({"file": name, "line": index + 2, "reason": reason, "row": rows[index]},
                                  ensure_ascii=False) + "\n" for index, reason in bad)
        s3.put_object(Bucket=bucket, Key=f"{setting('QUARANTINE_PREFIX', 'quarantine/')}{name}/{etag}/part-{start:09d}.jsonl",
                      Body=text.encode("utf-8"))
    return len(staged), len(bad)


def staged_csv(lines: list[documents.Line]) -> bytes:
    """The warehouse landing table's columns, gzipped UTF-8 CSV with a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(warehouse.COLUMNS)
    writer.writerows((line.record_id, line.invoice, row["StockCode"], row.get("Description") or "", line.quantity,
                      row["InvoiceDate"], line.price, row.get("CustomerID") or "", row["Country"])
                     for line in lines for row in (line.row,))
    return gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=1)


def move_all(bucket: str, work: list[Work], prefix: str) -> None:
    """Copy each object under `prefix`, then delete them from incoming (1,000 a call). An object already
    gone was moved by another run."""
    def copy(w: Work) -> str | None:
        target, source = prefix + file_name(w.report.key), {"Bucket": bucket, "Key": w.report.key}
        try:
            if w.size < 5 * 1024**3:  # CopyObject's limit; bigger objects go by multipart copy
                s3.copy_object(Bucket=bucket, Key=target, CopySource=source)
            else:
                s3.copy(source, bucket, target)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "PreconditionFailed"):
                return None
            raise
        return w.report.key

    with ThreadPoolExecutor(FILE_THREADS) as pool:
        moved = [key for key in pool.map(copy, work) if key]
    for start in range(0, len(moved), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in moved[start:start + 1000]],
                                                 "Quiet": True})
