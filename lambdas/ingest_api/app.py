"""API Gateway (REST) -> Kinesis: validate posted transaction rows and put them on the stream.

Works behind both integration styles the workbook uses:
- Lambda proxy (AWS_PROXY): the event carries the raw `body` (maybe base64) and the answer must be
  {statusCode, headers, body};
- the course's non-proxy integration with the "Method Request passthrough" mapping template: the event
  carries the parsed body as `body-json`, the answer is the plain result and errors are raised (below).

The body is one row object, a list of row objects, or pandas `DataFrame.to_json()` output (the default
column orientation, or orient="records" / "index" / "split"). Which rows are accepted, their canonical
values, their limits, their refusal reasons and their `record_id` are the record contract's
(`retail_records`, a layer this function needs: the deploy step publishes and attaches it). Only
malformed rows are rejected: cancellations, adjustments, guest sales, non-product codes and duplicates
are real business events and go on the stream; classifying them is the consumers' job.

Both routes decide with the same contract on the same Python values: the proxy body is parsed like the
Lambda runtime parses the non-proxy event (`json.loads`, floats as floats), so a row is accepted or
refused with the same reason whichever route it took. The request as a whole is answered 400 only when
it is not UTF-8 JSON, is nested deeper than the parser takes, has no rows or more than MAX_ROWS (10,000).
Errors on the non-proxy route are raised, with an errorMessage starting `[BadRequest]` (or
`[InternalError]`), so the method's integration responses map them to 400 (500) by selectionPattern.

Every record put on the stream is the canonical record (UnitPrice a JSON number) plus its `record_id`,
partitioned by InvoiceNo so an invoice's lines stay in order in one shard. The id counts exact
duplicates *in this request*: for rows posted as the file's text it is exactly `helpers.dataset`'s id,
so a client that re-posts the same rows gets the same ids and the consumers overwrite instead of
duplicating. (Two identical rows posted in two different requests share an id; post a file's
duplicates in one request, or send record_id, as the workbook's client does.)
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator

import boto3
import retail_records as contract  # the record contract, from the layer the deploy step attaches
from botocore.config import Config

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

# Records are built here from validated rows (Data bytes under 1 MB, PartitionKey an InvoiceNo), and
# Kinesis validates every request anyway: botocore's client-side validation of each of 500 entries was
# a tenth of this function's CPU time.
kinesis = boto3.client("kinesis", config=Config(parameter_validation=False))

MAX_ROWS = 10_000  # the answer names each rejected row: 10,000 reasons stay well under Lambda's 6 MB reply

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_ATTEMPTS = int(os.environ.get("PUT_MAX_ATTEMPTS", "5"))
BASE_BACKOFF_S = float(os.environ.get("PUT_BACKOFF_SECONDS", "0.1"))
JSON_HEADERS = {"Content-Type": "application/json"}


class BadRequest(Exception):
    """The request as a whole cannot be used (answered 400)."""


class RequestError(Exception):
    """Raised on the non-proxy route: its message selects the integration response (400 or 500)."""


# --------------------------------------------------------------------------------------------------
# Entry point


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Validate the posted rows, put the good ones on the stream, say what happened to each."""
    proxy = is_proxy_event(event)
    try:
        rows = rows_of(read_body(event, proxy))
        result = ingest(rows, os.environ["STREAM_NAME"])
    except BadRequest as error:
        if not proxy:
            raise RequestError(" ".join(f"[BadRequest] {error}".split())) from None
        return respond(400, {"message": str(error)}, proxy)
    except Exception:  # never let API Gateway answer 502 with no explanation
        logger.exception("ingest failed")
        message = "internal error; nothing or only part of the rows was accepted"
        if not proxy:
            raise RequestError(f"[InternalError] {message}") from None
        return respond(500, {"message": message}, proxy)
    if not proxy and result["rejected"] and not result["accepted"] and not result["failed"]:
        reasons = "; ".join(f"row {r['index']}: {r['reason']}" for r in result["rejected"][:10])
        raise RequestError(" ".join(f"[BadRequest] no row accepted: {reasons}".split()))  # one line: .* matches it
    return respond(200, result, proxy)


def is_proxy_event(event: dict[str, Any]) -> bool:
    """AWS_PROXY events carry httpMethod and requestContext; the passthrough template carries body-json."""
    return "body-json" not in event and ("httpMethod" in event or "requestContext" in event or "body" in event)


def respond(status: int, payload: dict[str, Any], proxy: bool) -> dict[str, Any]:
    if proxy:
        return {"statusCode": status, "headers": JSON_HEADERS, "body": json.dumps(payload)}
    return payload  # non-proxy: the integration response's status is the HTTP status


# --------------------------------------------------------------------------------------------------
# The body -> rows


def read_body(event: dict[str, Any], proxy: bool) -> Any:
    """The posted JSON document, whichever integration delivered it."""
    if not proxy:
        body = event.get("body-json")
        if isinstance(body, str):  # a template that passed the body as text
            return parse_json(body)
        return body
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest("empty body: post a JSON row, a list of rows or a pandas DataFrame.to_json()")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("body is marked base64 but is not valid base64") from None
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError as error:  # JSON is UTF-8 (RFC 8259); guessing would garble text
            raise BadRequest(f"body is not UTF-8: byte {error.start} is {raw[error.start]:#04x}") from None
    return parse_json(body)


def parse_json(text: str) -> Any:
    """json.loads as the Lambda runtime parses a non-proxy event, so both routes see the same values."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest("body is nested too deeply to be a row, a list of rows or a DataFrame") from None
    except ValueError as error:
        raise BadRequest(f"body is not JSON: {str(error)[:200]}") from None


def rows_of(document: Any) -> list[Any]:
    """The rows of every accepted body shape, in posted order (items may still be malformed)."""
    if isinstance(document, list):
        rows = document
    elif isinstance(document, dict) and _is_split(document):
        rows = [dict(zip(document["columns"], values)) if isinstance(values, list) else values
                for values in document["data"]]
    elif isinstance(document, dict) and document and all(isinstance(v, dict) for v in document.values()):
        rows = _columns_to_rows(document) if set(document) & set(contract.COLUMNS) else list(document.values())
    elif isinstance(document, dict) and document:
        rows = [document]
    else:
        rows = []
    if not rows:
        raise BadRequest("no rows: post a JSON row object, a list of rows or a pandas DataFrame.to_json()")
    if len(rows) > MAX_ROWS:
        raise BadRequest(f"{len(rows):,} rows in one request: post at most {MAX_ROWS:,} (the client sends 500)")
    return rows


def _is_split(document: dict[str, Any]) -> bool:
    return isinstance(document.get("columns"), list) and isinstance(document.get("data"), list)


def _columns_to_rows(columns: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """pandas' default orient="columns": {column: {index: value}} -> rows in the frame's index order."""
    order: dict[str, None] = {}
    for values in columns.values():
        order.update(dict.fromkeys(values))
    return [{name: values.get(index) for name, values in columns.items()} for index in order]


# --------------------------------------------------------------------------------------------------
# Validation: the record contract (the retail_records layer)


@dataclass
class Prepared:
    index: int
    record: dict[str, Any]
    data: bytes

    @property
    def entry(self) -> dict[str, Any]:
        return {"Data": self.data, "PartitionKey": self.record["InvoiceNo"]}


def prepare(rows: list[Any]) -> tuple[list[Prepared], list[dict[str, Any]]]:
    """Valid rows as stream records (with their record_id), and the rejected ones with a reason."""
    accepted, refused = contract.prepare(rows)
    rejected = [{"index": r.index, "reason": r.reason} for r in refused]
    prepared = []
    for row in accepted:
        data = contract.stream_json(row.record)
        if len(data) + len(row.record["InvoiceNo"]) > MAX_RECORD_BYTES:
            rejected.append({"index": row.index, "reason": "row is larger than Kinesis' 1 MB record limit"})
            continue
        prepared.append(Prepared(row.index, row.record, data))
    rejected.sort(key=lambda r: r["index"])
    return prepared, rejected


# --------------------------------------------------------------------------------------------------
# Kinesis


def chunks(records: list[Prepared]) -> Iterator[list[Prepared]]:
    """Consecutive slices of at most 500 records and 5 MB (data + partition keys) each."""
    chunk: list[Prepared] = []
    size = 0
    for record in records:
        record_size = len(record.data) + len(record.record["InvoiceNo"].encode())
        if chunk and (len(chunk) >= MAX_RECORDS_PER_CALL or size + record_size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += record_size
    if chunk:
        yield chunk


def put_chunk(stream: str, chunk: list[Prepared], sleep: Any = time.sleep) -> list[Prepared]:
    """PutRecords, then again for the failed entries only, with exponential backoff. Returns those that
    still failed after MAX_ATTEMPTS."""
    pending = chunk
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            sleep(BASE_BACKOFF_S * 2 ** (attempt - 1))
        try:
            answer = kinesis.put_records(StreamName=stream, Records=[r.entry for r in pending])
        except kinesis.exceptions.ProvisionedThroughputExceededException:
            continue
        except kinesis.exceptions.LimitExceededException:
            continue
        if not answer.get("FailedRecordCount"):
            return []
        pending = [r for r, result in zip(pending, answer["Records"]) if result.get("ErrorCode")]
        logger.warning("PutRecords: %d of %d failed (attempt %d)", len(pending), len(chunk), attempt + 1)
    return pending


def ingest(rows: list[Any], stream: str) -> dict[str, Any]:
    prepared, rejected = prepare(rows)
    failed: list[Prepared] = []
    for chunk in chunks(prepared):
        failed += put_chunk(stream, chunk)
    result: dict[str, Any] = {"accepted": len(prepared) - len(failed), "rejected": rejected, "failed": len(failed)}
    if failed:
        result["failed_indexes"] = [r.index for r in failed]
    logger.info("ingest: %d rows, %d accepted, %d rejected, %d failed",
                len(rows), result["accepted"], len(rejected), len(failed))
    return result
