"""Data formats as the Glue Data Catalog describes them: what a crawler recognises (JSON lines, CSV with a
header, Parquet), the schema it infers (DuckDB reads the sampled objects), Hive's type names, and the
StorageDescriptor a crawler writes for each format (the one Athena then reads the table with)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
HIVE_JSON_SERDE = "org.apache.hive.hcatalog.data.JsonSerDe"
LAZY_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
OPENCSV_SERDE = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


class FormatError(Exception):
    """Objects the crawler or Athena cannot read as the table says they are."""


def classify(head: bytes) -> str | None:
    """"parquet", "json", "csv" from an object's first bytes; None when it is none of them (empty,
    compressed or binary: the crawler's built-in classifiers leave it UNKNOWN)."""
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip()
    if not text or text[:2] == b"\x1f\x8b" or b"\x00" in head[:4096]:
        return None
    if text[:1] in (b"{", b"["):
        return "json"
    first = head.split(b"\n", 1)[0]
    return "csv" if any(sep in first for sep in (b",", b"\t", b"|", b";")) else None


def csv_dialect(head: bytes) -> tuple[str, bool]:
    """(delimiter, quoted) of a CSV object, from its first lines."""
    sample = head[:65536].decode("utf-8", "replace")
    first = sample.split("\n", 1)[0]
    delimiter = max((",", "\t", "|", ";"), key=first.count)
    return delimiter, '"' in sample


# --------------------------------------------------------------------------------------------------
# Types


def hive_type(duck: str) -> str:
    """A DuckDB type as the crawler names it in the catalog (string, bigint, double, boolean, timestamp,
    date, decimal(p,s), array<...>, struct<...>, map<...>)."""
    duck = duck.strip()
    upper = duck.upper()
    if upper.endswith("[]"):
        return f"array<{hive_type(duck[:-2])}>"
    if upper.startswith("STRUCT("):
        fields = split_top(duck[len("STRUCT("):-1], ",")
        parts = []
        for field in fields:
            name, _, kind = field.strip().partition(" ")
            parts.append(f"{name.strip(chr(34)).lower()}:{hive_type(kind)}")
        return f"struct<{','.join(parts)}>"
    if upper.startswith("MAP("):
        key, value = split_top(duck[len("MAP("):-1], ",")
        return f"map<{hive_type(key)},{hive_type(value)}>"
    if upper.startswith("DECIMAL"):
        return duck.lower().replace(" ", "")
    simple = {"VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "bigint", "SMALLINT": "bigint",
              "TINYINT": "bigint", "UBIGINT": "bigint", "UINTEGER": "bigint", "USMALLINT": "bigint",
              "UTINYINT": "bigint", "HUGEINT": "bigint", "DOUBLE": "double", "FLOAT": "double",
              "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP_NS": "timestamp",
              "TIMESTAMP_MS": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "BLOB": "binary",
              "JSON": "string", "NULL": "string", "UUID": "string", "TIME": "string"}
    return simple.get(upper, "string")


def duck_type(hive: str) -> str:
    """A catalog (Hive) type as DuckDB reads it."""
    text = hive.strip()
    lower = text.lower()
    if lower.startswith("array<"):
        return duck_type(text[6:-1]) + "[]"
    if lower.startswith("struct<"):
        fields = []
        for field in split_top(text[7:-1], ","):
            name, _, kind = field.partition(":")
            fields.append(f'"{name.strip()}" {duck_type(kind)}')
        return f"STRUCT({', '.join(fields)})"
    if lower.startswith("map<"):
        key, value = split_top(text[4:-1], ",")
        return f"MAP({duck_type(key)}, {duck_type(value)})"
    if lower.startswith("decimal"):
        return lower.upper() if "(" in lower else "DECIMAL(10,0)"
    if lower.startswith(("varchar", "char")):
        return "VARCHAR"
    simple = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "integer": "INTEGER",
              "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE", "float": "FLOAT",
              "real": "FLOAT", "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP",
              "binary": "BLOB"}
    if lower not in simple:
        raise FormatError(f"type {hive!r} is not a Hive type the local Athena reads")
    return simple[lower]


def split_top(text: str, separator: str) -> list[str]:
    """Split on `separator` outside (), <> and quotes."""
    parts, depth, current, quote = [], 0, [], ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char in "(<":
            depth += 1
        elif char in ")>":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


# --------------------------------------------------------------------------------------------------
# Inference


def infer_columns(kind: str, files: list[Path], delimiter: str = ",") -> list[tuple[str, str]]:
    """(name, Hive type) of the sampled files of one table, names lower-cased as the crawler writes them.

    Timestamps are recognised only in Hive's own text form (yyyy-mm-dd hh:mm:ss): a date written any
    other way stays a string, as the crawler leaves it."""
    import duckdb

    names = [str(path) for path in files]
    connection = duckdb.connect()
    try:
        if kind == "json":
            relation = connection.sql(
                "DESCRIBE SELECT * FROM read_json($files, format='newline_delimited', union_by_name=true, "
                "sample_size=-1, timestampformat='%Y-%m-%d %H:%M:%S', dateformat='%Y-%m-%d')",
                params={"files": names})
        elif kind == "csv":
            relation = connection.sql(
                "DESCRIBE SELECT * FROM read_csv($files, header=true, delim=$delim, union_by_name=true, "
                "sample_size=-1, timestampformat='%Y-%m-%d %H:%M:%S', dateformat='%Y-%m-%d')",
                params={"files": names, "delim": delimiter})
        elif kind == "parquet":
            relation = connection.sql("DESCRIBE SELECT * FROM read_parquet($files, union_by_name=true)",
                                      params={"files": names})
        else:
            raise FormatError(f"no classifier for {kind!r}")
        described = relation.fetchall()
    except duckdb.Error as error:
        raise FormatError(f"could not read the {kind} objects: {error}") from None
    finally:
        connection.close()
    columns: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, kind_name, *_ in described:
        lowered = str(name).lower()
        if lowered in seen:  # the same key in two cases: one catalog column
            continue
        seen.add(lowered)
        columns.append((lowered, hive_type(str(kind_name))))
    return columns


def count_records(kind: str, data: bytes) -> int:
    if kind == "json":
        return sum(1 for line in data.splitlines() if line.strip())
    if kind == "csv":
        return max(0, sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8", "replace")))) - 1)
    return 0


# --------------------------------------------------------------------------------------------------
# What the crawler writes


def storage(kind: str, location: str, columns: list[tuple[str, str]], *, delimiter: str = ",",
            quoted: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """(StorageDescriptor, format parameters) of a table or partition of `kind` at `location`."""
    glue_columns = [{"Name": name, "Type": kind_name} for name, kind_name in columns]
    parameters: dict[str, str] = {"classification": kind, "compressionType": "none", "typeOfData": "file"}
    if kind == "json":
        serde = {"SerializationLibrary": JSON_SERDE, "Parameters": {"paths": ",".join(sorted(c[0] for c in columns))}}
        formats = (TEXT_INPUT, TEXT_OUTPUT)
    elif kind == "csv":
        if quoted:
            serde = {"SerializationLibrary": OPENCSV_SERDE,
                     "Parameters": {"separatorChar": delimiter, "quoteChar": '"'}}
        else:
            serde = {"SerializationLibrary": LAZY_SERDE, "Parameters": {"field.delim": delimiter}}
        formats = (TEXT_INPUT, TEXT_OUTPUT)
        parameters.update({"delimiter": delimiter, "skip.header.line.count": "1", "columnsOrdered": "true",
                           "areColumnsQuoted": "true" if quoted else "false"})
    elif kind == "parquet":
        serde = {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}}
        formats = (PARQUET_INPUT, PARQUET_OUTPUT)
    else:
        raise FormatError(f"no StorageDescriptor for {kind!r}")
    descriptor = {"Columns": glue_columns, "Location": location, "InputFormat": formats[0],
                  "OutputFormat": formats[1], "Compressed": False, "NumberOfBuckets": -1, "SerdeInfo": serde,
                  "BucketColumns": [], "SortColumns": [], "Parameters": dict(parameters),
                  "StoredAsSubDirectories": False}
    return descriptor, parameters


def kind_of(descriptor: dict[str, Any], table_parameters: dict[str, str] | None = None) -> str:
    """"json", "csv" or "parquet" from a StorageDescriptor (what Athena reads the objects as)."""
    library = str((descriptor.get("SerdeInfo") or {}).get("SerializationLibrary") or "")
    input_format = str(descriptor.get("InputFormat") or "")
    if "parquet" in library.lower() or "parquet" in input_format.lower():
        return "parquet"
    if library in (JSON_SERDE, HIVE_JSON_SERDE) or "json" in library.lower():
        return "json"
    if library in (LAZY_SERDE, OPENCSV_SERDE) or (not library and input_format == TEXT_INPUT):
        return "csv"
    classification = (table_parameters or {}).get("classification", "")
    if classification in ("json", "csv", "parquet"):
        return classification
    raise FormatError(f"HIVE_UNSUPPORTED_FORMAT: the local Athena reads JSON, CSV/text and Parquet tables, "
                      f"not SerDe {library or input_format or 'unknown'!r}")


def safe_name(text: str) -> str:
    """A catalog name from a folder or key: lower case, anything but [a-z0-9_] as '_'."""
    return re.sub(r"[^a-z0-9_]", "_", text.lower()) or "_"
