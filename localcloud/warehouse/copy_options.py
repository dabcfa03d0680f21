"""COPY and UNLOAD statements parsed into their options, as Redshift documents them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from localcloud.warehouse.sqltext import SqlError, _code_of


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

