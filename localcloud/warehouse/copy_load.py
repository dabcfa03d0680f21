"""COPY: files into a table, all-or-nothing past MAXERROR; stl_load_commits records each file."""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localcloud.warehouse.catalog import table_columns
from localcloud.warehouse.columns import ColumnSpec
from localcloud.warehouse.copy_checks import _check, _count_errors, _first_error, _load_errors, _record_errors
from localcloud.warehouse.copy_options import CopyCommand
from localcloud.warehouse.copy_sources import SourceFile, _stage, read_source, source_urls
from localcloud.warehouse.sqltext import ObjectStore, SqlError, _run, quote_ident

LOAD_FAILED = "Load into table '{table}' failed.  Check 'stl_load_errors' system table for details."


def run_copy(con: Any, command: CopyCommand, store: ObjectStore, query_id: int) -> int:
    """Load files into a table; returns rows loaded. Failing rows go to stl_load_errors; more than
    MAXERROR of them fail the whole COPY (nothing loaded)."""
    schema, oid, columns = table_columns(con, command.schema, command.table)
    targets = _copy_targets(columns, command)
    sources = [read_source(url, _fetch(store, url), command) for url in source_urls(command, store)]
    with tempfile.TemporaryDirectory(prefix="warehouse-copy-") as scratch:
        _stage(con, command, sources, targets, store, Path(scratch))
    try:
        _check(con, command, targets, any(source.had_invalid_utf8 for source in sources))
        error_total = _count_errors(con, targets)
        errors = _load_errors(con, command, targets, sources) if error_total else []
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        _record_errors(con, errors, oid, query_id, started)
        if error_total > command.max_error:
            raise SqlError(LOAD_FAILED.format(table=command.table))
        loaded = _insert_good_rows(con, schema, command.table, targets)
        _record_commits(con, command, sources, query_id, started)
        return loaded
    finally:
        con.execute("DROP TABLE IF EXISTS _localcloud_stage")
        con.execute("DROP TABLE IF EXISTS _localcloud_checked")


def _fetch(store: ObjectStore, url: str) -> bytes:
    data = store.get(url)
    if data is None:
        raise SqlError(f"ERROR: S3 object {url} does not exist")
    return data


def _copy_targets(columns: list[ColumnSpec], command: CopyCommand) -> list[ColumnSpec]:
    """The columns the file's fields fill, in order (IDENTITY columns only with EXPLICIT_IDS)."""
    if command.columns is None:
        return [column for column in columns if command.explicit_ids or not column.identity]
    by_name = {column.name.lower(): column for column in columns}
    missing = [name for name in command.columns if name.lower() not in by_name]
    if missing:
        raise SqlError(f'ERROR: column "{missing[0]}" of relation "{command.table}" does not exist')
    return [by_name[name.lower()] for name in command.columns]



def _insert_good_rows(con: Any, schema: str, table: str, targets: list[ColumnSpec]) -> int:
    names = ", ".join(quote_ident(t.name) for t in targets)
    values = ", ".join(f"v{i}" for i in range(len(targets)))
    cursor = _run(con, f"INSERT INTO {quote_ident(schema)}.{quote_ident(table)} ({names}) "
                       f"SELECT {values} FROM _localcloud_checked "
                       f"WHERE {_first_error(len(targets))} IS NULL")  # staged in file order
    return int(cursor.fetchone()[0])


def _record_commits(con: Any, command: CopyCommand, sources: list[SourceFile], query_id: int,
                    started: datetime) -> None:
    counts = dict(con.execute("SELECT _file, count(*) FROM _localcloud_stage GROUP BY _file").fetchall())
    rows = [[100, query_id, 0, command.target, source.url, 0, int(counts.get(index, 0)), 0, started, 1,
             command.data_format.upper(), 0, 0] for index, source in enumerate(sources)]
    con.executemany("INSERT INTO main.stl_load_commits VALUES (" + ", ".join("?" * 13) + ")", rows)

