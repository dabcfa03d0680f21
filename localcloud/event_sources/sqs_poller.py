"""One SQS mapping's pollers: receive, invoke, delete what succeeded."""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import Any

from localcloud.event_sources.invoking import Outcome, interpret, invoke_batch
from localcloud.event_sources.mapping import POLL_INTERVAL_S, MappingConfig, RecordFilter, SourceRecord, _json_or_text
from localcloud.executors import Invoker, LambdaInvokeError

log = logging.getLogger("localcloud.event_sources")


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
