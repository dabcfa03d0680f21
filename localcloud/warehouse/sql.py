"""Redshift SQL on DuckDB: statement translation, the system tables, and COPY / UNLOAD over S3.

The warehouse executor (`warehouse.py`) owns connections, threads and the Data API; this module only
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
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import sqlglot
from sqlglot import exp

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "Unsupported property" chatter for dropped attributes

ERROR_ROWS_KEPT = 1000  # stl_load_errors rows recorded per COPY (AWS keeps a bounded number too)
LOAD_FAILED = "Load into table '{table}' failed.  Check 'stl_load_errors' system table for details."
DEFAULT_VARCHAR = 256  # Redshift's length for VARCHAR / TEXT without one
MAX_VARCHAR = 65535
NO_OP_KEYWORDS = ("VACUUM", "ANALYZE", "GRANT", "REVOKE", "SET", "RESET", "COMMENT")
NO_OP_PHRASES = ("CREATE USER", "ALTER USER", "DROP USER", "CREATE GROUP", "ALTER GROUP", "DROP GROUP",
                 "ALTER DEFAULT PRIVILEGES")
_NULL_SENTINEL = "\x01\x02localcloud-null\x02\x01"  # a nullstr no file contains: empty fields stay ''


class SqlError(Exception):
    """A statement failed; the message is what Redshift would report."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ObjectStore(Protocol):
    """S3 as COPY and UNLOAD see it (the executor backs it with moto's in-process S3)."""

    def get(self, url: str) -> bytes | None: ...

    def list(self, url: str) -> list[str]: ...  # every object URL starting with `url`, sorted

    def put(self, url: str, data: bytes) -> None: ...


# --------------------------------------------------------------------------------------------------
# Scanning SQL text (quotes and comments are never touched)


_TOKEN = re.compile(
    r"""(?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*"|\$\$.*?\$\$)|(?P<comment>--[^\n]*|/\*.*?\*/)|(?P<code>[^'"$/-]+|.)""",
    re.DOTALL,
)


def _segments(sql: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pieces of `sql`, kind being "quoted", "comment" or "code"."""
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "code"
        yield kind, match.group()


def _map_code(sql: str, change: Callable[[str], str]) -> str:
    return "".join(change(text) if kind == "code" else text for kind, text in _segments(sql))


def split_statements(sql: str) -> list[str]:
    """The statements of a script, split on semicolons outside quotes and comments."""
    statements, current = [], []
    for kind, text in _segments(sql):
        if kind == "code" and ";" in text:
            head, *rest = text.split(";")
            current.append(head)
            for piece in rest:
                statements.append("".join(current))
                current = [piece]
        else:
            current.append(text)
    statements.append("".join(current))
    return [statement.strip() for statement in statements if _code_of(statement).strip()]


def _code_of(sql: str) -> str:
    return "".join(text if kind != "comment" else " " for kind, text in _segments(sql))


def leading_words(sql: str, count: int = 2) -> str:
    """The first words of a statement, upper-cased ("CREATE TABLE"), comments skipped."""
    return " ".join(re.findall(r"[A-Za-z_]+", _code_of(sql))[:count]).upper()


def bind_parameters(sql: str, parameters: Sequence[Mapping[str, str]]) -> str:
    """Replace `:name` with the Data API's string parameter values, as quoted literals."""
    values = {item["name"]: item["value"] for item in parameters}

    def replace(code: str) -> str:
        def literal(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise SqlError(f"ERROR: parameter :{name} has no value in Parameters")
            return quote_literal(values[name])
        return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", literal, code)

    return _map_code(sql, replace) if values else sql


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------------
# Column types: what Redshift declared, as COPY checks it


@dataclass(frozen=True)
class ColumnSpec:
    """One table column as Redshift declared it (kind is Redshift's internal type name)."""

    name: str
    kind: str  # int2 int4 int8 numeric float4 float8 bool varchar bpchar date timestamp timestamptz ...
    length: int | None = None  # characters for varchar/bpchar (bytes in Redshift); None = unchecked
    precision: int | None = None
    scale: int | None = None
    not_null: bool = False
    has_default: bool = False
    identity: bool = False

    @property
    def duckdb_type(self) -> str:
        if self.kind == "numeric":
            return f"DECIMAL({self.precision or 18},{self.scale or 0})"
        return DUCKDB_TYPES.get(self.kind, "VARCHAR")

    @property
    def pg_type(self) -> str:
        """The type as pg_table_def / describe_table spell it."""
        if self.kind == "varchar":
            return f"character varying({self.length})" if self.length else "character varying"
        if self.kind == "bpchar":
            return f"character({self.length or 1})"
        if self.kind == "numeric":
            return f"numeric({self.precision or 18},{self.scale or 0})"
        return PG_TYPES.get(self.kind, self.kind)


DUCKDB_TYPES = {
    "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "float4": "REAL", "float8": "DOUBLE",
    "bool": "BOOLEAN", "varchar": "VARCHAR", "bpchar": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ", "time": "TIME", "timetz": "TIMETZ", "super": "JSON", "varbyte": "BLOB",
}
PG_TYPES = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real", "float8": "double precision",
    "bool": "boolean", "date": "date", "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone", "time": "time without time zone", "super": "super",
}
_SQLGLOT_KINDS = {
    "SMALLINT": "int2", "TINYINT": "int2", "INT": "int4", "BIGINT": "int8", "DECIMAL": "numeric",
    "FLOAT": "float4", "DOUBLE": "float8", "BOOLEAN": "bool", "VARCHAR": "varchar", "NVARCHAR": "varchar",
    "TEXT": "varchar", "CHAR": "bpchar", "NCHAR": "bpchar", "BPCHAR": "bpchar", "DATE": "date",
    "TIMESTAMP": "timestamp", "DATETIME": "timestamp", "TIMESTAMPTZ": "timestamptz", "TIME": "time",
    "TIMETZ": "timetz", "SUPER": "super", "VARBINARY": "varbyte",
}
_DUCKDB_KINDS = {
    "SMALLINT": "int2", "TINYINT": "int2", "INTEGER": "int4", "BIGINT": "int8", "HUGEINT": "numeric",
    "FLOAT": "float4", "REAL": "float4", "DOUBLE": "float8", "BOOLEAN": "bool", "VARCHAR": "varchar",
    "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIME": "time",
    "JSON": "super", "BLOB": "varbyte",
}


def spec_from_sqlglot(name: str, kind: exp.DataType, constraints: Sequence[exp.ColumnConstraint]) -> ColumnSpec:
    """A declared column (sqlglot's parse of Redshift DDL)."""
    type_name = kind.this.name if hasattr(kind.this, "name") else str(kind.this)
    redshift = _SQLGLOT_KINDS.get(type_name, type_name.lower())
    params = [param.name for param in kind.expressions]
    length = precision = scale = None
    if redshift in ("varchar", "bpchar"):
        default = 1 if redshift == "bpchar" else DEFAULT_VARCHAR
        length = MAX_VARCHAR if params and params[0].upper() == "MAX" else int(params[0]) if params else default
    elif redshift == "numeric":
        precision = int(params[0]) if params else 18
        scale = int(params[1]) if len(params) > 1 else 0
    kinds = [constraint.args.get("kind") for constraint in constraints]
    return ColumnSpec(
        name=name.lower(), kind=redshift, length=length, precision=precision, scale=scale,
        not_null=any(isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in kinds),
        has_default=any(isinstance(k, (exp.DefaultColumnConstraint, exp.GeneratedAsIdentityColumnConstraint))
                        for k in kinds),
        identity=any(isinstance(k, exp.GeneratedAsIdentityColumnConstraint) for k in kinds),
    )


def spec_from_duckdb(name: str, data_type: str, nullable: bool, default: str | None) -> ColumnSpec:
    """A column DuckDB knows but the catalog does not (CREATE TABLE AS, tables made outside COPY's view)."""
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", data_type)
    kind = "numeric" if match else _DUCKDB_KINDS.get(data_type, data_type.lower())
    return ColumnSpec(
        name=name, kind=kind, precision=int(match.group(1)) if match else None,
        scale=int(match.group(2)) if match else None, not_null=not nullable, has_default=default is not None,
        identity=bool(default and default.lower().startswith("nextval")),
    )


# --------------------------------------------------------------------------------------------------
# System tables and the type catalog (one set per database file)


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


# --------------------------------------------------------------------------------------------------
# Translating ordinary statements


_REDSHIFT_ONLY = re.compile(
    r"\b(?:(?:COMPOUND|INTERLEAVED)\s+)?SORTKEY\s*(?:\([^)]*\)|AUTO\b)?|\bDISTKEY\s*(?:\([^)]*\))?"
    r"|\bDISTSTYLE\s+\w+|\bENCODE\s+\w+|\bBACKUP\s+(?:YES|NO)\b",
    re.IGNORECASE,
)


@dataclass
class Translation:
    """DuckDB statements for one Redshift statement, and what they change in the type catalog."""

    statements: list[str]
    returns_rows: bool
    counts_rows: bool
    declared: tuple[str, str, list[ColumnSpec]] | None = None
    dropped: list[tuple[str, str]] = field(default_factory=list)


def translate(sql: str) -> Translation:
    """One Redshift statement as DuckDB statements (parse errors become Redshift's syntax error)."""
    if leading_words(sql) in ("CREATE TABLE", "CREATE TEMP", "CREATE TEMPORARY", "CREATE LOCAL"):
        sql = _map_code(sql, lambda code: _REDSHIFT_ONLY.sub(" ", code))
    try:
        tree = sqlglot.parse_one(sql, read="redshift")
    except sqlglot.errors.ParseError:
        return _untranslated(sql)
    tree = tree.transform(_datepart_unit)
    prelude: list[str] = []
    declared = None
    if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
        declared, prelude = _rewrite_create_table(tree)
    dropped = [_table_key(table) for table in tree.find_all(exp.Table)] if _is_drop_table(tree) else []
    return Translation(
        statements=prelude + [tree.sql(dialect="duckdb")],
        returns_rows=isinstance(tree, (exp.Query, exp.Describe, exp.Show)),
        counts_rows=isinstance(tree, (exp.Insert, exp.Update, exp.Delete, exp.Merge)),
        declared=declared,
        dropped=dropped,
    )


def _untranslated(sql: str) -> Translation:
    """SQL sqlglot cannot parse goes to DuckDB as written (DuckDB reports the syntax error if it is one)."""
    first = leading_words(sql, 1)
    return Translation(statements=[sql], returns_rows=first in ("SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE"),
                       counts_rows=first in ("INSERT", "UPDATE", "DELETE", "MERGE"))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _datepart_unit(node: exp.Expression) -> exp.Expression:
    """DATEPART(month, ts) names its unit as an identifier; DuckDB wants a string."""
    if isinstance(node, exp.Anonymous) and node.name.upper() in ("DATEPART", "DATE_PART") and node.expressions:
        unit = node.expressions[0]
        if isinstance(unit, exp.Column) and not unit.table:
            return exp.Anonymous(this="DATE_PART", expressions=[exp.Literal.string(unit.name), *node.expressions[1:]])
    return node


def _table_key(table: exp.Table) -> tuple[str, str]:
    return (table.db or "public").lower(), table.name.lower()


def _is_drop_table(tree: exp.Expression) -> bool:
    return isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "TABLE"


def _rewrite_create_table(tree: exp.Create) -> tuple[tuple[str, str, list[ColumnSpec]], list[str]]:
    """Drop constraints Redshift does not enforce, turn IDENTITY into a sequence, note declared types."""
    schema = tree.this
    table = schema.this
    schema_name, table_name = _table_key(table)
    prelude, specs = [], []
    for item in list(schema.expressions):
        if isinstance(item, (exp.PrimaryKey, exp.UniqueColumnConstraint, exp.ForeignKey, exp.Constraint)):
            item.pop()
            continue
        if not isinstance(item, exp.ColumnDef):
            continue
        constraints = list(item.args.get("constraints") or [])
        specs.append(spec_from_sqlglot(item.name, item.args["kind"], constraints))
        kept = []
        for constraint in constraints:
            kind = constraint.args.get("kind")
            if isinstance(kind, (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint, exp.Reference,
                                 exp.EncodeColumnConstraint)):
                continue
            if isinstance(kind, exp.GeneratedAsIdentityColumnConstraint):
                sequence = f"{table_name}_{item.name}_identity_{uuid.uuid4().hex[:8]}"
                qualified = f"{quote_ident(schema_name)}.{quote_ident(sequence)}"
                start = kind.args.get("start").name if kind.args.get("start") else "1"
                step = kind.args.get("increment").name if kind.args.get("increment") else "1"
                prelude.append(f"CREATE SEQUENCE IF NOT EXISTS {qualified} START {start} INCREMENT {step}")
                kind = exp.DefaultColumnConstraint(
                    this=exp.Anonymous(this="nextval", expressions=[exp.Literal.string(f"{schema_name}.{sequence}")]))
                constraint = exp.ColumnConstraint(kind=kind)
            kept.append(constraint)
        item.set("constraints", kept)
    if tree.args.get("properties"):
        tree.set("properties", None)  # DISTSTYLE and friends left after the text pass
    return (schema_name, table_name, specs), prelude


# --------------------------------------------------------------------------------------------------
# Running one statement


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


def _run(con: Any, statement: str, parameters: Sequence[Any] | None = None) -> Any:
    import duckdb

    try:
        return con.execute(statement, parameters) if parameters is not None else con.execute(statement)
    except duckdb.InterruptException:
        raise  # CancelStatement: the executor reports ABORTED
    except duckdb.Error as error:
        raise SqlError(f"ERROR: {_first_line(str(error))}") from None


# --------------------------------------------------------------------------------------------------
# COPY and UNLOAD: parsing their options


_OPTION_TOKEN = re.compile(r"\s*(?:'((?:[^']|'')*)'|\"((?:[^\"]|\"\")*)\"|([A-Za-z_][\w$]*)|(-?\d+(?:\.\d+)?)|(\S))")


@dataclass
class _Tokens:
    """COPY/UNLOAD text as tokens: (kind, value) with kind in string/ident/word/number/punct."""

    items: list[tuple[str, str]]
    position: int = 0

    @classmethod
    def of(cls, sql: str) -> "_Tokens":
        items = []
        for match in _OPTION_TOKEN.finditer(_code_of(sql).strip().rstrip(";")):
            string, ident, word, number, punct = match.groups()
            if string is not None:
                items.append(("string", string.replace("''", "'")))
            elif ident is not None:
                items.append(("ident", ident.replace('""', '"')))
            elif word is not None:
                items.append(("word", word.upper()))
            elif number is not None:
                items.append(("number", number))
            else:
                items.append(("punct", punct or ""))
        return cls(items)

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.position + offset
        return self.items[index] if index < len(self.items) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.position += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.peek()[0] == "word" and self.peek()[1] in words:
            self.position += 1
            return True
        return False

    def expect(self, kind: str, what: str) -> str:
        token_kind, value = self.take()
        if token_kind != kind:
            raise SqlError(f'ERROR: syntax error at or near "{value}" (expected {what})')
        return value

    def optional_as(self) -> None:
        self.accept("AS")

    def name(self) -> str:
        kind, value = self.take()
        if kind not in ("word", "ident"):
            raise SqlError(f'ERROR: syntax error at or near "{value}"')
        return value.lower() if kind == "word" else value


@dataclass
class CopyCommand:
    """A parsed Redshift COPY (only what changes the load; the rest is accepted and ignored)."""

    schema: str | None
    table: str
    columns: list[str] | None
    source: str
    data_format: str = "text"  # text (delimited), csv, json
    json_spec: str = "auto"  # 'auto', 'auto ignorecase' or an s3:// jsonpaths file
    delimiter: str | None = None
    quote: str = '"'
    escape: bool = False
    ignore_header: int = 0
    compression: str | None = None  # gzip, bzip2
    manifest: bool = False
    date_format: str = "YYYY-MM-DD"
    time_format: str = "YYYY-MM-DD HH:MI:SS"
    max_error: int = 0
    accept_inv_chars: str | None = None
    empty_as_null: bool = False
    blanks_as_null: bool = False
    truncate_columns: bool = False
    fill_record: bool = False
    null_as: str | None = None
    explicit_ids: bool = False
    authorized: bool = False

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


def parse_copy(sql: str) -> CopyCommand:
    """COPY table [(cols)] FROM 's3://...' <options>; unknown options are a syntax error."""
    tokens = _Tokens.of(sql)
    tokens.expect("word", "COPY")
    schema, table = _qualified_name(tokens)
    columns = None
    if tokens.peek() == ("punct", "("):
        tokens.take()
        columns = [tokens.name()]
        while tokens.peek() == ("punct", ","):
            tokens.take()
            columns.append(tokens.name())
        tokens.expect("punct", ")")
    if not tokens.accept("FROM"):
        raise SqlError(f'ERROR: syntax error at or near "{tokens.peek()[1]}" (expected FROM)')
    source = tokens.expect("string", "a quoted s3:// location")
    if not source.startswith("s3://"):
        raise SqlError(f"ERROR: COPY from {source!r} is not supported here: only s3:// sources")
    command = CopyCommand(schema=schema, table=table, columns=columns, source=source)
    while tokens.peek()[0] != "end":
        _copy_option(tokens, command)
    if not command.authorized:
        raise SqlError("ERROR: COPY needs an authorization: IAM_ROLE, CREDENTIALS or ACCESS_KEY_ID/SECRET_ACCESS_KEY")
    if command.delimiter is None:
        command.delimiter = "," if command.data_format == "csv" else "|"
    return command


def _qualified_name(tokens: _Tokens) -> tuple[str | None, str]:
    first = tokens.name()
    if tokens.peek() == ("punct", "."):
        tokens.take()
        return first, tokens.name()
    return None, first


_FLAGS = {
    "MANIFEST": ("manifest", True), "EMPTYASNULL": ("empty_as_null", True),
    "BLANKSASNULL": ("blanks_as_null", True), "TRUNCATECOLUMNS": ("truncate_columns", True),
    "FILLRECORD": ("fill_record", True), "ESCAPE": ("escape", True), "EXPLICIT_IDS": ("explicit_ids", True),
    "GZIP": ("compression", "gzip"), "BZIP2": ("compression", "bzip2"),
}
_IGNORED_FLAGS = ("ACCEPTANYDATE", "IGNOREBLANKLINES", "TRIMBLANKS", "REMOVEQUOTES", "ROUNDEC", "NOLOAD",
                  "SSH", "READRATIO")
_SWITCHES = ("COMPUPDATE", "STATUPDATE")  # followed by an optional ON/OFF/TRUE/FALSE/PRESET


def _copy_option(tokens: _Tokens, command: CopyCommand) -> None:
    kind, word = tokens.take()
    if kind != "word":
        raise SqlError(f'ERROR: syntax error at or near "{word}"')
    if word in _FLAGS:
        setattr(command, *_FLAGS[word])
    elif word in _IGNORED_FLAGS:
        pass
    elif word in _SWITCHES:
        tokens.accept("ON", "OFF", "TRUE", "FALSE", "PRESET")
    elif word in ("IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN",
                  "REGION", "ENCODING", "MAXFILESIZE"):
        tokens.optional_as()
        tokens.take()
        command.authorized = command.authorized or word in ("IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID")
    elif word == "FORMAT":
        tokens.optional_as()
        _copy_format(tokens, command, tokens.expect("word", "CSV, JSON or PARQUET"))
    elif word in ("CSV", "JSON"):
        _copy_format(tokens, command, word)
    elif word == "DELIMITER":
        tokens.optional_as()
        command.delimiter = _unescape(tokens.expect("string", "a delimiter"))
    elif word == "QUOTE":
        tokens.optional_as()
        command.quote = tokens.expect("string", "a quote character")
    elif word == "IGNOREHEADER":
        tokens.optional_as()
        command.ignore_header = int(tokens.expect("number", "a number of lines"))
    elif word == "MAXERROR":
        tokens.optional_as()
        command.max_error = int(tokens.expect("number", "a number of errors"))
    elif word in ("DATEFORMAT", "TIMEFORMAT"):
        tokens.optional_as()
        value = tokens.expect("string", "a format")
        setattr(command, "date_format" if word == "DATEFORMAT" else "time_format", value)
    elif word == "ACCEPTINVCHARS":
        tokens.optional_as()
        command.accept_inv_chars = tokens.take()[1] if tokens.peek()[0] == "string" else "?"
    elif word == "NULL":
        tokens.optional_as()
        command.null_as = tokens.expect("string", "a null string")
    else:
        raise SqlError(f'ERROR: syntax error at or near "{word}" (COPY option not supported here)')


def _unescape(text: str) -> str:
    """'\\t' in a DELIMITER is a tab, as Redshift reads it."""
    return text.encode().decode("unicode_escape") if "\\" in text else text


def _copy_format(tokens: _Tokens, command: CopyCommand, name: str) -> None:
    if name == "CSV":
        command.data_format = "csv"
        if tokens.accept("QUOTE"):
            tokens.optional_as()
            command.quote = tokens.expect("string", "a quote character")
    elif name == "JSON":
        command.data_format = "json"
        tokens.optional_as()
        if tokens.peek()[0] == "string":
            command.json_spec = tokens.take()[1]
    else:
        raise SqlError(f"ERROR: COPY format {name} is not supported here (CSV, JSON or delimited text)")


@dataclass
class UnloadCommand:
    query: str
    destination: str
    data_format: str = "text"  # text, csv, json, parquet
    header: bool = False
    delimiter: str | None = None
    parallel: bool = True
    allow_overwrite: bool = False
    compression: str | None = None
    manifest: bool = False
    extension: str | None = None


def parse_unload(sql: str) -> UnloadCommand:
    """UNLOAD ('query') TO 's3://...' <options>."""
    tokens = _Tokens.of(sql)
    tokens.expect("word", "UNLOAD")
    tokens.expect("punct", "(")
    query = tokens.expect("string", "a quoted query")
    tokens.expect("punct", ")")
    if not tokens.accept("TO"):
        raise SqlError(f'ERROR: syntax error at or near "{tokens.peek()[1]}" (expected TO)')
    command = UnloadCommand(query=query, destination=tokens.expect("string", "an s3:// location"))
    authorized = False
    while tokens.peek()[0] != "end":
        kind, word = tokens.take()
        if word in ("IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "REGION",
                    "MAXFILESIZE", "KMS_KEY_ID", "ROWGROUPSIZE"):
            tokens.optional_as()
            tokens.take()
            tokens.accept("MB", "GB")
            authorized = authorized or word in ("IAM_ROLE", "CREDENTIALS", "ACCESS_KEY_ID")
        elif word == "FORMAT":
            tokens.optional_as()
            command.data_format = tokens.expect("word", "CSV, JSON or PARQUET").lower()
        elif word in ("CSV", "JSON", "PARQUET"):
            command.data_format = word.lower()
        elif word == "HEADER":
            command.header = True
        elif word == "DELIMITER":
            tokens.optional_as()
            command.delimiter = tokens.expect("string", "a delimiter")
        elif word == "PARALLEL":
            command.parallel = tokens.take()[1] not in ("OFF", "FALSE")
        elif word == "ALLOWOVERWRITE":
            command.allow_overwrite = True
        elif word in ("GZIP", "BZIP2"):
            command.compression = word.lower()
        elif word == "MANIFEST":
            command.manifest = True
            tokens.accept("VERBOSE")
        elif word == "EXTENSION":
            command.extension = tokens.expect("string", "an extension")
        elif word in ("CLEANPATH", "ENCRYPTED", "ADDQUOTES", "ESCAPE"):
            command.allow_overwrite = command.allow_overwrite or word == "CLEANPATH"
        else:
            raise SqlError(f'ERROR: syntax error at or near "{word}" (UNLOAD option not supported here)')
    if not authorized:
        raise SqlError("ERROR: UNLOAD needs an authorization: IAM_ROLE, CREDENTIALS or ACCESS_KEY_ID/SECRET_ACCESS_KEY")
    return command


# --------------------------------------------------------------------------------------------------
# COPY: reading the files


@dataclass
class SourceFile:
    """One object COPY reads: its URL, its text (UTF-8) and whether bytes had to be replaced."""

    url: str
    text: str
    had_invalid_utf8: bool

    def line(self, number: int) -> str:
        lines = self.text.split("\n")
        return lines[number - 1].rstrip("\r") if 0 < number <= len(lines) else ""


def source_urls(command: CopyCommand, store: ObjectStore) -> list[str]:
    """The objects a COPY reads: a manifest's entries, or every object under the prefix."""
    if not command.manifest:
        urls = store.list(command.source)
        if not urls:
            raise SqlError(f"ERROR: The specified S3 prefix '{command.source[5:].split('/', 1)[-1]}' does not exist")
        return urls
    body = store.get(command.source)
    if body is None:
        raise SqlError(f"ERROR: Manifest file {command.source} not found")
    try:
        entries = json.loads(body)["entries"]
    except (ValueError, KeyError, TypeError):
        raise SqlError(f"ERROR: Manifest file is invalid: {command.source}") from None
    urls = []
    for entry in entries:
        if store.get(entry["url"]) is not None:
            urls.append(entry["url"])
        elif entry.get("mandatory", False):
            raise SqlError(f"ERROR: Manifest file is invalid: mandatory file {entry['url']} does not exist")
    return urls


def read_source(url: str, data: bytes, command: CopyCommand) -> SourceFile:
    """Decompress and decode one object; invalid UTF-8 is replaced (and flagged unless ACCEPTINVCHARS)."""
    try:
        if command.compression == "gzip":
            data = gzip.decompress(data)
        elif command.compression == "bzip2":
            data = bz2.decompress(data)
    except (OSError, ValueError, EOFError) as error:
        raise SqlError(f"ERROR: {command.compression} decompression of {url} failed: {error}") from None
    try:
        return SourceFile(url, data.decode("utf-8"), False)
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if command.accept_inv_chars is not None:
            return SourceFile(url, text.replace("\ufffd", command.accept_inv_chars), False)
        return SourceFile(url, text, True)


# --------------------------------------------------------------------------------------------------
# COPY: staging, checking and loading


@dataclass(frozen=True)
class LoadError:
    """One row of stl_load_errors."""

    filename: str
    line_number: int
    column: ColumnSpec
    raw_line: str
    raw_value: str | None
    code: int
    reason: str
    position: int = 0


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


def _stage(con: Any, command: CopyCommand, sources: list[SourceFile], targets: list[ColumnSpec],
           store: ObjectStore, scratch: Path) -> None:
    """Every file's fields as text in `_localcloud_stage` (_file, _line, _raw, _extra, c0..cn)."""
    fields = ", ".join(f"c{i} VARCHAR" for i in range(len(targets)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _localcloud_stage (_file INTEGER, _line BIGINT, _raw VARCHAR, "
                f"_extra VARCHAR, {fields})")
    paths = _jsonpaths(command, len(targets), store) if command.data_format == "json" else None
    for index, source in enumerate(sources):
        path = scratch / f"{index}.txt"
        path.write_text(source.text, encoding="utf-8")
        if command.data_format == "json":
            _stage_json(con, index, path, targets, paths, command.json_spec.strip().lower() == "auto ignorecase")
        else:
            _stage_delimited(con, index, path, command, len(targets))


def _stage_delimited(con: Any, index: int, path: Path, command: CopyCommand, width: int) -> None:
    names = [f"c{i}" for i in range(width)] + ["_extra"]
    columns = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in names) + "}"
    csv = command.data_format == "csv"
    quote = quote_literal(command.quote if csv else "")
    escape = quote_literal(command.quote if csv else "\\" if command.escape else "")
    _run(con, f"""
        INSERT INTO _localcloud_stage (_file, _line, _extra, {", ".join(names[:-1])})
        SELECT {index}, row_number() OVER () + {command.ignore_header}, _extra, {", ".join(names[:-1])}
        FROM read_csv({quote_literal(str(path))}, columns = {columns}, header = false,
                      skip = {command.ignore_header}, delim = {quote_literal(command.delimiter or ",")},
                      quote = {quote}, escape = {escape}, nullstr = {quote_literal(_NULL_SENTINEL)},
                      null_padding = true, strict_mode = false, auto_detect = false)""")


def _jsonpaths(command: CopyCommand, width: int, store: ObjectStore) -> list[str] | None:
    """DuckDB JSON paths for each target column from a jsonpaths file, or None for 'auto'."""
    spec = command.json_spec.strip()
    if spec.lower() in ("auto", "auto ignorecase"):
        return None
    if not spec.startswith("s3://"):
        raise SqlError(f"ERROR: JSON '{spec}' is not supported: use 'auto', 'auto ignorecase' or an s3:// jsonpaths file")
    document = store.get(spec)
    if document is None:
        raise SqlError(f"ERROR: jsonpaths file {spec} does not exist")
    return redshift_jsonpaths(document, width)


def _stage_json(con: Any, index: int, path: Path, targets: list[ColumnSpec], paths: list[str] | None,
                ignore_case: bool) -> None:
    values = ", ".join(
        f"json_extract_string(json, {quote_literal(paths[i])})" if paths is not None
        else _json_key(target.name, ignore_case) for i, target in enumerate(targets))
    fields = ", ".join(f"c{i}" for i in range(len(targets)))
    _run(con, f"""
        INSERT INTO _localcloud_stage (_file, _line, _raw, {fields})
        SELECT {index}, row_number() OVER (), json::VARCHAR, {values}
        FROM read_json_objects({quote_literal(str(path))}, format = 'auto')""")


def _json_key(column: str, ignore_case: bool) -> str:
    """JSON 'auto': the value of the key equal to the (lower-case) column name; 'auto ignorecase': any case."""
    if not ignore_case:
        return f"json_extract_string(json, {quote_literal(_duckdb_path('$.' + column.lower()))})"
    return ("json_extract_string(json, '$.\"' || list_filter(json_keys(json), lambda k: lower(k) = "
            f"{quote_literal(column.lower())})[1] || '\"')")


def redshift_jsonpaths(document: bytes, width: int) -> list[str]:
    """A jsonpaths file ({"jsonpaths": ["$['a']", "$.b.c", "$.d[0]"]}) as DuckDB JSON paths."""
    try:
        paths = json.loads(document)["jsonpaths"]
    except (ValueError, KeyError, TypeError):
        raise SqlError("ERROR: Invalid JSONPath format: the file needs a \"jsonpaths\" array") from None
    if len(paths) != width:
        raise SqlError(f"ERROR: Number of jsonpaths and the number of columns should match. "
                       f"JSONPath size: {len(paths)}, Number of columns in table or column list: {width}")
    return [_duckdb_path(path) for path in paths]


_PATH_STEP = re.compile(r"\.([A-Za-z_][\w$]*)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*\"((?:[^\"\\]|\\.)*)\"\s*\]|\[(\d+)\]")


def _duckdb_path(path: str) -> str:
    if not path.startswith("$"):
        raise SqlError(f"ERROR: Invalid JSONPath format: {path}")
    steps, position = [], 1
    while position < len(path):
        match = _PATH_STEP.match(path, position)
        if match is None:
            raise SqlError(f"ERROR: Invalid JSONPath format: {path}")
        name = next((group for group in match.groups()[:3] if group is not None), None)
        steps.append(f"[{match.group(4)}]" if name is None else '."' + name.replace('"', '\\"') + '"')
        position = match.end()
    return "$" + "".join(steps)


def _is_string(column: ColumnSpec) -> bool:
    return column.kind in ("varchar", "bpchar")


def _normalized(column: ColumnSpec, raw: str, command: CopyCommand) -> str:
    """The field after NULL AS / EMPTYASNULL / BLANKSASNULL (non-text empty fields are always NULL)."""
    cases = [f"WHEN {raw} = {quote_literal(command.null_as)} THEN NULL"] if command.null_as is not None else []
    if not _is_string(column):
        return f"CASE {' '.join(cases)} WHEN trim({raw}) = '' THEN NULL ELSE trim({raw}) END"
    if command.empty_as_null:
        cases.append(f"WHEN {raw} = '' THEN NULL")
    if command.blanks_as_null:
        cases.append(f"WHEN trim({raw}) = '' THEN NULL")
    return f"CASE {' '.join(cases)} ELSE {raw} END" if cases else raw


_INTEGER = "'[+-]?[0-9]+'"
_DECIMAL = r"'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)'"
TRUE_WORDS = ("t", "true", "y", "yes", "1")
FALSE_WORDS = ("f", "false", "n", "no", "0")
AUTO_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M",
    "%Y-%m-%d", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d",
    "%d %b %Y", "%b %d %Y", "%d-%b-%Y", "%Y%m%d",
)
_FORMAT_TOKENS = {
    "YYYY": "%Y", "YY": "%y", "MONTH": "%B", "MON": "%b", "MM": "%m", "DD": "%d", "HH24": "%H", "HH12": "%I",
    "HH": "%H", "MI": "%M", "SS": "%S", "AM": "%p", "PM": "%p", "US": "%f", "MS": "%g",
}


def strptime_format(redshift_format: str) -> str:
    """Redshift's DATEFORMAT/TIMEFORMAT pattern as a strptime format ('MM/DD/YYYY HH24:MI' -> '%m/%d/%Y %H:%M')."""
    pattern = "|".join(sorted(_FORMAT_TOKENS, key=len, reverse=True))
    return re.sub(pattern, lambda match: _FORMAT_TOKENS[match.group()], redshift_format.replace("%", "%%"))


def _datetime_value(value: str, redshift_format: str, sql_type: str) -> str:
    """Parse date/time text with DATEFORMAT / TIMEFORMAT ('auto', 'epochsecs', 'epochmillisecs', a pattern)."""
    fmt = redshift_format.strip()
    if fmt.lower() == "auto":
        formats = "[" + ", ".join(quote_literal(f) for f in AUTO_FORMATS) + "]"
        return f"coalesce(TRY_CAST({value} AS {sql_type}), try_strptime({value}, {formats})::{sql_type})"
    if fmt.lower() in ("epochsecs", "epochmillisecs"):
        divisor = 1000 if fmt.lower() == "epochmillisecs" else 1
        return (f"CASE WHEN regexp_full_match({value}, {_DECIMAL}) THEN "
                f"make_timestamp((TRY_CAST({value} AS DOUBLE) / {divisor} * 1000000)::BIGINT)::{sql_type} END")
    formats = [strptime_format(fmt)]
    if "%S" in formats[0] and "%f" not in formats[0]:
        formats.append(formats[0].replace("%S", "%S.%f"))
    listed = "[" + ", ".join(quote_literal(f) for f in formats) + "]"
    return f"try_strptime({value}, {listed})::{sql_type}"


def _converted(column: ColumnSpec, value: str, command: CopyCommand) -> str:
    """SQL for the typed value of a normalized field, NULL when it does not convert."""
    kind, sql_type = column.kind, column.duckdb_type
    if kind in ("int2", "int4", "int8"):
        return f"CASE WHEN regexp_full_match({value}, {_INTEGER}) THEN TRY_CAST({value} AS {sql_type}) END"
    if kind == "numeric":
        return f"CASE WHEN regexp_full_match({value}, {_DECIMAL}) THEN TRY_CAST({value} AS {sql_type}) END"
    if kind == "bool":
        true, false = (", ".join(quote_literal(w) for w in words) for words in (TRUE_WORDS, FALSE_WORDS))
        return f"CASE WHEN lower({value}) IN ({true}) THEN true WHEN lower({value}) IN ({false}) THEN false END"
    if kind == "date":
        return _datetime_value(value, command.date_format, "DATE")
    if kind in ("timestamp", "timestamptz"):
        return _datetime_value(value, command.time_format, sql_type)
    if _is_string(column):
        return f"left({value}, {column.length})" if command.truncate_columns and column.length else value
    return f"TRY_CAST({value} AS {sql_type})"


def _error_code(column: ColumnSpec, index: int, last: bool, command: CopyCommand, check_utf8: bool) -> str:
    """SQL for the stl_load_errors code of field `index`, NULL when it loads."""
    raw, value, typed = f"r{index}", f"n{index}", f"v{index}"
    cases = []
    if command.data_format != "json" and not command.fill_record:
        cases.append(f"WHEN {raw} IS NULL THEN 1214")
    if last and command.data_format != "json":
        cases.append("WHEN _extra IS NOT NULL THEN 1202")
    if check_utf8:
        cases.append(f"WHEN strpos({raw}, '\ufffd') > 0 THEN 1220")
    if column.not_null:
        cases.append(f"WHEN {value} IS NULL THEN 1213")
    cases.append(f"WHEN {value} IS NOT NULL AND {typed} IS NULL THEN {TYPE_ERROR_CODES.get(column.kind, 1216)}")
    if _is_string(column) and column.length and not command.truncate_columns:
        cases.append(f"WHEN strlen({value}) > {column.length} THEN 1204")  # bytes, as Redshift counts
    return f"CASE {' '.join(cases)} END"


TYPE_ERROR_CODES = {
    "int2": 1207, "int4": 1207, "int8": 1207, "numeric": 1207, "float4": 1208, "float8": 1208,
    "date": 1205, "timestamp": 1206, "timestamptz": 1206, "bool": 1216,
}


def _check(con: Any, command: CopyCommand, targets: list[ColumnSpec], check_utf8: bool) -> None:
    """`_localcloud_checked`: per staged row its typed values vI and error codes eI (NULL when it loads)."""
    width = len(targets)
    raws = ", ".join(f"c{i} AS r{i}" for i in range(width))
    normalized = ", ".join(f"{_normalized(t, f'r{i}', command)} AS n{i}" for i, t in enumerate(targets))
    typed = ", ".join(f"{_converted(t, f'n{i}', command)} AS v{i}" for i, t in enumerate(targets))
    values = ", ".join(f"v{i}" for i in range(width))
    codes = ", ".join(f"{_error_code(t, i, i == width - 1, command, check_utf8)} AS e{i}"
                      for i, t in enumerate(targets))
    _run(con, f"""
        CREATE OR REPLACE TEMP TABLE _localcloud_checked AS
        WITH raw AS (SELECT _file, _line, _extra, {raws} FROM _localcloud_stage),
             normalized AS (SELECT *, {normalized} FROM raw),
             typed AS (SELECT *, {typed} FROM normalized)
        SELECT _file, _line, {values}, {codes} FROM typed""")


def _first_error(width: int) -> str:
    return f"coalesce({', '.join(f'e{i}' for i in range(width))})"


def _count_errors(con: Any, targets: list[ColumnSpec]) -> int:
    query = f"SELECT count(*) FROM _localcloud_checked WHERE {_first_error(len(targets))} IS NOT NULL"
    return int(con.execute(query).fetchone()[0])


def _load_errors(con: Any, command: CopyCommand, targets: list[ColumnSpec],
                 sources: list[SourceFile]) -> list[LoadError]:
    width = len(targets)
    fields = ", ".join(f"s.c{i}, k.e{i}" for i in range(width))
    rows = con.execute(
        f"SELECT k._file, k._line, s._raw, {fields} FROM _localcloud_checked k JOIN _localcloud_stage s "
        f"USING (_file, _line) WHERE {_first_error(width)} IS NOT NULL ORDER BY k._file, k._line "
        f"LIMIT {ERROR_ROWS_KEPT}").fetchall()
    errors = []
    for file_index, line, raw_json, *pairs in rows:
        index = next(i for i in range(width) if pairs[2 * i + 1] is not None)
        raw_value, code = pairs[2 * index], int(pairs[2 * index + 1])
        source = sources[file_index]
        column = targets[index]
        reason, position = error_reason(code, column, raw_value, command)
        raw_line = raw_json if raw_json is not None else source.line(line)
        errors.append(LoadError(source.url, line, column, raw_line[:1024], raw_value, code, reason, position))
    return errors


_REDSHIFT_TYPE_WORDS = {"int2": "Short", "int4": "Integer", "int8": "Long", "numeric": "Decimal",
                        "float4": "Float", "float8": "Double"}


def error_reason(code: int, column: ColumnSpec, raw: str | None, command: CopyCommand) -> tuple[str, int]:
    """Redshift's err_reason wording for a code, and the position of the offending character."""
    value = (raw or "").strip()
    if code == 1213:
        return "Missing data for not-null field", 0
    if code == 1214:
        return "Delimiter not found", 0
    if code == 1202:
        return "Extra column(s) found", 0
    if code == 1204:
        return "String length exceeds DDL length", 0
    if code == 1220:
        return "String contains invalid or unsupported UTF8 codepoints. Bad UTF8 hex sequence (error 3)", 0
    if code in (1207, 1208):
        position = _bad_digit(value)
        type_word = _REDSHIFT_TYPE_WORDS.get(column.kind, column.kind)
        if position is None:
            return f"Overflow, Value '{value}' out of range for type {type_word}", 0
        return f"Invalid digit, Value '{value[position]}', Pos {position}, Type: {type_word}", position
    if code == 1205:
        if len(value) < 10 and command.date_format.lower() == "yyyy-mm-dd":
            return "Invalid Date Format - length must be 10 or more", 0
        return f"Invalid date format - Invalid digit encountered [{command.date_format}]", 0
    if code == 1206:
        return f"Invalid timestamp format or value [{command.time_format}]", 0
    return f"Invalid input for type {column.kind}: '{value}'", 0


def _bad_digit(value: str) -> int | None:
    """Position of the first character that cannot be in a number (None: the digits are fine, it overflows)."""
    seen_point = False
    for position, char in enumerate(value):
        if char.isdigit() or (char in "+-" and position == 0):
            continue
        if char == "." and not seen_point:
            seen_point = True
            continue
        return position
    return None if value else 0


def _record_errors(con: Any, errors: list[LoadError], oid: int, query_id: int, started: datetime) -> None:
    if not errors:
        return
    rows = [
        [100, 0, oid, started, 0, query_id, error.filename, error.line_number, error.column.name,
         error.column.kind, _col_length(error.column), error.position, error.raw_line,
         (error.raw_value or "")[:1024], error.code, error.reason, 0, 0]
        for error in errors
    ]
    con.executemany("INSERT INTO main.stl_load_errors VALUES (" + ", ".join("?" * 18) + ")", rows)


def _col_length(column: ColumnSpec) -> str:
    if column.kind == "numeric":
        return f"{column.precision},{column.scale}"
    return str(column.length) if column.length else ""


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


# --------------------------------------------------------------------------------------------------
# UNLOAD


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
