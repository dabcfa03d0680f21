"""Where SQL runs: a cluster or workgroup database is one DuckDB file; COPY and UNLOAD see moto's S3."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localcloud.warehouse import sql as wsql


@dataclass(frozen=True)
class Target:
    """A cluster or workgroup database: one DuckDB file."""

    account_id: str
    region: str
    kind: str  # "cluster" or "workgroup"
    name: str
    database: str

    def path(self, root: Path) -> Path:
        return root / self.account_id / self.region / f"{self.kind}-{self.name}" / f"{self.database}.duckdb"


def parse_jdbc_url(url: str) -> tuple[str, str]:
    """(cluster or workgroup, database) from a Redshift JDBC URL, as Firehose's ClusterJDBCURL holds it.

    Works for `jdbc:redshift://<cluster>.<id>.<region>.redshift.amazonaws.com:5439/<db>` (moto's
    cluster Endpoint.Address), `jdbc:redshift://<workgroup>.<account>.<region>.redshift-serverless.
    amazonaws.com:5439/<db>`, `jdbc:redshift:iam://...`, and locally any host whose first label is the
    cluster: `jdbc:redshift://retail-wh:5439/dev` or `jdbc:redshift://retail-wh.localhost:5439/dev`.
    """
    match = re.fullmatch(r"jdbc:redshift(?::iam)?://([^/:?]+)(?::\d+)?/([^?;/]+)(?:[?;].*)?", url.strip())
    if match is None:
        raise ValueError(f"not a Redshift JDBC URL: {url!r} (expected jdbc:redshift://<cluster>.<...>:5439/<db>)")
    host, database = match.groups()
    return host.split(".")[0], database


def jdbc_target(url: str) -> dict[str, str]:
    """`execute_sql` keywords for a JDBC URL: {"cluster" | "workgroup": name, "database": db}."""
    name, database = parse_jdbc_url(url)
    host = urlparse(url.strip()[len("jdbc:"):].replace("redshift:iam://", "redshift://")).hostname or ""
    return {"workgroup" if ".redshift-serverless." in host else "cluster": name, "database": database}


class Database:
    """One DuckDB file, its connection (opened on first use) and the lock that serializes it."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.connection: Any = None

    def connect(self) -> Any:
        import duckdb

        if self.connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = duckdb.connect(str(self.path))
            wsql.prepare(self.connection)
        return self.connection

    def close(self) -> None:
        with self.lock:
            if self.connection is not None:
                self.connection.close()
                self.connection = None


class MotoS3:
    """moto's S3, in-process, as COPY and UNLOAD read and write it (the bucket's own account)."""

    def __init__(self, account_id: str):
        self.account_id = account_id

    def _backend(self, bucket: str) -> Any:
        from localcloud.motoapi import s3_backends

        partition, account = s3_backends.bucket_accounts.get(bucket, ("aws", self.account_id))
        return s3_backends[account][partition]

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, key = url[len("s3://"):].partition("/")
        return bucket, key

    def _bucket(self, bucket: str) -> Any:
        from localcloud.motoapi import S3MissingBucket as MissingBucket

        try:
            return self._backend(bucket).get_bucket(bucket)
        except MissingBucket:
            raise wsql.SqlError(f"ERROR: S3ServiceException:The specified bucket does not exist,Status 404,"
                                f"Bucket {bucket}") from None

    def get(self, url: str) -> bytes | None:
        bucket, key = self._split(url)
        found = self._bucket(bucket).keys.get(key)
        return bytes(found.value) if found is not None else None

    def list(self, url: str) -> list[str]:
        bucket, prefix = self._split(url)
        keys = [key for key in list(self._bucket(bucket).keys.keys()) if key.startswith(prefix)]
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def put(self, url: str, data: bytes) -> None:
        bucket, key = self._split(url)
        self._bucket(bucket)
        self._backend(bucket).put_object(bucket, key, data)

