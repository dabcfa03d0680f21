"""Catalog tables as Athena reads them: Glue tables (moto's Data Catalog) resolved by name, their
partitions pruned with the query's own predicates, and their S3 objects (read through moto's S3 backend)
exposed to DuckDB as a view with the table's declared columns, read per the table's SerDe (JSON lines
matched by name case-insensitively, CSV/text by position, Parquet by name), partition keys as columns."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud.glue import formats
from localcloud.glue.lake import Lake, LakeError, S3Object, folder, split_url


CACHE_BYTES = int(os.environ.get("RETAIL_ATHENA_CACHE_MB", "2048")) * 1024 * 1024


class QueryFailed(Exception):
    """The query ends FAILED; the message is Athena's StateChangeReason."""

    def __init__(self, message: str, category: int = 2, error_type: int = 1000):
        super().__init__(message)
        self.message, self.category, self.error_type = message, category, error_type


@dataclass
class CatalogTable:
    database: str
    name: str
    definition: dict[str, Any]  # the TableInput moto stores (current version)
    partitions: list[dict[str, Any]]  # PartitionInput dicts

    @property
    def descriptor(self) -> dict[str, Any]:
        return self.definition.get("StorageDescriptor") or {}

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(c["Name"].lower(), c.get("Type") or "string") for c in self.descriptor.get("Columns") or []]

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(k["Name"].lower(), k.get("Type") or "string") for k in self.definition.get("PartitionKeys") or []]

    @property
    def location(self) -> str:
        return str(self.descriptor.get("Location") or "")


def find_table(glue: Any, database: str, name: str) -> CatalogTable | None:
    db = glue.databases.get(database)
    table = db.tables.get(name) if db is not None else None
    if table is None:
        return None
    definition = table.get_version(str(table._current_version))
    parts = [p.partition_input for p in list(table.partitions.values())]
    return CatalogTable(database, name, definition, parts)


@dataclass
class Reading:
    """What one query reads: files cached locally and the bytes scanned."""

    lake: Lake
    cache: Path
    scanned: int = 0
    objects: int = 0
    _done: set[str] = field(default_factory=set)
    _listings: dict[str, list[str]] = field(default_factory=dict)

    def objects_under(self, location: str) -> list[S3Object]:
        """The objects under a location; each bucket is listed once per query."""
        bucket = split_url(location)[0]
        if bucket not in self._listings:
            self._listings[bucket] = self.lake.keys(bucket)
        return self.lake.objects(location, self._listings[bucket])

    def fetch(self, obj: S3Object, suffix: str, count: bool = True) -> Path:
        digest = hashlib.sha1(f"{obj.bucket}/{obj.key}/{obj.etag}/{obj.size}".encode()).hexdigest()
        path = self.cache / f"{digest}.{suffix}"
        if not path.exists():
            data = self.lake.read(obj)
            temporary = path.with_name(f"{path.name}.{threading.get_ident()}.part")
            temporary.write_bytes(data)
            temporary.replace(path)
        if count and obj.url not in self._done:
            self._done.add(obj.url)
            self.scanned += obj.size
            self.objects += 1
        return path

    def trim(self) -> None:
        """Keep the cache under CACHE_BYTES: the least recently written files go first."""
        entries = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in self.cache.iterdir()
                         if p.is_file() and not p.name.endswith(".part"))
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= CACHE_BYTES:
                break
            path.unlink(missing_ok=True)
            total -= size

    def combined(self, objects: list[S3Object], suffix: str, skip_lines: int = 0) -> Path:
        """One local file holding the lines of several text objects (a partition's files), each object's
        first `skip_lines` lines (its header) left out: DuckDB reads one file much faster than hundreds
        of small ones."""
        signature = "\n".join(f"{o.bucket}/{o.key}/{o.etag}/{o.size}" for o in objects) + f"\n{skip_lines}"
        path = self.cache / f"{hashlib.sha1(signature.encode()).hexdigest()}.{suffix}"
        if not path.exists():
            temporary = path.with_name(f"{path.name}.{threading.get_ident()}.part")
            with open(temporary, "wb") as handle:
                for obj in objects:
                    data = self.lake.read(obj)
                    if skip_lines:
                        data = b"".join(data.split(b"\n", skip_lines)[skip_lines:])
                    handle.write(data if data.endswith(b"\n") or not data else data + b"\n")
            temporary.replace(path)
        for obj in objects:
            if obj.url not in self._done:
                self._done.add(obj.url)
                self.scanned += obj.size
                self.objects += 1
        return path


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def register(connection: Any, view: str, table: CatalogTable, partitions: list[int] | None,
             reading: Reading, needed: set[str] | None = None) -> None:
    """Create DuckDB view `view` over the table's objects (only the partitions listed, when given).
    `needed`: the columns the query reads (None: all); a Parquet table counts only their column chunks
    (and its footers) as scanned, as Athena reads only those from a columnar file."""
    kind = formats.kind_of(table.descriptor, table.definition.get("Parameters"))
    keys = table.keys
    sources: list[tuple[str, tuple[str, ...]]] = []  # (location, partition values)
    if keys:
        chosen = range(len(table.partitions)) if partitions is None else partitions
        for index in chosen:
            part = table.partitions[index]
            location = (part.get("StorageDescriptor") or {}).get("Location") or ""
            if location:
                sources.append((folder(location), tuple(str(v) for v in part.get("Values") or [])))
    else:
        sources.append((folder(table.location), ()))
    serde = table.descriptor.get("SerdeInfo") or {}
    parameters = {**(table.definition.get("Parameters") or {}), **(serde.get("Parameters") or {})}
    skip = int(parameters.get("skip.header.line.count") or 0) if kind == "csv" else 0
    files: list[tuple[str, tuple[str, ...]]] = []
    for location, values in sources:
        try:
            objects = [obj for obj in reading.objects_under(location) if obj.size > 0]
        except LakeError as error:
            raise QueryFailed(f"HIVE_PATH_NOT_FOUND: {error}", error_type=1003) from None
        if kind == "parquet":
            files += [(str(reading.fetch(obj, kind, count=needed is None)), values) for obj in objects]
        elif objects:
            files.append((str(reading.combined(objects, kind, skip)), values))
    columns = [(name, kind_name) for name, kind_name in table.columns if name not in {k for k, _ in keys}]
    key_select = ", ".join(f"CAST(f.{_ident('k' + str(i))} AS {formats.duck_type(t)}) AS {_ident(k)}"
                           for i, (k, t) in enumerate(keys))
    if not files:  # no objects: an empty view with the declared types
        select = ", ".join([f"CAST(NULL AS {formats.duck_type(t)}) AS {_ident(n)}" for n, t in columns] +
                           [f"CAST(NULL AS {formats.duck_type(t)}) AS {_ident(k)}" for k, t in keys])
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {_ident(view)} AS SELECT {select} WHERE false")
        return
    file_table = f"{view}__files"
    header = ", ".join(["filename"] + [_ident(f"k{i}") for i in range(len(keys))])
    literal = ", ".join("(" + ", ".join(_sql_text(v) for v in (name, *values)) + ")" for name, values in files)
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(file_table)} AS "
                       f"SELECT * FROM (VALUES {literal}) AS v({header})")
    names = [name for name, _ in files]
    listing = "[" + ", ".join(_sql_text(n) for n in names) + "]"
    if kind == "json":
        actual = _json_keys(names)
        present = {n: actual[n] for n, _ in columns if n in actual}
        spec = "{" + ", ".join(f"{_sql_text(present[n])}: {_sql_text(formats.duck_type(t))}"
                               for n, t in columns if n in present) + "}"
        if not present:
            spec = "{'__none': 'VARCHAR'}"
        reader = (f"read_json({listing}, format='newline_delimited', columns={spec}, filename=true, "
                  f"maximum_object_size=104857600)")
        values = [f"r.{_ident(present[n])} AS {_ident(n)}" if n in present
                  else f"CAST(NULL AS {formats.duck_type(t)}) AS {_ident(n)}" for n, t in columns]
    elif kind == "csv":
        opencsv = serde.get("SerializationLibrary") == formats.OPENCSV_SERDE
        delimiter = parameters.get("separatorChar" if opencsv else "field.delim") or parameters.get("delimiter") or ","
        quote = parameters.get("quoteChar", '"') if opencsv else ""
        spec = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(columns))) + "}"
        reader = (f"read_csv({listing}, header=false, skip=0, delim={_sql_text(delimiter)}, "
                  f"quote={_sql_text(quote)}, escape={_sql_text(quote)}, columns={spec}, filename=true, "
                  f"null_padding=true, strict_mode=false, nullstr={_sql_text('' if opencsv else chr(92) + 'N')})")
        values = [f"r.c{i} AS {_ident(n)}" if t == "string" else
                  f"TRY_CAST(r.c{i} AS {formats.duck_type(t)}) AS {_ident(n)}" for i, (n, t) in enumerate(columns)]
    else:
        described = connection.execute(f"DESCRIBE SELECT * FROM read_parquet({listing}, union_by_name=true)").fetchall()
        present = {str(row[0]).lower(): str(row[0]) for row in described}
        reader = f"read_parquet({listing}, union_by_name=true, filename=true)"
        values = [f"CAST(r.{_ident(present[n])} AS {formats.duck_type(t)}) AS {_ident(n)}" if n in present
                  else f"CAST(NULL AS {formats.duck_type(t)}) AS {_ident(n)}" for n, t in columns]
    select = ", ".join(values + ([key_select] if key_select else []))
    body = f"SELECT {select} FROM {reader} r JOIN {_ident(file_table)} f ON r.filename = f.filename"
    if kind == "parquet":
        if needed is not None:
            chunks = connection.execute(f"SELECT file_name, path_in_schema, total_compressed_size "
                                        f"FROM parquet_metadata({listing})").fetchall()
            sizes = {name: Path(name).stat().st_size for name in names}
            data = {name: 0 for name in names}
            for name, column_path, size in chunks:
                data[name] = data.get(name, 0) + int(size or 0)
                if str(column_path).split(".")[0].split(",")[0].strip().lower() in needed:
                    reading.scanned += int(size or 0)
            reading.scanned += sum(max(0, sizes[name] - data.get(name, 0)) for name in names)  # footers
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {_ident(view)} AS {body}")
        return
    # Text objects are parsed into a columnar copy, keyed by their etags and the table's definition, in the
    # background: this query reads the text (DuckDB parses only the columns it needs), the next ones over
    # the same objects read the copy. Athena's statistics count the objects either way.
    standalone = (f"WITH __files AS (SELECT * FROM (VALUES {literal}) AS v({header})) "
                  + body.replace(_ident(file_table), "__files"))
    cached = reading.cache / f"{hashlib.sha1(standalone.encode()).hexdigest()}.columnar.parquet"
    if cached.exists():
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {_ident(view)} AS "
                           f"SELECT * FROM read_parquet({_sql_text(str(cached))})")
        return
    connection.execute(f"CREATE OR REPLACE TEMP VIEW {_ident(view)} AS {body}")
    COLUMNAR.submit(cached, standalone, reading)


class Columnar:
    """One background thread writing columnar copies of text objects (a failed copy is simply not made:
    the queries keep reading the text, and report its errors themselves)."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[tuple[Path, str, Reading]]" = queue.Queue()
        self._pending: set[Path] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._stopping = False

    def submit(self, path: Path, sql: str, reading: Reading) -> None:
        with self._lock:
            if path in self._pending or self._stopping:
                return
            self._pending.add(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="athena-columnar", daemon=True)
                self._thread.start()
        self._queue.put((path, sql, reading))

    def _run(self) -> None:
        import duckdb

        while True:
            path, sql, reading = self._queue.get()
            temporary = path.with_name(f"{path.name}.{threading.get_ident()}.part")
            try:
                if path.parent.exists() and not path.exists() and not self._stopping:
                    with self._lock:
                        self._connection = connection = duckdb.connect()
                    try:
                        connection.execute("SET threads = 1")  # a core is left to the queries themselves
                        connection.execute(f"COPY ({sql}) TO {_sql_text(str(temporary))} (FORMAT PARQUET)")
                    finally:
                        with self._lock:
                            self._connection = None
                        connection.close()
                    temporary.replace(path)
                    reading.trim()
            except (duckdb.Error, OSError):
                temporary.unlink(missing_ok=True)
            finally:
                with self._lock:
                    self._pending.discard(path)

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the copy being written and forget the queued ones (the local cloud is stopping)."""
        with self._lock:
            self._stopping = True
            if self._connection is not None:
                self._connection.interrupt()
            thread = self._thread
        while True:
            try:
                _, _, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._pending.clear()
        if thread is not None:
            thread.join(timeout)

    def restart(self) -> None:
        with self._lock:
            self._stopping = False

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until no copy is being written (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False


COLUMNAR = Columnar()


def _json_keys(files: list[str]) -> dict[str, str]:
    """lower-case key -> key as written, from the first and last line of each file (the OpenX SerDe
    matches keys case-insensitively)."""
    found: dict[str, str] = {}
    for name in files:
        with open(name, "rb") as handle:
            head = handle.read(65536)
            handle.seek(max(0, handle.seek(0, 2) - 65536))
            tail = handle.read()
        lines = [head.split(b"\n", 1)[0], tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]]
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                for key in row:
                    found.setdefault(str(key).lower(), str(key))
    return found


def prune(table: CatalogTable, predicates: list[str], connection: Any) -> list[int] | None:
    """Indexes of the partitions that can satisfy every predicate (DuckDB SQL over the partition keys);
    None when nothing prunes. A predicate DuckDB cannot evaluate prunes nothing (it is still applied
    to the rows)."""
    if not predicates or not table.keys:
        return None
    name = f"__parts_{abs(hash((table.database, table.name))) % 10**8}"
    keys = table.keys
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {name} (__i INTEGER"
                       + "".join(f", {_ident(k)} {formats.duck_type(t)}" for k, t in keys) + ")")
    rows = []
    for index, part in enumerate(table.partitions):
        values = list(part.get("Values") or [])
        rows.append([index, *values[:len(keys)], *([None] * (len(keys) - len(values)))])
    if rows:
        placeholders = ", ".join(["?"] * (len(keys) + 1))
        connection.executemany(f"INSERT INTO {name} VALUES ({placeholders})", rows)
    chosen: set[int] | None = None
    for predicate in predicates:
        try:
            found = {row[0] for row in connection.execute(f"SELECT __i FROM {name} WHERE {predicate}").fetchall()}
        except Exception:  # noqa: BLE001 - not evaluable on the keys alone: no pruning from it
            continue
        chosen = found if chosen is None else chosen & found
    connection.execute(f"DROP TABLE {name}")
    return None if chosen is None else sorted(chosen)


def partition_values_from_path(relative: str, keys: list[str]) -> tuple[str, ...] | None:
    """("2010", "12") from "year=2010/month=12/..." when the folders name `keys` in order (MSCK REPAIR)."""
    segments = relative.split("/")[:-1]
    if len(segments) < len(keys):
        return None
    values = []
    for segment, key in zip(segments, keys):
        match = re.fullmatch(r"([^=]+)=(.*)", segment)
        if match is None or match.group(1).lower() != key:
            return None
        values.append(match.group(2))
    return tuple(values)
