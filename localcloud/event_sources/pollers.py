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
- TumblingWindowInSeconds (0-900, streams only; stream_delivery.py): windows aligned on the epoch by
  arrival time; `state` carried between a window's invocations (an answer without `state` is a failed
  invocation, as on AWS); a final invoke without records when a later window's records arrive or the
  window's end has passed, retried until it succeeds; a state over 1 MB ends the window early
  (`isWindowTerminatedEarly`). A shard's open window is saved with its checkpoint after every invocation
  (checkpoints.py): after a stop or a crash it goes on with the state of exactly the records before the
  checkpoint, and the records after it come again (at least once), so its final invoke covers them all.
- The State moto reports is Enabled / Disabled (no transitional Creating / Enabling / Disabling).

This module is the executor (one poller per mapping); the package is split by job: mapping.py (config,
records, filters, timings), invoking.py, stream_sources.py, stream_delivery.py, stream_poller.py,
sqs_poller.py, checkpoints.py, destinations.py. The names importable from here before the split still are.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from localcloud import motoapi
from localcloud.event_sources.checkpoints import CheckpointStore
from localcloud.event_sources.destinations import send_to_destination
from localcloud.event_sources.invoking import Outcome, interpret, invoke_batch
from localcloud.event_sources.mapping import (
    MAX_PAYLOAD_BYTES, POLL_INTERVAL_S, RETRY_DELAY_S, SCAN_INTERVAL_S, MappingConfig, RecordFilter, SourceRecord,
    _kinesis_filter_view,
)
from localcloud.event_sources.sqs_poller import SqsPoller
from localcloud.event_sources.stream_delivery import MAX_WINDOW_S, StreamDelivery, TumblingWindow, batches, lanes
from localcloud.event_sources.stream_poller import StreamPoller
from localcloud.event_sources.stream_sources import DynamoDBStreamSource, KinesisSource
from localcloud.executor_base import ThreadedExecutor

log = logging.getLogger("localcloud.event_sources")

__all__ = [  # the package's public names, importable from here as before the split
    "CheckpointStore", "DynamoDBStreamSource", "EventSourcesExecutor", "KinesisSource", "MAX_PAYLOAD_BYTES",
    "MappingConfig", "Outcome", "POLL_INTERVAL_S", "RETRY_DELAY_S", "RecordFilter", "SourceRecord", "SqsPoller",
    "StreamDelivery", "StreamPoller", "TumblingWindow", "batches", "interpret", "invoke_batch", "lanes",
    "make_executor", "send_to_destination", "_kinesis_filter_view",
]


class EventSourcesExecutor(ThreadedExecutor):
    """Keeps one poller per enabled-or-not mapping in moto, following creates, updates and deletes."""

    name = "event-sources"
    interval_s = SCAN_INTERVAL_S

    def __init__(self) -> None:
        super().__init__()
        self.pollers: dict[str, Any] = {}
        self._undo_create: Callable[[], None] | None = None
        self._detached: list[tuple[dict[str, Any], str, Any]] = []
        self._warned_no_runtime = False

    # lifecycle ------------------------------------------------------------------------------------
    def on_start(self) -> None:
        self._switch_off_inline_delivery()

    def on_stop(self) -> None:
        for poller in list(self.pollers.values()):
            poller.stopping.set()  # all at once: stopping is then as slow as the slowest invocation
        for poller in list(self.pollers.values()):
            poller.stop()
        self.pollers.clear()
        self._restore_inline_delivery()

    # moto's inline delivery -----------------------------------------------------------------------
    def _switch_off_inline_delivery(self) -> None:
        """moto delivers inline through each source's `lambda_event_source_mappings` dict (Kinesis
        put_record, SQS add_message which even receives and deletes, DynamoDB StreamShard.add which
        *empties the stream* when the call returns a value). Keeping those dicts empty disables all
        three without touching what moto returns to clients; mappings live on in the Lambda backend."""
        executor = self

        def detaching(original: Any) -> Any:
            def create_event_source_mapping(backend: Any, spec: dict[str, Any]) -> Any:
                check_window(spec)
                esm = original(backend, spec)
                executor._detach_all()
                return esm
            return create_event_source_mapping

        def checking(original: Any) -> Any:
            def update_event_source_mapping(backend: Any, uuid: str, spec: dict[str, Any]) -> Any:
                check_window(spec)
                return original(backend, uuid, spec)
            return update_event_source_mapping

        undo_create = motoapi.replace("lambda.create_event_source_mapping", detaching)
        undo_update = motoapi.replace("lambda.update_event_source_mapping", checking)
        self._undo_create = lambda: (undo_create(), undo_update())
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
    def supervise_once(self) -> None:
        self._sync_pollers()

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


def check_window(spec: dict[str, Any]) -> None:
    """moto stores any TumblingWindowInSeconds; AWS accepts 0 to 900 and only for streams."""
    from localcloud.motoapi import JsonRESTError

    value = spec.get("TumblingWindowInSeconds")
    if value is None:
        return
    if not isinstance(value, int) or not 0 <= value <= MAX_WINDOW_S:
        raise JsonRESTError("ValidationException", f"1 validation error detected: Value '{value}' at "
                            "'tumblingWindowInSeconds' failed to satisfy constraint: Member must have value "
                            f"less than or equal to {MAX_WINDOW_S}")
    source = spec.get("EventSourceArn") or ""
    if value and source and source.split(":")[2] not in ("kinesis", "dynamodb"):
        raise JsonRESTError("InvalidParameterValueException",
                            "TumblingWindowInSeconds is only supported for Kinesis and DynamoDB Streams sources")


def make_executor() -> EventSourcesExecutor:
    return EventSourcesExecutor()
