"""System tables (stl_load_errors, stl_load_commits, pg_table_def...) and the declared-type catalog, one
set per database file."""

from __future__ import annotations

from typing import Any, Sequence

from localcloud.warehouse.columns import ColumnSpec, spec_from_duckdb
from localcloud.warehouse.sqltext import SqlError


SYSTEM_DDL = (
    "CREATE SCHEMA IF NOT EXISTS public",
    """CREATE TABLE IF NOT EXISTS main._localcloud_columns (
        schema_name VARCHAR, table_name VARCHAR, column_name VARCHAR, ordinal INTEGER, kind VARCHAR,
        length INTEGER, precision INTEGER, scale INTEGER, pg_type VARCHAR, is_identity BOOLEAN)""",
    """CREATE TABLE IF NOT EXISTS main.stl_load_errors (
        userid INTEGER, slice INTEGER, tbl INTEGER, starttime TIMESTAMP, session INTEGER, query INTEGER,
        filename VARCHAR, line_number BIGINT, colname VARCHAR, type VARCHAR, col_length VARCHAR,
        position INTEGER, raw_line VARCHAR, raw_field_value VARCHAR, err_code INTEGER, err_reason VARCHAR,
        is_partial INTEGER, start_offset BIGINT)""",
    """CREATE TABLE IF NOT EXISTS main.stl_load_commits (
        userid INTEGER, query INTEGER, slice INTEGER, name VARCHAR, filename VARCHAR, byte_offset INTEGER,
        lines_scanned INTEGER, errors INTEGER, curtime TIMESTAMP, status INTEGER, file_format VARCHAR,
        is_partial INTEGER, start_offset BIGINT)""",
    "CREATE SEQUENCE IF NOT EXISTS main._localcloud_query_id START 100000",
    """CREATE OR REPLACE VIEW main.svv_table_info AS
        SELECT database_name AS database, schema_name AS schema, table_oid::INTEGER AS table_id,
               table_name AS "table", 'Y' AS encoded, 'AUTO(EVEN)' AS diststyle, NULL::VARCHAR AS sortkey1,
               1 AS size, estimated_size::DECIMAL(38,0) AS tbl_rows,
               estimated_size::DECIMAL(38,0) AS estimated_visible_rows
        FROM duckdb_tables() WHERE schema_name <> 'main' AND NOT temporary""",
    """CREATE OR REPLACE VIEW main.pg_table_def AS
        SELECT c.schema_name AS schemaname, c.table_name AS tablename, c.column_name AS "column",
               coalesce(k.pg_type, lower(c.data_type)) AS type, 'none' AS encoding, false AS distkey,
               0 AS sortkey, NOT c.is_nullable AS notnull
        FROM duckdb_columns() c LEFT JOIN main._localcloud_columns k
          ON k.schema_name = c.schema_name AND k.table_name = c.table_name AND k.column_name = c.column_name
        WHERE c.schema_name <> 'main' AND c.database_name <> 'temp' AND NOT c.internal""",
    """CREATE OR REPLACE MACRO main.pg_last_copy_id() AS
        (SELECT coalesce(max(query), -1) FROM (SELECT query FROM main.stl_load_commits
                                              UNION ALL SELECT query FROM main.stl_load_errors))""",
)
SESSION_SETUP = ("SET schema = 'public'", "SET search_path = 'public,main'")


def prepare(con: Any) -> None:
    """Create the system tables (idempotent) and make `public` the default schema, as in Redshift."""
    for statement in SYSTEM_DDL + SESSION_SETUP:
        con.execute(statement)


def next_query_id(con: Any) -> int:
    return int(con.execute("SELECT nextval('main._localcloud_query_id')").fetchone()[0])


def table_columns(con: Any, schema: str | None, table: str) -> tuple[str, int, list[ColumnSpec]]:
    """(schema, table oid, columns) of an existing table, with the declared Redshift types."""
    row = con.execute(
        "SELECT schema_name, table_oid FROM duckdb_tables() WHERE lower(table_name) = lower(?) "
        "AND lower(schema_name) = lower(?) AND NOT temporary", [table, schema or "public"]).fetchone()
    if row is None:
        raise SqlError(f'ERROR: relation "{schema + "." if schema else ""}{table}" does not exist')
    schema_name, oid = row
    declared = {
        name: (kind, length, precision, scale, identity)
        for name, kind, length, precision, scale, identity in con.execute(
            "SELECT column_name, kind, length, precision, scale, is_identity FROM main._localcloud_columns "
            "WHERE schema_name = ? AND table_name = ?", [schema_name, table.lower()]).fetchall()
    }
    columns = []
    for name, data_type, nullable, default in con.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
            "WHERE schema_name = ? AND lower(table_name) = lower(?) AND database_name <> 'temp' ORDER BY column_index",
            [schema_name, table]).fetchall():
        base = spec_from_duckdb(name, data_type, nullable, default)
        if name.lower() in declared:
            kind, length, precision, scale, identity = declared[name.lower()]
            base = ColumnSpec(name, kind, length, precision, scale, base.not_null, base.has_default, identity)
        columns.append(base)
    return schema_name, int(oid), columns


def _record_declared(con: Any, schema: str, table: str, columns: Sequence[ColumnSpec]) -> None:
    _forget_table(con, schema, table)
    for ordinal, column in enumerate(columns, 1):
        con.execute(
            "INSERT INTO main._localcloud_columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [schema, table, column.name, ordinal, column.kind, column.length, column.precision, column.scale,
             column.pg_type, column.identity])


def _forget_table(con: Any, schema: str, table: str) -> None:
    con.execute("DELETE FROM main._localcloud_columns WHERE schema_name = ? AND table_name = ?", [schema, table])

