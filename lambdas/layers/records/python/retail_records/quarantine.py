"""The quarantine queue's messages: a stream record that can never be stored, with the reason and where
it came from, so an operator can find it and replay it. One writer for every consumer of the stream."""

from __future__ import annotations

import json
import logging
from typing import Any

SQS_BATCH = 10  # SendMessageBatch takes 10 messages ...
SQS_MAX_BYTES = 256 * 1024  # ... and 256 KB, together and each

logger = logging.getLogger(__name__)


def stream_message(source: str, record: dict[str, Any], reason: str) -> str:
    """A Kinesis event record as a quarantine message: raw data, why, shard and sequence number. A record
    too big for an SQS message (Kinesis takes 1 MB) keeps everything but its data (`dataTruncated`)."""
    kinesis = record.get("kinesis", {})
    message = {
        "source": source, "reason": reason, "eventID": record.get("eventID"),
        "eventSourceARN": record.get("eventSourceARN"),
        "shardId": str(record.get("eventID", "unknown")).split(":", 1)[0],
        "sequenceNumber": kinesis.get("sequenceNumber"), "partitionKey": kinesis.get("partitionKey"),
        "approximateArrivalTimestamp": kinesis.get("approximateArrivalTimestamp"), "data": kinesis.get("data"),
    }
    text = json.dumps(message, default=str)
    if len(text.encode()) > SQS_MAX_BYTES:
        message.update(data=None, dataTruncated=True)
        text = json.dumps(message, default=str)
    return text


def batches(bodies: list[str]) -> list[list[int]]:
    """Indexes grouped in SendMessageBatch calls: at most 10 messages and 256 KB together."""
    groups: list[list[int]] = []
    size = 0
    for index, body in enumerate(bodies):
        length = len(body.encode())
        if not groups or len(groups[-1]) >= SQS_BATCH or size + length > SQS_MAX_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += length
    return groups


def send(sqs: Any, queue_url: str, bodies: list[str]) -> list[int]:
    """SendMessageBatch of every body; the indexes of those not sent (the caller reports their records
    as failed, so Lambda retries them rather than losing them)."""
    failed: list[int] = []
    for group in batches(bodies):
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url,
                                            Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in group])
        except Exception:  # noqa: BLE001 - any failure: these records are retried, not lost
            logger.exception("could not quarantine %d records", len(group))
            failed += group
            continue
        failed += [int(entry["Id"]) for entry in answer.get("Failed", [])]
    return failed
