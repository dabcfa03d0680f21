"""The lake as the crawler and Athena see it: S3 objects read and written through moto's S3 backend in
process (no HTTP), plus the small JSON-protocol helpers both executors answer with.

Objects whose name starts with `_` or `.` are skipped, as Hive, Glue and Athena skip them (`_SUCCESS`,
`.tmp` files); so are folder markers (keys ending in `/`)."""

from __future__ import annotations

import bisect
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from localcloud.executor_base import caller, read_body
from localcloud.executors import DEFAULT_ACCOUNT, WSGIApp



class LakeError(Exception):
    """An S3 location that cannot be read or written (message in the words AWS uses)."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int
    etag: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def split_url(url: str) -> tuple[str, str]:
    """("bucket", "key/prefix") from s3://bucket/key/prefix (s3a:// and s3n:// too, as Hive allows)."""
    match = re.fullmatch(r"s3[an]?://([^/]+)/?(.*)", url.strip())
    if match is None:
        raise LakeError(f"not an S3 location: {url!r}")
    return match.group(1), match.group(2)


def folder(url: str) -> str:
    """A location as a folder prefix: s3://b/raw -> s3://b/raw/."""
    return url if url.endswith("/") else url + "/"


def hidden(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return key.endswith("/") or name.startswith(("_", "."))


class Lake:
    """moto's S3 for one account (a bucket is found in the account that owns it)."""

    def __init__(self, account_id: str = DEFAULT_ACCOUNT):
        self.account_id = account_id

    def _backend(self, bucket: str) -> Any:
        from localcloud.motoapi import s3_backends

        partition, account = s3_backends.bucket_accounts.get(bucket, ("aws", self.account_id))
        return s3_backends[account][partition]

    def _bucket(self, bucket: str) -> Any:
        from localcloud.motoapi import S3MissingBucket

        try:
            return self._backend(bucket).get_bucket(bucket)
        except S3MissingBucket:
            raise LakeError(f"The specified bucket does not exist: {bucket}") from None

    def keys(self, bucket_name: str) -> list[str]:
        """The bucket's keys, sorted (list once, then `objects(url, keys)` for many prefixes)."""
        return sorted(list(self._bucket(bucket_name).keys.keys()))

    def objects(self, url: str, keys: list[str] | None = None) -> list[S3Object]:
        """Every visible object under a prefix, sorted by key (folders and hidden files left out);
        `keys`: the bucket's sorted keys from `keys()`, when listing many prefixes of one bucket."""
        bucket_name, prefix = split_url(url)
        bucket = self._bucket(bucket_name)
        ordered = keys if keys is not None else self.keys(bucket_name)
        found = []
        for index in range(bisect.bisect_left(ordered, prefix), len(ordered)):
            key = ordered[index]
            if not key.startswith(prefix):
                break
            if hidden(key[len(prefix):] if key != prefix else key):
                continue
            item = bucket.keys.get(key)
            if item is None or not hasattr(item, "value"):  # a delete marker, or deleted since the listing
                continue
            found.append(S3Object(bucket_name, key, int(item.size), str(item.etag).strip('"')))
        return found

    def read(self, obj: S3Object | str) -> bytes:
        bucket_name, key = (obj.bucket, obj.key) if isinstance(obj, S3Object) else split_url(obj)
        item = self._bucket(bucket_name).keys.get(key)
        if item is None or not hasattr(item, "value"):
            raise LakeError(f"The specified key does not exist: s3://{bucket_name}/{key}")
        return bytes(item.value)

    def write(self, url: str, data: bytes) -> None:
        bucket_name, key = split_url(url)
        self._bucket(bucket_name)
        self._backend(bucket_name).put_object(bucket_name, key, data)

    def delete(self, url: str) -> None:
        bucket_name, key = split_url(url)
        self._backend(bucket_name).delete_object(bucket_name, key)


# --------------------------------------------------------------------------------------------------
# AWS JSON 1.1 protocol, for the operations these executors answer themselves


class ApiError(Exception):
    """An error answer (`__type` and message as botocore reads them)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def respond(status: int, body: Mapping[str, Any]) -> WSGIApp:
    payload = json.dumps(body, default=str).encode()
    reasons = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(f"{status} {reasons.get(status, '')}".strip(), [
            ("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", str(uuid.uuid4()))])
        return [payload]

    return app


def answer(handler: Callable[[dict[str, Any], str, str], dict[str, Any]], log: Any) -> WSGIApp:
    """A WSGI app that runs `handler(params, account, region)` when called and answers its dict, or the
    error in AWS's shape. Lazy, so a journaled request is applied under the journal's lock."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            account_id, region = caller(environ)
            answered = respond(200, handler(json.loads(read_body(environ) or b"{}"), account_id, region))
        except ApiError as error:
            answered = respond(error.status, {"__type": error.code, "Message": error.message})
        except ValueError as error:
            answered = respond(400, {"__type": "InvalidRequestException", "Message": f"Invalid request: {error}"})
        except Exception as error:  # a bug answers like AWS, it does not kill the request
            log.exception("request failed")
            answered = respond(500, {"__type": "InternalServerException",
                                     "Message": f"{type(error).__name__}: {error}"})
        return answered(environ, start_response)

    return app
