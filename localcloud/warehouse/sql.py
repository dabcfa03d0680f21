"""Redshift SQL on DuckDB: statement translation, the system tables, and COPY / UNLOAD over S3.

The warehouse executor (`executor.py`) owns connections, threads and the Data API; this module only
turns one Redshift statement into work on a DuckDB connection:

- ordinary SQL is transpiled by sqlglot (read="redshift", write="duckdb") after Redshift-only table
  attributes (DISTKEY, SORTKEY, DISTSTYLE, ENCODE, BACKUP) are dropped; IDENTITY columns become
  sequence defaults; primary/unique/foreign keys are dropped because Redshift does not enforce them;
- DuckDB forgets VARCHAR(n) lengths, so CREATE TABLE records the declared Redshift types in
  `main._localcloud_columns`; COPY checks lengths against it and `pg_table_def` shows it;
- COPY stages every file as text with DuckDB's own readers, then converts and checks all rows with one
  vectorised query; failing rows go to `stl_load_errors` with Redshift's codes and wording, and the
  load is all-or-nothing when the errors exceed MAXERROR;
- UNLOAD runs the query and writes the result to S3 as CSV, pipe-delimited text, JSON or Parquet.

The work is split by job: sqltext.py (splitting, binding, quoting, running), columns.py, catalog.py (system
tables), translate.py, copy_options.py, copy_sources.py, copy_checks.py, copy_load.py, unload.py. This
module runs one statement; the names importable from it before the split still are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from localcloud.warehouse.catalog import (
    SYSTEM_DDL, _forget_table, _record_declared, next_query_id, prepare, table_columns,
)
from localcloud.warehouse.columns import DEFAULT_VARCHAR, MAX_VARCHAR, ColumnSpec
from localcloud.warehouse.copy_checks import error_reason, strptime_format
from localcloud.warehouse.copy_load import LOAD_FAILED, run_copy
from localcloud.warehouse.copy_options import CopyCommand, UnloadCommand, parse_copy, parse_unload
from localcloud.warehouse.copy_sources import redshift_jsonpaths
from localcloud.warehouse.sqltext import (
    ObjectStore, SqlError, _run, bind_parameters, leading_words, quote_ident, quote_literal, split_statements,
)
from localcloud.warehouse.translate import Translation, translate
from localcloud.warehouse.unload import run_unload

NO_OP_KEYWORDS = ("VACUUM", "ANALYZE", "GRANT", "REVOKE", "SET", "RESET", "COMMENT")
NO_OP_PHRASES = ("CREATE USER", "ALTER USER", "DROP USER", "CREATE GROUP", "ALTER GROUP", "DROP GROUP",
                 "ALTER DEFAULT PRIVILEGES")


@dataclass
class Outcome:
    """What a statement returned: a result set (columns + rows) or a count of rows affected."""

    columns: list[tuple[str, str]] | None  # (name, DuckDB type) when it returned rows
    rows: list[tuple[Any, ...]]
    affected: int


def execute(con: Any, sql: str, store: ObjectStore, query_id: int) -> Outcome:
    """Run one Redshift statement on `con` (SqlError with Redshift-style text on failure)."""
    words = leading_words(sql)
    first = words.split(" ")[0] if words else ""
    if first == "COPY":
        return Outcome(None, [], run_copy(con, parse_copy(sql), store, query_id))
    if first == "UNLOAD":
        return Outcome(None, [], run_unload(con, parse_unload(sql), store))
    if first in NO_OP_KEYWORDS or any(words.startswith(phrase) for phrase in NO_OP_PHRASES):
        return Outcome(None, [], 0)
    if first == "END":
        sql = "COMMIT"
    translation = translate(sql)
    cursor = None
    for statement in translation.statements:
        cursor = _run(con, statement)
    if translation.declared:
        _record_declared(con, *translation.declared)
    for schema, table in translation.dropped:
        _forget_table(con, schema, table)
    if translation.returns_rows and cursor is not None and cursor.description:
        rows = cursor.fetchall()
        return Outcome([(d[0], str(d[1])) for d in cursor.description], rows, len(rows))
    if translation.counts_rows and cursor is not None:
        return Outcome(None, [], int(cursor.fetchone()[0]))
    return Outcome(None, [], 0)


__all__ = [  # the names importable from here before the split
    "DEFAULT_VARCHAR", "LOAD_FAILED", "MAX_VARCHAR", "SYSTEM_DDL", "ColumnSpec", "CopyCommand", "ObjectStore",
    "Outcome", "SqlError", "Translation", "UnloadCommand", "bind_parameters", "error_reason", "execute",
    "next_query_id", "parse_copy", "parse_unload", "prepare", "quote_ident", "quote_literal", "redshift_jsonpaths",
    "run_copy", "run_unload", "split_statements", "strptime_format", "table_columns", "translate",
]
