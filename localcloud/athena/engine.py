"""Athena SQL (Trino dialect) run on DuckDB: sqlglot parses the query (read "athena", written "duckdb"),
every catalog table it names is resolved in Glue and replaced by a view over only the objects it needs
(partitions pruned with the WHERE clause's predicates on partition keys), and DuckDB runs it. Errors come
back in Athena's words: "line 1:8: mismatched input ...", TABLE_NOT_FOUND, COLUMN_NOT_FOUND...

CREATE TABLE AS SELECT writes Parquet (or JSON) objects to S3 (the `external_location`, or the result
location's `tables/<query id>/`) and registers the table and its partitions in Glue."""

from __future__ import annotations

import datetime as dt
import decimal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from localcloud.athena.tables import CatalogTable, QueryFailed, Reading, find_table, prune, register
from localcloud.glue import formats
from localcloud.glue.lake import folder

CATALOG = "awsdatacatalog"


@dataclass
class Result:
    columns: list[dict[str, Any]]  # Athena's ColumnInfo
    rows: list[tuple[Any, ...]]
    statement_type: str = "DML"
    substatement: str = "SELECT"
    header: bool = True  # a SELECT's result starts with the column names
    text_output: bool = False  # DDL and utility results are .txt files
    scanned: int = 0
    notes: list[str] = field(default_factory=list)


def parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="athena")
    except sqlglot.errors.ParseError as error:
        first = (error.errors or [{}])[0]
        highlight = str(first.get("highlight") or "").strip()
        line, col = first.get("line", 1), int(first.get("col", 1)) - max(len(highlight) - 1, 0)
        description = str(first.get("description") or error)
        raise QueryFailed(f"line {line}:{col}: mismatched input '{highlight}'. {description}", error_type=1004) from None
    except sqlglot.errors.SqlglotError as error:
        raise QueryFailed(f"line 1:1: {error}", error_type=1004) from None
    if tree is None:
        raise QueryFailed("line 1:1: mismatched input '<EOF>'. Expecting: a statement", error_type=1004)
    return tree


def _position(table: exp.Table) -> str:
    first = table.args.get("catalog") or table.args.get("db") or table.this
    meta = getattr(first, "meta", None) or {}
    if "line" not in meta:
        return "line 1:1"
    return f"line {meta['line']}:{int(meta['col']) - len(first.name) + 1}"


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def resolve(glue: Any, table: exp.Table, database: str) -> CatalogTable:
    catalog = (table.catalog or CATALOG).lower()
    db = (table.db or database).lower()
    name = table.name.lower()
    if catalog != CATALOG:
        raise QueryFailed(f"CATALOG_NOT_FOUND: {_position(table)}: Catalog '{catalog}' does not exist", error_type=1003)
    if db not in glue.databases:
        raise QueryFailed(f"SCHEMA_NOT_FOUND: {_position(table)}: Schema '{db}' does not exist", error_type=1003)
    found = find_table(glue, db, name)
    if found is None:
        raise QueryFailed(f"TABLE_NOT_FOUND: {_position(table)}: Table '{CATALOG}.{db}.{name}' does not exist",
                          error_type=1003)
    return found


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    node = where.this if isinstance(where, exp.Where) else where
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def _predicates(select: exp.Select, source: exp.Table, table: CatalogTable, sources: int) -> list[str]:
    """The WHERE conjuncts of `select` that use only `source`'s partition keys, as DuckDB SQL."""
    keys = {k for k, _ in table.keys}
    alias = source.alias_or_name.lower()
    found = []
    for conjunct in _conjuncts(select.args.get("where")):
        columns = list(conjunct.find_all(exp.Column))
        if not columns or conjunct.find(exp.Select) or conjunct.find(exp.AggFunc):
            continue
        if not all(c.name.lower() in keys and (c.table.lower() == alias if c.table else sources == 1)
                   for c in columns):
            continue
        bare = conjunct.copy().transform(
            lambda node: exp.column(node.name) if isinstance(node, exp.Column) else node)
        found.append(bare.sql(dialect="duckdb"))
    return found


def _prunable(select: exp.Select) -> list[exp.Table]:
    """Tables read directly by `select` whose rows its WHERE can filter (FROM and inner joins)."""
    tables = []
    origin = select.args.get("from_") or select.args.get("from")
    if origin is not None and isinstance(origin.this, exp.Table):
        tables.append(origin.this)
    for join in select.args.get("joins") or []:
        side = (join.side or "").upper()
        if isinstance(join.this, exp.Table) and side not in ("LEFT", "RIGHT", "FULL"):
            tables.append(join.this)
    return tables


def referenced(tree: exp.Expression) -> set[str] | None:
    """Column names the query reads (None when a `*` reads them all; count(*) reads none)."""
    for star in tree.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):
            return None
    return {column.name.lower() for column in tree.find_all(exp.Column)}


def prepare(tree: exp.Expression, glue: Any, database: str, connection: Any, reading: Reading) -> exp.Expression:
    """`tree` with each catalog table replaced by a DuckDB view of what it must read."""
    ctes = _cte_names(tree)
    refs = [t for t in tree.find_all(exp.Table)
            if not (not t.db and t.name.lower() in ctes) and t.name]
    resolved: dict[str, CatalogTable] = {}
    needed: dict[str, set[int] | None] = {}
    pruned_refs: dict[int, list[int] | None] = {}
    for select in tree.find_all(exp.Select):
        candidates = _prunable(select)
        for source in candidates:
            if not source.db and source.name.lower() in ctes:
                continue
            table = resolve(glue, source, database)
            pruned_refs[id(source)] = prune(table, _predicates(select, source, table, len(candidates)), connection)
    for ref in refs:
        table = resolve(glue, ref, database)
        key = f"{table.database}.{table.name}"
        resolved[key] = table
        chosen = pruned_refs.get(id(ref))
        if key in needed and needed[key] is None:
            continue
        needed[key] = None if chosen is None else (needed.get(key) or set()) | set(chosen)
    views = {}
    for index, (key, table) in enumerate(sorted(resolved.items())):
        views[key] = f"__t{index}_{table.name}"
        chosen = needed.get(key)
        register(connection, views[key], table, None if chosen is None else sorted(chosen), reading,
                 referenced(tree))

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node in refs:
            key = f"{(node.db or database).lower()}.{node.name.lower()}"
            alias = node.alias or node.name
            return exp.Table(this=exp.to_identifier(views[key], quoted=True),
                             alias=exp.TableAlias(this=exp.to_identifier(alias)))
        return node

    return tree.transform(swap, copy=False)


def athena_type(duck: str) -> dict[str, Any]:
    """ColumnInfo type fields for a DuckDB result type."""
    upper = duck.upper()
    info: dict[str, Any] = {"Precision": 0, "Scale": 0}
    if upper.startswith("DECIMAL"):
        inside = upper[upper.find("(") + 1:upper.find(")")] if "(" in upper else "18,3"
        precision, scale = (int(x) for x in inside.split(","))
        return {"Type": "decimal", "Precision": precision, "Scale": scale}
    if upper.endswith("[]"):
        return {**info, "Type": "array"}
    if upper.startswith("STRUCT"):
        return {**info, "Type": "row"}
    if upper.startswith("MAP"):
        return {**info, "Type": "map"}
    simple = {"VARCHAR": ("varchar", 2147483647), "BIGINT": ("bigint", 19), "HUGEINT": ("bigint", 19),
              "UBIGINT": ("bigint", 19), "INTEGER": ("integer", 10), "SMALLINT": ("smallint", 5),
              "TINYINT": ("tinyint", 3), "DOUBLE": ("double", 17), "FLOAT": ("real", 17),
              "BOOLEAN": ("boolean", 0), "DATE": ("date", 0), "TIMESTAMP": ("timestamp", 3),
              "TIMESTAMP WITH TIME ZONE": ("timestamp with time zone", 3), "BLOB": ("varbinary", 0),
              "INTERVAL": ("interval day to second", 0), "TIME": ("time", 3)}
    kind, precision = simple.get(upper, ("varchar", 2147483647))
    return {"Type": kind, "Precision": precision, "Scale": 0}


def column_info(name: str, duck: str, database: str = "", table: str = "") -> dict[str, Any]:
    return {"CatalogName": "hive", "SchemaName": database, "TableName": table, "Name": name, "Label": name,
            **athena_type(duck), "Nullable": "UNKNOWN", "CaseSensitive": duck.upper() == "VARCHAR"}


def _failure(error: Exception) -> QueryFailed:
    text = str(error).strip()
    kind = type(error).__name__
    if "Referenced column" in text or ("Binder Error" in text and "column" in text.lower()):
        return QueryFailed(f"COLUMN_NOT_FOUND: line 1:1: {text.splitlines()[0]}", error_type=1003)
    if "Function" in text and "does not exist" in text:
        return QueryFailed(f"FUNCTION_NOT_FOUND: line 1:1: {text.splitlines()[0]}", error_type=1003)
    if kind in ("ConversionException", "InvalidInputException"):
        return QueryFailed(f"HIVE_BAD_DATA: {text.splitlines()[0]}", error_type=1002)
    return QueryFailed(f"GENERIC_INTERNAL_ERROR: the local Athena (DuckDB) could not run the query: "
                       f"{kind}: {text.splitlines()[0] if text else ''}", category=1, error_type=1001)


def connect() -> Any:
    """A DuckDB connection with Trino's arithmetic: integer / integer is an integer, times are UTC."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET integer_division = true")
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def select(tree: exp.Expression, glue: Any, database: str, reading: Reading) -> Result:
    import duckdb

    connection = connect()
    try:
        prepared = prepare(tree, glue, database, connection, reading)
        sql = prepared.sql(dialect="duckdb")
        try:
            described = [(str(row[0]), str(row[1])) for row in connection.execute(f"DESCRIBE {sql}").fetchall()]
            zoned = {i for i, (_, kind) in enumerate(described) if kind.startswith("TIMESTAMP WITH TIME ZONE")}
            if zoned:  # fetched as UTC wall times, shown with their zone as Athena shows them
                sql = "SELECT " + ", ".join(f"CAST(#{i + 1} AS TIMESTAMP)" if i in zoned else f"#{i + 1}"
                                            for i in range(len(described))) + f" FROM ({sql})"
            rows = connection.execute(sql).fetchall()
        except duckdb.Error as error:
            raise _failure(error) from None
        if zoned:
            rows = [tuple(f"{text_value(v)} UTC" if i in zoned and v is not None else v for i, v in enumerate(row))
                    for row in rows]
        columns = [column_info(name.lower(), kind) for name, kind in described]  # Trino folds names
        return Result(columns, rows, scanned=reading.scanned)
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------------
# CREATE TABLE AS SELECT


def _property(create: exp.Create, name: str) -> Any:
    properties = create.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.FileFormatProperty) and name == "format":
            return prop.this.name if isinstance(prop.this, exp.Expression) else str(prop.this)
        if isinstance(prop, exp.PartitionedByProperty) and name == "partitioned_by":
            return [e.name.lower() for e in prop.this.expressions] if isinstance(prop.this, exp.Array) else []
        if isinstance(prop, exp.LocationProperty) and name == "external_location":
            return prop.this.name
        if isinstance(prop, exp.Property) and prop.name.lower() == name:
            value = prop.args.get("value")
            if isinstance(value, exp.Array):
                return [e.name.lower() for e in value.expressions]
            return value.name if isinstance(value, exp.Expression) else value
    return None


def ctas(create: exp.Create, glue: Any, database: str, reading: Reading, output: str, query_id: str) -> Result:
    """CREATE TABLE ... WITH (format='PARQUET', external_location=..., partitioned_by=ARRAY[...]) AS SELECT."""
    import duckdb

    target = create.this if isinstance(create.this, exp.Table) else create.this.this
    db, name = (target.db or database).lower(), target.name.lower()
    if db not in glue.databases:
        raise QueryFailed(f"SCHEMA_NOT_FOUND: {_position(target)}: Schema '{db}' does not exist", error_type=1003)
    if name in glue.databases[db].tables:
        if create.args.get("exists"):
            return Result([], [], "DDL", "CREATE_TABLE_AS_SELECT", header=False, text_output=True)
        raise QueryFailed(f"TABLE_ALREADY_EXISTS: {_position(target)}: Destination table "
                          f"'{CATALOG}.{db}.{name}' already exists", error_type=1003)
    kind = str(_property(create, "format") or "PARQUET").upper()
    if kind not in ("PARQUET", "JSON"):
        raise QueryFailed(f"NOT_SUPPORTED: the local Athena writes CTAS tables as PARQUET or JSON, not {kind}",
                          error_type=1005)
    location = folder(str(_property(create, "external_location") or f"{folder(output)}tables/{query_id}/"))
    if reading.lake.objects(location):
        raise QueryFailed(f"HIVE_PATH_ALREADY_EXISTS: Target directory for table '{db}.{name}' already exists: "
                          f"{location}. You may need to manually clean the data at location "
                          f"'{location}' before retrying.", error_type=1003)
    partitioned = list(_property(create, "partitioned_by") or [])
    connection = connect()
    workdir = Path(tempfile.mkdtemp(prefix="ctas-", dir=reading.cache))
    try:
        prepared = prepare(create.expression, glue, database, connection, reading)
        try:
            connection.execute(f"CREATE TEMP TABLE __ctas AS {prepared.sql(dialect='duckdb')}")
        except duckdb.Error as error:
            raise _failure(error) from None
        described = connection.execute("DESCRIBE __ctas").fetchall()
        names = [str(row[0]).lower() for row in described]
        if partitioned and names[-len(partitioned):] != partitioned:
            raise QueryFailed("HIVE_COLUMN_ORDER_MISMATCH: Partition keys must be the last columns in the table "
                              "and in the same order as the partition specification: " + ", ".join(partitioned),
                              error_type=1003)
        count = connection.execute("SELECT count(*) FROM __ctas").fetchone()[0]
        columns = [(str(r[0]).lower(), formats.hive_type(str(r[1]))) for r in described]
        options = "FORMAT PARQUET, COMPRESSION SNAPPY" if kind == "PARQUET" else "FORMAT JSON"
        if partitioned:
            keys = ", ".join(f'"{k}"' for k in partitioned)
            connection.execute(f"COPY __ctas TO '{workdir}' ({options}, PARTITION_BY ({keys}), "
                               f"FILENAME_PATTERN '{query_id}_{{i}}')")
        else:
            connection.execute(f"COPY __ctas TO '{workdir / (query_id + '_0')}' ({options})")
    finally:
        connection.close()
    parts: dict[tuple[str, ...], str] = {}
    for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
        relative = path.relative_to(workdir).as_posix()
        reading.lake.write(location + relative, path.read_bytes())
        if partitioned:
            values = tuple(segment.split("=", 1)[1] for segment in relative.split("/")[:-1])
            parts[values] = location + relative.rsplit("/", 1)[0] + "/"
    key_set = set(partitioned)
    data_columns = [c for c in columns if c[0] not in key_set]
    classification = "parquet" if kind == "PARQUET" else "json"
    descriptor, parameters = formats.storage(classification, location, data_columns)
    parameters = {"classification": classification, "has_encrypted_data": "false",
                  **({"parquet.compression": "SNAPPY"} if kind == "PARQUET" else {})}
    key_types = dict(columns)
    glue.create_table(db, name, {"Name": name, "StorageDescriptor": descriptor, "TableType": "EXTERNAL_TABLE",
                                 "PartitionKeys": [{"Name": k, "Type": key_types[k]} for k in partitioned],
                                 "Parameters": parameters})
    table = glue.databases[db].tables[name]
    for values, part_location in sorted(parts.items()):
        table.create_partition({"Values": list(values), "StorageDescriptor": {**descriptor, "Location": part_location}})
    return Result([column_info("rows", "BIGINT")], [(count,)], "DDL", "CREATE_TABLE_AS_SELECT",
                  scanned=reading.scanned)


def text_value(value: Any) -> str | None:
    """A value as Athena renders it in results (VarCharValue and the CSV)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {True: "NaN"}.get(value != value, "Infinity" if value > 0 else "-Infinity")
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return repr(value)
        sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()  # Java's Double.toString
        text = "".join(map(str, digits))
        return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{len(text) - 1 + int(exponent)}"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join("null" if v is None else str(text_value(v)) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={'null' if v is None else text_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return " ".join(f"{b:02x}" for b in value)
    return str(value)
