"""Streams (Kinesis, DynamoDB Streams): ordered delivery of one shard's records, with retries, bisect,
partial failures, record expiry, tumbling windows and the OnFailure record."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from localcloud.event_sources.invoking import Outcome, interpret, invoke_batch
from localcloud.event_sources.mapping import MAX_PAYLOAD_BYTES, RETRY_DELAY_S, MappingConfig, SourceRecord, _iso
from localcloud.executors import Invoker, LambdaInvokeError


MAX_WINDOW_S = 900  # TumblingWindowInSeconds: 0 (none) to 900 seconds
MAX_STATE_BYTES = 1024 * 1024  # a window's state may hold 1 MB per shard; beyond it the window ends early


@dataclass
class TumblingWindow:
    """TumblingWindowInSeconds: the window a shard's records fall in (aligned on the epoch by arrival
    time) and the state the function returned so far (sent back with every invocation of the window)."""

    start: float
    size: int
    state: dict[str, Any] = field(default_factory=dict)
    terminated_early: bool = False  # the state outgrew 1 MB: a final invoke now, the window goes on afresh

    @classmethod
    def containing(cls, arrival: float, size: int) -> "TumblingWindow":
        return cls(start=arrival - arrival % size, size=size)

    @property
    def end(self) -> float:
        return self.start + self.size

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps of an open window (checkpoints.py)."""
        return {"start": self.start, "size": self.size, "state": self.state}

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> "TumblingWindow":
        return cls(start=float(saved["start"]), size=int(saved["size"]), state=dict(saved.get("state") or {}))

    def fields(self, shard_id: str, source_arn: str, final: bool) -> dict[str, Any]:
        return {"window": {"start": _iso(self.start).replace(".000Z", "Z"), "end": _iso(self.end).replace(".000Z", "Z")},
                "state": self.state, "shardId": shard_id, "eventSourceARN": source_arn,
                "isFinalInvokeForWindow": final, "isWindowTerminatedEarly": final and self.terminated_early}


def window_state(payload: bytes | None) -> dict[str, Any] | None:
    """The `state` of a windowed function's response, or None when it has none: AWS counts an answer
    without a `state` object as a failed invocation."""
    try:
        response = json.loads(payload or b"null")
    except ValueError:
        return None
    state = response.get("state") if isinstance(response, dict) else None
    return state if isinstance(state, dict) else None


class StreamDelivery:
    """Delivers an ordered list of one shard's records with retries, bisect, partial failures,
    record expiry and the OnFailure destination. Pure logic over an Invoker (unit-testable)."""

    def __init__(self, config: MappingConfig, invoker: Invoker, shard_id: str,
                 on_failure: Callable[[dict[str, Any]], None], stopping: threading.Event | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time,
                 window: TumblingWindow | None = None, progress: Callable[[int | None], None] | None = None):
        self.config, self.invoker, self.shard_id = config, invoker, shard_id
        self.on_failure, self.sleep, self.now = on_failure, sleep, now
        self.stopping = stopping or threading.Event()
        self.window = window
        # Within a window: called once the window's state holds an invocation's answer, with the sequence
        # number of the last record that state covers (None: none new), so the two are saved together.
        self.progress = progress or (lambda _seq: None)

    def close_window(self) -> None:
        """The final invocation of a tumbling window (no records, isFinalInvokeForWindow true). AWS makes
        it synchronously and pauses the shard until it succeeds, so it is retried without a limit."""
        while not self.stopping.is_set():
            try:
                result = invoke_batch(self.invoker, self.config, self.event([], final=True), self.stopping)
            except LambdaInvokeError:
                result = None
            if result is not None and not result.function_error and window_state(result.payload) is not None:
                return
            self.sleep(RETRY_DELAY_S)

    def deliver(self, records: list[SourceRecord]) -> None:
        """Returns once every record was processed successfully or discarded."""
        pending = batches(records, self.config.batch_size)
        while pending and not self.stopping.is_set():
            self._deliver_batch(pending.pop(0), pending)

    def _deliver_batch(self, batch: list[SourceRecord], pending: list[list[SourceRecord]]) -> None:
        retries, invocations, last = 0, 0, None
        while batch and not self.stopping.is_set():
            batch = self._drop_expired(batch, invocations, last)
            if not batch:
                return
            try:
                result = invoke_batch(self.invoker, self.config, self.event(batch), self.stopping)
            except LambdaInvokeError as error:
                last = Outcome(ok=False, status_code=error.status, function_error=error.code)
            else:
                last = self._windowed(result, interpret(result, batch, self.config.report_item_failures), batch)
            invocations += 1
            if last.ok:
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

    def _windowed(self, result: Any, outcome: Outcome, batch: list[SourceRecord]) -> Outcome:
        """Within a window the answer must carry `state` (else the invocation failed); the state of a
        successful or partly successful answer goes to the window's next invocation, and is saved with
        the position of the last record it covers (`progress`). A state beyond 1 MB ends the window
        early: a final invoke with it now, then the same window with a fresh state."""
        if self.window is None or outcome.function_error:
            return outcome
        state = window_state(result.payload)
        if state is None:
            return Outcome(ok=False, function_error="MissingWindowState", status_code=outcome.status_code,
                           executed_version=outcome.executed_version, request_id=outcome.request_id)
        self.window.state = state
        if len(json.dumps(state)) > MAX_STATE_BYTES:
            self.window.terminated_early = True
            self.close_window()
            self.window.state, self.window.terminated_early = {}, False
        self.progress(covered(batch, outcome))
        return outcome

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


def covered(batch: list[SourceRecord], outcome: Outcome) -> int | None:
    """The sequence number of the last record an answer's state covers: the whole batch when it
    succeeded, the records before the lowest failed one when it partly failed (None: not one)."""
    if outcome.ok:
        return batch[-1].seq
    failed = set(outcome.failed_ids)
    lowest = min((r.seq for r in batch if r.identifier in failed), default=batch[0].seq)
    before = [r.seq for r in batch if r.seq < lowest]
    return before[-1] if before else None


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
