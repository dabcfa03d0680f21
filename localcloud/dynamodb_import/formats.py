"""Items from the objects of an import, as DynamoDB's import from S3 reads them.

- DYNAMODB_JSON: one `{"Item": {...}}` object per line, in DynamoDB's typed JSON.
- CSV: the first line is the header unless `HeaderList` is given (then the first line is data); the
  delimiter is `Delimiter` (default ","); quotes are doubled inside quoted values. Every column is
  imported as a string except the key attributes of the table and of its secondary indexes, which take
  their AttributeDefinitions type (S, N or B base64).
Compression: GZIP or NONE. ZSTD and ION are refused when the import is requested (import.py), never
read as something else.

Each item comes with its position (1-based line or row of its object) or the reason it cannot be
imported; a bad item never stops the others (AWS counts it in ErrorCount and logs it).
"""

from __future__ import annotations

import base64
import binascii
import csv
import gzip
import io
import json
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator

Item = dict[str, dict[str, Any]]


class ObjectError(ValueError):
    """The whole object cannot be read (bad compression, not text)."""


def decompress(body: bytes, compression: str) -> bytes:
    if compression == "GZIP":
        try:
            return gzip.decompress(body)
        except (OSError, EOFError) as error:
            raise ObjectError(f"the object is not valid GZIP: {error}") from None
    return body


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ObjectError(f"the object is not UTF-8 text: {error}") from None


def dynamodb_json_items(body: bytes) -> Iterator[tuple[int, Item | None, str | None]]:
    """(line number, item or None, error or None) for each non-empty line."""
    for number, line in enumerate(_text(body).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as error:
            yield number, None, f"line is not JSON: {error}"
            continue
        item = document.get("Item") if isinstance(document, dict) else None
        if not isinstance(item, dict) or not item:
            yield number, None, 'line is not a DynamoDB JSON object {"Item": {...}}'
            continue
        yield number, item, None


def csv_items(body: bytes, key_types: dict[str, str], delimiter: str = ",", header: list[str] | None = None
              ) -> Iterator[tuple[int, Item | None, str | None]]:
    """(row number, item or None, error or None) for each data row (the header row is not counted)."""
    reader = csv.reader(io.StringIO(_text(body), newline=""), delimiter=delimiter, strict=True)
    names = list(header) if header else None
    number = 0
    try:
        for values in reader:
            if names is None:
                names = values
                continue
            if not values:
                continue
            number += 1
            if len(values) != len(names):
                yield number, None, f"row has {len(values)} values, the header {len(names)} columns"
                continue
            try:
                yield number, {name: typed(name, value, key_types) for name, value in zip(names, values)}, None
            except ValueError as error:
                yield number, None, str(error)
    except csv.Error as error:
        yield number + 1, None, f"CSV cannot be parsed from here (remaining rows skipped): {error}"


def typed(name: str, value: str, key_types: dict[str, str]) -> dict[str, Any]:
    kind = key_types.get(name, "S")
    if kind == "N":
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"key attribute {name} is a number, got {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"key attribute {name} is a number, got {value!r}")
        return {"N": value.strip()}
    if kind == "B":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key attribute {name} is binary (base64), got {value!r}") from None
        return {"B": value}
    return {"S": value}
