"""What a rule's targets receive (Input, InputPath, InputTransformer, the Scheduled Event) and delivery to
Lambda, SQS and SNS; other target types stay moto's."""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger("localcloud.scheduler")

MOTO_PLACEHOLDER_ID = "17793124-05d4-b198-2fde-7ededc63b103"


_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_MISSING = object()


def json_path(document: Any, path: str) -> Any:
    """EventBridge's JSONPath subset (`$`, `$.a.b`, `$.a[0]`, `$['a-b']`); _MISSING when absent."""
    if not path.startswith("$"):
        raise ValueError(f"invalid JSONPath {path!r}")
    position, value = 1, document
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if not match:
            raise ValueError(f"invalid JSONPath {path!r}")
        position = match.end()
        key, index, quoted, double_quoted = match.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
            continue
        name = key if key is not None else (quoted if quoted is not None else double_quoted)
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def render_template(template: str, values: dict[str, Any]) -> str:
    """Substitute `<name>` placeholders as EventBridge does: inside a JSON string a string value goes
    in as its characters, anywhere else a value goes in as JSON; unknown names stay as written."""
    out: list[str] = []
    in_string = escaped = False
    position = 0
    while position < len(template):
        char = template[position]
        if char == "<":
            end = template.find(">", position)
            name = template[position + 1:end] if end > 0 else ""
            if name in values:
                out.append(_placeholder_text(values[name], in_string))
                position = end + 1
                continue
        if escaped:
            escaped = False
        elif char == "\\" and in_string:
            escaped = True
        elif char == '"':
            in_string = not in_string
        out.append(char)
        position += 1
    return "".join(out)


def _placeholder_text(value: Any, in_string: bool) -> str:
    if value is _MISSING:
        return "" if in_string else "null"
    if in_string:
        text = value if isinstance(value, str) else json.dumps(value)
        return json.dumps(text)[1:-1]
    return json.dumps(value)


def target_input(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str) -> str:
    """The body a target receives: the event, or its Input / InputPath / InputTransformer."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        value = json_path(event, target["InputPath"])
        return "null" if value is _MISSING else json.dumps(value)
    transformer = target.get("InputTransformer")
    if transformer:
        values = {name: json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
        values |= {
            "aws.events.rule-arn": rule_arn, "aws.events.rule-name": rule_name,
            "aws.events.event.ingestion-time": event.get("time", ""),
            "aws.events.event": event, "aws.events.event.json": event,
        }
        return render_template(transformer.get("InputTemplate", ""), values)
    return json.dumps(event)


def iso_time(value: Any) -> str:
    """EventBridge's `time`: ISO 8601 UTC to the second (moto keeps unix seconds or a datetime)."""
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value) if value else datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(rule_arn: str, account: str, region: str, moment: datetime | None = None) -> dict[str, Any]:
    """The event AWS sends for a schedule rule."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": account, "time": iso_time(moment or datetime.now(timezone.utc)), "region": region,
        "resources": [rule_arn], "detail": {},
    }


Delivery = dict[str, Any]


def deliver(rule: Any, event: dict[str, Any], invoker: Callable[[], Any] | None,
            fallback: Callable[[Any, dict[str, Any]], None]) -> list[Delivery]:
    """Send `event` to each of the rule's targets; returns one report per target."""
    event = {key: value for key, value in event.items() if key != "ingestion-time"}
    event["time"] = iso_time(event.get("time"))
    if event.get("id") == MOTO_PLACEHOLDER_ID:  # moto's S3 -> EventBridge events all share one id
        event["id"] = str(uuid.uuid4())
    reports = []
    for target in list(rule.targets):
        report: Delivery = {"Id": target.get("Id"), "Arn": target["Arn"]}
        try:
            body = target_input(target, event, rule.arn, rule.name)
            report["Input"] = body
            service = target["Arn"].split(":")[2]
            if service == "lambda":
                _to_lambda(invoker, target, body)
            elif service == "sqs":
                _to_sqs(target, body)
            elif service == "sns":
                _to_sns(target, body)
            else:
                single = copy.copy(rule)
                single.targets = [target]
                fallback(single, copy.deepcopy(event))
            report["Status"] = "delivered"
        except Exception as error:  # one target failing must not stop the others (as on AWS)
            log.warning("rule %s: delivery to %s failed: %s", rule.name, target["Arn"], error)
            report |= {"Status": "failed", "Error": f"{type(error).__name__}: {error}"}
        reports.append(report)
    return reports


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    return parts[3], parts[4], parts[5]


def _to_lambda(invoker: Callable[[], Any] | None, target: dict[str, Any], body: str) -> None:
    if invoker is None:
        raise RuntimeError("the lambda-runtime executor is not running")
    region, account, _ = _arn_parts(target["Arn"])
    invoker().invoke(target["Arn"], body.encode(), invocation_type="Event", account_id=account, region=region)


def _to_sqs(target: dict[str, Any], body: str) -> None:
    from localcloud.motoapi import sqs_backends

    region, account, queue = _arn_parts(target["Arn"])
    group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
    extra = {"group_id": group_id, "deduplication_id": str(uuid.uuid4())} if group_id else {}
    sqs_backends[account][region].send_message(queue_name=queue, message_body=body, **extra)


def _to_sns(target: dict[str, Any], body: str) -> None:
    from localcloud.motoapi import sns_backends

    region, account, _ = _arn_parts(target["Arn"])
    sns_backends[account][region].publish(message=body, arn=target["Arn"])

