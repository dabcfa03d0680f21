"""Kinesis PutRecords in one pass per request: the records moto would store and the answer it would give,
without its per-record overheads.

moto's `KinesisBackend.put_records` calls `Stream.put_record` once per record, and each call hashes the
partition key with md5 (as hex text, then parsed back to an int), scans the shards, takes the shard lock of
patches.py, builds a `Record` that reads the clock, and checks the stream's inline Lambda mappings: about
a third of the server's time on a 500-record request, and 500 clock reads that the journal records one
by one. Here a request reads the clock once (AWS stamps ApproximateArrivalTimestamp when the request
arrives: its records share it), hashes each distinct partition key once (a small cache: a fleet has few
keys), takes the shard lock once and numbers the records per shard as moto does (last + 1, in request
order), so `shard.records`, the sequence numbers, the answer and the CloudWatch metrics are moto's.

Whatever moto would treat differently goes to moto's own code, whole: a record it would refuse (a partition
key that is not a string or is over 256 characters, a bad ExplicitHashKey, no shard for the key) and a
stream with moto's inline Lambda delivery attached (the event-source executor detaches it; without that
executor moto delivers per record). `RETAIL_LOCALCLOUD_FASTPATH=0` leaves moto's path in place.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable

from localcloud import motoapi
from localcloud.motoapi import _t

TARGET = _t("moto.kinesis.models:KinesisBackend.put_records", "self", "stream_arn", "stream_name", "records")
RECORD_INIT = _t("moto.kinesis.models:Record.__init__", "self", "partition_key", "data", "sequence_number",
                 "explicit_hash_key")
MAX_PARTITION_KEY = 256
MAX_HASH_KEY = 2**128


@functools.lru_cache(maxsize=65_536)
def hash_of(partition_key: str) -> int:
    """moto's `int(md5(key).hexdigest(), 16)`: the 128-bit hash that picks a shard."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest(), "big")


def _hash_key(record: dict[str, Any]) -> int | None:
    """The hash that places `record` (moto's rules), or None when moto would refuse or choke on it."""
    partition_key, explicit = record.get("PartitionKey"), record.get("ExplicitHashKey")
    if not isinstance(partition_key, str) or len(partition_key) > MAX_PARTITION_KEY:
        return None
    if explicit:
        if not isinstance(explicit, str) or not explicit.isdigit():
            return None
        value = int(explicit)
        return value if value < MAX_HASH_KEY else None
    return hash_of(partition_key)


def make(original: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement of `KinesisBackend.put_records` (`original`: moto's)."""
    from localcloud import motoapi

    models = motoapi.kinesis_models
    exceptions = motoapi.kinesis_exceptions
    RecordSizeExceedsLimit, TooManyRecords, TotalRecordsSizeExceedsLimit = (  # noqa: N806 - moto's classes
        exceptions.RecordSizeExceedsLimit, exceptions.TooManyRecords, exceptions.TotalRecordsSizeExceedsLimit)
    from localcloud.motoapi.patches import _KINESIS_PUT as shard_lock  # the lock patches.py's Shard.put_record takes

    record_class = models.Record

    def put_records(backend: Any, stream_arn: str | None, stream_name: str | None,
                    records: list[dict[str, Any]]) -> dict[str, Any]:
        stream = backend.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        if len(records) > 500:
            raise TooManyRecords
        sizes = [len(r.get("Data", b"")) + len(r.get("PartitionKey", "")) for r in records]
        if sum(sizes) > 5242880:
            raise TotalRecordsSizeExceedsLimit
        for position, size in enumerate(sizes):
            if size > 1048576:
                raise RecordSizeExceedsLimit(position=position + 1)
        if stream.lambda_event_source_mappings:
            return original(backend, stream_arn, stream_name, records)
        shards = list(stream.shards.values())
        by_key: dict[str, Any] = {}  # partition key -> its shard, for this request
        placed = []
        for record in records:
            explicit = record.get("ExplicitHashKey")
            shard = None if explicit else by_key.get(record.get("PartitionKey"))  # type: ignore[arg-type]
            if shard is None:
                key = _hash_key(record)
                shard = None if key is None else next(
                    (s for s in shards if s.starting_hash <= key < s.ending_hash), None)
                if shard is None:
                    return original(backend, stream_arn, stream_name, records)
                if not explicit:
                    by_key[record["PartitionKey"]] = shard
            placed.append(shard)
        arrival = models.utcnow()  # looked up now: the journal's clock replaces moto's at start
        answers = []
        with shard_lock:
            numbering: dict[Any, list[Any]] = {}  # shard -> [last sequence number, shard id]
            for record, shard in zip(records, placed):
                entry = numbering.get(shard)
                if entry is None:
                    entry = numbering[shard] = [next(reversed(shard.records), 0), shard.shard_id]
                entry[0] = number = entry[0] + 1
                stored = record_class.__new__(record_class)  # BaseModel.__new__: tracked as moto tracks it
                stored.partition_key = record.get("PartitionKey")
                stored.data = record.get("Data")
                stored.sequence_number = number
                stored.explicit_hash_key = record.get("ExplicitHashKey")
                stored.created_at = arrival
                shard.records[number] = stored
                answers.append({"SequenceNumber": str(number), "ShardId": entry[1]})
        backend._send_stream_metrics(stream.stream_name, incoming_bytes=sum(sizes), incoming_records=len(records))
        return {"FailedRecordCount": 0, "Records": answers}

    put_records.moto_original = original  # type: ignore[attr-defined]  # for the differential test
    return put_records


_undo: list[Callable[[], None]] = []


def apply() -> None:
    """Install the one-pass PutRecords (idempotent; not with RETAIL_LOCALCLOUD_FASTPATH=0)."""
    from localcloud.motoapi import fast_json_protocol

    if _undo or fast_json_protocol.mode() == "off":
        return
    have = motoapi.parameters_of(RECORD_INIT.resolve()[1])
    if have != RECORD_INIT.parameters:  # the attributes set here are the ones this __init__ sets
        raise motoapi.MotoVersionError(f"{RECORD_INIT} takes {have}; kinesis_put builds records for "
                                       f"{RECORD_INIT.parameters}")
    _undo.append(motoapi.replace(TARGET, make))


def undo() -> None:
    while _undo:
        _undo.pop()()
