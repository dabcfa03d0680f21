"""Firehose transformation for drivers' feedback: each record is a JSON object with a `text`; it leaves
with the `sentiment` Amazon Comprehend finds in it (POSITIVE / NEGATIVE / NEUTRAL / MIXED) and the four
scores, as a JSON line.

Texts go to `comprehend.batch_detect_sentiment` 25 at a time (its limit). A record that is not JSON, has
no text, or that Comprehend lists in its ErrorList comes back `ProcessingFailed` (Firehose writes it under
the error prefix); a throttled or failed call raises, so Firehose retries the whole invocation.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3

comprehend = boto3.client("comprehend")
LANGUAGE = os.environ.get("LANGUAGE_CODE", "en")
BATCH = 25  # BatchDetectSentiment takes at most 25 documents
MAX_TEXT_BYTES = 5000  # and each at most 5,000 bytes of UTF-8


def _failed(record: dict[str, Any]) -> dict[str, Any]:
    return {"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    documents: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for record in event["records"]:
        try:
            message = json.loads(base64.b64decode(record["data"]))
            text = message["text"]
        except (ValueError, KeyError, TypeError):
            out[record["recordId"]] = _failed(record)
            continue
        if not isinstance(text, str) or not text.strip() or len(text.encode()) > MAX_TEXT_BYTES:
            out[record["recordId"]] = _failed(record)
            continue
        documents.append((record, message))
    for first in range(0, len(documents), BATCH):
        chunk = documents[first:first + BATCH]
        answer = comprehend.batch_detect_sentiment(TextList=[m["text"] for _, m in chunk], LanguageCode=LANGUAGE)
        for error in answer.get("ErrorList", []):
            record = chunk[error["Index"]][0]
            out[record["recordId"]] = _failed(record)
        for result in answer["ResultList"]:
            record, message = chunk[result["Index"]]
            enriched = {**message, "sentiment": result["Sentiment"],
                        "scores": {k.lower(): round(v, 4) for k, v in result["SentimentScore"].items()}}
            data = (json.dumps(enriched, separators=(",", ":")) + "\n").encode()
            out[record["recordId"]] = {"recordId": record["recordId"], "result": "Ok",
                                       "data": base64.b64encode(data).decode()}
    return {"records": [out[record["recordId"]] for record in event["records"]]}
