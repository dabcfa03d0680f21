"""Kinesis Data Firehose delivery in the local cloud (executor "firehose").

moto stores delivery streams and writes each DirectPut call straight to S3 as one object, with no
buffering, transformation or Redshift COPY. `start()` patches moto's FirehoseBackend so PutRecord /
PutRecordBatch feed this executor's buffers instead (`stop()` restores moto), and a thread reads
Kinesis-sourced streams from moto's Kinesis backend in-process. The delivery logic itself lives in
`delivery.py`, a stream's buffers and source in `pipeline.py`.

AWS semantics implemented: DirectPut and KinesisStreamAsSource (from TRIM_HORIZON at creation, per-shard
checkpoints under `state_dir/firehose/<stream>/` so an executor restart neither re-delivers nor skips;
DirectPut on a Kinesis-sourced stream is refused with AWS's InvalidArgumentException); BufferingHints
(flushed at SizeInMBs, or IntervalInSeconds after the first record of the buffer); Extended S3 Prefix /
ErrorOutputPrefix with `!{timestamp:...}`, `!{firehose:error-output-type}`, `!{firehose:random-string}`,
the default `YYYY/MM/DD/HH/` (UTC, arrival of the oldest record), AWS's object names, UNCOMPRESSED /
GZIP (`.gz`), records concatenated as sent; Lambda data transformation (its own buffer hints,
NumberOfRetries, the Ok / Dropped / ProcessingFailed contract, failures as JSON lines under the error
prefix); Redshift (staging object + manifest under `manifests/`, AWS's COPY through the "warehouse"
executor, retries for RetryOptions.DurationInSeconds, then the manifest under `errors/manifests/`; a
journal guarantees a batch is COPYed at most once, across restarts too).

Admin route (local only): `POST /_localcloud/firehose/{name}/flush?account=&region=` delivers
everything buffered now (client: `flush(endpoint, name)`), so nobody waits for IntervalInSeconds.

Durability: a PutRecord(Batch) answered 200 is journaled like any request, and its records wait in
buffers kept on moto's delivery stream (so a snapshot holds them). A delivery (objects written, records
out of the buffers) is one change journaled through `persistence/effects.py`: after a kill -9 the journal
replays accepts and deliveries in their order, so every accepted record is delivered, and once (a
replayed delivery writes the same object again). Transformed records are carried in their change (a
function's answer cannot be replayed). Kinesis-sourced records are read again from the checkpoint, which
moves after their delivery: one delivered just before a crash may be delivered again (at least once).
A Redshift COPY is noted once done (`journal.json`), so a replay never COPYs a batch twice.

Local differences:
- RETAIL_FIREHOSE_RETRY_S overrides every Redshift RetryOptions.DurationInSeconds (AWS default 3600);
  RETAIL_FIREHOSE_RETRY_DELAY_S (default 1) is the pause between COPY attempts, and between S3 write
  attempts (AWS retries S3 for 24 h).
- Destinations other than S3 / Extended S3 / Redshift keep moto's behaviour.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

from localcloud import motoapi
from localcloud.firehose import delivery as fd
from localcloud.executor_base import ThreadedExecutor, json_response
from localcloud.executors import DEFAULT_ACCOUNT, DEFAULT_REGION, Invoker, WSGIApp
from localcloud.firehose.pipeline import RETRY_DELAY_S, Change, KinesisReader, MotoS3, Pipeline
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.effects import Effects

log = logging.getLogger("localcloud.firehose")

TICK_S = 0.05
MAX_BATCH_RECORDS = 500
MAX_RECORD_BYTES = 1_000 * 1024
FLUSH_ROUTE = re.compile(r"^/_localcloud/firehose/(?P<name>[\w.\-]+)/flush$")
KINESIS_SOURCE_REFUSAL = "This operation is not permitted on KinesisStreamAsSource delivery stream type."
HELD = "localcloud_buffers"  # on moto's DeliveryStream: what its buffers hold (pickled with the snapshot)


# --------------------------------------------------------------------------------------------------
# The executor


def _firehose_backends() -> Iterator[tuple[str, str, Any]]:
    from localcloud.motoapi import firehose_backends

    for account_id, regions in list(firehose_backends.items()):
        for region, backend in list(regions.items()):
            yield account_id, region, backend


class FirehoseExecutor(ThreadedExecutor):
    """Keeps one Pipeline per delivery stream in moto and drives their buffers."""

    name = "firehose"
    interval_s = TICK_S

    def __init__(self) -> None:
        super().__init__()
        self.pipelines: dict[str, Pipeline] = {}  # by delivery stream ARN
        self.lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        self.effects = Effects("firehose", self._apply_change)

    # lifecycle ------------------------------------------------------------------------------------
    def on_start(self) -> None:
        self._patch_moto()

    def on_stop(self) -> None:
        self._restore_moto()
        self.pipelines.clear()

    def route(self, request: Any) -> WSGIApp | None:
        claimed = self.effects.claim(request)
        if claimed is not None:
            return claimed
        match = FLUSH_ROUTE.match(request.path)
        if not match or request.method != "POST":
            return None
        account = request.args.get("account", DEFAULT_ACCOUNT)
        region = request.args.get("region", DEFAULT_REGION)
        try:
            report = self.flush(match.group("name"), account, region)
        except KeyError as error:
            return json_response(404, {"message": str(error.args[0])})
        return json_response(200, report)

    # moto -----------------------------------------------------------------------------------------
    def _patch_moto(self) -> None:
        executor = self

        def batching(original_batch: Callable[..., Any]) -> Callable[..., Any]:
            def put_record_batch(backend: Any, delivery_stream_name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
                return executor._put_records(backend, delivery_stream_name, records, original_batch)
            return put_record_batch

        def validating(original_create: Callable[..., Any]) -> Callable[..., Any]:
            def create_delivery_stream(backend: Any, *args: Any, **kwargs: Any) -> str:
                _validate_creation(original_create, backend, args, kwargs)
                return str(original_create(backend, *args, **kwargs))
            return create_delivery_stream

        self._undo = [motoapi.replace("firehose.put_record_batch", batching),
                      motoapi.replace("firehose.create_delivery_stream", validating)]

    def _restore_moto(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def _put_records(self, backend: Any, name: str, records: list[dict[str, Any]], original: Callable[..., Any]) -> dict[str, Any]:
        """PutRecord(Batch): validate as AWS does, buffer, answer with a RecordId per record."""
        from localcloud.motoapi import FirehoseInvalidArgumentException as InvalidArgumentException
        from localcloud.motoapi import FirehoseResourceNotFoundException as ResourceNotFoundException
        from localcloud.motoapi import FirehoseValidationException as ValidationException

        stream = backend.delivery_streams.get(name)
        if stream is None:
            raise ResourceNotFoundException(f"Firehose {name} under account {backend.account_id} not found.")
        if stream.delivery_stream_type == "KinesisStreamAsSource":
            raise InvalidArgumentException(KINESIS_SOURCE_REFUSAL)
        if len(records) > MAX_BATCH_RECORDS:
            raise ValidationException("1 validation error detected: Value at 'records' failed to satisfy constraint: "
                                      f"Member must have length less than or equal to {MAX_BATCH_RECORDS}")
        pipeline = self._pipeline(stream, backend.account_id, backend.region_name)
        if pipeline is None:
            return dict(original(backend, name, records))  # a destination delivered by moto itself
        from localcloud.motoapi import mock_random

        now = time.time()
        converted = [fd.FirehoseRecord(record_id, _data(record), now) for record_id, record in
                     zip(fd.new_record_ids(len(records), mock_random.getrandbits), records)]
        if any(len(r.data) > MAX_RECORD_BYTES for r in converted):
            raise ValidationException("1 validation error detected: Value at 'record.data' failed to satisfy "
                                      f"constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}")
        pipeline.accept(converted)
        encrypted = (stream.delivery_stream_encryption_configuration or {}).get("Status") == "ENABLED"
        return {"FailedPutCount": 0, "Encrypted": encrypted,
                "RequestResponses": [{"RecordId": r.record_id} for r in converted]}

    # pipelines ------------------------------------------------------------------------------------
    def _pipeline(self, stream: Any, account_id: str, region: str) -> Pipeline | None:
        config = fd.StreamConfig.from_moto(stream, account_id, region)
        if config is None:
            return None
        with self.lock:
            pipeline = self.pipelines.get(config.arn)
            if pipeline is not None and pipeline.config.key != config.key:
                pipeline = None  # deleted and re-created under the same name
            if pipeline is None:
                assert self.cloud is not None
                held = getattr(stream, HELD, None)
                if held is None:
                    held = {}
                    setattr(stream, HELD, held)
                pipeline = self.pipelines[config.arn] = Pipeline(
                    config, self.cloud.state_dir, self._invoker, self._warehouse, held=held,
                    commit=lambda change, blobs, config=config: self._commit(config, change, blobs))
            elif pipeline.config != config:
                pipeline.refresh(config)
            return pipeline

    def _commit(self, config: fd.StreamConfig, change: Change, blobs: list[bytes]) -> dict[str, Any]:
        """A pipeline's change, journaled (applied by `_apply_change`, now and on replay)."""
        assert self.cloud is not None
        return self.effects.perform(self.cloud, {**change, "stream": config.arn, "stream_key": config.key}, blobs)

    def _apply_change(self, change: Change, blobs: list[bytes]) -> dict[str, Any]:
        """Apply a journaled change to its delivery stream's pipeline (unless the stream went meanwhile)."""
        from localcloud.motoapi import firehose_backends

        arn = change["stream"]
        region, account, name = arn.split(":")[3], arn.split(":")[4], arn.split("/", 1)[1]
        stream = firehose_backends[account][region].delivery_streams.get(name)
        pipeline = self._pipeline(stream, account, region) if stream is not None else None
        if pipeline is None or pipeline.config.key != change["stream_key"]:
            return {"applied": False}  # deleted (and maybe re-created): its buffers went with it
        return pipeline.apply(change, blobs)

    def _invoker(self) -> Invoker | None:
        assert self.cloud is not None
        try:
            return self.cloud.invoker()
        except KeyError:
            return None

    def _warehouse(self) -> fd.Warehouse:
        assert self.cloud is not None
        try:
            warehouse: fd.Warehouse = self.cloud.executor("warehouse")
        except KeyError:
            raise RuntimeError("no warehouse executor is running in the local cloud") from None
        return warehouse

    def _sync(self) -> list[Pipeline]:
        live: list[Pipeline] = []
        for account_id, region, backend in _firehose_backends():
            for stream in list(backend.delivery_streams.values()):
                pipeline = self._pipeline(stream, account_id, region)
                if pipeline is not None:
                    live.append(pipeline)
        with self.lock:
            for arn in set(self.pipelines) - {p.config.arn for p in live}:
                del self.pipelines[arn]  # DeleteDeliveryStream discards buffered data, as on AWS
        return live

    def supervise_once(self) -> None:
        if not REPLAY_DONE.is_set():  # the journal's deliveries come first
            return
        try:
            pipelines = self._sync()
        except Exception:
            log.exception("firehose supervisor")
            pipelines = []
        for pipeline in pipelines:
            try:
                pipeline.poll_source()
                pipeline.tick()
            except Exception:  # one broken stream must not stop the others
                log.exception("firehose delivery stream %s", pipeline.config.name)

    def flush(self, name: str, account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> dict[str, Any]:
        """Deliver everything buffered for one delivery stream now (source read first)."""
        from localcloud.motoapi import firehose_backends

        stream = firehose_backends[account_id][region].delivery_streams.get(name)
        if stream is None:
            raise KeyError(f"Firehose {name} under account {account_id} not found.")
        pipeline = self._pipeline(stream, account_id, region)
        if pipeline is None:
            raise KeyError(f"Firehose {name} has a destination the local cloud does not buffer.")
        pipeline.poll_source()
        report = pipeline.tick(force=True)
        report["DeliveryStreamName"] = name
        return report


def _data(record: dict[str, Any]) -> bytes:
    data = record.get("Data", b"")
    return data if isinstance(data, bytes) else base64.b64decode(data)


def _validate_creation(original: Callable[..., Any], backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Prefix expressions Firehose would refuse (moto accepts anything)."""
    import inspect

    from localcloud.motoapi import FirehoseInvalidArgumentException as InvalidArgumentException

    bound = inspect.signature(original).bind(backend, *args, **kwargs).arguments
    for name in ("extended_s3_destination_configuration", "s3_destination_configuration"):
        config = bound.get(name)
        if config:
            try:
                fd.validate_prefixes(config.get("Prefix") or "", config.get("ErrorOutputPrefix") or "")
            except fd.PrefixError as error:
                raise InvalidArgumentException(str(error)) from None


def flush(endpoint: str | None, name: str, *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """Deliver a delivery stream's buffers now (instead of waiting for IntervalInSeconds); returns
    {"Records", "Objects", "ErrorObjects", "Manifests", "Copied", "ErrorManifests", "Errors"}."""
    base = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
    query = urllib.parse.urlencode({"account": account, "region": region})
    url = f"{base.rstrip('/')}/_localcloud/firehose/{urllib.parse.quote(name)}/flush?{query}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=120) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise LookupError(json.loads(error.read() or b"{}").get("message", str(error))) from None


def make_executor() -> FirehoseExecutor:
    return FirehoseExecutor()


__all__ = [  # KinesisReader, MotoS3 and Pipeline live in pipeline.py; importable from here as before
    "FirehoseExecutor", "KinesisReader", "MotoS3", "Pipeline", "RETRY_DELAY_S", "flush", "make_executor",
]
