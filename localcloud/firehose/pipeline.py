"""One delivery stream: its buffers (Lambda stage, destination stage), the Kinesis source read in-process,
its checkpoints and delivery journal. The executor (executor.py) keeps one per stream and ticks it."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from localcloud import motoapi
from localcloud.event_sources.checkpoints import CheckpointStore
from localcloud.executors import Invoker
from localcloud.firehose import delivery as fd

log = logging.getLogger("localcloud.firehose")

RETRY_DELAY_S = float(os.environ.get("RETAIL_FIREHOSE_RETRY_DELAY_S", "1"))
MAX_READ_PER_SHARD = 10_000


class MotoS3:
    """Writes objects through moto's S3 backend, in-process."""

    def __init__(self, account_id: str):
        self.account_id = account_id

    def put(self, bucket: str, key: str, body: bytes) -> None:
        from localcloud.motoapi import s3_backends

        s3_backends[self.account_id]["aws"].put_object(bucket, key, body)

    def exists(self, bucket: str, key: str) -> bool:
        from localcloud.motoapi import s3_backends

        found = s3_backends[self.account_id]["aws"].buckets.get(bucket)
        return found is not None and key in found.keys


# --------------------------------------------------------------------------------------------------
# Kinesis source


class KinesisReader:
    """Reads the source stream's shards by sequence number (moto's are contiguous integers)."""

    def __init__(self, config: fd.StreamConfig):
        self.config = config

    def _stream(self) -> Any:
        from localcloud.motoapi import kinesis_backends

        backend = kinesis_backends[self.config.account_id][self.config.region]
        return next((s for s in list(backend.streams.values()) if s.arn == self.config.source_arn), None)

    def shards(self) -> dict[str, Any]:
        stream = self._stream()
        return {} if stream is None else {s.shard_id: s for s in list(stream.shards.values())}

    @staticmethod
    def trim_horizon(shard: Any) -> int:
        """The sequence number *before* the oldest record still in the shard."""
        return shard.get_min_sequence_number() - 1 if shard.records else 0

    def read(self, shard_id: str, shard: Any, after: int, limit: int = MAX_READ_PER_SHARD) -> list[fd.FirehoseRecord]:
        records, out = shard.records, []
        seq = after + 1
        if records and seq < (first := next(iter(records), seq)):
            seq = first
        while len(out) < limit and (record := records.get(seq)) is not None:
            arrival = motoapi.kinesis_record_arrival(record)
            metadata = {"shardId": shard_id, "partitionKey": record.partition_key,
                        "approximateArrivalTimestamp": int(arrival * 1000),
                        "sequenceNumber": str(record.sequence_number), "subsequenceNumber": 0}
            out.append(fd.FirehoseRecord(self.record_id(shard_id, seq), motoapi.kinesis_record_bytes(record),
                                         arrival, metadata))
            seq += 1
        return out

    @staticmethod
    def record_id(shard_id: str, seq: int) -> str:
        """Deterministic, so a record re-read after a restart keeps its id."""
        return f"{seq:030d}{int(shard_id.rsplit('-', 1)[-1]):012d}"


Change = dict[str, Any]


class Pipeline:
    """A delivery stream's buffers (Lambda stage, destination stage), source position and journal.

    The buffers' records live in `held`, a plain dict the executor keeps on moto's delivery stream: a
    snapshot holds what they held. Records leave a buffer, and objects are written, only through
    `commit(change, blobs)`, one change at a time: `apply` by default, the executor's journaled effect
    in the local cloud (which applies it the same way, and again on replay after a crash), so what was
    accepted is either still buffered or in S3, never both, never neither. `accept` may run on a request's
    thread while `tick` runs on another: `lock` guards the buffers, `delivering` lets one tick run at a time.
    """

    def __init__(self, config: fd.StreamConfig, state_dir: Path | None, invoker: Callable[[], Invoker | None],
                 warehouse: Callable[[], fd.Warehouse], writer: fd.S3Writer | None = None,
                 clock: Callable[[], float] = time.time, held: dict[str, Any] | None = None,
                 commit: Callable[[Change, list[bytes]], Any] | None = None):
        self.config, self.invoker, self.warehouse, self.clock = config, invoker, warehouse, clock
        self.writer = writer or MotoS3(config.account_id)
        self.lock = threading.RLock()
        self.delivering = threading.Lock()
        self.commit = commit or self.apply
        folder = state_dir / "firehose" / f"{config.name}-{config.key}" if state_dir is not None else None
        self.checkpoints = CheckpointStore(folder / "checkpoints.json" if folder else None)
        self.journal = fd.DeliveryJournal(folder / "journal.json" if folder else None)
        self.reader = KinesisReader(config) if config.kind == "KinesisStreamAsSource" and config.source_arn else None
        self.held = held if held is not None else {}
        if self.reader is not None:
            self.held.clear()  # a Kinesis source's records are read again from the checkpoint
        processor = config.processor
        self.processing = fd.Buffer(processor.size_mb, processor.interval_s, self.held.setdefault("processing", {})) \
            if processor else None
        self.outgoing = fd.Buffer(config.s3.size_mb, config.s3.interval_s, self.held.setdefault("outgoing", {}))
        self.read_upto: dict[str, int] = {}  # per shard: read into the buffers
        self.passed: dict[str, int] = {}  # per shard: left the Lambda stage (delivered once outgoing is empty)
        self.next_attempt: dict[str, float] = {}  # Redshift manifest -> time of its next COPY attempt
        self.s3_retry_at = 0.0
        self.retrying: set[str] = set()  # stages whose delivery failed: due again after RETRY_DELAY_S

    def refresh(self, config: fd.StreamConfig) -> None:
        """UpdateDestination: new hints and prefixes apply from the next flush (records waiting for a
        transformation switched off move on at the next tick)."""
        with self.lock:
            self.config = config
            if self.reader is not None:
                self.reader.config = config
            self.outgoing.limit_bytes, self.outgoing.interval_s = config.s3.size_mb * fd.MIB, config.s3.interval_s
            processor = config.processor
            if processor is None:
                self.processing = None
            else:
                if self.processing is None:
                    self.processing = fd.Buffer(processor.size_mb, processor.interval_s,
                                                self.held.setdefault("processing", {}))
                self.processing.limit_bytes, self.processing.interval_s = processor.size_mb * fd.MIB, processor.interval_s

    # input ----------------------------------------------------------------------------------------
    def accept(self, records: list[fd.FirehoseRecord]) -> None:
        with self.lock:
            now = self.clock()
            if self.processing is not None:
                self.processing.add(records, now)
            else:
                self.outgoing.add(records, now)
                self._mark_passed(records)

    def poll_source(self) -> int:
        """Read new records of every shard (TRIM_HORIZON on first sight) into the buffers."""
        if self.reader is None:
            return 0
        count = 0
        with self.lock:
            for shard_id, shard in self.reader.shards().items():
                if shard_id not in self.read_upto:
                    start = self.checkpoints.get(shard_id)
                    if start is None:
                        start = self.reader.trim_horizon(shard)
                        self.checkpoints.set(shard_id, start)
                    self.read_upto[shard_id] = start
                records = self.reader.read(shard_id, shard, self.read_upto[shard_id])
                if records:
                    self.read_upto[shard_id] = int(records[-1].kinesis["sequenceNumber"])  # type: ignore[index]
                    self.accept(records)
                    count += len(records)
        return count

    def _mark_passed(self, records: list[fd.FirehoseRecord]) -> None:
        for record in records:
            if record.kinesis is not None:
                self.passed[record.kinesis["shardId"]] = int(record.kinesis["sequenceNumber"])

    # changes --------------------------------------------------------------------------------------
    def apply(self, change: Change, blobs: list[bytes]) -> dict[str, Any]:
        """One change, whole: write its objects (a failure changes nothing else), note a staged or skipped
        Redshift batch (once: a replayed change finds it noted), then move records out of the buffers.
        A function of the change and the buffers it meets, so a replay does what the first time did."""
        with self.lock:
            for bucket, key, blob in change.get("put", []):
                self.writer.put(bucket, key, blobs[blob])
            for manifest, fields in change.get("note", []):
                if manifest not in self.journal.batches or fields.get("status") != "staged":
                    self.journal.record(manifest, **fields)
            at = float(change.get("at", self.clock()))
            taken = change.get("take", {})
            waiting = fd.Buffer(0, 0, self.held.setdefault("processing", {}))  # also when switched off
            if taken.get("processing"):
                moved = waiting.remove(taken["processing"], at)
                if change.get("kind") == "moved":
                    self.outgoing.add(moved, at)
                    self._mark_passed(moved)
            if taken.get("outgoing"):
                self.outgoing.remove(taken["outgoing"], at)
            added = [fd.FirehoseRecord(record_id, blobs[blob], arrival, kinesis)
                     for record_id, blob, arrival, kinesis in change.get("add", [])]
            if added:
                self.outgoing.add(added, at)
        return {"applied": True}

    def _commit(self, change: Change, blobs: list[bytes], report: dict[str, Any], stage: str = "") -> bool:
        """`commit`, with a failure (a missing bucket, say) reported and the stage retried after RETRY_DELAY_S."""
        try:
            self.commit(change, blobs)
        except Exception as error:  # AWS keeps retrying S3 for 24 h
            log.warning("firehose %s: delivery failed, will retry: %s", self.config.name, error)
            report["Errors"].append(str(error))
            self.s3_retry_at = self.clock() + RETRY_DELAY_S
            self.retrying.add(stage)
            return False
        self.retrying.discard(stage)
        return True

    def _due(self, stage: str, buffer: fd.Buffer | None, now: float, force: bool) -> bool:
        if buffer is None or not buffer.count:
            return False
        return force or ((buffer.due(now) or stage in self.retrying) and now >= self.s3_retry_at)

    # delivery -------------------------------------------------------------------------------------
    def tick(self, force: bool = False) -> dict[str, Any]:
        """Deliver what is due (everything when `force`); returns what was written."""
        report: dict[str, Any] = {"Records": 0, "Objects": [], "ErrorObjects": [], "Manifests": [],
                                  "Copied": [], "ErrorManifests": [], "Errors": []}
        with self.delivering:
            now = self.clock()
            with self.lock:
                waiting = self.held.get("processing", {}).get("records", [])
                orphans = [entry[0] for entry in waiting] if self.processing is None else []
            if orphans:  # the transformation was switched off: its waiting records go on untransformed
                self._commit({"kind": "moved", "take": {"processing": orphans}, "at": now}, [], report)
            with self.lock:
                processing = self.processing
                batch = processing.records if processing is not None and self._due("processing", processing, now, force) else []
            if batch:
                self._transform(batch, now, report)
            with self.lock:
                batch = self.outgoing.records if self._due("outgoing", self.outgoing, now, force) else []
            if batch:
                self._deliver(batch, now, report)
            with self.lock:
                empty = not self.outgoing.count and not (self.processing and self.processing.count)
                if empty:
                    for shard_id, seq in self.passed.items():
                        if (self.checkpoints.get(shard_id) or -1) < seq:
                            self.checkpoints.set(shard_id, seq)
            if self.config.redshift is not None:
                self._copy_pending(now, force, report)
        return report

    def _transform(self, records: list[fd.FirehoseRecord], now: float, report: dict[str, Any]) -> None:
        try:
            invoker = self.invoker()
        except KeyError:
            invoker = None
        result = fd.transform(self.config, invoker, records)
        blobs: list[bytes] = []
        change: Change = {"kind": "transformed", "take": {"processing": [r.record_id for r in records]}, "at": now,
                          "put": [], "add": []}
        failed = fd.error_object(self.config, result.failed)
        if failed is not None:
            change["put"].append([self.config.s3.bucket, failed[0], len(blobs)])
            blobs.append(failed[1])
        for record in result.ok:
            change["add"].append([record.record_id, len(blobs), record.arrival, record.kinesis])
            blobs.append(record.data)
        if not self._commit(change, blobs, report, "processing"):
            return  # the records wait in the Lambda stage: transformed again later
        if failed is not None:
            report["ErrorObjects"].append(failed[0])
        self._mark_passed(records)

    def _deliver(self, records: list[fd.FirehoseRecord], now: float, report: dict[str, Any]) -> None:
        bucket = self.config.s3.bucket
        change: Change = {"kind": "delivered", "take": {"outgoing": [r.record_id for r in records]}, "at": now}
        if self.config.redshift is not None:
            key, body, manifest, listing = fd.redshift_objects(self.config, records)
            change["put"] = [[bucket, key, 0], [bucket, manifest, 1]]
            change["note"] = [[manifest, {"status": "staged", "first_attempt": now, "attempts": 0, "objects": [key]}]]
            blobs = [body, listing]
        else:
            planned = fd.data_object(self.config, records)
            assert planned is not None
            key, manifest = planned[0], None
            change["put"], blobs = [[bucket, key, 0]], [planned[1]]
        if not self._commit(change, blobs, report, "outgoing"):
            return  # the records stay buffered, due again after RETRY_DELAY_S
        if manifest is not None:
            report["Manifests"].append(manifest)
        report["Objects"].append(key)
        report["Records"] += len(records)

    def _copy_pending(self, now: float, force: bool, report: dict[str, Any]) -> None:
        for manifest in self.journal.pending():
            if not force and now < self.next_attempt.get(manifest, 0.0):
                continue
            if not self._staged(manifest):
                continue
            outcome = fd.copy_once(self.config, self.warehouse, self.journal, manifest)
            if outcome == "copied":
                report["Copied"].append(manifest)
                self.next_attempt.pop(manifest, None)
                continue
            if outcome == "skip":
                continue
            report["Errors"].append(outcome)
            entry = self.journal.batches[manifest]
            redshift = self.config.redshift
            assert redshift is not None
            if now - entry.get("first_attempt", now) >= redshift.retry_s:
                error_key, body = fd.error_manifest(self.config, self.journal, manifest)
                change = {"kind": "gave-up", "at": now, "put": [[self.config.s3.bucket, error_key, 0]],
                          "note": [[manifest, {"status": "failed", "error_manifest": error_key}]]}
                if self._commit(change, [body], report):
                    report["ErrorManifests"].append(error_key)
                    self.next_attempt.pop(manifest, None)
            else:
                log.warning("firehose %s: COPY failed, retrying: %s", self.config.name, outcome)
                self.next_attempt[manifest] = now + RETRY_DELAY_S

    def _staged(self, manifest: str) -> bool:
        """Whether a batch noted as staged is in S3: a crash can come after the note and before its
        change was durable; the change then never happened (its records are still buffered)."""
        exists = getattr(self.writer, "exists", None)
        if exists is None or exists(self.config.s3.bucket, manifest):
            return True
        log.warning("firehose %s: staged batch %s was lost with a crash before it was stored; its records are "
                    "delivered again", self.config.name, manifest)
        self.journal.record(manifest, status="lost")
        return False
