"""What the pollers work from: a mapping's configuration, the records they read, filters, and the local
timings (AWS's limits and the RETAIL_ESM_* overrides described in pollers.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

RETRY_DELAY_S = float(os.environ.get("RETAIL_ESM_RETRY_DELAY_S", "0.05"))
POLL_INTERVAL_S = float(os.environ.get("RETAIL_ESM_POLL_INTERVAL_S", "0.02"))
SCAN_INTERVAL_S = 0.1
THROTTLE_DELAY_S = 0.05
MAX_SQS_POLLERS = 4
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 - 64 * 1024  # Lambda's synchronous payload limit, with room for the envelope


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


def _kinesis_filter_view(event: dict[str, Any]) -> dict[str, Any]:
    """AWS filters Kinesis records on their metadata plus `data` decoded as JSON (if it is JSON)."""
    view = dict(event["kinesis"])
    try:
        view["data"] = json.loads(base64.b64decode(event["kinesis"]["data"]))
    except ValueError:
        pass
    return {**{k: v for k, v in event.items() if k != "kinesis"}, **view}
