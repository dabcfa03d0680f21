"""The batch path's client side: cut the transactions file into daily (or N-row) CSV files and upload
them under `incoming/` in the lake bucket, where the scheduled batch Lambda (lambdas/batch_import)
picks them up.

Each file keeps the published header and encoding (ISO-8859-1) and the rows' text exactly as read, so
the function derives the same record_ids as helpers.dataset: an exact duplicate row shares its date (a
daily file) or its invoice (an N-row file is cut only where the InvoiceNo changes), so every copy of a
row lands in one file and is counted there as in the whole file. Rows whose date cannot be read go to
`undated.csv` (the function quarantines them with the reason).

    python -m helpers.client upload BUCKET --by day|--rows N [--nrows N] [--start D --end D] [--data FILE]
"""

from __future__ import annotations

import argparse
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from helpers import config, dataset

PREFIX = "incoming/"
UPLOAD_THREADS = 8
UNDATED = "undated"


@dataclass(frozen=True)
class Part:
    """One file to upload: its name under the prefix, its CSV bytes and its row count."""

    name: str
    body: bytes
    rows: int


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, columns=list(dataset.COLUMNS), lineterminator="\n")
    return buffer.getvalue().encode(dataset.ENCODING)


def select(path: Path | str | None = None, *, nrows: int | None = None, start: Any = None,
           end: Any = None) -> pd.DataFrame:
    """The file's rows as published text (dataset.read_raw) with their day, in file order; `start`
    (inclusive) and `end` (exclusive) select by InvoiceDate as helpers.client send does."""
    raw = dataset.read_raw(path, nrows=nrows)
    moments = pd.to_datetime(raw["InvoiceDate"], format=dataset.DATE_FORMAT, errors="coerce")
    keep = pd.Series(True, index=raw.index)
    if start is not None:
        keep &= moments >= pd.Timestamp(start)
    if end is not None:
        keep &= moments < pd.Timestamp(end)
    raw = raw[keep].copy()
    raw["day"] = moments[keep].dt.strftime("%Y-%m-%d").fillna(UNDATED)
    return raw


def by_day(raw: pd.DataFrame) -> Iterator[Part]:
    """One file per calendar day of InvoiceDate, rows in file order (2010-12-01.csv, ...)."""
    for day, rows in raw.groupby("day", sort=True):
        yield Part(f"{day}.csv", _csv(rows), len(rows))


def by_rows(raw: pd.DataFrame, rows: int) -> Iterator[Part]:
    """Files of about `rows` rows, each cut where the InvoiceNo changes (an invoice is never split)."""
    if rows < 1:
        raise ValueError("--rows must be at least 1")
    invoices = raw["InvoiceNo"].tolist()
    start, number = 0, 1
    while start < len(invoices):
        end = min(start + rows, len(invoices))
        while end < len(invoices) and invoices[end] == invoices[end - 1]:
            end += 1
        chunk = raw.iloc[start:end]
        yield Part(f"part-{number:05d}.csv", _csv(chunk), len(chunk))
        start, number = end, number + 1


def cut(path: Path | str | None = None, *, by: str = "day", rows: int | None = None, nrows: int | None = None,
        start: Any = None, end: Any = None) -> list[Part]:
    """The files to upload: by "day", or by "rows" (about `rows` rows each, invoices kept whole)."""
    raw = select(path, nrows=nrows, start=start, end=end)
    if by == "day":
        return list(by_day(raw))
    if by == "rows":
        if rows is None:
            raise ValueError("cutting by rows needs rows=N")
        return list(by_rows(raw, rows))
    raise ValueError(f"by must be 'day' or 'rows', not {by!r}")


def upload(bucket: str, parts: list[Part], prefix: str = PREFIX, s3: Any = None, threads: int = UPLOAD_THREADS
           ) -> list[str]:
    """put_object each part under `prefix`, `threads` at a time (a day's file is small: one at a time,
    the round trips were the upload's time); the keys written, in the parts' order."""
    s3 = s3 or config.client("s3")

    def put(part: Part) -> str:
        key = f"{prefix}{part.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=part.body, ContentType="text/csv; charset=iso-8859-1")
        return key

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(put, parts))


def add_command(commands: Any) -> None:
    """The `upload` subcommand of `python -m helpers.client`."""
    command = commands.add_parser("upload", help="cut the file into daily or N-row CSVs and upload them to incoming/")
    command.add_argument("bucket", help="the lake bucket")
    how = command.add_mutually_exclusive_group(required=True)
    how.add_argument("--by", choices=["day"], help="one file per day of InvoiceDate")
    how.add_argument("--rows", type=int, help="files of about N rows, cut between invoices")
    command.add_argument("--data", type=Path, help="CSV file (default: RETAIL_DATA or data/sample.csv)")
    command.add_argument("--nrows", type=int, help="only the first N data rows")
    command.add_argument("--start", help="first InvoiceDate (inclusive), e.g. 2011-11-01")
    command.add_argument("--end", help="last InvoiceDate (exclusive)")
    command.add_argument("--prefix", default=PREFIX, help="key prefix (default incoming/)")


def run_command(args: argparse.Namespace) -> int:
    parts = cut(args.data, by="rows" if args.rows else "day", rows=args.rows, nrows=args.nrows,
                start=args.start, end=args.end)
    keys = upload(args.bucket, parts, args.prefix)
    total = sum(part.rows for part in parts)
    print(f"uploaded {len(keys)} files, {total:,} rows, to s3://{args.bucket}/{args.prefix}"
          + (f" ({keys[0]} ... {keys[-1]})" if keys else ""))
    return 0
