"""Asynchronous invocations (`InvocationType=Event`): queued durably, run with retries, then routed.

An event is answered 202 once it is on disk (persistence/durable_queue.py, unless the journal is off);
`ASYNC_THREADS` threads run it after the journal's replay (a function it names may come back with it),
retry a failure after `ASYNC_RETRY_DELAYS_S`, drop it past `MaximumEventAgeInSeconds`, and send its
record to the OnSuccess / OnFailure destination (SQS, SNS, a function, an EventBridge bus). Events
queued at a stop or a crash run after the next start: at least once, never lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcloud.awslambda.functions import FunctionSpec, spec_of
from localcloud.awslambda.environments import Outcome, now_iso
from localcloud.executors import JSONPayload, LambdaInvokeError
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.durable_queue import DurableQueue
from localcloud.persistence.wal import policy as journal_policy

if TYPE_CHECKING:
    from localcloud.awslambda.runtime import LambdaRuntime

log = logging.getLogger("localcloud.lambda")

# The delays before the two retries (AWS waits about 1 and 2 minutes; tests want seconds).
ASYNC_RETRY_DELAYS_S = tuple(float(v) for v in os.environ.get("RETAIL_LAMBDA_ASYNC_RETRY_DELAYS_S", "1,2").split(","))
ASYNC_THREADS = int(os.environ.get("RETAIL_LAMBDA_ASYNC_THREADS", "4"))


@dataclass
class AsyncEvent:
    spec_arn: str
    qualifier: str | None
    payload: bytes
    request_id: str
    account: str
    region: str
    received: float = field(default_factory=time.time)
    attempts: int = 0


class AsyncInvocations:
    """The runtime's queue of Event invocations and the threads that run them."""

    def __init__(self, runtime: LambdaRuntime):
        self.runtime = runtime
        self._queue: queue.Queue[AsyncEvent | None] = queue.Queue()
        self._events: DurableQueue | None = None  # the events on disk (None: journal off)
        self._retries: list[threading.Timer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self, folder: Path) -> None:
        """Open the durable queue, queue again what a stop or a crash left pending, start the threads."""
        self._stopping.clear()
        if journal_policy() != "off":
            self._events = DurableQueue(folder, journal_policy())
            pending = self._events.pending()
            for header, payload in pending:
                self._queue.put(AsyncEvent(header["arn"], header["qualifier"], payload, header["id"],
                                           header["account"], header["region"], received=header["received"]))
            if pending:
                log.info("%d async invocations queued before the last stop run again", len(pending))
        self._threads = [threading.Thread(target=self._loop, name=f"lambda-async-{i}", daemon=True)
                         for i in range(ASYNC_THREADS)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for timer in self._retries:
            timer.cancel()
        for _ in range(ASYNC_THREADS):
            self._queue.put(None)
        if self._events is not None:  # what is still queued runs after the next start
            self._events.close()
            self._events = None

    def add(self, spec: FunctionSpec, qualifier: str | None, payload: bytes, request_id: str, account: str,
            region: str) -> None:
        """Queue an event (on disk first when the journal is on)."""
        event = AsyncEvent(spec.arn, qualifier, payload, request_id, account, region)
        if self._events is not None:
            self._events.add(request_id, {"arn": spec.arn, "qualifier": qualifier, "account": account,
                                          "region": region, "received": event.received}, bytes(payload))
        self._queue.put(event)

    def wait_durable(self) -> None:
        """Return once every event added so far is on disk (acknowledged means stored)."""
        if self._events is not None:
            self._events.wait_durable(self._events.log.next_lsn - 1)

    def _loop(self) -> None:
        REPLAY_DONE.wait()  # an event queued before a crash may be for a function the journal brings back
        while True:
            event = self._queue.get()
            if event is None or self._stopping.is_set():
                return
            finished = True
            try:
                finished = self._run(event)
            except Exception:  # one broken event must not stop the async workers
                log.exception("async invocation %s failed", event.request_id)
            if finished and self._events is not None:
                self._events.done(event.request_id)

    def _run(self, event: AsyncEvent) -> bool:
        """One attempt; False while the event is not finished (a retry is due, or the runtime stops:
        the durable queue runs it again after the next start)."""
        runtime = self.runtime
        try:
            fn = runtime.function(event.spec_arn.split(":")[-1], event.qualifier, event.account, event.region)
        except LambdaInvokeError:
            log.warning("async event %s: function %s is gone", event.request_id, event.spec_arn)
            return True
        spec = spec_of(fn)
        config = _event_invoke_config(fn)
        max_age = config.get("MaximumEventAgeInSeconds", 21600)
        if time.time() - event.received > max_age:
            self._destination(spec, event, config, None, "EventAgeExceeded")
            return True
        event.attempts += 1
        outcome = runtime.run(fn, spec, event.payload, event.request_id, None, wait=True)
        if outcome.function_error is None:
            self._destination(spec, event, config, outcome, "Success")
            return True
        if self._stopping.is_set() and self._events is not None:
            return False
        retries = config.get("MaximumRetryAttempts", 2)
        if event.attempts <= retries and not self._stopping.is_set():
            delay = ASYNC_RETRY_DELAYS_S[min(event.attempts - 1, len(ASYNC_RETRY_DELAYS_S) - 1)]
            timer = threading.Timer(delay, self._queue.put, args=(event,))
            timer.daemon = True
            self._retries = [t for t in self._retries if t.is_alive()] + [timer]
            timer.start()
            return False
        self._destination(spec, event, config, outcome, "RetriesExhausted")
        return True

    def _destination(self, spec: FunctionSpec, event: AsyncEvent, config: dict[str, Any],
                     outcome: Outcome | None, condition: str) -> None:
        side = "OnSuccess" if condition == "Success" else "OnFailure"
        target = config.get("DestinationConfig", {}).get(side, {}).get("Destination")
        if not target:
            if condition != "Success":
                log.warning("async event %s of %s dropped after %s (no OnFailure destination)",
                            event.request_id, spec.name, condition)
            return
        record: dict[str, Any] = {
            "version": "1.0", "timestamp": now_iso(),
            "requestContext": {"requestId": event.request_id, "functionArn": spec.qualified_arn,
                               "condition": condition, "approximateInvokeCount": event.attempts},
            "requestPayload": _json_or_text(event.payload),
        }
        if outcome is not None:
            record["responseContext"] = {"statusCode": 200, "executedVersion": spec.version}
            if outcome.function_error:
                record["responseContext"]["functionError"] = outcome.function_error
            record["responsePayload"] = _json_or_text(outcome.payload)
        send_to_destination(target, record, condition, spec, self.runtime)


def send_to_destination(arn: str, record: dict[str, Any], condition: str, spec: FunctionSpec, runtime: LambdaRuntime) -> None:
    """An async invocation record to SQS, SNS, another function or an EventBridge bus."""
    from localcloud.event_sources import pollers as event_sources

    service = arn.split(":")[2]
    if service in ("sqs", "sns"):
        event_sources.send_to_destination(arn, record, spec.account, spec.region)
    elif service == "lambda":
        runtime.invoke(arn, JSONPayload.dumps(record), invocation_type="Event", account_id=spec.account,
                       region=spec.region)
    elif service == "events":
        from localcloud.motoapi import events_backends

        detail = "Success" if condition == "Success" else "Failure"
        events_backends[spec.account][spec.region].put_events([{
            "Source": "lambda", "DetailType": f"Lambda Function Invocation Result - {detail}",
            "Detail": json.dumps(record), "Resources": [spec.qualified_arn], "EventBusName": arn,
        }])
    else:
        log.warning("unsupported destination %s", arn)


def _event_invoke_config(fn: Any) -> dict[str, Any]:
    configs = getattr(fn, "event_invoke_config", None) or []
    return dict(configs[-1].config) if configs else {}


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return payload.decode("utf-8", "replace")

