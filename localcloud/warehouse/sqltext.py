"""Redshift SQL as text: splitting, binding parameters, quoting, and running one statement on DuckDB
with Redshift's error wording (quotes and comments are never touched)."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence


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


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _run(con: Any, statement: str, parameters: Sequence[Any] | None = None) -> Any:
    import duckdb

    try:
        return con.execute(statement, parameters) if parameters is not None else con.execute(statement)
    except duckdb.InterruptException:
        raise  # CancelStatement: the executor reports ABORTED
    except duckdb.Error as error:
        raise SqlError(f"ERROR: {_first_line(str(error))}") from None

