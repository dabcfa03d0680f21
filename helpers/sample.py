"""Build the committed sample `data/sample.csv` from the full file, deterministically and byte for byte.

Whole invoices are chosen (so cancellations, duplicates and totals stay coherent): every invoice whose
number hashes (crc32 of its digits) into 1 of `BUCKETS` buckets, which spreads them over the whole
year, plus named invoices and customers worth teaching with, plus the smallest invoice showing each
quirk the random pick missed. The chosen ORIGINAL lines are copied as bytes (ISO-8859-1, CRLF, header
first, file order), so the sample has exactly the real file's format and record_ids.

    python -m helpers.sample [--source PATH] [--dest PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers import dataset
from helpers.dataset import Quality
from helpers.paths import DATA_DIR, PROJECT_ROOT

SHARED_REAL_FILE: Path = PROJECT_ROOT.parent / "shared" / "data" / "ecommerce" / "data.csv"
BUCKETS = 125  # keep ~1 invoice number in 125: ~3,700 rows with the forced ones
FORCED_INVOICES: tuple[str, ...] = (
    "A563185", "A563186", "A563187",  # the bad-debt adjustments
    "581483", "C581484",  # the largest invoice and its cancellation
    "541431", "C541433",  # the second largest (customer 12346) and its cancellation
)
FORCED_CUSTOMERS: tuple[str, ...] = ("12346", "12347")
COUNTRIES: tuple[str, ...] = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Unspecified")
NON_PRODUCT_CODES: tuple[str, ...] = ("POST", "DOT", "M", "C2", "D", "BANK CHARGES", "AMAZONFEE", "gift_0001_")

Rule = Callable[[pd.DataFrame], pd.Series]


def default_source() -> Path:
    """`RETAIL_DATA` if set (as `dataset.default_path` reads it), else the shared full file."""
    return dataset.default_path() if os.environ.get("RETAIL_DATA") else SHARED_REAL_FILE


def in_bucket(invoice_no: str) -> bool:
    """Stable pick of ~1 invoice number in BUCKETS (crc32 of the digits, never Python's salted hash())."""
    return zlib.crc32(invoice_no.lstrip("CA").encode("ascii")) % BUCKETS == 0


def requirements(df: pd.DataFrame) -> dict[str, Rule]:
    """Row predicates the sample must each satisfy at least once (every class but bad_value, every flag,
    every month, named quirks and countries)."""
    rules: dict[str, Rule] = {f"quality {q}": (lambda d, q=q: d["quality"].eq(q))
                              for q in Quality if q is not Quality.BAD_VALUE}
    rules |= {f"flag {flag}": (lambda d, flag=flag: d[flag]) for flag in dataset.FLAGS if flag != "bad_value"}
    rules |= {
        "£ in a description": lambda d: d["Description"].str.contains("£", regex=False).fillna(False),
        "stock write-off with a description": lambda d: (
            ~d["is_cancellation"] & d["Quantity"].lt(0).fillna(False) & d["Description"].notna()),
        "zero-price line with a description": lambda d: (
            ~d["is_cancellation"] & d["UnitPrice"].eq(0) & d["Description"].notna()),
    }
    rules |= {f"StockCode {code}": (lambda d, code=code: d["StockCode"].str.startswith(code) if code.endswith("_")
                                    else d["StockCode"].eq(code)) for code in NON_PRODUCT_CODES}
    rules |= {f"country {c}": (lambda d, c=c: d["Country"].eq(c)) for c in COUNTRIES}
    months = sorted(df["InvoiceDate"].dt.strftime("%Y-%m").dropna().unique())
    rules |= {f"month {m}": (lambda d, m=m: d["InvoiceDate"].dt.strftime("%Y-%m").eq(m)) for m in months}
    return rules


def choose_invoices(df: pd.DataFrame, rules: dict[str, Rule]) -> list[str]:
    """The invoices of the sample: hash buckets + forced + the smallest invoice for each unmet rule."""
    invoices = df["InvoiceNo"].drop_duplicates()
    chosen = set(invoices[invoices.map(in_bucket)])
    chosen |= set(FORCED_INVOICES) | set(df.loc[df["CustomerID"].isin(FORCED_CUSTOMERS), "InvoiceNo"])
    missing = set(FORCED_INVOICES) - set(invoices)
    if missing:
        raise ValueError(f"forced invoices not in the source: {sorted(missing)}")
    size = df.groupby("InvoiceNo", sort=False)["line"].agg(["size", "min"])
    for name, rule in rules.items():
        hits = rule(df).to_numpy(dtype=bool)
        if df.loc[hits, "InvoiceNo"].isin(chosen).any():
            continue
        candidates = size.loc[df.loc[hits, "InvoiceNo"].unique()].sort_values(["size", "min"])
        if candidates.empty:
            raise ValueError(f"no invoice in the source satisfies {name!r}")
        chosen.add(candidates.index[0])
    return sorted(chosen)


@dataclass(frozen=True)
class SampleReport:
    """What was written: sizes and the count of rows per quality class."""

    source: Path
    dest: Path
    rows: int
    invoices: int
    customers: int
    countries: int
    months: int
    size_bytes: int
    by_quality: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"sample {self.dest} from {self.source}",
            f"  rows {self.rows:,}  invoices {self.invoices:,}  customers {self.customers:,}  "
            f"countries {self.countries}  months {self.months}  bytes {self.size_bytes:,}",
        ]
        lines += [f"  {quality:<22}{count:>6,}" for quality, count in self.by_quality.items()]
        return "\n".join(lines)


def _verify(sample: pd.DataFrame, expected: pd.DataFrame, rules: dict[str, Rule]) -> None:
    """The sample must keep every row's record_id and class, and show every class but bad_value."""
    if sample["record_id"].tolist() != expected["record_id"].tolist():
        raise RuntimeError("sample record_ids differ from the source's: lines were not copied faithfully")
    if sample["quality"].tolist() != expected["quality"].tolist():
        raise RuntimeError("a row's quality class changed between the source and the sample")
    unmet = [name for name, rule in rules.items() if not rule(sample).any()]
    if unmet:
        raise RuntimeError(f"the sample misses: {unmet}")


def make_sample(source: Path, dest: Path = DATA_DIR / "sample.csv") -> SampleReport:
    """Write the sample of `source` to `dest` (see the module docstring) and check it."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise FileNotFoundError(f"Full data file not found: {source}. {dataset.REAL_FILE_HINT}")
    if dest.exists() and dest.resolve() == source.resolve():
        raise ValueError(f"source and destination are the same file: {source}")
    full = dataset.load(source)
    lines = source.read_bytes().splitlines(keepends=True)
    if len(lines) != len(full) + 1:
        raise ValueError(f"{source}: {len(lines)} physical lines for {len(full)} rows + header; "
                         "a field spans lines, so lines cannot be copied one to one")
    rules = requirements(full)
    chosen = full[full["InvoiceNo"].isin(choose_invoices(full, rules))]
    newline = lines[0][len(lines[0].rstrip(b"\r\n")):] or b"\r\n"
    body = [lines[number] if lines[number].endswith(b"\n") else lines[number] + newline
            for number in chosen["line"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(lines[0] + b"".join(body))

    sample = dataset.load(dest)
    _verify(sample, chosen, rules)
    counts = sample["quality"].value_counts()
    return SampleReport(
        source=source, dest=dest, rows=len(sample), invoices=sample["InvoiceNo"].nunique(),
        customers=sample["CustomerID"].nunique(), countries=sample["Country"].nunique(),
        months=sample["InvoiceDate"].dt.strftime("%Y-%m").nunique(), size_bytes=dest.stat().st_size,
        by_quality={q.value: int(counts.get(q.value, 0)) for q in Quality},
    )


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None,
                        help=f"full data file (default: RETAIL_DATA or {SHARED_REAL_FILE})")
    parser.add_argument("--dest", type=Path, default=DATA_DIR / "sample.csv", help="where to write the sample")
    args = parser.parse_args(argv)
    try:
        report = make_sample(args.source or default_source(), args.dest)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
