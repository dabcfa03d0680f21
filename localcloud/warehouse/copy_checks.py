"""COPY's checks: every staged field converted and checked in one vectorised query; failures become
stl_load_errors rows with Redshift's codes and wording."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from localcloud.warehouse.columns import ColumnSpec
from localcloud.warehouse.copy_options import CopyCommand
from localcloud.warehouse.copy_sources import SourceFile
from localcloud.warehouse.sqltext import _run, quote_literal

ERROR_ROWS_KEPT = 1000  # stl_load_errors rows recorded per COPY (AWS keeps a bounded number too)


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


