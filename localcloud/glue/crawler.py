"""One crawl of a Glue crawler over its S3 targets, as AWS documents it: objects listed (Exclusions
applied), tables found where the folders stop being partitions, the schema inferred from sampled objects,
Hive-style folders (`year=2010/`) as partition keys of type string, and the Data Catalog written per the
crawler's SchemaChangePolicy. New tables and partitions are always added (the policy governs changes and
deletions only).

Where a folder's children are plain folders (not `key=value`), the children whose schemas are alike
become partitions of one table (keys `partition_0`, ...), otherwise each child is its own table, named
after its folder: the documented rule of "the majority of schemas at a folder level are similar".

A crawl only reads the catalog: what it would write is a list of changes (`Outcome.changes`, plain JSON),
which `apply` makes under the journal's lock (glue/executor.py sends them as one effect, so a crawl that
finished survives a crash and a replay writes exactly what the crawl decided)."""

from __future__ import annotations

import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Callable

from localcloud.glue import formats
from localcloud.glue.lake import Lake, LakeError, S3Object, folder, split_url

log = logging.getLogger("localcloud.glue")

SAMPLE_OBJECTS = 24  # objects read to infer a table's schema (spread across its partitions)
SAMPLE_BYTES = 1024 * 1024  # of each, like the crawler's first megabyte
_HIVE = re.compile(r"^([^=/]+)=(.*)$")


class CrawlError(Exception):
    """The crawl failed; the message becomes LastCrawl.ErrorMessage."""


class Stopped(Exception):
    """StopCrawler was called during the crawl."""


@dataclass
class Group:
    """Objects that make one table: its root folder, partition keys and objects by partition values."""

    root: str  # s3://bucket/prefix/
    name: str
    keys: list[str]
    parts: dict[tuple[str, ...], list[S3Object]] = field(default_factory=dict)

    @property
    def objects(self) -> list[S3Object]:
        return [obj for objects in self.parts.values() for obj in objects]


@dataclass
class Outcome:
    tables_created: int = 0
    tables_updated: int = 0
    tables_deleted: int = 0
    partitions_created: int = 0
    partitions_deleted: int = 0
    messages: list[str] = field(default_factory=list)
    changes: list[list[Any]] = field(default_factory=list)  # [kind, database, ...]: see `apply`


def apply(glue: Any, changes: list[list[Any]]) -> None:
    """Write a crawl's changes into moto's catalog (`glue`: its backend). What the catalog became since
    the crawl read it is met as AWS's crawler would: a table created meanwhile is updated, a partition
    or table already there (or already gone) is left, a database deleted meanwhile takes its tables."""
    for kind, database_name, *args in changes:
        if kind == "create_database":
            if database_name not in glue.databases:
                glue.create_database(database_name, {"Name": database_name})
            continue
        database = glue.databases.get(database_name)
        if database is None:
            continue
        if kind == "put_table":
            name, table_input = args
            if name in database.tables:
                glue.update_table(database_name, name, table_input)
            else:
                glue.create_table(database_name, name, table_input)
        elif kind == "create_partition":
            name, partition = args
            table = database.tables.get(name)
            if table is not None and str(list(partition["Values"])) not in table.partitions:
                table.create_partition(partition)
        elif kind == "delete_partition":
            name, key = args
            table = database.tables.get(name)
            if table is not None:
                table.partitions.pop(key, None)
        elif kind == "delete_table":
            if args[0] in database.tables:
                glue.delete_table(database_name, args[0])
        else:
            raise ValueError(f"unknown catalog change {kind!r}")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Glue exclude pattern (`*` within a folder, `**` across folders, `?`, `[...]`, `{a,b}`)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "{":
            end = pattern.find("}", i)
            if end > i:
                out.append("(?:" + "|".join(re.escape(p) for p in pattern[i + 1:end].split(",")) + ")")
                i = end + 1
                continue
            out.append(re.escape(char))
        elif char == "[":
            end = pattern.find("]", i)
            if end > i:
                out.append(pattern[i:end + 1])
                i = end + 1
                continue
            out.append(re.escape(char))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def excluded(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(p.match(relative) for p in patterns)


# --------------------------------------------------------------------------------------------------
# Grouping objects into tables


def _segments(root: str, obj: S3Object) -> list[str]:
    _, prefix = split_url(root)
    return obj.key[len(prefix):].split("/")[:-1]


def plan(root: str, objects: list[S3Object], schema_of: Callable[[list[S3Object]], tuple[Any, ...]],
         name: str) -> list[Group]:
    """The tables under `root`: one per folder level where the objects stop being partitions."""
    depths = {len(_segments(root, obj)) for obj in objects}
    if depths == {0}:
        return [Group(root, name, [], {(): objects})]
    all_segments = [_segments(root, obj) for obj in objects]
    if len(depths) == 1:
        keys = [_HIVE.match(seg).group(1) if _HIVE.match(seg) else None for seg in all_segments[0]]
        hive_everywhere = all(
            all(_HIVE.match(seg) and _HIVE.match(seg).group(1) == key for seg, key in zip(segs, keys))
            for segs in all_segments)
        if hive_everywhere:
            group = Group(root, name, [str(k).lower() for k in keys])
            for obj, segs in zip(objects, all_segments):
                group.parts.setdefault(tuple(_HIVE.match(s).group(2) for s in segs), []).append(obj)
            return [group]
    # plain folders (or mixed depths): alike children are partitions, different ones are tables
    children: dict[str, list[S3Object]] = {}
    loose = []
    for obj, segs in zip(objects, all_segments):
        (children.setdefault(segs[0], []) if segs else loose).append(obj)
    schemas = {child: schema_of(objs) for child, objs in children.items()}
    if not loose and len(depths) == 1 and len(set(schemas.values())) == 1:
        depth = depths.pop()
        keys = []
        for level in range(depth):
            match = _HIVE.match(all_segments[0][level])
            keys.append(match.group(1).lower() if match else f"partition_{level}")
        group = Group(root, name, keys)
        for obj, segs in zip(objects, all_segments):
            values = tuple(_HIVE.match(s).group(2) if _HIVE.match(s) else s for s in segs)
            group.parts.setdefault(values, []).append(obj)
        return [group]
    groups = [Group(root, name, [], {(): loose})] if loose else []
    for child, objs in sorted(children.items()):
        groups += plan(folder(root + child), objs, schema_of, formats.safe_name(child))
    return groups


# --------------------------------------------------------------------------------------------------
# The crawl


class Crawl:
    """One run of `crawler` (moto's FakeCrawler) over moto's S3: what it would write in moto's Glue
    catalog, as `Outcome.changes` (the catalog itself is only read)."""

    def __init__(self, glue: Any, crawler: Any, lake: Lake, stopping: Callable[[], bool]):
        self.glue, self.crawler, self.lake, self.stopping = glue, crawler, lake, stopping
        self.outcome = Outcome()
        self.workdir = Path(tempfile.mkdtemp(prefix="crawl-"))
        self._schemas: dict[tuple[str, ...], tuple[str, list[tuple[str, str]], str, bool, int, int]] = {}

    def run(self) -> Outcome:
        import shutil

        try:
            targets = self.crawler.targets or {}
            others = [kind for kind, value in targets.items() if value and kind != "S3Targets"]
            if others:
                raise CrawlError(f"the local cloud's crawler reads S3 targets only, not {', '.join(others)}")
            if not targets.get("S3Targets"):
                raise CrawlError("the crawler has no S3 targets")
            database = self._database()
            seen: set[str] = set()
            for target in targets["S3Targets"]:
                for group in self._groups(target):
                    self._check_stop()
                    seen.add(self._write(database, group))
            self._deletions(database, targets["S3Targets"], seen)
            return self.outcome
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _check_stop(self) -> None:
        if self.stopping():
            raise Stopped()

    def _database(self) -> Any:
        name = self.crawler.database_name
        if not name:
            raise CrawlError("the crawler has no DatabaseName")
        if name not in self.glue.databases:  # the crawler creates its database when it is missing
            self.outcome.changes.append(["create_database", name])
            return SimpleNamespace(name=name, tables={})
        return self.glue.databases[name]

    def _groups(self, target: dict[str, Any]) -> list[Group]:
        path = str(target.get("Path") or "")
        try:
            bucket, prefix = split_url(path)
            root = f"s3://{bucket}/{prefix}"
            if prefix and not prefix.endswith("/"):
                root += "/"
            objects = self.lake.objects(root)
        except LakeError as error:
            raise CrawlError(f"Unable to crawl {path}: {error}") from None
        patterns = [glob_regex(p) for p in target.get("Exclusions") or []]
        _, root_prefix = split_url(root)
        objects = [o for o in objects if o.size > 0 and not excluded(o.key[len(root_prefix):], patterns)]
        if not objects:
            self.outcome.messages.append(f"no objects under {path}")
            return []
        name = formats.safe_name(root_prefix.rstrip("/").rsplit("/", 1)[-1] if root_prefix else bucket)
        groups = plan(root, objects, lambda objs: self._schema(objs)[:2], name)
        return [g for g in groups if self._schema(g.objects)[0] is not None]

    def _sample(self, objects: list[S3Object]) -> list[S3Object]:
        if len(objects) <= SAMPLE_OBJECTS:
            return objects
        step = len(objects) / SAMPLE_OBJECTS
        return [objects[int(i * step)] for i in range(SAMPLE_OBJECTS)]

    def _schema(self, objects: list[S3Object]) -> tuple[Any, ...]:
        """(kind, columns, delimiter, quoted, sampled bytes, sampled records) of objects (cached)."""
        sample = self._sample(objects)
        cache_key = tuple(o.url for o in sample)
        if cache_key in self._schemas:
            return self._schemas[cache_key]
        files: dict[str, list[Path]] = {}
        heads: dict[str, bytes] = {}
        size = records = 0
        for obj in sample:
            self._check_stop()
            data = self.lake.read(obj)
            kind = formats.classify(data[:4096])
            if kind is None:
                continue
            if kind != "parquet" and len(data) > SAMPLE_BYTES:  # first megabyte, whole lines
                data = data[:SAMPLE_BYTES].rsplit(b"\n", 1)[0] + b"\n"
            path = self.workdir / f"{len(list(self.workdir.iterdir()))}.{kind}"
            path.write_bytes(data)
            files.setdefault(kind, []).append(path)
            heads.setdefault(kind, data[:65536])
            size += len(data)
            records += formats.count_records(kind, data)
        if not files:
            result: tuple[Any, ...] = (None, (), ",", False, 0, 0)
        else:
            kind = max(files, key=lambda k: len(files[k]))
            delimiter, quoted = formats.csv_dialect(heads[kind]) if kind == "csv" else (",", False)
            try:
                columns = formats.infer_columns(kind, files[kind], delimiter)
            except formats.FormatError as error:
                raise CrawlError(str(error)) from None
            result = (kind, tuple(columns), delimiter, quoted, size, records)
        self._schemas[cache_key] = result
        return result

    def _table_input(self, group: Group, old: dict[str, Any] | None) -> dict[str, Any]:
        kind, columns, delimiter, quoted, size, records = self._schema(group.objects)
        partition_names = set(group.keys)
        columns = [c for c in columns if c[0] not in partition_names]
        descriptor, parameters = formats.storage(kind, group.root, columns, delimiter=delimiter, quoted=quoted)
        total = sum(o.size for o in group.objects)
        average = size // records if records else 0
        parameters.update({
            "CrawlerSchemaDeserializerVersion": "1.0", "CrawlerSchemaSerializerVersion": "1.0",
            "UPDATED_BY_CRAWLER": self.crawler.name, "averageRecordSize": str(average),
            "objectCount": str(len(group.objects)), "recordCount": str(total // average if average else 0),
            "sizeKey": str(total)})
        descriptor["Parameters"] = dict(parameters)
        role = str(self.crawler.role or "").rsplit("/", 1)[-1]
        return {"Name": (self.crawler.table_prefix or "") + group.name,
                "Owner": "owner", "Retention": 0, "StorageDescriptor": descriptor,
                "PartitionKeys": [{"Name": key, "Type": "string"} for key in group.keys],
                "TableType": "EXTERNAL_TABLE", "Parameters": parameters,
                "CreatedBy": (old or {}).get("CreatedBy") or
                f"arn:aws:sts::{self.glue.account_id}:assumed-role/{role}/AWS-Crawler"}

    @staticmethod
    def _shape(table_input: dict[str, Any]) -> tuple[Any, ...]:
        descriptor = table_input.get("StorageDescriptor") or {}
        return (tuple((c["Name"], c["Type"]) for c in descriptor.get("Columns") or []),
                tuple((k["Name"], k["Type"]) for k in table_input.get("PartitionKeys") or []),
                (descriptor.get("SerdeInfo") or {}).get("SerializationLibrary"), descriptor.get("Location"))

    def _write(self, database: Any, group: Group) -> str:
        """Create or update the group's table and add its new partitions; the table's name."""
        policy = self.crawler.schema_change_policy or {}
        name = (self.crawler.table_prefix or "") + group.name
        existing = database.tables.get(name)
        old = existing.get_version(str(existing._current_version)) if existing is not None else None
        table_input = self._table_input(group, old)
        if existing is None:
            self.outcome.changes.append(["put_table", database.name, name, table_input])
            self.outcome.tables_created += 1
        elif self._shape(old) != self._shape(table_input):
            if policy.get("UpdateBehavior", "UPDATE_IN_DATABASE") == "UPDATE_IN_DATABASE":
                self.outcome.changes.append(["put_table", database.name, name, table_input])
                self.outcome.tables_updated += 1
            else:
                self.outcome.messages.append(f"table {name}: schema changed, left as it is (UpdateBehavior LOG)")
        if not group.keys:
            return name
        partitions = dict(existing.partitions) if existing is not None else {}
        descriptor = table_input["StorageDescriptor"]
        kind = table_input["Parameters"]["classification"]
        for values, objects in sorted(group.parts.items()):
            if str(list(values)) in partitions:
                continue
            location = objects[0].url.rsplit("/", 1)[0] + "/"  # the partition's folder, as written
            part_descriptor = {**descriptor, "Location": location,
                               "Parameters": {**descriptor["Parameters"], "objectCount": str(len(objects)),
                                              "sizeKey": str(sum(o.size for o in objects))}}
            self.outcome.changes.append(["create_partition", database.name, name, {
                "Values": list(values), "StorageDescriptor": part_descriptor, "Parameters": {"classification": kind}}])
            self.outcome.partitions_created += 1
        self._stale_partitions(database.name, name, partitions, group)
        return name

    def _stale_partitions(self, database: str, table: str, partitions: dict[str, Any], group: Group) -> None:
        behavior = (self.crawler.schema_change_policy or {}).get("DeleteBehavior", "DEPRECATE_IN_DATABASE")
        found = {str(list(values)) for values in group.parts}
        for key in [k for k in partitions if k not in found]:
            if behavior == "DELETE_FROM_DATABASE":
                self.outcome.changes.append(["delete_partition", database, table, key])
                self.outcome.partitions_deleted += 1
            else:
                self.outcome.messages.append(f"partition {key} of {table} no longer found ({behavior})")

    def _deletions(self, database: Any, targets: list[dict[str, Any]], seen: set[str]) -> None:
        """Tables this crawler made under its targets whose objects are gone, per DeleteBehavior."""
        behavior = (self.crawler.schema_change_policy or {}).get("DeleteBehavior", "DEPRECATE_IN_DATABASE")
        roots = [folder(str(t.get("Path") or "")) for t in targets]
        for name, table in list(database.tables.items()):
            current = table.get_version(str(table._current_version))
            location = folder(str((current.get("StorageDescriptor") or {}).get("Location") or ""))
            if (name in seen or (current.get("Parameters") or {}).get("UPDATED_BY_CRAWLER") != self.crawler.name
                    or not any(location.startswith(root) for root in roots)):
                continue
            if behavior == "DELETE_FROM_DATABASE":
                self.outcome.changes.append(["delete_table", database.name, name])
                self.outcome.tables_deleted += 1
            elif behavior == "DEPRECATE_IN_DATABASE":
                parameters = dict(current.get("Parameters") or {})
                if "DEPRECATED_BY_CRAWLER" not in parameters:
                    parameters["DEPRECATED_BY_CRAWLER"] = str(int(time.time()))
                    self.outcome.changes.append(["put_table", database.name, name,
                                                 {**current, "Parameters": parameters}])
                    self.outcome.tables_updated += 1
            else:
                self.outcome.messages.append(f"table {name}: objects no longer found (DeleteBehavior LOG)")
