"""Embedded Metric Format: log events that are EMF documents become metrics, as CloudWatch Logs extracts
them (a function's log lines, or PutLogEvents sent with `x-amzn-logs-format: json/emf`).

A document is a JSON object with `_aws: {Timestamp, CloudWatchMetrics: [directive, ...]}`. Each directive
names a Namespace, dimension sets (lists of member names of the root object, each at most 30) and
metrics (`Name` of a root member holding a number or an array of up to 100 numbers, optional `Unit`).
Every metric is published once per dimension set, at the document's Timestamp (milliseconds). Documents
that break the specification publish nothing (AWS counts them as EMF validation errors); members the
specification does not know are ignored.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from typing import Any, Iterable

log = logging.getLogger("localcloud.cloudwatch.emf")

MAX_DIMENSIONS = 30
MAX_METRICS = 100
MAX_VALUES = 100
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits",
    "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
    "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
    "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})


class EMFError(ValueError):
    """The document is not valid EMF; nothing of it is published."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_data(document: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(namespace, PutMetricData MetricData) pairs for one EMF document; EMFError when it is invalid."""
    meta = document.get("_aws")
    if not isinstance(meta, dict) or not isinstance(meta.get("CloudWatchMetrics"), list):
        raise EMFError("_aws.CloudWatchMetrics must be an array")
    stamp = meta.get("Timestamp")
    if not _number(stamp):
        raise EMFError("_aws.Timestamp must be a number of milliseconds")
    moment = datetime.fromtimestamp(stamp / 1000, tz=timezone.utc).replace(tzinfo=None)  # moto's naive UTC
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for directive in meta["CloudWatchMetrics"]:
        if not isinstance(directive, dict):
            raise EMFError("a MetricDirective must be an object")
        namespace, sets, metrics = directive.get("Namespace"), directive.get("Dimensions"), directive.get("Metrics")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            raise EMFError("Namespace must be a string of 1 to 255 characters")
        if not isinstance(sets, list) or not isinstance(metrics, list) or len(metrics) > MAX_METRICS:
            raise EMFError("Dimensions must be an array of arrays and Metrics an array of at most 100")
        dimension_sets = []
        for keys in sets:
            if not isinstance(keys, list) or len(keys) > MAX_DIMENSIONS:
                raise EMFError("a DimensionSet must be an array of at most 30 member names")
            values = [document.get(key) if isinstance(key, str) else None for key in keys]
            if any(not isinstance(value, str) or not value for value in values):
                raise EMFError(f"dimension members {keys} must be non-empty strings in the root object")
            dimension_sets.append([{"Name": key, "Value": value} for key, value in zip(keys, values)])
        data = []
        for definition in metrics:
            name = definition.get("Name") if isinstance(definition, dict) else None
            if not isinstance(name, str) or name not in document:
                raise EMFError(f"metric {name!r} must name a member of the root object")
            unit = definition.get("Unit")
            if unit is not None and unit not in UNITS:
                raise EMFError(f"metric {name}: unit {unit!r} is not a CloudWatch unit")
            value = document[name]
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > MAX_VALUES or not all(_number(v) for v in values):
                raise EMFError(f"metric {name} must be a number or an array of 1 to 100 numbers")
            for dimensions in dimension_sets or [[]]:
                datum: dict[str, Any] = {"MetricName": name, "Dimensions": dimensions, "Timestamp": moment,
                                         "Values": [float(v) for v in values]}
                if unit:
                    datum["Unit"] = unit
                data.append(datum)
        out.append((namespace, data))
    return out


def documents(messages: Iterable[str]) -> Iterable[dict[str, Any]]:
    """The EMF documents among log messages: a whole message that is a JSON object with `_aws`."""
    for message in messages:
        text = message.strip()
        if not (text.startswith("{") and '"_aws"' in text):
            continue
        try:
            document = json.loads(text)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            yield document


def extract_events(log_events: list[dict[str, Any]], account: str, region: str) -> int:
    """Publish the metrics of the EMF events among `log_events` into moto's CloudWatch; how many datums."""
    from localcloud.motoapi import cloudwatch_backends

    published = 0
    for document in documents(str(event.get("message", "")) for event in log_events):
        try:
            pairs = metric_data(document)
        except EMFError as error:
            log.warning("EMF log event not extracted: %s", error)
            continue
        backend = cloudwatch_backends[account][region]
        for namespace, data in pairs:
            if data:
                backend.put_metric_data(namespace, data)
                published += len(data)
    return published


__all__ = ["EMFError", "documents", "extract_events", "metric_data"]
