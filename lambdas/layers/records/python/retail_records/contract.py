"""The record contract: what a sales row is, which rows are refused and why, and a row's stable id.

One module for every path that touches a row: the ingest API (both routes), the stream consumers, the
batch import and, through `helpers.dataset`, the notebooks and the client. The Lambda functions get it
from the `retail_records` layer that the deploy step publishes and attaches (a layer is a zip whose
`python/` folder Lambda puts on sys.path, so the functions stay deployable to AWS as they are); the
workbook imports the same files, installed with the project.

A row is the file's 8 columns. It is *refused* (with a reason naming the column and the value) only
when it is malformed: a field missing, a number or date that does not parse, an invoice number that is
not 6 digits with an optional C or A prefix, a value out of range (below). Cancellations, adjustments,
guest sales, non-product codes and duplicates are real business events: classifying them is
`helpers.dataset`'s job, not a refusal.

Limits: texts at most MAX_TEXT_CHARS characters (the file's longest Description is 35) and valid
Unicode (no U+FFFD left by a replaced byte); |Quantity| <= 10^7 and an integer; UnitPrice finite,
|UnitPrice| <= 10^7, at most 38 significant digits and not below 1e-130 unless 0 (DynamoDB's numbers);
CustomerID digits (at most 20); a posted record_id at most MAX_RECORD_ID_CHARS characters.

`record_id`: the first 16 hex chars of sha1 over the 8 fields as text joined by U+001F, + "#" + the
1-based count of that exact row so far (in the file, the request or the batch file: wherever the rows
were counted). The fields are the text as the file has it; numbers posted as numbers are written as
the file writes them (2.55, 1), the date and CustomerID in their canonical text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
REQUIRED = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "Country")
DATE_FORMAT = "%m/%d/%Y %H:%M"  # the file's "12/1/2010 8:26"
# [0-9], not \d: Python's \d also takes other scripts' digits ("٥٣٦٣٦٥"); the patterns mean the same in
# Python, pandas and an OpenAPI document (ECMA-262), where \d is ASCII.
INVOICE_PATTERN = r"[CA]?[0-9]{6}"  # C: cancellation, A: bad-debt adjustment
PRODUCT_CODE_PATTERN = r"[0-9]{5}[A-Za-z]*"  # anything else is postage, a fee, a manual line...
INTEGER_PATTERN = r"[+-]?[0-9]{1,18}"  # at most 18 digits: always fits int64
NUMBER_PATTERN = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
CUSTOMER_PATTERN = r"[0-9]+"
INVOICE_RE, INTEGER_RE, CUSTOMER_RE = (re.compile(p) for p in (INVOICE_PATTERN, INTEGER_PATTERN, CUSTOMER_PATTERN))

MAX_TEXT_CHARS = 1000
MAX_CUSTOMER_DIGITS = 20
MAX_RECORD_ID_CHARS = 128
MAX_QUANTITY = 10**7
MAX_UNIT_PRICE = Decimal(10**7)
MAX_SIGNIFICANT_DIGITS = 38  # DynamoDB's number precision
MIN_MAGNITUDE = Decimal("1e-130")  # DynamoDB's smallest positive number

# The rules' words, after "<Column> '<value>'", in every reason of every path.
NOT_INVOICE = "is not 6 digits with an optional C or A prefix"
NOT_INTEGER = "is not an integer"
NOT_NUMBER = "is not a number"
NOT_DATE = "is not a date like 12/1/2010 8:26"
NOT_CUSTOMER = f"is not digits (at most {MAX_CUSTOMER_DIGITS})"


class BadRow(ValueError):
    """One row is malformed: refused (or quarantined) with this reason, the other rows still go on."""


def reason(column: str, value: Any, rule: str) -> str:
    """"<Column> '<value>' <rule>", the value shortened (never the whole of a 1 MB field)."""
    return f"{column} '{short(value)}' {rule}"


def short(value: Any) -> str:
    """A value for a reason: long texts and huge integers cut."""
    text = value if isinstance(value, str) else str(value) if not isinstance(value, int) or abs(value) < 10**40 \
        else f"{str(value)[:12]}...({len(str(abs(value)))} digits)"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


# --------------------------------------------------------------------------------------------------
# One row -> its canonical record


def canonical(row: Any) -> dict[str, Any]:
    """The row as every store keeps it (texts as text, Quantity an int, UnitPrice a Decimal, InvoiceDate
    in the file's own format, CustomerID a digit string or None), or BadRow saying what is wrong."""
    if type(row) is dict:
        record = _canonical_text(row)
        if record is not None:
            return record
    return _canonical_rules(row)


def _canonical_rules(row: Any) -> dict[str, Any]:
    """Every rule in turn, the first broken one named."""
    if not isinstance(row, dict):
        raise BadRow(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [name for name in REQUIRED if _blank(row.get(name))]
    if missing:
        raise BadRow(f"missing {', '.join(missing)}")
    invoice = _text(row["InvoiceNo"], "InvoiceNo")
    if not INVOICE_RE.fullmatch(invoice):
        raise BadRow(reason("InvoiceNo", invoice, NOT_INVOICE))
    return {
        "InvoiceNo": invoice,
        "StockCode": _text(row["StockCode"], "StockCode"),
        "Description": None if _blank(row.get("Description")) else _text(row["Description"], "Description"),
        "Quantity": quantity(row["Quantity"]),
        "InvoiceDate": invoice_date(row["InvoiceDate"]),
        "UnitPrice": unit_price(row["UnitPrice"]),
        "CustomerID": customer_id(row.get("CustomerID")),
        "Country": _text(row["Country"], "Country"),
    }


def _canonical_text(row: dict[str, Any]) -> dict[str, Any] | None:
    """The common case in one pass, the same answer as the rules below: every field text as the file has
    it, nothing blank, long, replaced or out of range. None when in any doubt: the full rules decide, and
    say why. (A CSV row or a posted file row costs half as much this way.)"""
    get = row.get
    invoice, code, description, quantity, date, price, customer, country = (
        get("InvoiceNo"), get("StockCode"), get("Description"), get("Quantity"), get("InvoiceDate"),
        get("UnitPrice"), get("CustomerID"), get("Country"))
    if not (type(invoice) is str and type(code) is str and type(quantity) is str and type(date) is str
            and type(price) is str and type(country) is str and (description is None or type(description) is str)
            and (customer is None or type(customer) is str)):
        return None
    texts = (code, country, description or "")
    if (not code.strip() or not country.strip() or max(map(len, texts)) > MAX_TEXT_CHARS
            or any("\ufffd" in text for text in texts) or not INVOICE_RE.fullmatch(invoice)):
        return None
    number = quantity.strip()
    if not INTEGER_RE.fullmatch(number) or abs(int(number)) > MAX_QUANTITY:
        return None
    try:
        return {
            "InvoiceNo": invoice, "StockCode": code,
            "Description": description if description and description.strip() else None,
            "Quantity": int(number), "InvoiceDate": invoice_date(date), "UnitPrice": unit_price(price),
            "CustomerID": customer_id(customer), "Country": country,
        }
    except BadRow:
        return None


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


def quantity(value: Any) -> int:
    """An integer within +-MAX_QUANTITY (a text of digits, an int, or a float/Decimal with no fraction)."""
    number = _integral(value)
    if abs(number) > MAX_QUANTITY:
        raise BadRow(f"Quantity {short(value)} is outside -{MAX_QUANTITY:,}..{MAX_QUANTITY:,}")
    return number


def _integral(value: Any) -> int:
    if isinstance(value, bool):
        raise BadRow(reason("Quantity", value, NOT_INTEGER))
    if isinstance(value, int):
        return value
    if isinstance(value, (Decimal, float)):
        try:
            if value == int(value):
                return int(value)
        except (ValueError, OverflowError):  # NaN, Infinity
            pass
    if isinstance(value, str) and INTEGER_RE.fullmatch(value.strip()):
        return int(value)
    raise BadRow(reason("Quantity", value, NOT_INTEGER))


def unit_price(value: Any) -> Decimal:
    """An exact, finite Decimal within +-MAX_UNIT_PRICE that DynamoDB can hold (negative prices are the
    file's bad-debt adjustments). A text is read once (a file repeats its prices: a few thousand in
    541,909 rows); a Decimal is immutable, so the same one may serve every row."""
    if type(value) is str:
        return _text_price(value)
    return _unit_price(value)


@lru_cache(maxsize=65536)
def _text_price(value: str) -> Decimal:
    return _unit_price(value)


def _unit_price(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, (dict, list)) \
            or (isinstance(value, str) and (len(value) > MAX_TEXT_CHARS or not value.isascii())):
        raise BadRow(reason("UnitPrice", value, NOT_NUMBER))
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BadRow(reason("UnitPrice", value, NOT_NUMBER)) from None
    if not number.is_finite():
        raise BadRow(reason("UnitPrice", value, NOT_NUMBER))
    if abs(number) > MAX_UNIT_PRICE:
        raise BadRow(f"UnitPrice {short(value)} is outside -{MAX_UNIT_PRICE:,}..{MAX_UNIT_PRICE:,}")
    if number and (_significant_digits(number) > MAX_SIGNIFICANT_DIGITS or abs(number) < MIN_MAGNITUDE):
        raise BadRow(f"UnitPrice {short(value)} has more than {MAX_SIGNIFICANT_DIGITS} significant digits "
                     "or is below 1e-130 (DynamoDB's number range)")
    return number


def _significant_digits(number: Decimal) -> int:
    """Digits without leading or trailing zeros (normalize() would round to the context's 28)."""
    return len("".join(map(str, number.as_tuple().digits)).strip("0"))


def invoice_date(value: Any) -> str:
    """The file's text ("12/1/2010 8:26"), from that text, an ISO string or pandas' epoch milliseconds."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            raise BadRow(reason("InvoiceDate", value, NOT_DATE)) from None
        return date_text(moment)
    if isinstance(value, str) and len(value) <= 64:
        return _text_date(value.strip())
    raise BadRow(reason("InvoiceDate", value, NOT_DATE))


@lru_cache(maxsize=65536)
def _text_date(text: str) -> str:
    if not text.isascii():  # strptime would read other scripts' digits
        raise BadRow(reason("InvoiceDate", text, NOT_DATE))
    try:
        moment = parse_date(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            raise BadRow(reason("InvoiceDate", text, NOT_DATE)) from None
    return date_text(moment)


@lru_cache(maxsize=65536)
def parse_date(text: str) -> datetime:
    """The file's date text as a datetime, ValueError otherwise (strptime is slow and an invoice's lines
    share their date: parsed once per distinct text)."""
    return datetime.strptime(text.strip(), DATE_FORMAT)


def date_text(moment: datetime) -> str:
    """A datetime in the file's own format, "12/1/2010 8:26"."""
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour}:{moment.minute:02d}"


def customer_id(value: Any) -> str | None:
    """"17850" (also from 17850 or pandas' 17850.0), None for a guest sale (a text read once: a file
    repeats its customers)."""
    if type(value) is str:
        return _text_customer(value)
    return _customer_id(value)


@lru_cache(maxsize=65536)
def _text_customer(value: str) -> str | None:
    return _customer_id(value)


def _customer_id(value: Any) -> str | None:
    if _blank(value) or (isinstance(value, (float, Decimal)) and value != value):  # NaN: pandas' missing
        return None
    text = _text(value, "CustomerID").strip()
    if text.endswith(".0"):
        text = text[:-2]
    if not CUSTOMER_RE.fullmatch(text) or len(text) > MAX_CUSTOMER_DIGITS:
        raise BadRow(reason("CustomerID", value, NOT_CUSTOMER))
    return text


def invoice_type(invoice: str) -> str:
    """sale, cancellation (C...) or adjustment (A...)."""
    return {"C": "cancellation", "A": "adjustment"}.get(invoice[0], "sale")


def number_text(value: Any) -> str:
    """A number as the file writes it: 2.55, 1 (not 1.0), -11062.06."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(str(value)).normalize(), "f")


# --------------------------------------------------------------------------------------------------
# record_id


def row_digest(fields: Iterable[str]) -> str:
    """sha1 of the 8 fields' text joined by U+001F, first 16 hex chars: the id without its count."""
    return hashlib.sha1("\x1f".join(fields).encode("utf-8")).hexdigest()[:16]


def raw_fields(row: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The 8 fields as text, for the id: the posted text when it was text (as the file has it), numbers
    as the file writes them, the date and customer in their canonical text."""
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


def derive_record_ids(fields: Iterable[Iterable[str]]) -> list[str]:
    """row_digest + "#" + the 1-based count of that exact row so far."""
    seen: dict[str, int] = {}
    ids = []
    for row in fields:
        digest = row_digest(row)
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(f"{digest}#{seen[digest]}")
    return ids


@dataclass
class Accepted:
    index: int  # the row's position in what was posted or read (0-based)
    record: dict[str, Any]  # canonical values + record_id


@dataclass
class Refused:
    index: int
    reason: str


def prepare(rows: list[Any]) -> tuple[list[Accepted], list[Refused]]:
    """The valid rows' canonical records with their record_id (a posted one wins), and the refused rows
    with their reason, both in row order."""
    good: list[tuple[int, Any, dict[str, Any]]] = []
    refused: list[Refused] = []
    for index, row in enumerate(rows):
        try:
            record = canonical(row)
            posted = row.get("record_id")
            if isinstance(posted, str) and len(posted) > MAX_RECORD_ID_CHARS:
                raise BadRow(f"record_id is {len(posted):,} characters, more than {MAX_RECORD_ID_CHARS}")
            good.append((index, row, record))
        except BadRow as error:
            refused.append(Refused(index, str(error)))
    derived = derive_record_ids(raw_fields(row, record) for _, row, record in good)
    accepted = []
    for (index, row, record), record_id in zip(good, derived):
        posted = row.get("record_id")
        record["record_id"] = posted if isinstance(posted, str) and posted.strip() else record_id
        accepted.append(Accepted(index, record))
    return accepted, refused


# --------------------------------------------------------------------------------------------------
# On the stream


def stream_json(record: dict[str, Any]) -> bytes:
    """A canonical record as the stream carries it (UTF-8 JSON; UnitPrice a JSON number)."""
    return json.dumps(record, default=_json_number, ensure_ascii=False).encode("utf-8")


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def stream_number(value: Decimal) -> Decimal:
    """UnitPrice as a consumer of the stream reads it back (stream_json wrote an int or a float)."""
    number = _json_number(value)
    return Decimal(number) if isinstance(number, int) else Decimal(repr(number))
