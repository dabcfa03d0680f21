"""CloudWatch operations moto does not answer, in moto's own request parsing and response serialization
(whatever protocol the client speaks: boto3's CBOR, JSON or query): PutCompositeAlarm,
DescribeAlarmHistory, GetMetricWidgetImage, and DescribeAlarms with AWS's AlarmTypes default (metric
alarms only unless CompositeAlarm is asked for), and ListMetrics listing each metric once (moto lists a
metric with two or more dimensions once per datapoint).
"""

from __future__ import annotations

import io
import math
import re
from datetime import datetime, timedelta
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.cloudwatch import alarms as al
from localcloud.cloudwatch import evaluation as ev
from localcloud.cloudwatch import widget
from localcloud.executors import WSGIApp

TARGET_PREFIX = "GraniteServiceVersion20100801"
_CBOR_PATH = re.compile(rf"^/service/{TARGET_PREFIX}/operation/(\w+)$")
OPERATIONS = frozenset({"PutCompositeAlarm", "DescribeAlarmHistory", "GetMetricWidgetImage", "DescribeAlarms",
                        "ListMetrics"})
MAX_HISTORY_RECORDS = 100


def operation(request: Request) -> str | None:
    """The CloudWatch operation of a request, if it is one (the body is read only for the query protocol)."""
    match = _CBOR_PATH.match(request.path)
    if match:
        return match.group(1)
    target = request.headers.get("X-Amz-Target", "")
    if target.startswith(TARGET_PREFIX + "."):
        return target[len(TARGET_PREFIX) + 1:]
    if "/monitoring/aws4_request" not in request.headers.get("Authorization", "") or request.method != "POST":
        return None
    if not (request.content_type or "").startswith("application/x-www-form-urlencoded"):
        return None
    environ = request.environ
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    from urllib.parse import parse_qs

    return (parse_qs(body.decode("utf-8", "replace")).get("Action") or [None])[0]


def claim(request: Request, executor: Any) -> WSGIApp | None:
    if operation(request) not in OPERATIONS:
        return None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        moto_request = motoapi.MotoRequest(environ)
        moto_request.from_wsgi_server = True
        response = response_class()
        response.executor = executor
        status, headers, body = response.dispatch_with(moto_request)
        data = body.encode() if isinstance(body, str) else (body or b"")
        headers = {k: str(v) for k, v in dict(headers).items() if k.lower() not in ("status", "content-length")}
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [*headers.items(), ("Content-Length", str(len(data)))])
        return [data]
    return app


_RESPONSE_CLASS: type | None = None


def response_class() -> Any:
    """moto's CloudWatchResponse with the extra operations (built on first use: importing moto is slow)."""
    global _RESPONSE_CLASS
    if _RESPONSE_CLASS is None:
        _RESPONSE_CLASS = type("LocalCloudWatchResponse", (motoapi.CloudWatchResponse,), dict(_METHODS))
    return _RESPONSE_CLASS()


def _dispatch_with(self: Any, request: Any) -> Any:
    return self._dispatch(request, request.raw_url, dict(request.headers))


def _put_composite_alarm(self: Any) -> Any:
    if self._get_param("ActionsSuppressor"):
        raise motoapi.CloudWatchValidationError(
            "PutCompositeAlarm: ActionsSuppressor is not evaluated by the local cloud")
    rule = self._get_param("AlarmRule")
    if not rule:
        raise motoapi.CloudWatchValidationError("PutCompositeAlarm: AlarmRule is required")
    enabled = self._get_param("ActionsEnabled")
    self.cloudwatch_backend.put_metric_alarm(
        name=self._get_param("AlarmName"), namespace=None, metric_name=None, comparison_operator=None,
        evaluation_periods=None, period=None, threshold=None, statistic=None,
        description=self._get_param("AlarmDescription"), dimensions=[],
        alarm_actions=self._get_param("AlarmActions", []), ok_actions=self._get_param("OKActions", []),
        insufficient_data_actions=self._get_param("InsufficientDataActions", []),
        actions_enabled=True if enabled is None else bool(enabled), rule=rule, tags=self._get_param("Tags", []))
    return motoapi.ActionResult({})


def _types(self: Any) -> set[str]:
    return set(self._get_param("AlarmTypes") or ["MetricAlarm"])


def _describe_alarms(self: Any) -> Any:
    result = motoapi.CloudWatchResponse.describe_alarms(self)
    types = _types(self)
    body = dict(result.result)
    if "MetricAlarm" not in types:
        body["MetricAlarms"] = []
    if "CompositeAlarm" not in types:
        body["CompositeAlarms"] = []
    return motoapi.ActionResult(body)


def _list_metrics(self: Any) -> Any:
    namespace, name = self._get_param("Namespace"), self._get_param("MetricName")
    wanted = self._get_param("Dimensions") or []
    recent = self._get_param("RecentlyActive")
    since = al.now_utc() - timedelta(hours=3) if recent == "PT3H" else None
    metrics = []
    for (ns, metric, dims), datums in al.index_metrics(self.cloudwatch_backend.get_all_metrics()).items():
        if (namespace and ns != namespace) or (name and metric != name):
            continue
        have = dict(dims)
        if any(d["Name"] not in have or (d.get("Value") is not None and have[d["Name"]] != d["Value"]) for d in wanted):
            continue
        if since and not any(ev.utc(d.timestamp) >= ev.utc(since) for d in datums):
            continue
        metrics.append({"Namespace": ns, "MetricName": metric,
                        "Dimensions": [{"Name": d.name, "Value": d.value} for d in datums[0].dimensions]})
    offset = int(self._get_param("NextToken") or 0)
    body: dict[str, Any] = {"Metrics": metrics[offset:offset + 500]}
    if offset + 500 < len(metrics):
        body["NextToken"] = str(offset + 500)
    return motoapi.ActionResult(body)


def _describe_alarm_history(self: Any) -> Any:
    name, kind = self._get_param("AlarmName"), self._get_param("HistoryItemType")
    start, end = self._get_param("StartDate"), self._get_param("EndDate")
    types = _types(self)
    items = [item for item in al.history(self.cloudwatch_backend)
             if (not name or item["AlarmName"] == name) and (not kind or item["HistoryItemType"] == kind)
             and item["AlarmType"] in types
             and (start is None or ev.utc(item["Timestamp"]) >= ev.utc(start))
             and (end is None or ev.utc(item["Timestamp"]) <= ev.utc(end))]
    if (self._get_param("ScanBy") or "TimestampDescending") == "TimestampDescending":
        items = items[::-1]
    offset = int(self._get_param("NextToken") or 0)
    limit = int(self._get_param("MaxRecords") or MAX_HISTORY_RECORDS)
    page = items[offset:offset + limit]
    body: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + limit < len(items):
        body["NextToken"] = str(offset + limit)
    return motoapi.ActionResult(body)


def _get_metric_widget_image(self: Any) -> Any:
    output = self._get_param("OutputFormat") or "png"
    if output != "png":
        raise motoapi.CloudWatchValidationError(
            f"GetMetricWidgetImage: OutputFormat {output!r} is not rendered by the local cloud (png only)")
    backend = self.cloudwatch_backend
    try:
        image = widget.render(self._get_param("MetricWidget") or "", lambda *args: series(backend, *args))
    except (widget.WidgetError, ev.AlarmDefinitionError) as error:
        raise motoapi.CloudWatchValidationError(f"GetMetricWidgetImage: {error}") from None
    return motoapi.ActionResult({"MetricWidgetImage": image})


def series(backend: Any, namespace: str, name: str, dims: list[tuple[str, str]], stat: str, period: int,
           start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """A metric's statistic per period between start and end (periods aligned as CloudWatch aligns them)."""
    ev.check_statistic(stat if stat in ev.STATISTICS else None, None if stat in ev.STATISTICS else stat)
    key = tuple(sorted(dims))
    datums = al.index_metrics(backend.get_all_metrics()).get((namespace, name, key), [])
    epoch = start.timestamp() // period * period
    first = datetime.fromtimestamp(epoch, tz=start.tzinfo)
    count = max(1, math.ceil((end - first).total_seconds() / period))
    last = first + timedelta(seconds=period * count)
    found = ev.buckets(((d.timestamp, al.datum_value(d)) for d in datums), last, period, count)
    out = []
    for i, bucket in enumerate(found):
        value = bucket.statistic(stat) if bucket else None
        if value is not None:
            out.append((first + timedelta(seconds=period * i), value))
    return out


_METHODS: dict[str, Any] = {
    "dispatch_with": _dispatch_with,
    "put_composite_alarm": _put_composite_alarm,
    "describe_alarms": _describe_alarms,
    "list_metrics": _list_metrics,
    "describe_alarm_history": _describe_alarm_history,
    "get_metric_widget_image": _get_metric_widget_image,
}
