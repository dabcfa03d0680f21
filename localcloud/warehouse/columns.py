"""Column types: what Redshift declared (DuckDB forgets VARCHAR lengths), as COPY checks it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from sqlglot import exp

DEFAULT_VARCHAR = 256  # Redshift's length for VARCHAR / TEXT without one
MAX_VARCHAR = 65535


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

