"""Invoking a function with a batch and reading what its answer means for the batch's records."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from localcloud.event_sources.mapping import THROTTLE_DELAY_S, MappingConfig, SourceRecord
from localcloud.executors import Invoker, JSONPayload, LambdaInvokeError


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
