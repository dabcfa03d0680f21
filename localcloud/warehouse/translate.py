"""Translating ordinary Redshift statements to DuckDB with sqlglot (Redshift-only attributes dropped,
IDENTITY as sequences, keys not enforced)."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from localcloud.warehouse.columns import ColumnSpec, spec_from_sqlglot
from localcloud.warehouse.sqltext import _map_code, leading_words, quote_ident

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "Unsupported property" chatter for dropped attributes


_REDSHIFT_ONLY = re.compile(
    r"\b(?:(?:COMPOUND|INTERLEAVED)\s+)?SORTKEY\s*(?:\([^)]*\)|AUTO\b)?|\bDISTKEY\s*(?:\([^)]*\))?"
    r"|\bDISTSTYLE\s+\w+|\bENCODE\s+\w+|\bBACKUP\s+(?:YES|NO)\b",
    re.IGNORECASE,
)


@dataclass
class Translation:
    """DuckDB statements for one Redshift statement, and what they change in the type catalog."""

    statements: list[str]
    returns_rows: bool
    counts_rows: bool
    declared: tuple[str, str, list[ColumnSpec]] | None = None
    dropped: list[tuple[str, str]] = field(default_factory=list)


def translate(sql: str) -> Translation:
    """One Redshift statement as DuckDB statements (parse errors become Redshift's syntax error)."""
    if leading_words(sql) in ("CREATE TABLE", "CREATE TEMP", "CREATE TEMPORARY", "CREATE LOCAL"):
        sql = _map_code(sql, lambda code: _REDSHIFT_ONLY.sub(" ", code))
    try:
        tree = sqlglot.parse_one(sql, read="redshift")
    except sqlglot.errors.ParseError:
        return _untranslated(sql)
    tree = tree.transform(_datepart_unit)
    prelude: list[str] = []
    declared = None
    if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
        declared, prelude = _rewrite_create_table(tree)
    dropped = [_table_key(table) for table in tree.find_all(exp.Table)] if _is_drop_table(tree) else []
    return Translation(
        statements=prelude + [tree.sql(dialect="duckdb")],
        returns_rows=isinstance(tree, (exp.Query, exp.Describe, exp.Show)),
        counts_rows=isinstance(tree, (exp.Insert, exp.Update, exp.Delete, exp.Merge)),
        declared=declared,
        dropped=dropped,
    )


def _untranslated(sql: str) -> Translation:
    """SQL sqlglot cannot parse goes to DuckDB as written (DuckDB reports the syntax error if it is one)."""
    first = leading_words(sql, 1)
    return Translation(statements=[sql], returns_rows=first in ("SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE"),
                       counts_rows=first in ("INSERT", "UPDATE", "DELETE", "MERGE"))


def _datepart_unit(node: exp.Expression) -> exp.Expression:
    """DATEPART(month, ts) names its unit as an identifier; DuckDB wants a string."""
    if isinstance(node, exp.Anonymous) and node.name.upper() in ("DATEPART", "DATE_PART") and node.expressions:
        unit = node.expressions[0]
        if isinstance(unit, exp.Column) and not unit.table:
            return exp.Anonymous(this="DATE_PART", expressions=[exp.Literal.string(unit.name), *node.expressions[1:]])
    return node


def _table_key(table: exp.Table) -> tuple[str, str]:
    return (table.db or "public").lower(), table.name.lower()


def _is_drop_table(tree: exp.Expression) -> bool:
    return isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "TABLE"


def _rewrite_create_table(tree: exp.Create) -> tuple[tuple[str, str, list[ColumnSpec]], list[str]]:
    """Drop constraints Redshift does not enforce, turn IDENTITY into a sequence, note declared types."""
    schema = tree.this
    table = schema.this
    schema_name, table_name = _table_key(table)
    prelude, specs = [], []
    for item in list(schema.expressions):
        if isinstance(item, (exp.PrimaryKey, exp.UniqueColumnConstraint, exp.ForeignKey, exp.Constraint)):
            item.pop()
            continue
        if not isinstance(item, exp.ColumnDef):
            continue
        constraints = list(item.args.get("constraints") or [])
        specs.append(spec_from_sqlglot(item.name, item.args["kind"], constraints))
        kept = []
        for constraint in constraints:
            kind = constraint.args.get("kind")
            if isinstance(kind, (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint, exp.Reference,
                                 exp.EncodeColumnConstraint)):
                continue
            if isinstance(kind, exp.GeneratedAsIdentityColumnConstraint):
                sequence = f"{table_name}_{item.name}_identity_{uuid.uuid4().hex[:8]}"
                qualified = f"{quote_ident(schema_name)}.{quote_ident(sequence)}"
                start = kind.args.get("start").name if kind.args.get("start") else "1"
                step = kind.args.get("increment").name if kind.args.get("increment") else "1"
                prelude.append(f"CREATE SEQUENCE IF NOT EXISTS {qualified} START {start} INCREMENT {step}")
                kind = exp.DefaultColumnConstraint(
                    this=exp.Anonymous(this="nextval", expressions=[exp.Literal.string(f"{schema_name}.{sequence}")]))
                constraint = exp.ColumnConstraint(kind=kind)
            kept.append(constraint)
        item.set("constraints", kept)
    if tree.args.get("properties"):
        tree.set("properties", None)  # DISTSTYLE and friends left after the text pass
    return (schema_name, table_name, specs), prelude

