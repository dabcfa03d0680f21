"""Loading a whole file into the warehouse with one COPY, and knowing what the star schema holds.

Notebook 08 reuses the star schema when it holds the file it is asked about (notebook 06 notes its
source in `load_source`); otherwise it loads the file itself, written out in the notebook: the file as
gzipped CSV in the staging bucket, one `COPY`, the star schema rebuilt with notebook 06's SQL. The
pieces here prepare the CSV and note the source; `load_file` does the same steps for the benchmark
and the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import pandas as pd

from helpers import config, dataset, notebook_sql
from helpers.redshift_data import Warehouse, execute_batch, query, scalar
from helpers.resources import Names, names as resource_names

# Notebook 06's tables (its DDL is the source; these are their names and the landing table's columns).
RAW_TABLE, FACT_TABLE, LOAD_TABLE = "raw_sales", "fact_sales_line", "load_source"
RAW_COLUMNS = ("record_id", "invoice_no", "stock_code", "description", "quantity", "invoice_date", "unit_price",
               "customer_id", "country")
TIMEFORMAT = "MM/DD/YYYY HH24:MI"  # the file's "12/1/2010 8:26"


def source_id(path: Path, nrows: int | None) -> str:
    """Which file and how many of its rows: sha256 prefix : rows (or 'all')."""
    return f"{dataset.file_sha256(path)[:40]}:{nrows if nrows is not None else 'all'}"


def staging_key(path: Path, nrows: int | None) -> str:
    return f"bulk/{hashlib.sha256(source_id(path, nrows).encode()).hexdigest()[:16]}/sales.csv.gz"


def record_source(wh: Warehouse, path: Path, nrows: int | None, rows: int, loaded_by: str) -> None:
    """Note which file (and how many of its rows) the star schema holds."""
    execute_batch(wh, [f"DELETE FROM {LOAD_TABLE}",
                       f"INSERT INTO {LOAD_TABLE} VALUES ('{source_id(path, nrows)}', "
                       f"'{path.name.replace(chr(39), '')}', {int(rows)}, '{loaded_by}')"])


def loaded_source(wh: Warehouse) -> tuple[str, int] | None:
    """(source id, rows) the star schema was built from, if it still holds exactly those rows."""
    found = query(wh, f"SELECT source_id, rows, (SELECT COUNT(*) FROM {FACT_TABLE}) AS facts FROM {LOAD_TABLE}")
    if len(found) != 1 or int(found["facts"].iloc[0]) != int(found["rows"].iloc[0]):
        return None
    return str(found["source_id"].iloc[0]), int(found["rows"].iloc[0])


def bulk_csv(path: Path, nrows: int | None = None) -> tuple[bytes, int]:
    """The file's rows as gzipped UTF-8 CSV in the landing table's column order (texts as published,
    record_id added); and the row count."""
    raw = dataset.read_raw(path, nrows=nrows)
    out = pd.DataFrame({"record_id": dataset.parse(raw)["record_id"]})
    for column in dataset.COLUMNS:
        out[column] = raw[column]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=1), len(out)


def copy_csv(wh: Warehouse, url: str) -> str:
    """The COPY of a staged CSV into the landing table (notebook 08 writes the same statement out)."""
    return (f"COPY {RAW_TABLE} ({', '.join(RAW_COLUMNS)}) FROM '{url}' IAM_ROLE '{wh.copy_role_arn}' "
            f"CSV IGNOREHEADER 1 GZIP TIMEFORMAT '{TIMEFORMAT}' EMPTYASNULL")


def load_file(wh: Warehouse, path: Path, nrows: int | None = None, names: Names | None = None) -> int:
    """Notebook 08's reload for the benchmark and the tests: stage the file in S3, replace the landing
    table's rows with one COPY, rebuild the star schema with notebook 06's SQL, note the source; rows."""
    names = names or resource_names()
    body, rows = bulk_csv(path, nrows)
    key = staging_key(path, nrows)
    config.client("s3").put_object(Bucket=names.staging_bucket, Key=key, Body=body)
    execute_batch(wh, [f"DELETE FROM {RAW_TABLE}", copy_csv(wh, f"s3://{names.staging_bucket}/{key}")])
    loaded = int(scalar(wh, f"SELECT COUNT(*) FROM {RAW_TABLE}"))
    if loaded != rows:
        raise RuntimeError(f"COPY loaded {loaded} of {rows} rows from {path.name}")
    execute_batch(wh, notebook_sql.named("06")["STAR_BUILD"])
    record_source(wh, path, nrows, rows, "bulk COPY")
    return rows
