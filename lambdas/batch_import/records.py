"""The record rules of the batch path: which CSV rows are accepted, their canonical values and their
stable `record_id`, with the reason of every refusal.

A copy of `lambdas/ingest_api/app.py`'s rules (validation, canonical record, record_id derivation), so
the batch path and the stream path accept the same rows, refuse them for the same reasons and give
them the same ids; tests/unit/test_batch_import.py proves it on data/sample.csv. Moving both to one
shared module is the job of another change; until then, a change here must be made there too.

`record_id`: sha1 of the 8 fields as text joined by U+001F, first 16 hex chars, + "#" + the 1-based count
of that exact row so far in the file (ingest_api counts per request, helpers.dataset per file: a file
cut by day or at invoice boundaries keeps every exact duplicate in one file, so the ids are the
dataset's).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
REQUIRED = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "Country")
DATE_FORMAT = "%m/%d/%Y %H:%M"
INVOICE_RE = re.compile(r"[CA]?\d{6}")
INT_RE = re.compile(r"[+-]?\d{1,18}")
CUSTOMER_RE = re.compile(r"\d+")
MAX_TEXT_CHARS = 1000
MAX_QUANTITY = 10**7
MAX_UNIT_PRICE = Decimal(10**7)
MAX_SIGNIFICANT_DIGITS = 38  # DynamoDB's number precision
MIN_MAGNITUDE = Decimal("1e-130")  # DynamoDB's smallest positive number


class BadRow(ValueError):
    """One row is malformed (quarantined with this reason, the others are still stored)."""


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
    """The 8 fields as text, for the id (ingest_api's rule: the text as the file has it, the date and
    customer in their canonical text)."""
    fields = []
    for name in COLUMNS:
        posted = row.get(name)
        if name == "InvoiceDate":
            fields.append(record["InvoiceDate"])
        elif name == "CustomerID":
            fields.append(record["CustomerID"] or "")
        elif isinstance(posted, str):
            fields.append(posted)
        elif posted is None or (isinstance(posted, (float, Decimal)) and posted != posted):
            fields.append("")
        else:
            fields.append(number_text(posted))
    return fields


def derive_record_ids(fields: Iterable[list[str]]) -> list[str]:
    """sha1(fields joined by U+001F)[:16] + "#" + the count of that exact row so far."""
    seen: dict[str, int] = {}
    ids = []
    for row in fields:
        digest = hashlib.sha1("\x1f".join(row).encode("utf-8")).hexdigest()[:16]
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(f"{digest}#{seen[digest]}")
    return ids


def stream_number(value: Decimal) -> Decimal:
    """UnitPrice as the stream path stores it: ingest_api writes a Decimal to JSON as an int when it is
    integral without a point, else as a float, and the consumer parses that JSON text back."""
    if value == value.to_integral_value() and "." not in str(value):
        return Decimal(int(value))
    return Decimal(repr(float(value)))


@dataclass
class Accepted:
    index: int  # position of the row in the file (0-based, header not counted)
    record: dict[str, Any]  # canonical values + record_id


@dataclass
class Refused:
    index: int
    reason: str


def prepare(rows: list[Any]) -> tuple[list[Accepted], list[Refused]]:
    """Valid rows with their record_id (the posted one when present), and the refused ones with a reason."""
    good: list[tuple[int, Any, dict[str, Any]]] = []
    refused: list[Refused] = []
    for index, row in enumerate(rows):
        try:
            good.append((index, row, canonical(row)))
        except BadRow as error:
            refused.append(Refused(index, str(error)))
    derived = derive_record_ids(raw_fields(row, record) for _, row, record in good)
    accepted = []
    for (index, row, record), record_id in zip(good, derived):
        posted = row.get("record_id")
        record["record_id"] = posted if isinstance(posted, str) and posted.strip() else record_id
        accepted.append(Accepted(index, record))
    return accepted, refused
