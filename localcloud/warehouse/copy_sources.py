"""COPY's input: which S3 objects, decompressed and decoded, and their fields staged as text in DuckDB."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.warehouse.columns import ColumnSpec
from localcloud.warehouse.copy_options import CopyCommand
from localcloud.warehouse.sqltext import ObjectStore, SqlError, _run, quote_literal

_NULL_SENTINEL = "\x01\x02localcloud-null\x02\x01"  # a nullstr no file contains: empty fields stay ''


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


def _stage(con: Any, command: CopyCommand, sources: list[SourceFile], targets: list[ColumnSpec],
           store: ObjectStore, scratch: Path) -> None:
    """Every file's fields as text in `_localcloud_stage` (_file, _line, _raw, _extra, c0..cn)."""
    fields = ", ".join(f"c{i} VARCHAR" for i in range(len(targets)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _localcloud_stage (_file INTEGER, _line BIGINT, _raw VARCHAR, "
                f"_extra VARCHAR, {fields})")
    paths = _jsonpaths(command, len(targets), store) if command.data_format == "json" else None
    files = []
    for index, source in enumerate(sources):
        path = scratch / f"{index}.txt"
        path.write_text(source.text, encoding="utf-8")
        files.append(path)
        if command.data_format == "json":
            _stage_json(con, index, path, targets, paths, command.json_spec.strip().lower() == "auto ignorecase")
    if command.data_format != "json" and files:
        _stage_delimited(con, files, command, len(targets))


def _stage_delimited(con: Any, files: list[Path], command: CopyCommand, width: int) -> None:
    """Every file in one read (one statement per file cost a manifest COPY of 305 files 1.2 s, this 0.6
    s): a row's file is its scratch file's number, its line its place in the read minus the file's
    first place, so each file's lines count from 1 past its IGNOREHEADER lines, as one read per file gave."""
    names = [f"c{i}" for i in range(width)] + ["_extra"]
    columns = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in names) + "}"
    csv = command.data_format == "csv"
    quote = quote_literal(command.quote if csv else "")
    escape = quote_literal(command.quote if csv else "\\" if command.escape else "")
    listed = "[" + ", ".join(quote_literal(str(path)) for path in files) + "]"
    _run(con, f"""
        INSERT INTO _localcloud_stage (_file, _line, _extra, {", ".join(names[:-1])})
        WITH read AS (
            SELECT *, row_number() OVER () AS _place
            FROM read_csv({listed}, columns = {columns}, header = false, filename = true,
                          skip = {command.ignore_header}, delim = {quote_literal(command.delimiter or ",")},
                          quote = {quote}, escape = {escape}, nullstr = {quote_literal(_NULL_SENTINEL)},
                          null_padding = true, strict_mode = false, auto_detect = false))
        SELECT CAST(parse_filename(filename, true) AS INTEGER),
               _place - min(_place) OVER (PARTITION BY filename) + 1 + {command.ignore_header},
               _extra, {", ".join(names[:-1])}
        FROM read ORDER BY _place""")


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


