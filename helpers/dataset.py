"""The retail transactions file (Kaggle carrie1/ecommerce-data) and its quality rules.

One path through the data, used by every notebook and pipeline so they agree on the numbers:
`read_raw` (the file exactly as published, all text) -> `parse` (typed, never drops a row) ->
`classify` (flags + one `quality` class + a human `reason`) -> `split` (stored vs quarantined).
`load` does the first three; `profile` and `revenue_by_month` reproduce the published figures.

The published file is ISO-8859-1; a re-export saved as UTF-8 (with or without a BOM) loads to the
same rows (`detect_encoding`). A field longer than MAX_FIELD_CHARS (1,000 characters; the file's
longest is 35) makes its row bad_value (quarantined), so every row read is still accounted for.

The default file is the small committed sample `data/sample.csv`; set `RETAIL_DATA` to use the
full file (see `REAL_FILE_HINT`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import retail_records as contract

from helpers.paths import DATA_DIR, PROJECT_ROOT

# The record contract (lambdas/layers/records, the Lambda functions' layer): columns, formats, patterns,
# limits and the words of every reason are the same here as in the ingest API and the consumers.
COLUMNS: tuple[str, ...] = contract.COLUMNS
DATE_FORMAT = contract.DATE_FORMAT
MAX_FIELD_CHARS = contract.MAX_TEXT_CHARS
ENCODING = "ISO-8859-1"
FULL_FILE_SHA256 = "d07aec9960083af2339975a3f9d3b26313b342dcd9f86cce0b919b1cde639a44"
REAL_FILE_HINT = (
    "The full file is Kaggle dataset carrie1/ecommerce-data: "
    "`kaggle datasets download -d carrie1/ecommerce-data`, unzip its data.csv to data/full/data.csv "
    "(git-ignored), then set RETAIL_DATA=data/full/data.csv. See data/README.md."
)

_NOT_LATIN1_TEXT = re.compile(rb"[\x00\x80-\x9f]")  # NUL and C1 controls: no text file holds them
_INVOICE_RE = contract.INVOICE_PATTERN
_PRODUCT_CODE_RE = contract.PRODUCT_CODE_PATTERN
_INT_RE = contract.INTEGER_PATTERN
_NUMBER_RE = contract.NUMBER_PATTERN

TimeLike = str | date | datetime | pd.Timestamp | np.datetime64


class Quality(StrEnum):
    """The one primary class of a row; the declaration order is the precedence (first match wins)."""

    BAD_VALUE = "bad_value"
    EXACT_DUPLICATE = "exact_duplicate"
    MISSING_DESCRIPTION = "missing_description"
    ADJUSTMENT = "adjustment"
    CANCELLATION = "cancellation"
    NON_PRODUCT = "non_product"
    MISSING_CUSTOMER = "missing_customer"
    VALID_SALE = "valid_sale"


DEFAULT_QUARANTINE: frozenset[Quality] = frozenset(
    {Quality.BAD_VALUE, Quality.EXACT_DUPLICATE, Quality.MISSING_DESCRIPTION}
)
FLAGS: tuple[str, ...] = (
    "is_cancellation", "is_adjustment_invoice", "missing_customer", "missing_description",
    "non_product_code", "exact_duplicate", "bad_value",
)


def default_path() -> Path:
    """`RETAIL_DATA` if set, else the committed sample; a relative `RETAIL_DATA` is taken from the
    project root so notebooks (which run in notebooks/) and the CLI agree."""
    value = os.environ.get("RETAIL_DATA")
    if not value:
        return DATA_DIR / "sample.csv"
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks, to tell whether it is the published full file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_encoding(path: Path | str) -> str:
    """"utf-8-sig" for a BOM, "utf-8" for valid UTF-8 with non-ASCII bytes, else ISO-8859-1 (the published
    file). Bytes that are neither (NUL or C1 controls 0x80-0x9F in a file that is not UTF-8: UTF-16,
    Windows-1252...) raise ValueError naming the first offending byte's offset: guessing would garble."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data.isascii():
        return ENCODING if b"\x00" not in data else _not_text(path, data, data.index(b"\x00"))
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    bad = _NOT_LATIN1_TEXT.search(data)
    return ENCODING if bad is None else _not_text(path, data, bad.start())


def _not_text(path: Path | str, data: bytes, offset: int) -> str:
    raise ValueError(f"{path} is neither UTF-8 nor ISO-8859-1 text: byte {data[offset]:#04x} at offset {offset:,} "
                     "(re-save it as UTF-8 or as the published ISO-8859-1 file)")


def read_raw(path: Path | str | None = None, *, nrows: int | None = None) -> pd.DataFrame:
    """The file exactly as published: the 8 columns as text ("" when empty) plus `line`, the 1-based
    data row number (header not counted), so every later question can point back at the file.
    The encoding is detected (`detect_encoding`): the published ISO-8859-1 file and a UTF-8 re-export
    give the same rows."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise FileNotFoundError(f"Retail data file not found: {path}. {REAL_FILE_HINT}")
    try:
        raw = pd.read_csv(
            path, encoding=detect_encoding(path), dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=False, index_col=False, nrows=nrows,
        )
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; expected the header {','.join(COLUMNS)}") from None
    if tuple(raw.columns) != COLUMNS:
        raise ValueError(
            f"{path} does not have the published header.\n  expected: {','.join(COLUMNS)}\n"
            f"  found:    {','.join(map(str, raw.columns))}\n(is it the Kaggle data.csv?)"
        )
    raw = raw.fillna("")  # a short row leaves its missing fields NaN; "" keeps it text (and bad_value)
    raw["line"] = np.arange(1, len(raw) + 1, dtype="int64")
    return raw


def _record_ids(raw: pd.DataFrame) -> pd.Series:
    """sha1 of the 8 raw fields (UTF-8, joined by \\x1f), 16 hex chars, + "#" + the 1-based count of that
    exact row so far in file order: stable across whole-file, first-N and date-range reads."""
    fields = zip(*(raw[column].tolist() for column in COLUMNS))
    digests = pd.Series([contract.row_digest(row) for row in fields], index=raw.index, dtype=str)
    occurrence = digests.groupby(digests, sort=False).cumcount() + 1
    return digests + "#" + occurrence.astype(str)


def _problem(mask: pd.Series, text: pd.Series, message: str) -> pd.Series:
    """"<Column> '<raw value>' <message>" where `mask`, else <NA> (a value over 60 characters cut)."""
    value = text.astype(str)
    long = value.str.len() > 60
    if long.any():
        value = value.where(~long, value.str.slice(0, 40) + "... (" + value.str.len().astype(str) + " characters)")
    return (text.name + " '" + value + "' " + message).astype("string").where(mask)


def _message(mask: pd.Series, message: str) -> pd.Series:
    """A fixed message where `mask`, else <NA>."""
    return pd.Series(message, index=mask.index, dtype="string").where(mask)


def _join(parts: list[pd.Series]) -> pd.Series:
    """Join aligned per-row messages with "; ", skipping <NA>; <NA> for a row with none."""
    text = pd.Series("", index=parts[0].index, dtype=object)
    for part in parts:
        has = part.notna().to_numpy()
        text[has] = text[has] + part[has].astype(str) + "; "
    return text.str.removesuffix("; ").replace("", None).astype("string")


def parse(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed view of `read_raw`, one row per raw row with the same index. Unparseable values become
    <NA>/NaN/NaT and are explained, with their raw text, in `parse_error` (<NA> when all parsed)."""
    quantity_ok = raw["Quantity"].str.fullmatch(_INT_RE)
    price_ok = raw["UnitPrice"].str.fullmatch(_NUMBER_RE)
    dates = pd.to_datetime(raw["InvoiceDate"], format=DATE_FORMAT, errors="coerce").astype("datetime64[ns]")

    out = pd.DataFrame(index=raw.index)
    out["InvoiceNo"] = raw["InvoiceNo"]
    out["StockCode"] = raw["StockCode"]
    out["Description"] = raw["Description"].astype("string").replace("", pd.NA)
    out["Quantity"] = raw["Quantity"].where(quantity_ok, "0").astype("int64").astype("Int64").where(quantity_ok)
    out["InvoiceDate"] = dates
    out["UnitPrice"] = pd.to_numeric(raw["UnitPrice"].where(price_ok), errors="coerce").astype("float64")
    out["CustomerID"] = raw["CustomerID"].astype("string").replace("", pd.NA)
    out["Country"] = raw["Country"]
    out["line"] = raw["line"]
    out["record_id"] = _record_ids(raw)
    failed = ~quantity_ok | ~price_ok | dates.isna()
    if failed.any():
        bad = raw[failed]
        out["parse_error"] = _join([
            _problem(~quantity_ok[failed], bad["Quantity"], contract.NOT_INTEGER),
            _problem(~price_ok[failed], bad["UnitPrice"], contract.NOT_NUMBER),
            _problem(dates[failed].isna(), bad["InvoiceDate"], f"{contract.NOT_DATE} ({DATE_FORMAT})"),
        ]).reindex(raw.index)
    else:
        out["parse_error"] = pd.Series(pd.NA, index=raw.index, dtype="string")
    return out


def _bad_value_reasons(df: pd.DataFrame, checks: dict[str, pd.Series]) -> pd.Series:
    """The "; "-joined problems of the bad_value rows, each naming the offending value."""
    bad = df["bad_value"]
    rows = df[bad]
    return _join([
        rows["parse_error"],
        _problem(checks["invoice"][bad], rows["InvoiceNo"], contract.NOT_INVOICE),
        _message(checks["stock"][bad], "StockCode is empty"),
        _problem(checks["zero_quantity"][bad], rows["Quantity"], "is zero"),
        _problem(checks["customer"][bad], rows["CustomerID"], contract.NOT_CUSTOMER),
        _message(checks["country"][bad], "Country is empty"),
        _problem(checks["negative_price"][bad], rows["UnitPrice"], "is negative outside an A adjustment invoice"),
        _problem(checks["positive_cancel"][bad], rows["Quantity"], "is positive on a C cancellation"),
        *[_message(checks["oversize_" + column][bad], f"{column} is longer than {MAX_FIELD_CHARS:,} characters")
          for column in COLUMNS],
    ])


def _oversize(df: pd.DataFrame, column: str) -> pd.Series:
    """Fields over MAX_FIELD_CHARS (their text, as the file has it; numbers and dates are short)."""
    values = df[column]
    if values.dtype.kind in "iufMm" or str(values.dtype) in ("Int64", "Float64"):
        return pd.Series(False, index=df.index)
    return values.astype("string").str.len().gt(MAX_FIELD_CHARS).fillna(False).astype(bool)


def classify(df: pd.DataFrame) -> pd.DataFrame:
    """Add independent boolean flags, one `quality` class (Quality values, precedence = declaration
    order) and a `reason` saying why. Needs the columns of `parse`; returns a copy."""
    out = df.copy()
    invoice, code = out["InvoiceNo"], out["StockCode"]
    quantity, price = out["Quantity"], out["UnitPrice"]
    cancellation = invoice.str.startswith("C")
    adjustment_invoice = invoice.str.startswith("A")
    record_id = out["record_id"]

    out["is_cancellation"] = cancellation
    out["is_adjustment_invoice"] = adjustment_invoice
    out["missing_customer"] = out["CustomerID"].isna().to_numpy()
    out["missing_description"] = out["Description"].isna().to_numpy()
    out["non_product_code"] = ~code.str.fullmatch(_PRODUCT_CODE_RE)
    out["exact_duplicate"] = ~record_id.str.endswith("#1")  # 2nd+ copy of the same 8 raw fields, in file order

    checks = {
        "invoice": ~invoice.str.fullmatch(_INVOICE_RE),
        "stock": code.eq(""),
        "zero_quantity": quantity.eq(0).fillna(False).astype(bool),
        "customer": (~out["CustomerID"].str.fullmatch(contract.CUSTOMER_PATTERN)
                     | out["CustomerID"].str.len().gt(contract.MAX_CUSTOMER_DIGITS)).fillna(False).astype(bool),
        "country": out["Country"].eq(""),
        "negative_price": (price < 0) & ~adjustment_invoice,
        "positive_cancel": quantity.gt(0).fillna(False).astype(bool) & cancellation,
        **{"oversize_" + column: _oversize(out, column) for column in COLUMNS},
    }
    bad = out["parse_error"].notna().to_numpy()
    for check in checks.values():
        bad = bad | check.to_numpy()
    out["bad_value"] = bad

    write_off = ~cancellation & quantity.lt(0).fillna(False).astype(bool)
    zero_price = ~cancellation & price.eq(0)
    conditions = {
        Quality.BAD_VALUE: out["bad_value"],
        Quality.EXACT_DUPLICATE: out["exact_duplicate"],
        Quality.MISSING_DESCRIPTION: out["missing_description"],
        Quality.ADJUSTMENT: adjustment_invoice | write_off | zero_price,
        Quality.CANCELLATION: cancellation,
        Quality.NON_PRODUCT: out["non_product_code"],
        Quality.MISSING_CUSTOMER: out["missing_customer"],
    }
    quality = np.select([c.to_numpy(dtype=bool) for c in conditions.values()],
                        [q.value for q in conditions], default=Quality.VALID_SALE.value)
    out["quality"] = pd.Series(quality, index=out.index, dtype=str)

    reason = pd.Series("product sale to a known customer", index=out.index, dtype=object)
    is_ = {q: out["quality"].eq(q).to_numpy() for q in Quality}
    if is_[Quality.BAD_VALUE].any():
        reason[is_[Quality.BAD_VALUE]] = _bad_value_reasons(out, checks).to_numpy()
    dup = is_[Quality.EXACT_DUPLICATE]
    if dup.any():
        digest, copy = record_id[dup].str.split("#", n=1, expand=True).T.to_numpy()
        first_id = pd.Series(digest + "#1", index=record_id[dup].index)
        first_line = out.loc[record_id.isin(set(first_id)), ["record_id", "line"]].set_index("record_id")["line"]
        first = first_id.map(first_line).astype("Int64").astype("string").fillna("?")
        reason[dup] = ("exact copy #" + copy + " of line " + first).to_numpy()
    reason[is_[Quality.MISSING_DESCRIPTION]] = "Description is empty"
    adj = is_[Quality.ADJUSTMENT]
    reason[adj & zero_price.to_numpy()] = "zero-price line: a free item or stock count, not a sale"
    write = adj & write_off.to_numpy()
    at_price = np.where(price[write].eq(0), "at zero price", "at UnitPrice " + price[write].astype(str))
    reason[write] = ("stock write-off: Quantity " + quantity[write].astype(str)
                     + " outside a cancellation, " + at_price).to_numpy()
    reason[adj & adjustment_invoice.to_numpy()] = "bad-debt adjustment (A invoice)"
    reason[is_[Quality.CANCELLATION]] = "cancellation (C invoice)"
    product = is_[Quality.NON_PRODUCT]
    reason[product] = ("non-product line (postage, fee, manual, voucher...): StockCode '" + code[product]
                       + "' (" + out["Description"][product].astype(str) + ")").to_numpy()
    reason[is_[Quality.MISSING_CUSTOMER]] = "sale without a CustomerID (guest sale)"
    out["reason"] = reason.astype(str)
    return out


@dataclass(frozen=True, eq=False)
class Split:
    """Rows to store and rows to quarantine (with `quality` and `reason`); none may go missing."""

    stored: pd.DataFrame
    quarantined: pd.DataFrame
    rows_read: int

    def check(self) -> Split:
        """Raise unless every row read is either stored or quarantined."""
        if len(self.stored) + len(self.quarantined) != self.rows_read:
            raise ValueError(
                f"rows lost or invented: stored {len(self.stored)} + quarantined {len(self.quarantined)}"
                f" != rows read {self.rows_read}"
            )
        return self


def split(df: pd.DataFrame, quarantine: frozenset[Quality] | set[Quality] = DEFAULT_QUARANTINE) -> Split:
    """Separate a classified frame into stored and quarantined rows by `quality`."""
    wanted = {Quality(q).value for q in quarantine}
    held = df["quality"].isin(wanted)
    return Split(stored=df[~held], quarantined=df[held], rows_read=len(df)).check()


def load(path: Path | str | None = None, *, nrows: int | None = None,
         start: TimeLike | None = None, end: TimeLike | None = None) -> pd.DataFrame:
    """read_raw -> parse -> classify, index 0..n-1. `nrows`: the first N data rows; `start` (inclusive)
    and `end` (exclusive) select by InvoiceDate. Rows whose date cannot be parsed are kept (as
    bad_value) unless a date range is asked for, since they cannot be placed in one."""
    parsed = parse(read_raw(path, nrows=nrows))
    if start is not None or end is not None:
        keep = parsed["InvoiceDate"].notna()
        if start is not None:
            keep &= parsed["InvoiceDate"] >= pd.Timestamp(start)
        if end is not None:
            keep &= parsed["InvoiceDate"] < pd.Timestamp(end)
        parsed = parsed[keep]
    return classify(parsed).reset_index(drop=True)


def _revenue(df: pd.DataFrame) -> pd.Series:
    return df["Quantity"].astype("Float64") * df["UnitPrice"]


def profile(df: pd.DataFrame) -> dict[str, int | float | dict[str, int]]:
    """The published figures (data README) from a classified frame; `by_quality` is a dict of counts."""
    if "quality" not in df.columns:
        df = classify(df)
    revenue = _revenue(df)
    cancellation = df["is_cancellation"]
    counts = df["quality"].value_counts()
    return {
        "rows": len(df),
        "missing_customer": int(df["missing_customer"].sum()),
        "missing_description": int(df["missing_description"].sum()),
        "cancellation_rows": int(cancellation.sum()),
        "cancellation_invoices": int(df.loc[cancellation, "InvoiceNo"].nunique()),
        "adjustment_invoice_rows": int(df["is_adjustment_invoice"].sum()),
        "negative_quantity": int(df["Quantity"].lt(0).sum()),
        "non_positive_price": int(df["UnitPrice"].le(0).sum()),
        "exact_duplicates": int(df["exact_duplicate"].sum()),
        "invoices": int(df["InvoiceNo"].nunique()),
        "customers": int(df["CustomerID"].nunique()),
        "stock_codes": int(df["StockCode"].nunique()),
        "countries": int(df["Country"].nunique()),
        "revenue_all": round(float(revenue.sum()), 2),
        "revenue_excl_cancellations": round(float(revenue[~cancellation].sum()), 2),
        "by_quality": {q.value: int(counts.get(q.value, 0)) for q in Quality},
    }


def revenue_by_month(df: pd.DataFrame) -> pd.DataFrame:
    """Σ Quantity×UnitPrice per calendar month (all rows, and without cancellations) and row counts,
    as in the data README's table. Rows without a date are left out."""
    frame = pd.DataFrame({
        "month": df["InvoiceDate"].dt.strftime("%Y-%m"),
        "revenue_all": _revenue(df),
        "revenue_excl_cancellations": _revenue(df).where(~df["is_cancellation"], 0.0),
    }).dropna(subset=["month"])
    table = frame.groupby("month", sort=True).agg(
        revenue_all=("revenue_all", "sum"),
        revenue_excl_cancellations=("revenue_excl_cancellations", "sum"),
        rows=("month", "size"),
    ).reset_index()
    for column in ("revenue_all", "revenue_excl_cancellations"):
        table[column] = table[column].astype("float64").round(2)
    table["rows"] = table["rows"].astype("int64")
    return table


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.dataset", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("profile", help="print the profile of a file (default: RETAIL_DATA or the sample)")
    show.add_argument("path", nargs="?", type=Path, help="CSV file (default: RETAIL_DATA or data/sample.csv)")
    args = parser.parse_args(argv)

    path = args.path if args.path is not None else default_path()
    try:
        started = time.perf_counter()
        df = load(path)
        seconds = time.perf_counter() - started
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figures = profile(df)
    by_quality = figures.pop("by_quality")
    print(f"file: {path}")
    for key, value in figures.items():
        print(f"  {key:<28}{value:>16,}")
    print("by_quality:")
    for key, value in by_quality.items():
        print(f"  {key:<28}{value:>16,}")
    print("revenue by month:")
    print(revenue_by_month(df).to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    matches = file_sha256(path) == FULL_FILE_SHA256
    print(f"sha256 matches the published full file: {'yes' if matches else 'no'}")
    print(f"load (read_raw+parse+classify): {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
