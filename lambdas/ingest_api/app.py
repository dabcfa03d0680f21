"""API Gateway (REST) -> Kinesis: validate posted transaction rows and put them on the stream.

Works behind both integration styles the workbook uses:
- Lambda proxy (AWS_PROXY): the event carries the raw `body` (maybe base64) and the answer must be
  {statusCode, headers, body};
- the course's non-proxy integration with the "Method Request passthrough" mapping template: the event
  carries the parsed body as `body-json`, the answer is the plain result and errors are raised (below).

The body is one row object, a list of row objects, or pandas `DataFrame.to_json()` output (the default
column orientation, or orient="records" / "index" / "split"). Only malformed rows are rejected (missing
fields, unparseable numbers or dates, an invoice number that is not 6 digits with an optional C/A):
cancellations, adjustments, guest sales (no CustomerID), non-product codes and duplicates are real
business events and go on the stream; classifying them is the consumers' job.

Both routes decide with the same function (`canonical`) on the same Python values: the proxy body is
parsed like the Lambda runtime parses the non-proxy event (`json.loads`, floats as floats), so a row
is accepted or refused with the same reason whichever route it took. Limits (a row breaking one is
rejected with the reason; the request as a whole only when it has no rows or is not JSON):
- texts at most MAX_TEXT_CHARS (1,000) characters (the file's longest Description is 35), valid
  Unicode (no U+FFFD left by a replaced non-UTF-8 byte);
- Quantity an integer with |Quantity| <= 10^7; UnitPrice finite, |UnitPrice| <= 10^7 (the file's
  adjustments are negative), at most 38
  significant digits and no smaller than 1e-130 when not 0 (DynamoDB's number range);
- a body that is not UTF-8 JSON, nested deeper than the parser takes, or with more than MAX_ROWS
  (10,000) rows is answered 400.
Errors on the non-proxy route are raised, with an errorMessage starting `[BadRequest]` (or
`[InternalError]`), so the method's integration responses map them to 400 (500) by selectionPattern.

Every record put on the stream is the row in a canonical shape (texts as text, Quantity an integer,
UnitPrice a JSON number, InvoiceDate in the dataset's own "12/1/2010 8:26" format, CustomerID a
string or null) plus a stable `record_id`, partitioned by InvoiceNo so an invoice's lines stay in order
in one shard.

`record_id`: the posted one when present (the workbook posts the ids `helpers.dataset` computed),
otherwise derived like `helpers.dataset` does it: the first 16 hex chars of sha1 over the 8 fields as
text joined by U+001F, + "#" + the 1-based count of that exact row so far *in this request*. For rows
posted as the file's text (or as pandas values whose text is the same) this is exactly the dataset's
id; it never depends on the request's timing, so a client that re-posts the same rows gets the same
ids and the consumers overwrite instead of duplicating. (The price of that: two identical rows posted
in two different requests share an id; post a file's duplicates in one request, or send record_id.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable, Iterator

import boto3
from botocore.config import Config

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

# Records are built here from validated rows (Data bytes under 1 MB, PartitionKey an InvoiceNo), and
# Kinesis validates every request anyway: botocore's client-side validation of each of 500 entries was
# a tenth of this function's CPU time.
kinesis = boto3.client("kinesis", config=Config(parameter_validation=False))

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
REQUIRED = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "Country")
DATE_FORMAT = "%m/%d/%Y %H:%M"
INVOICE_RE = re.compile(r"[CA]?\d{6}")
INT_RE = re.compile(r"[+-]?\d{1,18}")
CUSTOMER_RE = re.compile(r"\d+")
MAX_TEXT_CHARS = 1000
MAX_ROWS = 10_000  # the answer names each rejected row: 10,000 reasons stay well under Lambda's 6 MB reply
MAX_RECORD_ID_CHARS = 128
MAX_QUANTITY = 10**7
MAX_UNIT_PRICE = Decimal(10**7)
MAX_SIGNIFICANT_DIGITS = 38  # DynamoDB's number precision
MIN_MAGNITUDE = Decimal("1e-130")  # DynamoDB's smallest positive number

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_ATTEMPTS = int(os.environ.get("PUT_MAX_ATTEMPTS", "5"))
BASE_BACKOFF_S = float(os.environ.get("PUT_BACKOFF_SECONDS", "0.1"))
JSON_HEADERS = {"Content-Type": "application/json"}


class BadRequest(Exception):
    """The request as a whole cannot be used (answered 400)."""


class BadRow(ValueError):
    """One row is malformed (reported in `rejected`, the others still go on the stream)."""


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
        rows = _columns_to_rows(document) if set(document) & set(COLUMNS) else list(document.values())
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
# Validation and the canonical record


def canonical(row: Any) -> dict[str, Any]:
    """The row as it goes on the stream, or BadRow saying what is wrong with it."""
    if not isinstance(row, dict):
        raise BadRow(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [name for name in REQUIRED if _blank(row.get(name))]
    if missing:
        raise BadRow(f"missing {', '.join(missing)}")
    invoice = _text(row["InvoiceNo"], "InvoiceNo")
    if not INVOICE_RE.fullmatch(invoice):
        raise BadRow(f"InvoiceNo '{_short(invoice)}' is not 6 digits with an optional C or A prefix")
    return {
        "InvoiceNo": invoice,
        "StockCode": _text(row["StockCode"], "StockCode"),
        "Description": None if _blank(row.get("Description")) else _text(row["Description"], "Description"),
        "Quantity": _integer(row["Quantity"]),
        "InvoiceDate": _date(row["InvoiceDate"]),
        "UnitPrice": _number(row["UnitPrice"]),
        "CustomerID": _customer(row.get("CustomerID")),
        "Country": _text(row["Country"], "Country"),
    }


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text(value: Any, name: str) -> str:
    if isinstance(value, (dict, list, bool)):
        raise BadRow(f"{name} must be text, got {'an object' if isinstance(value, dict) else type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRow(f"{name} must be text, got {value}")
    text = value if isinstance(value, str) else number_text(value)
    if len(text) > MAX_TEXT_CHARS:
        raise BadRow(f"{name} is {len(text):,} characters, more than {MAX_TEXT_CHARS:,}")
    if "\ufffd" in text:
        raise BadRow(f"{name} contains U+FFFD (a byte that was not UTF-8 was replaced)")
    return text


def _integer(value: Any) -> int:
    number = _integral(value)
    if abs(number) > MAX_QUANTITY:
        raise BadRow(f"Quantity {_short(value)} is outside -{MAX_QUANTITY:,}..{MAX_QUANTITY:,}")
    return number


def _integral(value: Any) -> int:
    if isinstance(value, bool):
        raise BadRow(f"Quantity '{value}' is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, (Decimal, float)):
        try:
            if value == int(value):
                return int(value)
        except (ValueError, OverflowError):  # NaN, Infinity
            pass
    if isinstance(value, str) and INT_RE.fullmatch(value.strip()):
        return int(value)
    raise BadRow(f"Quantity '{_short(value)}' is not an integer")


def _short(value: Any) -> str:
    """A value for a reason: long texts and huge integers cut, never the whole of a 1 MB field."""
    text = value if isinstance(value, str) else str(value) if not isinstance(value, int) or abs(value) < 10**40 \
        else f"{str(value)[:12]}...({len(str(abs(value)))} digits)"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise BadRow(f"UnitPrice '{value}' is not a number")
    if isinstance(value, (dict, list)) or (isinstance(value, str) and len(value) > MAX_TEXT_CHARS):
        raise BadRow(f"UnitPrice '{_short(value)}' is not a number")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BadRow(f"UnitPrice '{_short(value)}' is not a number") from None
    if not number.is_finite():
        raise BadRow(f"UnitPrice '{_short(value)}' is not a number")
    if abs(number) > MAX_UNIT_PRICE:  # negative prices are the file's bad-debt adjustments
        raise BadRow(f"UnitPrice {_short(value)} is outside -{MAX_UNIT_PRICE:,}..{MAX_UNIT_PRICE:,}")
    if number and (_significant_digits(number) > MAX_SIGNIFICANT_DIGITS or abs(number) < MIN_MAGNITUDE):
        raise BadRow(f"UnitPrice {_short(value)} has more than {MAX_SIGNIFICANT_DIGITS} significant digits "
                     "or is below 1e-130 (DynamoDB's number range)")
    return number


def _significant_digits(number: Decimal) -> int:
    """Digits without leading or trailing zeros (normalize() would round to the context's 28)."""
    return len("".join(map(str, number.as_tuple().digits)).strip("0"))


def _date(value: Any) -> str:
    """The dataset's text ("12/1/2010 8:26"), from that text, an ISO string or pandas' epoch milliseconds."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            raise BadRow(f"InvoiceDate '{_short(value)}' is not a date like 12/1/2010 8:26") from None
        return _dataset_text(moment)
    if isinstance(value, str) and len(value) <= 64:
        return _text_date(value.strip())
    raise BadRow(f"InvoiceDate '{_short(value)}' is not a date like 12/1/2010 8:26")


@lru_cache(maxsize=65536)
def _text_date(text: str) -> str:
    """strptime is slow and an invoice's lines share their date: parsed once per distinct text."""
    try:
        moment = datetime.strptime(text, DATE_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            raise BadRow(f"InvoiceDate '{text}' is not a date like 12/1/2010 8:26") from None
    return _dataset_text(moment)


def _dataset_text(moment: datetime) -> str:
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour}:{moment.minute:02d}"


def _customer(value: Any) -> str | None:
    if _blank(value):
        return None
    if isinstance(value, (float, Decimal)) and value != value:  # NaN
        return None
    text = _text(value, "CustomerID").strip()
    if text.endswith(".0"):  # pandas read the column as float: 17850.0
        text = text[:-2]
    if not CUSTOMER_RE.fullmatch(text) or len(text) > 20:
        raise BadRow(f"CustomerID '{_short(value)}' is not digits (at most 20)")
    return text


def number_text(value: Any) -> str:
    """A number as the file writes it: 2.55, 1 (not 1.0), -11062.06."""
    if isinstance(value, int):
        return str(value)
    number = Decimal(str(value)).normalize()
    return format(number, "f")


def raw_fields(row: Any, record: dict[str, Any]) -> list[str]:
    """The 8 fields as text, for the id: the posted text when it was text (as the file has it), numbers
    as the file writes them, the date and customer in their canonical text."""
    fields = []
    for name in COLUMNS:
        posted = row.get(name)
        if name == "InvoiceDate":  # the file's own format, whichever way it was posted
            fields.append(record["InvoiceDate"])
        elif name == "CustomerID":  # "17850", also when posted as 17850.0
            fields.append(record["CustomerID"] or "")
        elif isinstance(posted, str):
            fields.append(posted)
        elif posted is None or (isinstance(posted, (float, Decimal)) and posted != posted):
            fields.append("")
        else:
            fields.append(number_text(posted))
    return fields


def derive_record_ids(fields: Iterable[list[str]]) -> list[str]:
    """sha1(fields joined by U+001F)[:16] + "#" + the count of that exact row so far (helpers.dataset's rule)."""
    seen: dict[str, int] = {}
    ids = []
    for row in fields:
        digest = hashlib.sha1("\x1f".join(row).encode("utf-8")).hexdigest()[:16]
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(f"{digest}#{seen[digest]}")
    return ids


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
    good: list[tuple[int, Any, dict[str, Any]]] = []
    rejected: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        try:
            record = canonical(row)
            posted = row.get("record_id")
            if isinstance(posted, str) and len(posted) > MAX_RECORD_ID_CHARS:
                raise BadRow(f"record_id is {len(posted):,} characters, more than {MAX_RECORD_ID_CHARS}")
            good.append((index, row, record))
        except BadRow as error:
            rejected.append({"index": index, "reason": str(error)})
    derived = derive_record_ids(raw_fields(row, record) for _, row, record in good)
    prepared = []
    for (index, row, record), record_id in zip(good, derived):
        posted = row.get("record_id")
        record["record_id"] = posted if isinstance(posted, str) and posted.strip() else record_id
        data = json.dumps(record, default=_json_default, ensure_ascii=False).encode("utf-8")
        if len(data) + len(record["InvoiceNo"]) > MAX_RECORD_BYTES:
            rejected.append({"index": index, "reason": "row is larger than Kinesis' 1 MB record limit"})
            continue
        prepared.append(Prepared(index, record, data))
    rejected.sort(key=lambda r: r["index"])
    return prepared, rejected


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


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
