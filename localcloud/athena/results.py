"""Athena's result files and pages: the CSV it writes (every value quoted, NULL as an empty unquoted
field, a header row), read back after a restart, and GetQueryResults pages of at most 1,000 rows with
the header row first for a SELECT."""

from __future__ import annotations

import base64
from typing import Any

MAX_PAGE = 1000


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def csv_text(header: list[str], rows: list[tuple[str | None, ...]]) -> str:
    lines = [",".join(_quoted(name) for name in header)]
    lines += [",".join("" if value is None else _quoted(value) for value in row) for row in rows]
    return "\n".join(lines) + "\n"


def read_csv(text: str, header: bool) -> list[tuple[str | None, ...]]:
    """Rows of a result file (.csv as written above, .txt as tab-separated lines), header dropped."""
    if not header:
        return [tuple(line.split("\t")) for line in text.splitlines()]
    rows: list[tuple[str | None, ...]] = []
    row: list[str | None] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            end, parts = i + 1, []
            while True:
                quote = text.index('"', end)
                parts.append(text[end:quote])
                if quote + 1 < n and text[quote + 1] == '"':
                    parts.append('"')
                    end = quote + 2
                    continue
                break
            row.append("".join(parts))
            i = quote + 1
        else:
            row.append(None)
        if i >= n or text[i] == "\n":
            rows.append(tuple(row))
            row = []
        i += 1
    return rows[1:]


def rows_page(columns: list[dict[str, Any]], rows: list[tuple[str | None, ...]], header: bool,
              token: str | None, max_results: Any) -> dict[str, Any]:
    limit = min(int(max_results or MAX_PAGE), MAX_PAGE)
    try:
        start = int(base64.b64decode(token).decode()) if token else 0
    except ValueError:
        from localcloud.glue.lake import ApiError

        raise ApiError("InvalidRequestException", "NextToken is not valid") from None
    lines: list[tuple[str | None, ...]] = ([tuple(c["Name"] for c in columns)] if header else []) + rows
    page = lines[start:start + limit]
    out: dict[str, Any] = {
        "UpdateCount": 0,
        "ResultSet": {"Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in page],
                      "ResultSetMetadata": {"ColumnInfo": columns}}}
    if start + limit < len(lines):
        out["NextToken"] = base64.b64encode(str(start + limit).encode()).decode()
    return out
