"""UNLOAD: a query's result written to S3 as CSV, pipe-delimited text, JSON or Parquet."""

from __future__ import annotations

import bz2
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

from localcloud.warehouse.copy_options import UnloadCommand
from localcloud.warehouse.sqltext import ObjectStore, SqlError, _run, quote_literal
from localcloud.warehouse.translate import translate


def run_unload(con: Any, command: UnloadCommand, store: ObjectStore) -> int:
    """Write a query's result to S3 (one file: <prefix>000 with PARALLEL OFF, else <prefix>0000_part_00)."""
    if not command.destination.startswith("s3://"):
        raise SqlError("ERROR: UNLOAD destination must be an s3:// location")
    translation = translate(command.query)
    if not translation.returns_rows:
        raise SqlError("ERROR: UNLOAD needs a query that returns rows")
    existing = store.list(command.destination)
    if existing and not command.allow_overwrite:
        raise SqlError("ERROR: Specified unload destination on S3 is not empty. Consider using a different "
                       "bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.")
    query = translation.statements[-1]
    count = int(_run(con, f"SELECT count(*) FROM ({query})").fetchone()[0])
    with tempfile.TemporaryDirectory(prefix="warehouse-unload-") as scratch:
        path = Path(scratch) / "out"
        _run(con, f"COPY ({query}) TO {quote_literal(str(path))} ({_unload_options(command)})")
        data = path.read_bytes()
    if command.compression == "gzip":
        data = gzip.compress(data)
    elif command.compression == "bzip2":
        data = bz2.compress(data)
    url = command.destination + ("000" if not command.parallel else "0000_part_00") + _unload_suffix(command)
    store.put(url, data)
    if command.manifest:
        manifest = {"entries": [{"url": url, "meta": {"content_length": len(data), "record_count": count}}]}
        store.put(command.destination + "manifest", json.dumps(manifest).encode())
    return count


def _unload_options(command: UnloadCommand) -> str:
    if command.data_format == "parquet":
        return "FORMAT parquet"
    if command.data_format == "json":
        return "FORMAT json"
    delimiter = command.delimiter or ("," if command.data_format == "csv" else "|")
    quote = "'\"'" if command.data_format == "csv" else "''"
    return (f"FORMAT csv, HEADER {'true' if command.header else 'false'}, DELIMITER {quote_literal(delimiter)}, "
            f"QUOTE {quote}")


def _unload_suffix(command: UnloadCommand) -> str:
    if command.extension:
        suffix = "." + command.extension.lstrip(".")
    else:
        suffix = {"parquet": ".parquet", "json": ".json", "csv": ".csv"}.get(command.data_format, "")
    return suffix + {"gzip": ".gz", "bzip2": ".bz2"}.get(command.compression or "", "")
