"""The serving table's invoice documents, written from batch rows exactly as the stream path writes them.

The model is the `retail_records` layer's `documents` (one item per invoice, its lines with their
record_ids, exact totals, the customer index keys), shared with `stream_to_dynamodb`: a line whose
record_id the document already lists is never added again, so a rerun, a continued file or the same
rows arriving by the stream change nothing. Here: the writes, with this function's policy (a document
not written raises, and the caller redoes the whole chunk, which adds nothing twice).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from retail_records import documents
from retail_records.documents import Line

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
    """BatchWriteItem of requests already in DynamoDB JSON (strings and numbers only), serialized once,
    without the optional blanks (a tenth of the bytes the table's service reads)."""
    _prepared.body = json.dumps({"RequestItems": {table: requests}}, ensure_ascii=False,
                                separators=(",", ":")).encode("utf-8")
    try:
        return dynamodb.batch_write_item(RequestItems={table: []})
    finally:
        _prepared.body = None

MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))


def update_invoices(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep
                    ) -> list[tuple[Line, str]]:
    """Fold the lines into their invoices' documents (one BatchGetItem per 100 invoices, one
    BatchWriteItem per 25 changed documents). Answers the lines refused because their invoice is full;
    raises when a document could not be read or written (the caller retries the whole chunk, which
    adds nothing twice)."""
    by_invoice: dict[str, list[Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    stored = documents.get_invoices(dynamodb, table, list(by_invoice), sleep, MAX_ATTEMPTS, BASE_BACKOFF_S)
    changed, full = [], []
    for invoice, new in by_invoice.items():
        document, overflow = documents.fold_invoice(invoice, stored.get(invoice), new)
        if document is not None:
            changed.append(document)
        full += [(line, documents.full_reason(invoice)) for line in overflow]
    for start in range(0, len(changed), documents.BATCH_WRITE_SIZE):
        unwritten = write_chunk(table, changed[start:start + documents.BATCH_WRITE_SIZE], sleep)
        if unwritten:
            raise RuntimeError(f"{len(unwritten)} invoice documents not written (e.g. {sorted(unwritten)[0][0]})")
    return full


def write_chunk(table: str, items: list[dict[str, Any]], sleep: Callable[[float], None]) -> set[tuple[str, str]]:
    """BatchWriteItem of up to 25 items, UnprocessedItems retried with backoff: the keys not written."""
    requests = [{"PutRequest": {"Item": item}} for item in items]
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            sleep(BASE_BACKOFF_S * 2 ** (attempt - 1))
        try:
            answer = batch_write(table, requests)
        except ClientError as error:
            if error.response["Error"]["Code"] in documents.RETRYABLE:
                continue
            raise
        requests = answer.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return set()
    return {(r["PutRequest"]["Item"]["PK"]["S"], r["PutRequest"]["Item"]["SK"]["S"]) for r in requests}
