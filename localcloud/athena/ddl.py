"""Athena's Hive DDL and utility statements, written into the Glue Data Catalog: CREATE EXTERNAL TABLE
(columns, PARTITIONED BY, ROW FORMAT SERDE ... WITH SERDEPROPERTIES / ROW FORMAT DELIMITED, STORED AS,
LOCATION, TBLPROPERTIES: parsed here, since sqlglot drops most of them), MSCK REPAIR TABLE, ALTER TABLE
ADD PARTITION, DROP TABLE, CREATE/DROP DATABASE, SHOW TABLES, SHOW PARTITIONS, DESCRIBE."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from localcloud.athena.engine import CATALOG, Result, column_info
from localcloud.athena.tables import QueryFailed, find_table, partition_values_from_path
from localcloud.glue import formats
from localcloud.glue.lake import Lake, folder, split_url

_TOKEN = re.compile(r"\s+|--[^\n]*|'(?:[^']|'')*'|`[^`]*`|\"[^\"]*\"|[A-Za-z0-9_.$:/-]+|[<>(),=;]|.", re.S)
STORED = {"PARQUET": (formats.PARQUET_INPUT, formats.PARQUET_OUTPUT, formats.PARQUET_SERDE),
          "TEXTFILE": (formats.TEXT_INPUT, formats.TEXT_OUTPUT, formats.LAZY_SERDE),
          "JSON": (formats.TEXT_INPUT, formats.TEXT_OUTPUT, formats.HIVE_JSON_SERDE)}


def tokens(sql: str) -> list[str]:
    return [t for t in _TOKEN.findall(sql.strip().rstrip(";")) if t.strip() and not t.startswith("--")]


def _unquote(token: str) -> str:
    if token[:1] == "'" and token[-1:] == "'":
        return token[1:-1].replace("''", "'")
    if token[:1] in "`\"" and token[-1:] in "`\"":
        return token[1:-1]
    return token


class Cursor:
    def __init__(self, sql: str):
        self.items, self.at = tokens(sql), 0

    def peek(self, *words: str) -> bool:
        window = [t.upper() for t in self.items[self.at:self.at + len(words)]]
        return window == [w.upper() for w in words]

    def take(self, *words: str) -> bool:
        if self.peek(*words):
            self.at += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.take(*words):
            got = self.items[self.at] if self.at < len(self.items) else "<EOF>"
            raise QueryFailed(f"line 1:1: mismatched input '{got}'. Expecting: {' '.join(words)}", error_type=1004)

    def next(self) -> str:
        if self.at >= len(self.items):
            raise QueryFailed("line 1:1: mismatched input '<EOF>'", error_type=1004)
        self.at += 1
        return self.items[self.at - 1]

    def name(self) -> tuple[str | None, str]:
        """(database or None, table) from db.t, `db`.`t`, "db"."t" or t."""
        parts: list[str] = []
        while True:
            token = self.next()
            quoted = token.startswith(("`", '"'))
            parts += [_unquote(token)] if quoted else [p for p in token.split(".") if p]
            if self.take("."):
                continue
            if not quoted and token.endswith(".") and self.at < len(self.items):
                continue
            break
        return (parts[-2].lower() if len(parts) > 1 else None), parts[-1].lower()

    def type_text(self) -> str:
        depth, out = 0, []
        while self.at < len(self.items):
            token = self.items[self.at]
            if depth == 0 and (token in (",", ")") or token.upper() == "COMMENT"):
                break
            depth += token in ("<", "(")
            depth -= token in (">", ")")
            out.append(token)
            self.at += 1
        return "".join(out).lower()

    def columns(self) -> list[dict[str, str]]:
        self.expect("(")
        found = []
        while not self.take(")"):
            name = _unquote(self.next()).lower()
            column = {"Name": name, "Type": self.type_text()}
            if self.take("COMMENT"):
                column["Comment"] = _unquote(self.next())
            found.append(column)
            self.take(",")
        return found

    def pairs(self) -> dict[str, str]:
        self.expect("(")
        found = {}
        while not self.take(")"):
            key = _unquote(self.next())
            self.expect("=")
            found[key] = _unquote(self.next())
            self.take(",")
        return found


def create_external_table(sql: str, glue: Any, database: str) -> Result:
    cursor = Cursor(sql)
    cursor.expect("CREATE")
    cursor.take("EXTERNAL")
    cursor.expect("TABLE")
    if_not_exists = cursor.take("IF", "NOT", "EXISTS")
    db, name = cursor.name()
    db = db or database
    columns = cursor.columns()
    table: dict[str, Any] = {"Name": name, "TableType": "EXTERNAL_TABLE", "Parameters": {"EXTERNAL": "TRUE"},
                             "PartitionKeys": []}
    serde: dict[str, Any] = {"Parameters": {}}
    input_format = output_format = None
    location = None
    while cursor.at < len(cursor.items):
        if cursor.take("COMMENT"):
            table["Description"] = _unquote(cursor.next())
        elif cursor.take("PARTITIONED", "BY"):
            table["PartitionKeys"] = cursor.columns()
        elif cursor.take("ROW", "FORMAT", "SERDE"):
            serde["SerializationLibrary"] = _unquote(cursor.next())
            if cursor.take("WITH", "SERDEPROPERTIES"):
                serde["Parameters"].update(cursor.pairs())
        elif cursor.take("ROW", "FORMAT", "DELIMITED"):
            serde["SerializationLibrary"] = formats.LAZY_SERDE
            while True:
                if cursor.take("FIELDS", "TERMINATED", "BY"):
                    serde["Parameters"]["field.delim"] = _unquote(cursor.next())
                elif cursor.take("ESCAPED", "BY"):
                    serde["Parameters"]["escape.delim"] = _unquote(cursor.next())
                elif cursor.take("LINES", "TERMINATED", "BY"):
                    serde["Parameters"]["line.delim"] = _unquote(cursor.next())
                elif cursor.take("COLLECTION", "ITEMS", "TERMINATED", "BY"):
                    serde["Parameters"]["collection.delim"] = _unquote(cursor.next())
                elif cursor.take("MAP", "KEYS", "TERMINATED", "BY"):
                    serde["Parameters"]["mapkey.delim"] = _unquote(cursor.next())
                else:
                    break
        elif cursor.take("STORED", "AS", "INPUTFORMAT"):
            input_format = _unquote(cursor.next())
            cursor.expect("OUTPUTFORMAT")
            output_format = _unquote(cursor.next())
        elif cursor.take("STORED", "AS"):
            stored = cursor.next().upper()
            if stored not in STORED:
                raise QueryFailed(f"NOT_SUPPORTED: the local Athena reads tables STORED AS "
                                  f"{', '.join(STORED)}, not {stored}", error_type=1005)
            input_format, output_format, library = STORED[stored]
            serde.setdefault("SerializationLibrary", library)
        elif cursor.take("LOCATION"):
            location = _unquote(cursor.next())
        elif cursor.take("TBLPROPERTIES"):
            table["Parameters"].update(cursor.pairs())
        elif cursor.take("CLUSTERED", "BY"):
            cursor.columns() if cursor.peek("(") else None
            raise QueryFailed("NOT_SUPPORTED: the local Athena does not read bucketed tables (CLUSTERED BY)",
                              error_type=1005)
        else:
            raise QueryFailed(f"line 1:1: mismatched input '{cursor.items[cursor.at]}'. Expecting: COMMENT, "
                              "PARTITIONED BY, ROW FORMAT, STORED AS, LOCATION, TBLPROPERTIES", error_type=1004)
    if location is None:
        raise QueryFailed("line 1:1: External location must be specified (LOCATION 's3://...')", error_type=1004)
    split_url(location)
    serde.setdefault("SerializationLibrary", formats.LAZY_SERDE)
    descriptor = {"Columns": columns, "Location": location,
                  "InputFormat": input_format or formats.TEXT_INPUT, "OutputFormat": output_format or formats.TEXT_OUTPUT,
                  "SerdeInfo": serde, "Compressed": False, "NumberOfBuckets": -1, "StoredAsSubDirectories": False}
    table["StorageDescriptor"] = descriptor
    for column in columns + table["PartitionKeys"]:
        try:
            formats.duck_type(column["Type"])
        except formats.FormatError:
            raise QueryFailed(f"line 1:1: Unknown type '{column['Type']}' for column '{column['Name']}'",
                              error_type=1004) from None
    if db not in glue.databases:
        raise QueryFailed(f"SCHEMA_NOT_FOUND: line 1:1: Schema '{db}' does not exist", error_type=1003)
    if name in glue.databases[db].tables:
        if if_not_exists:
            return _done("CREATE_TABLE")
        raise QueryFailed(f"Table {name} already exists", error_type=1003)
    glue.create_table(db, name, table)
    return _done("CREATE_TABLE")


def _done(substatement: str, rows: list[tuple[Any, ...]] | None = None, column: str = "result",
          statement_type: str = "DDL") -> Result:
    columns = [column_info(column, "VARCHAR")] if rows is not None else []
    return Result(columns, rows or [], statement_type, substatement, header=False, text_output=True)


def _table(glue: Any, db: str | None, name: str, database: str) -> Any:
    db = db or database
    found = find_table(glue, db, name)
    if found is None:
        raise QueryFailed(f"TABLE_NOT_FOUND: line 1:1: Table '{CATALOG}.{db}.{name}' does not exist",
                          error_type=1003)
    return found


def repair(sql: str, glue: Any, database: str, lake: Lake) -> Result:
    """MSCK REPAIR TABLE: partitions found as key=value folders under the location, added when missing."""
    cursor = Cursor(sql)
    cursor.expect("MSCK", "REPAIR", "TABLE")
    db, name = cursor.name()
    table = _table(glue, db, name, database)
    keys = [k for k, _ in table.keys]
    if not keys:
        return _done("MSCK_REPAIR_TABLE", [], "result")
    root = folder(table.location)
    _, prefix = split_url(root)
    known = {tuple(p.get("Values") or []) for p in table.partitions}
    found: dict[tuple[str, ...], str] = {}
    for obj in lake.objects(root):
        values = partition_values_from_path(obj.key[len(prefix):], keys)
        if values is not None and values not in known:
            found.setdefault(values, root + "/".join(f"{k}={v}" for k, v in zip(keys, values)) + "/")
    model = glue.databases[table.database].tables[table.name]
    lines = []
    for values, location in sorted(found.items()):
        spec = "/".join(f"{k}={v}" for k, v in zip(keys, values))
        model.create_partition({"Values": list(values),
                                "StorageDescriptor": {**table.descriptor, "Location": location}})
        lines.append(f"Repair: Added partition to metastore {table.name}:{spec}")
    if found:
        lines.insert(0, "Partitions not in metastore:\t" + "\t".join(
            f"{table.name}:{'/'.join(f'{k}={v}' for k, v in zip(keys, values))}" for values in sorted(found)))
    return _done("MSCK_REPAIR_TABLE", [(line,) for line in lines])


def utility(sql: str, glue: Any, database: str, lake: Lake) -> Result | None:
    """Run a DDL or utility statement; None when `sql` is not one (a query)."""
    cursor = Cursor(sql)
    if cursor.peek("CREATE", "EXTERNAL", "TABLE"):
        return create_external_table(sql, glue, database)
    if cursor.peek("CREATE", "TABLE") and not re.search(r"\)?\s+AS\s*\(?\s*(SELECT|WITH)\b", sql, re.I):
        raise QueryFailed("Only external table creation is supported: CREATE EXTERNAL TABLE ... LOCATION, or "
                          "CREATE TABLE ... AS SELECT (the local Athena has no Iceberg tables)", error_type=1004)
    if cursor.peek("MSCK", "REPAIR", "TABLE"):
        return repair(sql, glue, database, lake)
    if cursor.take("CREATE", "DATABASE") or cursor.take("CREATE", "SCHEMA"):
        exists = cursor.take("IF", "NOT", "EXISTS")
        name = _unquote(cursor.next()).lower()
        if name in glue.databases:
            if exists:
                return _done("CREATE_DATABASE")
            raise QueryFailed(f"Database {name} already exists", error_type=1003)
        description = ""
        if cursor.take("COMMENT"):
            description = _unquote(cursor.next())
        location = _unquote(cursor.next()) if cursor.take("LOCATION") else None
        glue.create_database(name, {"Name": name, "Description": description,
                                    **({"LocationUri": location} if location else {})})
        return _done("CREATE_DATABASE")
    if cursor.take("DROP", "DATABASE") or cursor.take("DROP", "SCHEMA"):
        exists = cursor.take("IF", "EXISTS")
        name = _unquote(cursor.next()).lower()
        if name not in glue.databases:
            if exists:
                return _done("DROP_DATABASE")
            raise QueryFailed(f"SCHEMA_NOT_FOUND: line 1:1: Schema '{name}' does not exist", error_type=1003)
        if glue.databases[name].tables and not cursor.take("CASCADE"):
            raise QueryFailed(f"Database {name} is not empty. One or more tables exist.", error_type=1003)
        glue.delete_database(name)
        return _done("DROP_DATABASE")
    if cursor.take("DROP", "TABLE"):
        exists = cursor.take("IF", "EXISTS")
        db, name = cursor.name()
        if find_table(glue, db or database, name) is None:
            if exists:
                return _done("DROP_TABLE")
            _table(glue, db, name, database)
        glue.delete_table(db or database, name)
        return _done("DROP_TABLE")
    if cursor.take("ALTER", "TABLE"):
        db, name = cursor.name()
        table = _table(glue, db, name, database)
        if not cursor.take("ADD"):
            raise QueryFailed("NOT_SUPPORTED: the local Athena runs ALTER TABLE ... ADD PARTITION only", error_type=1005)
        exists = cursor.take("IF", "NOT", "EXISTS")
        model = glue.databases[table.database].tables[table.name]
        while cursor.take("PARTITION"):
            spec = {k.lower(): v for k, v in cursor.pairs().items()}
            values = [spec.get(k, "") for k, _ in table.keys]
            location = _unquote(cursor.next()) if cursor.take("LOCATION") else \
                folder(table.location) + "/".join(f"{k}={spec.get(k, '')}" for k, _ in table.keys) + "/"
            if str(values) in model.partitions:
                if exists:
                    continue
                raise QueryFailed(f"Partition already exists: {values}", error_type=1003)
            model.create_partition({"Values": values, "StorageDescriptor": {**table.descriptor, "Location": location}})
        return _done("ALTER_TABLE_ADD_PARTITION")
    if cursor.take("SHOW", "TABLES"):
        db = database
        if cursor.take("IN") or cursor.take("FROM"):
            db = _unquote(cursor.next()).lower()
        pattern = _unquote(cursor.next()) if cursor.at < len(cursor.items) else "*"
        if db not in glue.databases:
            raise QueryFailed(f"SCHEMA_NOT_FOUND: line 1:1: Schema '{db}' does not exist", error_type=1003)
        names = sorted(n for n in glue.databases[db].tables
                       if any(fnmatch.fnmatch(n, p.strip().lower()) for p in pattern.split("|")))
        return _done("SHOW_TABLES", [(n,) for n in names], "tab_name", "UTILITY")
    if cursor.take("SHOW", "PARTITIONS"):
        db, name = cursor.name()
        table = _table(glue, db, name, database)
        keys = [k for k, _ in table.keys]
        rows = sorted("/".join(f"{k}={v}" for k, v in zip(keys, p.get("Values") or [])) for p in table.partitions)
        return _done("SHOW_PARTITIONS", [(r,) for r in rows], "partition", "UTILITY")
    if cursor.take("DESCRIBE") or cursor.take("DESC"):
        cursor.take("FORMATTED") or cursor.take("EXTENDED")
        db, name = cursor.name()
        table = _table(glue, db, name, database)
        rows = [(f"{n:<24}\t{t:<24}\t",) for n, t in table.columns + table.keys]
        if table.keys:
            rows += [("",), ("# Partition Information",), (f"# {'col_name':<22}\t{'data_type':<24}\t",), ("",)]
            rows += [(f"{n:<24}\t{t:<24}\t",) for n, t in table.keys]
        return _done("DESCRIBE_TABLE", rows, "col_name", "UTILITY")
    if cursor.peek("SHOW") or cursor.peek("INSERT") or cursor.peek("UPDATE") or cursor.peek("DELETE") \
            or cursor.peek("MERGE") or cursor.peek("ALTER") or cursor.peek("VACUUM") or cursor.peek("OPTIMIZE"):
        raise QueryFailed(f"NOT_SUPPORTED: the local Athena does not run {' '.join(cursor.items[:2]).upper()} "
                          "statements", error_type=1005)
    return None
