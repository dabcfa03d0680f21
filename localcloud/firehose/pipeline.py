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


class Pipeline:
    """A delivery stream's buffers (Lambda stage, destination stage), source position and journal.

    `accept` and `tick` may run on different threads (API requests, the supervisor, the flush route):
    one lock serialises them, so a buffer is delivered exactly once.
    """

    def __init__(self, config: fd.StreamConfig, state_dir: Path | None, invoker: Callable[[], Invoker | None],
                 warehouse: Callable[[], fd.Warehouse], writer: fd.S3Writer | None = None,
                 clock: Callable[[], float] = time.time):
        self.config, self.invoker, self.warehouse, self.clock = config, invoker, warehouse, clock
        self.writer = writer or MotoS3(config.account_id)
        self.lock = threading.RLock()
        folder = state_dir / "firehose" / f"{config.name}-{config.key}" if state_dir is not None else None
        self.checkpoints = CheckpointStore(folder / "checkpoints.json" if folder else None)
        self.journal = fd.DeliveryJournal(folder / "journal.json" if folder else None)
        processor = config.processor
        self.processing = fd.Buffer(processor.size_mb, processor.interval_s) if processor else None
        self.outgoing = fd.Buffer(config.s3.size_mb, config.s3.interval_s)
        self.read_upto: dict[str, int] = {}  # per shard: read into the buffers
        self.passed: dict[str, int] = {}  # per shard: left the Lambda stage (delivered once outgoing is empty)
        self.next_attempt: dict[str, float] = {}  # Redshift manifest -> time of its next COPY attempt
        self.s3_retry_at = 0.0
        self.reader = KinesisReader(config) if config.kind == "KinesisStreamAsSource" and config.source_arn else None

    def refresh(self, config: fd.StreamConfig) -> None:
        """UpdateDestination: new hints and prefixes apply from the next flush."""
        with self.lock:
            self.config = config
            if self.reader is not None:
                self.reader.config = config
            self.outgoing.limit_bytes, self.outgoing.interval_s = config.s3.size_mb * fd.MIB, config.s3.interval_s
            processor = config.processor
            if processor is None and self.processing is not None:  # transformation switched off
                waiting = self.processing.take()
                self.processing = None
                self.accept(waiting)
            elif processor is not None:
                if self.processing is None:
                    self.processing = fd.Buffer(processor.size_mb, processor.interval_s)
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

    # delivery -------------------------------------------------------------------------------------
    def tick(self, force: bool = False) -> dict[str, Any]:
        """Deliver what is due (everything when `force`); returns what was written."""
        report: dict[str, Any] = {"Records": 0, "Objects": [], "ErrorObjects": [], "Manifests": [],
                                  "Copied": [], "ErrorManifests": [], "Errors": []}
        with self.lock:
            now = self.clock()
            if self.processing is not None and (force or (self.processing.due(now) and now >= self.s3_retry_at)):
                self._transform(self.processing.take(), report)
            if self.outgoing.records and (force or (self.outgoing.due(now) and now >= self.s3_retry_at)):
                self._deliver(self.outgoing.take(), now, report)
            if not self.outgoing.records and not (self.processing and self.processing.records):
                for shard_id, seq in self.passed.items():
                    if (self.checkpoints.get(shard_id) or -1) < seq:
                        self.checkpoints.set(shard_id, seq)
            if self.config.redshift is not None:
                self._copy_pending(now, force, report)
        return report

    def _transform(self, records: list[fd.FirehoseRecord], report: dict[str, Any]) -> None:
        try:
            invoker = self.invoker()
        except KeyError:
            invoker = None
        result = fd.transform(self.config, invoker, records)
        try:
            key = fd.write_errors(self.config, self.writer, result.failed)
        except Exception as error:  # the error output cannot be written: transform again later
            log.warning("firehose %s: writing failed records failed, will retry: %s", self.config.name, error)
            report["Errors"].append(str(error))
            assert self.processing is not None
            self.processing.put_back(records, self.clock())
            self.s3_retry_at = self.clock() + RETRY_DELAY_S
            return
        if key:
            report["ErrorObjects"].append(key)
        self.outgoing.add(result.ok, self.clock())
        self._mark_passed(records)

    def _deliver(self, records: list[fd.FirehoseRecord], now: float, report: dict[str, Any]) -> None:
        try:
            if self.config.redshift is not None:
                manifest = fd.stage_for_redshift(self.config, self.writer, records, self.journal, now)
                report["Manifests"].append(manifest)
                report["Objects"] += self.journal.batches[manifest]["objects"] if manifest else []
            else:
                report["Objects"].append(fd.write_data(self.config, self.writer, records))
            report["Records"] += len(records)
        except Exception as error:  # e.g. the bucket does not exist: AWS keeps retrying
            log.warning("firehose %s: S3 delivery failed, will retry: %s", self.config.name, error)
            report["Errors"].append(str(error))
            self.outgoing.put_back(records, now)
            self.s3_retry_at = now + RETRY_DELAY_S

    def _copy_pending(self, now: float, force: bool, report: dict[str, Any]) -> None:
        for manifest in self.journal.pending():
            if not force and now < self.next_attempt.get(manifest, 0.0):
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
                report["ErrorManifests"].append(fd.give_up(self.config, self.writer, self.journal, manifest))
                self.next_attempt.pop(manifest, None)
            else:
                log.warning("firehose %s: COPY failed, retrying: %s", self.config.name, outcome)
                self.next_attempt[manifest] = now + RETRY_DELAY_S

