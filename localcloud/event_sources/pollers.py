"""Lambda event source mappings in the local cloud: pollers for Kinesis, DynamoDB Streams and SQS.

moto stores mappings but runs them inline (one record per call, inside PutRecords / SendMessage /
DynamoDB writes). `start()` detaches every mapping from its source so those inline paths never fire
(`stop()` re-attaches them), and pollers read moto's backends in-process instead: no HTTP, no JSON
per record, and Kinesis shards are read by sequence number (moto's per-shard counters are contiguous
integers, so reading `records[seq + 1 ... seq + n]` is O(batch) where `GetRecords` re-scans the shard).

AWS semantics implemented: BatchSize, MaximumBatchingWindowInSeconds, StartingPosition (TRIM_HORIZON,
LATEST, AT_TIMESTAMP), ParallelizationFactor (records of one partition key stay on one lane, in order),
per-shard ordering, checkpoints persisted under `state_dir/event_sources/<uuid>.json` (a restarted
executor resumes after the last checkpoint: at-least-once), MaximumRetryAttempts,
MaximumRecordAgeInSeconds, BisectBatchOnFunctionError (splitting does not count as a retry),
ReportBatchItemFailures (streams: retry from the lowest failed sequence number; SQS: delete all but the
failed messages; an unknown/empty itemIdentifier fails the whole batch), OnFailure destinations (SQS /
SNS, AWS's record shape with KinesisBatchInfo / DDBStreamBatchInfo), Enabled (disabled mappings keep
their checkpoint and resume), FilterCriteria (moto's EventPattern; Kinesis `data` / SQS `body` matched
as JSON; stream records that do not match are skipped and checkpointed, SQS messages deleted), SQS
visibility timeout and redrive to the DLQ after maxReceiveCount (moto's receive does the redrive).
A throttled invocation (LambdaInvokeError 429) is retried without counting as a function error.

Local differences (configurable through environment variables):
- RETAIL_ESM_RETRY_DELAY_S (default 0.05): pause before retrying a failed stream batch (AWS backs off
  exponentially up to minutes).
- RETAIL_ESM_POLL_INTERVAL_S (default 0.02): idle poll interval (AWS polls each shard once a second).
- Streams default to infinite retries until the record expires, as on AWS; set MaximumRetryAttempts.
- TumblingWindowInSeconds: windows are aligned on arrival time; the window state lives in memory (a
  restart of the executor starts windows afresh, AWS persists it).
- The State moto reports is Enabled / Disabled (no transitional Creating / Enabling / Disabling).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from localcloud import motoapi
from localcloud.executors import CloudContext, Invoker, JSONPayload, LambdaInvokeError, WSGIApp

log = logging.getLogger("localcloud.event_sources")

RETRY_DELAY_S = float(os.environ.get("RETAIL_ESM_RETRY_DELAY_S", "0.05"))
POLL_INTERVAL_S = float(os.environ.get("RETAIL_ESM_POLL_INTERVAL_S", "0.02"))
SCAN_INTERVAL_S = 0.1
THROTTLE_DELAY_S = 0.05
MAX_SQS_POLLERS = 4
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 - 64 * 1024  # Lambda's synchronous payload limit, with room for the envelope


# --------------------------------------------------------------------------------------------------
# Mapping configuration and records


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=value.tzinfo or dt.timezone.utc).timestamp()
    return float(value)


@dataclass(frozen=True)
class MappingConfig:
    """A snapshot of one moto EventSourceMapping, in the terms the pollers need."""

    uuid: str
    function_arn: str
    source_arn: str
    account_id: str = "123456789012"
    region: str = "us-east-1"
    enabled: bool = True
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_timestamp: float | None = None
    parallelization: int = 1
    max_retries: int = -1  # -1: until the record expires (AWS's default)
    max_record_age_s: int = -1
    bisect: bool = False
    report_item_failures: bool = False
    on_failure_arn: str | None = None
    filters: tuple[str, ...] = ()
    tumbling_window_s: int = 0
    max_concurrency: int = 2  # SQS ScalingConfig.MaximumConcurrency (local pollers, capped)

    @classmethod
    def from_moto(cls, esm: Any) -> "MappingConfig":
        destination = (esm.destination_config or {}).get("OnFailure", {}).get("Destination")
        filters = tuple(f["Pattern"] for f in ((esm.filter_criteria or {}).get("Filters") or []) if f.get("Pattern"))
        timestamp = esm.starting_position_timestamp
        return cls(
            uuid=esm.uuid, function_arn=esm.function_arn, source_arn=esm.event_source_arn,
            account_id=esm.account_id, region=esm.region, enabled=bool(esm.enabled),
            batch_size=int(esm.batch_size), batching_window_s=float(esm.max_batch_window or 0),
            starting_position=esm.starting_position or "TRIM_HORIZON",
            starting_timestamp=_epoch(timestamp) if timestamp is not None else None,
            parallelization=int(esm.parallelization_factor or 1),
            max_retries=-1 if esm.max_retry_attempts is None else int(esm.max_retry_attempts),
            max_record_age_s=-1 if esm.max_record_age is None else int(esm.max_record_age),
            bisect=bool(esm.bisect_on_error),
            report_item_failures="ReportBatchItemFailures" in (esm.function_response_types or []),
            on_failure_arn=destination, filters=filters, tumbling_window_s=int(esm.tumbling_window or 0),
            max_concurrency=min(int((esm.scaling_config or {}).get("MaximumConcurrency") or 2), MAX_SQS_POLLERS),
        )

    @property
    def source_kind(self) -> str:
        return self.source_arn.split(":")[2]


@dataclass
class SourceRecord:
    """One record of a shard or queue: the Lambda event record plus what the poller needs."""

    seq: int  # integer sequence number (streams) or position in the receive (SQS)
    partition_key: str
    arrival: float  # epoch seconds
    event: dict[str, Any]  # the record as the function receives it
    identifier: str  # what batchItemFailures[].itemIdentifier names (sequence number or messageId)
    filter_view: dict[str, Any] | None = None  # what FilterCriteria patterns see (None: computed lazily)

    def view(self) -> dict[str, Any]:
        if self.filter_view is None:
            self.filter_view = _kinesis_filter_view(self.event) if "kinesis" in self.event else self.event
        return self.filter_view


class RecordFilter:
    """FilterCriteria: a record passes when any pattern matches (no patterns: everything passes)."""

    def __init__(self, patterns: Iterable[str]):
        from localcloud.motoapi import EventPattern

        self.patterns = [EventPattern.load(p) for p in patterns]

    def matches(self, record: SourceRecord) -> bool:
        return not self.patterns or any(p.matches_event(record.view()) for p in self.patterns)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


# --------------------------------------------------------------------------------------------------
# Invoking and interpreting the function's answer


@dataclass(frozen=True)
class Outcome:
    """What one invocation of a batch meant for the records in it."""

    ok: bool
    failed_ids: tuple[str, ...] = ()  # ReportBatchItemFailures identifiers (ok=False, partial)
    status_code: int = 200
    function_error: str | None = None
    executed_version: str = "$LATEST"
    request_id: str = ""

    @property
    def partial(self) -> bool:
        return not self.ok and bool(self.failed_ids)


def interpret(result: Any, batch: list[SourceRecord], report_item_failures: bool) -> Outcome:
    """AWS's rules: an error fails the batch; with ReportBatchItemFailures, an empty/absent list is a
    success and an identifier that is null, empty or not in the batch fails the whole batch."""
    common = dict(status_code=result.status_code, executed_version=result.executed_version,
                  request_id=result.request_id)
    if result.function_error:
        return Outcome(ok=False, function_error=result.function_error, **common)
    if not report_item_failures:
        return Outcome(ok=True, **common)
    try:
        response = json.loads(result.payload or b"null")
    except ValueError:
        return Outcome(ok=True, **common)
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return Outcome(ok=True, **common)
    known = {record.identifier for record in batch}
    ids = []
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not item or item not in known:
            return Outcome(ok=False, function_error="InvalidBatchItemFailure", **common)
        ids.append(item)
    return Outcome(ok=False, failed_ids=tuple(ids), **common)


def invoke_batch(invoker: Invoker, config: MappingConfig, event: dict[str, Any], stopping: threading.Event) -> Any:
    """One synchronous invocation; throttles (429) are retried without counting as failures. The event is
    serialised here, so it is marked as valid JSON: the runtime does not parse a ~500 KB batch to check it."""
    payload = JSONPayload.dumps(event)
    while True:
        try:
            return invoker.invoke(config.function_arn, payload, invocation_type="RequestResponse",
                                  account_id=config.account_id, region=config.region)
        except LambdaInvokeError as error:
            if error.status != 429 or stopping.is_set():
                raise
            time.sleep(THROTTLE_DELAY_S)


# --------------------------------------------------------------------------------------------------
# Streams (Kinesis, DynamoDB Streams): ordered delivery of one shard's records


@dataclass
class TumblingWindow:
    """TumblingWindowInSeconds: the window a shard's records fall in and the state the function
    returned so far (sent back with every invocation of the window)."""

    start: float
    size: int
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def containing(cls, arrival: float, size: int) -> "TumblingWindow":
        return cls(start=arrival - arrival % size, size=size)

    @property
    def end(self) -> float:
        return self.start + self.size

    def fields(self, shard_id: str, source_arn: str, final: bool) -> dict[str, Any]:
        return {"window": {"start": _iso(self.start).replace(".000Z", "Z"), "end": _iso(self.end).replace(".000Z", "Z")},
                "state": self.state, "shardId": shard_id, "eventSourceARN": source_arn,
                "isFinalInvokeForWindow": final, "isWindowTerminatedEarly": False}


class StreamDelivery:
    """Delivers an ordered list of one shard's records with retries, bisect, partial failures,
    record expiry and the OnFailure destination. Pure logic over an Invoker (unit-testable)."""

    def __init__(self, config: MappingConfig, invoker: Invoker, shard_id: str,
                 on_failure: Callable[[dict[str, Any]], None], stopping: threading.Event | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time,
                 window: TumblingWindow | None = None):
        self.config, self.invoker, self.shard_id = config, invoker, shard_id
        self.on_failure, self.sleep, self.now = on_failure, sleep, now
        self.stopping = stopping or threading.Event()
        self.window = window

    def close_window(self) -> None:
        """The final invocation of a tumbling window (no records, isFinalInvokeForWindow true)."""
        self._deliver_batch([], [], final_only=True)

    def deliver(self, records: list[SourceRecord]) -> None:
        """Returns once every record was processed successfully or discarded."""
        pending = batches(records, self.config.batch_size)
        while pending and not self.stopping.is_set():
            self._deliver_batch(pending.pop(0), pending)

    def _deliver_batch(self, batch: list[SourceRecord], pending: list[list[SourceRecord]], final_only: bool = False) -> None:
        retries, invocations, last = 0, 0, None
        while (batch or final_only) and not self.stopping.is_set():
            batch = self._drop_expired(batch, invocations, last)
            if not batch and not final_only:
                return
            try:
                result = invoke_batch(self.invoker, self.config, self.event(batch), self.stopping)
            except LambdaInvokeError as error:
                last = Outcome(ok=False, status_code=error.status, function_error=error.code)
            else:
                last = interpret(result, batch, self.config.report_item_failures)
                self._keep_window_state(result, last)
            invocations += 1
            if last.ok or (final_only and last.partial):
                return
            if last.partial:  # checkpoint at the lowest failed sequence number, retry from there
                lowest = min(r.seq for r in batch if r.identifier in set(last.failed_ids))
                batch = [r for r in batch if r.seq >= lowest]
            elif self.config.bisect and len(batch) > 1:  # splitting does not count as a retry
                half = len(batch) // 2
                pending.insert(0, batch[half:])
                batch = batch[:half]
                continue
            if self.config.max_retries >= 0 and retries >= self.config.max_retries:
                if batch:
                    self.on_failure(self.failure_record(batch, "RetryAttemptsExhausted", invocations, last))
                return
            retries += 1
            self.sleep(RETRY_DELAY_S)

    def _drop_expired(self, batch: list[SourceRecord], invocations: int, last: Outcome | None) -> list[SourceRecord]:
        if self.config.max_record_age_s < 0:
            return batch
        oldest_allowed = self.now() - self.config.max_record_age_s
        expired = [r for r in batch if r.arrival < oldest_allowed]
        if expired:
            self.on_failure(self.failure_record(expired, "RecordAgeExceeded", invocations, last))
        return [r for r in batch if r.arrival >= oldest_allowed]

    def event(self, batch: list[SourceRecord], final: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {"Records": [r.event for r in batch]}
        if self.window is not None:
            event.update(self.window.fields(self.shard_id, self.config.source_arn, final or not batch))
        return event

    def _keep_window_state(self, result: Any, outcome: Outcome) -> None:
        """The state a windowed function returns is carried to its next invocation of the window."""
        if self.window is None or outcome.function_error:
            return
        try:
            response = json.loads(result.payload or b"null")
        except ValueError:
            return
        if isinstance(response, dict) and isinstance(response.get("state"), dict):
            self.window.state = response["state"]

    def failure_record(self, batch: list[SourceRecord], condition: str, invocations: int,
                       last: Outcome | None) -> dict[str, Any]:
        """AWS's OnFailure record for a discarded stream batch."""
        info_key = "KinesisBatchInfo" if self.config.source_kind == "kinesis" else "DDBStreamBatchInfo"
        response: dict[str, Any] = {"statusCode": last.status_code if last else 200,
                                    "executedVersion": last.executed_version if last else "$LATEST"}
        if last and last.function_error:
            response["functionError"] = last.function_error
        return {
            "requestContext": {"requestId": (last.request_id if last else "") or str(uuid.uuid4()),
                               "functionArn": self.config.function_arn, "condition": condition,
                               "approximateInvokeCount": invocations},
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(self.now()),
            info_key: {
                "shardId": self.shard_id,
                "startSequenceNumber": batch[0].identifier,
                "endSequenceNumber": batch[-1].identifier,
                "approximateArrivalOfFirstRecord": _iso(batch[0].arrival),
                "approximateArrivalOfLastRecord": _iso(batch[-1].arrival),
                "batchSize": len(batch),
                "streamArn": self.config.source_arn,
            },
        }


def batches(records: list[SourceRecord], size: int, max_bytes: int = MAX_PAYLOAD_BYTES) -> list[list[SourceRecord]]:
    """Consecutive batches of at most `size` records and (about) Lambda's 6 MB payload limit."""
    out: list[list[SourceRecord]] = []
    current: list[SourceRecord] = []
    current_bytes = 0
    for record in records:
        weight = _approximate_size(record)
        if current and (len(current) >= size or current_bytes + weight > max_bytes):
            out.append(current)
            current, current_bytes = [], 0
        current.append(record)
        current_bytes += weight
    if current:
        out.append(current)
    return out


def _approximate_size(record: SourceRecord) -> int:
    kinesis = record.event.get("kinesis")
    return len(kinesis["data"]) + 400 if kinesis else len(json.dumps(record.event))


def lanes(records: list[SourceRecord], parallelization: int) -> list[list[SourceRecord]]:
    """ParallelizationFactor: split a shard's records into lanes, one partition key per lane."""
    if parallelization <= 1:
        return [records]
    out: list[list[SourceRecord]] = [[] for _ in range(parallelization)]
    for record in records:
        digest = hashlib.md5(record.partition_key.encode()).digest()
        out[int.from_bytes(digest[:4], "big") % parallelization].append(record)
    return [lane for lane in out if lane]


# --------------------------------------------------------------------------------------------------
# Checkpoints


class CheckpointStore:
    """Per-mapping, per-shard last processed sequence number, persisted so restarts resume."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.Lock()
        self.positions: dict[str, int] = {}
        if path is not None and path.exists():
            try:
                self.positions = {k: int(v) for k, v in json.loads(path.read_text()).get("shards", {}).items()}
            except (ValueError, OSError):
                log.warning("unreadable checkpoint %s: starting over", path)

    def get(self, shard_id: str) -> int | None:
        return self.positions.get(shard_id)

    def set(self, shard_id: str, seq: int) -> None:
        with self.lock:
            self.positions[shard_id] = seq
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(f".{threading.get_ident()}.tmp")
                temporary.write_text(json.dumps({"shards": self.positions}))
                temporary.replace(self.path)


# --------------------------------------------------------------------------------------------------
# Stream sources over moto's backends


class KinesisSource:
    """Reads a moto Kinesis stream by sequence number (contiguous per-shard integers)."""

    kind = "kinesis"

    def __init__(self, config: MappingConfig, role: str):
        self.config, self.role = config, role

    def _stream(self) -> Any:
        from localcloud.motoapi import kinesis_backends

        backend = kinesis_backends[self.config.account_id][self.config.region]
        for stream in list(backend.streams.values()):
            if stream.arn == self.config.source_arn:
                return stream
        return None

    def shard_ids(self) -> list[str]:
        stream = self._stream()
        return [] if stream is None else [shard.shard_id for shard in list(stream.shards.values())]

    def _shard(self, shard_id: str) -> Any:
        stream = self._stream()
        if stream is None:
            return None
        return next((s for s in list(stream.shards.values()) if s.shard_id == shard_id), None)

    def initial_position(self, shard_id: str) -> int:
        """The sequence number *before* the first record to deliver."""
        shard = self._shard(shard_id)
        if shard is None or not shard.records:
            return 0
        if self.config.starting_position == "LATEST":
            return shard.get_max_sequence_number()
        if self.config.starting_position == "AT_TIMESTAMP" and self.config.starting_timestamp is not None:
            low, high = shard.get_min_sequence_number(), shard.get_max_sequence_number() + 1
            while low < high:  # binary search: arrival times grow with the (contiguous) sequence number
                middle = (low + high) // 2
                if motoapi.kinesis_record_arrival(shard.records[middle]) < self.config.starting_timestamp:
                    low = middle + 1
                else:
                    high = middle
            return low - 1
        return shard.get_min_sequence_number() - 1

    def last_position(self, shard_id: str) -> int:
        """The sequence number of the newest record (0 when the shard is empty)."""
        shard = self._shard(shard_id)
        return shard.get_max_sequence_number() if shard is not None and shard.records else 0

    def read(self, shard_id: str, after: int, limit: int) -> list[SourceRecord]:
        shard = self._shard(shard_id)
        if shard is None:
            return []
        records = shard.records
        out = []
        seq = after + 1
        if records and seq < (first := next(iter(records), seq)):
            seq = first  # trimmed records
        while len(out) < limit:
            record = records.get(seq)
            if record is None:
                break
            out.append(self._record(shard_id, record))
            seq += 1
        return out

    def _record(self, shard_id: str, record: Any) -> SourceRecord:
        seq, arrival = str(record.sequence_number), motoapi.kinesis_record_arrival(record)
        event = {
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record.partition_key, "sequenceNumber": seq,
                        "data": motoapi.kinesis_record_base64(record), "approximateArrivalTimestamp": round(arrival, 3)},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{seq}",
            "eventName": "aws:kinesis:record", "invokeIdentityArn": self.role, "awsRegion": self.config.region,
            "eventSourceARN": self.config.source_arn,
        }
        return SourceRecord(seq=record.sequence_number, partition_key=record.partition_key, arrival=arrival,
                            event=event, identifier=seq)


def _kinesis_filter_view(event: dict[str, Any]) -> dict[str, Any]:
    """AWS filters Kinesis records on their metadata plus `data` decoded as JSON (if it is JSON)."""
    view = dict(event["kinesis"])
    try:
        view["data"] = json.loads(base64.b64decode(event["kinesis"]["data"]))
    except ValueError:
        pass
    return {**{k: v for k, v in event.items() if k != "kinesis"}, **view}


class DynamoDBStreamSource:
    """Reads a moto DynamoDB table's stream shard (records numbered from its starting sequence)."""

    kind = "dynamodb"

    def __init__(self, config: MappingConfig, role: str):
        self.config, self.role = config, role

    def _shard(self) -> Any:
        from localcloud.motoapi import dynamodb_backends

        backend = dynamodb_backends[self.config.account_id][self.config.region]
        for table in list(backend.tables.values()):
            if table.stream_shard is not None and self.config.source_arn == f"{table.table_arn}/stream/{table.latest_stream_label}":
                return table.stream_shard
        return None

    def shard_ids(self) -> list[str]:
        shard = self._shard()
        return [] if shard is None else [shard.id]

    def initial_position(self, shard_id: str) -> int:
        shard = self._shard()
        if shard is None:
            return 0
        start = shard.starting_sequence_number - 1
        if self.config.starting_position == "LATEST":
            return start + len(shard.items)
        return start

    def last_position(self, shard_id: str) -> int:
        shard = self._shard()
        return 0 if shard is None else shard.starting_sequence_number - 1 + len(shard.items)

    def read(self, shard_id: str, after: int, limit: int) -> list[SourceRecord]:
        shard = self._shard()
        if shard is None:
            return []
        first = max(after + 1 - shard.starting_sequence_number, 0)
        return [self._record(item) for item in shard.items[first:first + limit]]

    def _record(self, item: Any) -> SourceRecord:
        record = item.to_json()
        dynamodb = dict(record["dynamodb"])
        arrival = _epoch(dynamodb["ApproximateCreationDateTime"])
        dynamodb["ApproximateCreationDateTime"] = int(arrival)
        event = {"eventID": record["eventID"], "eventName": record["eventName"], "eventVersion": "1.1",
                 "eventSource": "aws:dynamodb", "awsRegion": self.config.region, "dynamodb": dynamodb,
                 "eventSourceARN": self.config.source_arn}
        seq = dynamodb["SequenceNumber"]
        keys = json.dumps(dynamodb.get("Keys", {}), sort_keys=True)
        return SourceRecord(seq=int(seq), partition_key=keys, arrival=arrival, event=event, identifier=seq)


# --------------------------------------------------------------------------------------------------
# Destinations


def send_to_destination(arn: str, record: dict[str, Any], account_id: str, region: str) -> None:
    """OnFailure to SQS or SNS, through moto's backends."""
    body = json.dumps(record)
    service = arn.split(":")[2]
    if service == "sqs":
        from localcloud.motoapi import sqs_backends

        sqs_backends[account_id][region].send_message(arn.split(":")[-1], body)
    elif service == "sns":
        from localcloud.motoapi import sns_backends

        sns_backends[account_id][region].publish(body, arn=arn)
    else:
        log.warning("unsupported OnFailure destination %s", arn)


# --------------------------------------------------------------------------------------------------
# Pollers


class StreamPoller:
    """One mapping over a stream: a worker thread per shard."""

    def __init__(self, config: MappingConfig, invoker: Invoker, source: Any, checkpoints: CheckpointStore,
                 destination: Callable[[str, dict[str, Any], str, str], None] = send_to_destination):
        self.config, self.invoker, self.source, self.checkpoints = config, invoker, source, checkpoints
        self.destination = destination
        self.stopping = threading.Event()
        self.workers: dict[str, threading.Thread] = {}
        self.windows: dict[str, TumblingWindow | None] = {}  # open tumbling window per shard

    def refresh(self, config: MappingConfig) -> None:
        self.config = config
        self.source.config = config
        for shard_id in self.source.shard_ids():
            if shard_id not in self.workers:
                worker = threading.Thread(target=self._run_shard, args=(shard_id,), daemon=True,
                                          name=f"esm-{config.uuid[:8]}-{shard_id}")
                self.workers[shard_id] = worker
                worker.start()

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers.values():
            worker.join(timeout=5)

    def _on_failure(self, record: dict[str, Any]) -> None:
        if self.config.on_failure_arn:
            self.destination(self.config.on_failure_arn, record, self.config.account_id, self.config.region)

    def _run_shard(self, shard_id: str) -> None:
        position = self.checkpoints.get(shard_id)
        if position is None:
            position = self.source.initial_position(shard_id)
            self.checkpoints.set(shard_id, position)  # LATEST / AT_TIMESTAMP survive a restart
        elif position > (last := self.source.last_position(shard_id)):
            # The stream came back from a snapshot older than the checkpoint (the local cloud crashed):
            # new records will reuse those sequence numbers, so resume at the restored end, not beyond.
            log.warning("mapping %s, shard %s: checkpoint %s is past the stream's end %s; resuming there",
                        self.config.uuid, shard_id, position, last)
            position = last
            self.checkpoints.set(shard_id, position)
        pool = ThreadPoolExecutor(max_workers=max(self.config.parallelization, 1))
        try:
            while not self.stopping.is_set():
                try:
                    position = self._poll_once(shard_id, position, pool)
                except Exception:  # a bad record or a vanished stream must not kill the worker
                    log.exception("event source mapping %s, shard %s", self.config.uuid, shard_id)
                    self.stopping.wait(0.5)
        finally:
            pool.shutdown(wait=False)

    def _poll_once(self, shard_id: str, position: int, pool: ThreadPoolExecutor) -> int:
        config = self.config
        if not config.enabled:
            self.stopping.wait(POLL_INTERVAL_S * 5)
            return position
        limit = config.batch_size * max(config.parallelization, 1)
        records = self._gather(shard_id, position, limit, config)
        if not records:
            self._close_expired_window(shard_id, config)
            self.stopping.wait(POLL_INTERVAL_S)
            return position
        matching = RecordFilter(config.filters)
        selected = [r for r in records if matching.matches(r)] if config.filters else records
        if selected and config.tumbling_window_s > 0:
            self._deliver_windowed(shard_id, selected, config)
        elif selected:
            delivery = StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping)
            list(pool.map(delivery.deliver, lanes(selected, config.parallelization)))
        if self.stopping.is_set():
            return position  # interrupted: resume from the last checkpoint (at-least-once)
        position = records[-1].seq
        self.checkpoints.set(shard_id, position)
        return position

    def _deliver_windowed(self, shard_id: str, records: list[SourceRecord], config: MappingConfig) -> None:
        """Records are grouped by the window their arrival falls in; a window closes with a final
        invocation when records of a later window arrive or its end has passed."""
        groups: dict[float, list[SourceRecord]] = {}
        for record in records:
            groups.setdefault(TumblingWindow.containing(record.arrival, config.tumbling_window_s).start, []).append(record)
        for start, group in groups.items():
            window = self.windows.get(shard_id)
            if window is not None and window.start != start:
                self._close_window(shard_id, config)
                window = None
            if window is None:
                window = self.windows[shard_id] = TumblingWindow(start, config.tumbling_window_s)
            StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping, window=window).deliver(group)

    def _close_window(self, shard_id: str, config: MappingConfig) -> None:
        window = self.windows.pop(shard_id, None)
        if window is not None:
            StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping, window=window).close_window()

    def _close_expired_window(self, shard_id: str, config: MappingConfig) -> None:
        window = self.windows.get(shard_id)
        if window is not None and time.time() >= window.end:
            self._close_window(shard_id, config)

    def _gather(self, shard_id: str, position: int, limit: int, config: MappingConfig) -> list[SourceRecord]:
        """MaximumBatchingWindowInSeconds: wait for a full batch up to the window."""
        records = self.source.read(shard_id, position, limit)
        if not records or len(records) >= limit or config.batching_window_s <= 0:
            return records
        deadline = time.monotonic() + config.batching_window_s
        while len(records) < limit and time.monotonic() < deadline and not self.stopping.is_set():
            self.stopping.wait(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))
            records += self.source.read(shard_id, records[-1].seq, limit - len(records))
        return records


class SqsPoller:
    """One mapping over an SQS queue: receive, invoke, delete on success (partial with
    ReportBatchItemFailures); failed messages reappear after the visibility timeout and moto's receive
    moves them to the DLQ after maxReceiveCount."""

    def __init__(self, config: MappingConfig, invoker: Invoker):
        self.config, self.invoker = config, invoker
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"esm-{config.uuid[:8]}-sqs-{i}")
                        for i in range(max(config.max_concurrency, 1))]
        for thread in self.threads:
            thread.start()

    def refresh(self, config: MappingConfig) -> None:
        self.config = config

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _backend(self) -> Any:
        from localcloud.motoapi import sqs_backends

        return sqs_backends[self.config.account_id][self.config.region]

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.config.enabled or not self._poll_once():
                    self.stopping.wait(POLL_INTERVAL_S * (5 if not self.config.enabled else 1))
            except Exception:
                log.exception("event source mapping %s", self.config.uuid)
                self.stopping.wait(0.5)

    def _poll_once(self) -> bool:
        config, backend = self.config, self._backend()
        name = config.source_arn.split(":")[-1]
        queue = backend.get_queue(name)
        messages = self._receive(backend, queue, name, config)
        if not messages:
            return False
        records = [self._record(m) for m in messages]
        matching = RecordFilter(config.filters)
        selected = [r for r in records if matching.matches(r)]
        delete = [r for r in records if r not in selected]  # AWS deletes messages that do not match
        if selected:
            try:
                result = invoke_batch(self.invoker, config, {"Records": [r.event for r in selected]}, self.stopping)
                outcome = interpret(result, selected, config.report_item_failures)
            except LambdaInvokeError as error:
                outcome = Outcome(ok=False, status_code=error.status, function_error=error.code)
            if outcome.ok:
                delete += selected
            elif outcome.partial:
                delete += [r for r in selected if r.identifier not in set(outcome.failed_ids)]
        for record in delete:
            backend.delete_message(name, record.event["receiptHandle"])
        return True

    def _receive(self, backend: Any, queue: Any, name: str, config: MappingConfig) -> list[Any]:
        visibility = int(queue.visibility_timeout or 30)
        messages = backend.receive_message(name, min(config.batch_size, 10), 0, visibility, ["All"])
        if not messages or config.batching_window_s <= 0:
            return messages
        deadline = time.monotonic() + config.batching_window_s
        while len(messages) < config.batch_size and time.monotonic() < deadline and not self.stopping.is_set():
            more = backend.receive_message(name, min(config.batch_size - len(messages), 10), 0, visibility, ["All"])
            if not more:
                self.stopping.wait(POLL_INTERVAL_S)
            messages += more
        return messages

    def _record(self, message: Any) -> SourceRecord:
        attributes = {
            "ApproximateReceiveCount": str(message.approximate_receive_count),
            "SentTimestamp": str(message.sent_timestamp),
            "SenderId": message.sender_id,
            "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
        }
        if self.config.source_arn.endswith(".fifo"):
            attributes.update(SequenceNumber=str(message.sequence_number), MessageGroupId=message.group_id,
                              MessageDeduplicationId=message.deduplication_id)
        event = {
            "messageId": message.id, "receiptHandle": message.receipt_handle, "body": message.body,
            "attributes": attributes, "messageAttributes": _sqs_attributes(message.message_attributes),
            "md5OfBody": message.body_md5, "eventSource": "aws:sqs", "eventSourceARN": self.config.source_arn,
            "awsRegion": self.config.region,
        }
        if message.message_attributes:
            event["md5OfMessageAttributes"] = message.attribute_md5
        view = {**event, "body": _json_or_text(message.body)}
        return SourceRecord(seq=0, partition_key=message.group_id or message.id,
                            arrival=(message.sent_timestamp or 0) / 1000, event=event, identifier=message.id,
                            filter_view=view)


def _sqs_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS message attributes in the Lambda event's lower-camel shape."""
    out = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            binary = value["BinaryValue"]
            entry["binaryValue"] = binary if isinstance(binary, str) else base64.b64encode(binary).decode()
        out[name] = entry
    return out


# --------------------------------------------------------------------------------------------------
# The executor


class EventSourcesExecutor:
    """Keeps one poller per enabled-or-not mapping in moto, following creates, updates and deletes."""

    name = "event-sources"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.pollers: dict[str, Any] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._undo_create: Callable[[], None] | None = None
        self._detached: list[tuple[dict[str, Any], str, Any]] = []
        self._warned_no_runtime = False

    # lifecycle ------------------------------------------------------------------------------------
    def start(self, cloud: CloudContext) -> None:
        if self.thread is not None:
            return
        self.cloud = cloud
        self.stopping.clear()
        self._switch_off_inline_delivery()
        self.thread = threading.Thread(target=self._supervise, daemon=True, name="event-sources")
        self.thread.start()

    def stop(self) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join(timeout=5)
        self.thread = None
        for poller in list(self.pollers.values()):
            poller.stopping.set()  # all at once: stopping is then as slow as the slowest invocation
        for poller in list(self.pollers.values()):
            poller.stop()
        self.pollers.clear()
        self._restore_inline_delivery()

    def route(self, request: Any) -> WSGIApp | None:
        return None

    # moto's inline delivery -----------------------------------------------------------------------
    def _switch_off_inline_delivery(self) -> None:
        """moto delivers inline through each source's `lambda_event_source_mappings` dict (Kinesis
        put_record, SQS add_message which even receives and deletes, DynamoDB StreamShard.add which
        *empties the stream* when the call returns a value). Keeping those dicts empty disables all
        three without touching what moto returns to clients; mappings live on in the Lambda backend."""
        executor = self

        def detaching(original: Any) -> Any:
            def create_event_source_mapping(backend: Any, spec: dict[str, Any]) -> Any:
                esm = original(backend, spec)
                executor._detach_all()
                return esm
            return create_event_source_mapping

        self._undo_create = motoapi.replace("lambda.create_event_source_mapping", detaching)
        self._detach_all()

    def _detach_all(self) -> None:
        for owner in self._inline_registries():
            for key, esm in list(owner.items()):
                self._detached.append((owner, key, esm))
                owner.pop(key, None)

    @staticmethod
    def _inline_registries() -> Iterable[dict[str, Any]]:
        from localcloud.motoapi import dynamodb_backends
        from localcloud.motoapi import kinesis_backends
        from localcloud.motoapi import sqs_backends

        for backends, collection in ((kinesis_backends, "streams"), (sqs_backends, "queues"), (dynamodb_backends, "tables")):
            for regions in list(backends.values()):
                for backend in list(regions.values()):
                    for resource in list(getattr(backend, collection).values()):
                        yield resource.lambda_event_source_mappings

    def _restore_inline_delivery(self) -> None:
        if self._undo_create is not None:
            self._undo_create()
            self._undo_create = None
        for owner, key, esm in self._detached:
            owner[key] = esm
        self._detached.clear()

    # supervision ----------------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self.stopping.is_set():
            try:
                self._sync_pollers()
            except Exception:
                log.exception("event-sources supervisor")
            self.stopping.wait(SCAN_INTERVAL_S)

    def _mappings(self) -> dict[str, Any]:
        from localcloud.motoapi import lambda_backends

        found = {}
        for regions in list(lambda_backends.values()):
            for backend in list(regions.values()):
                for esm in list(backend._event_source_mappings.values()):
                    found[esm.uuid] = esm
        return found

    def _sync_pollers(self) -> None:
        mappings = self._mappings()
        for gone in set(self.pollers) - set(mappings):
            self.pollers.pop(gone).stop()
        for mapping_id, esm in mappings.items():
            config = MappingConfig.from_moto(esm)
            poller = self.pollers.get(mapping_id)
            if poller is None:
                poller = self._new_poller(config)
                if poller is None:
                    continue
                self.pollers[mapping_id] = poller
            poller.refresh(config)

    def _new_poller(self, config: MappingConfig) -> Any:
        assert self.cloud is not None
        try:
            invoker = self.cloud.invoker()
        except KeyError:
            if not self._warned_no_runtime:
                log.warning("no lambda-runtime executor loaded: event source mappings are not polled")
                self._warned_no_runtime = True
            return None
        if config.source_kind == "sqs":
            return SqsPoller(config, invoker)
        role = self._role(config)
        source = KinesisSource(config, role) if config.source_kind == "kinesis" else DynamoDBStreamSource(config, role)
        checkpoints = CheckpointStore(self.cloud.state_dir / "event_sources" / f"{config.uuid}.json")
        return StreamPoller(config, invoker, source, checkpoints)

    @staticmethod
    def _role(config: MappingConfig) -> str:
        from localcloud.motoapi import lambda_backends

        try:
            return lambda_backends[config.account_id][config.region].get_function(config.function_arn).role
        except Exception:
            return ""


def make_executor() -> EventSourcesExecutor:
    return EventSourcesExecutor()
