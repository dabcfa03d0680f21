"""Alarms over moto's CloudWatch state: evaluate, change state, record history, notify SNS.

Everything here reads and writes moto's objects in place (alarms, metric data, topics), so what an
alarm did survives a restart with the rest of the state. Every state change also goes to EventBridge's
default bus as a "CloudWatch Alarm State Change" event, as AWS sends it. History items live on the backend, in the
shape DescribeAlarmHistory answers.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from localcloud.cloudwatch import evaluation as ev
from localcloud.cloudwatch.messages import (is_composite, lambda_event, metric_of, notification,
                                            region_description, state_change_event, statistic_of)

log = logging.getLogger("localcloud.cloudwatch")

HISTORY_ATTRIBUTE = "localcloud_alarm_history"  # on moto's CloudWatchBackend: list of history item dicts
HISTORY_LIMIT = 10_000  # per account and region, oldest dropped first


def now_utc() -> datetime:
    """moto's clock: naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def history(backend: Any) -> list[dict[str, Any]]:
    items = getattr(backend, HISTORY_ATTRIBUTE, None)
    if items is None:
        items = []
        setattr(backend, HISTORY_ATTRIBUTE, items)
    return items


def record(backend: Any, alarm: Any, kind: str, summary: str, data: dict[str, Any], when: datetime) -> None:
    items = history(backend)
    items.append({"AlarmName": alarm.name, "AlarmType": "CompositeAlarm" if is_composite(alarm) else "MetricAlarm",
                  "Timestamp": when, "HistoryItemType": kind, "HistorySummary": summary,
                  "HistoryData": json.dumps(data, separators=(",", ":"), default=str)})
    del items[:-HISTORY_LIMIT]


def backends() -> Iterator[tuple[str, str, Any]]:
    from localcloud.motoapi import cloudwatch_backends

    for account, regions in list(cloudwatch_backends.items()):
        for region, backend in list(regions.items()):
            yield account, region, backend


# --------------------------------------------------------------------------------------------------
# Metric alarms


def _dimension_key(dimensions: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(d.name), str(d.value)) for d in dimensions))


def index_metrics(data: list[Any]) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Any]]:
    """moto's datums by metric identity (namespace, name, the whole dimension set), as CloudWatch keys them."""
    found: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Any]] = {}
    for datum in data:
        found.setdefault((datum.namespace, datum.name, _dimension_key(datum.dimensions)), []).append(datum)
    return found


def datum_value(datum: Any) -> Any:
    if hasattr(datum, "value"):
        return float(datum.value)
    return (float(datum.sum), float(datum.min), float(datum.max), float(datum.sample_count))


def evaluate_metric_alarm(alarm: Any, metrics: dict[Any, list[Any]], now: datetime) -> ev.Verdict:
    namespace, name, dimensions, period, unit = metric_of(alarm)
    statistic = statistic_of(alarm)
    datums = metrics.get((namespace, name, _dimension_key(dimensions)), [])
    if unit:
        datums = [d for d in datums if d.unit == unit]
    count = int(alarm.evaluation_periods) + ev.EXTRA_RANGE_PERIODS
    end = ev.utc(now).replace(microsecond=0) + timedelta(seconds=1)  # the current second included
    found = ev.buckets(((d.timestamp, datum_value(d)) for d in datums), end, period, count)
    starts = [end - timedelta(seconds=period * (count - i)) for i in range(count)]
    values = [b.statistic(statistic) if b else None for b in found]
    counts = [b.sample_count() if b else 0.0 for b in found]
    if statistic.startswith("p") and alarm.evaluate_low_sample_count_percentile == "ignore":
        needed = math.ceil(1 / max(1e-9, 1 - float(statistic[1:]) / 100))
        if any(v is not None and c < needed for v, c in zip(values, counts)):
            return ev.Verdict(None, "", {})  # too few samples for this percentile: AWS keeps the state
    return ev.evaluate(values, starts, comparison=alarm.comparison_operator, threshold=float(alarm.threshold),
                       evaluation_periods=int(alarm.evaluation_periods),
                       datapoints_to_alarm=alarm.datapoints_to_alarm, treat_missing=alarm.treat_missing_data,
                       current=alarm.state_value, statistic=statistic, period=period, now=ev.utc(now),
                       sample_counts=counts)


# --------------------------------------------------------------------------------------------------
# Composite alarms


def child_state(backend: Any, reference: str) -> str | None:
    name = reference.split(":alarm:", 1)[1] if ":alarm:" in reference else reference
    child = backend.alarms.get(name)
    return child.state_value if child is not None else None


def evaluate_composite(backend: Any, alarm: Any) -> ev.Verdict:
    tree = ev.parse_rule(alarm.rule)
    holds = ev.rule_holds(tree, lambda ref: child_state(backend, ref))
    state = ev.ALARM if holds else ev.OK
    children = []
    for reference in ev.rule_children(tree):
        name = reference.split(":alarm:", 1)[1] if ":alarm:" in reference else reference
        child = backend.alarms.get(name)
        if child is not None:
            children.append(child)

    def changed_at(child: Any) -> datetime:
        return ev.utc(getattr(child, "state_transitioned_timestamp", None) or child.state_updated_timestamp)

    # the child that most recently moved into the state that decided the rule
    deciding = sorted((c for c in children if (c.state_value == ev.ALARM) == holds), key=changed_at, reverse=True)
    data: dict[str, Any] = {"triggeringAlarms": [
        {"arn": c.alarm_arn, "state": {"value": c.state_value, "timestamp": ev.iso(changed_at(c))}}
        for c in deciding[:1]]}
    if deciding:
        reason = (f"{deciding[0].alarm_arn} transitioned to {deciding[0].state_value} at "
                  f"{changed_at(deciding[0]):%A %d %B, %Y %H:%M:%S} UTC")
    else:
        reason = f"Composite alarm rule evaluated to {'TRUE' if holds else 'FALSE'}"
    return ev.Verdict(state, reason, data)


# --------------------------------------------------------------------------------------------------
# State changes, actions, notifications


def change_state(backend: Any, alarm: Any, state: str, reason: str, reason_data: str, when: datetime,
                 old_state: str | None = None, old_reason: str | None = None) -> list[dict[str, Any]]:
    """Move an alarm to `state` (AWS: StateValue, StateReason, StateReasonData and both timestamps), record
    the StateUpdate, run the new state's actions when ActionsEnabled; returns what the actions did."""
    old_state = old_state or alarm.state_value
    old_reason = alarm.state_reason if old_reason is None else old_reason
    previous = {"reason": old_reason, "reasonData": alarm.state_reason_data,
                "timestamp": ev.iso(getattr(alarm, "state_transitioned_timestamp", alarm.state_updated_timestamp)),
                "value": old_state}
    alarm.state_value, alarm.state_reason, alarm.state_reason_data = state, reason, reason_data
    alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = when
    new_state: dict[str, Any] = {"stateValue": state, "stateReason": reason}
    try:
        parsed = json.loads(reason_data) if reason_data else None
    except ValueError:
        parsed = None
    if parsed:
        new_state["stateReasonData"] = parsed
    record(backend, alarm, "StateUpdate", f"Alarm updated from {old_state} to {state}",
           {"version": "1.0", "oldState": {"stateValue": old_state, "stateReason": old_reason},
            "newState": new_state}, when)
    send_state_change_event(backend, alarm, previous, when)
    if not alarm.actions_enabled:
        return []
    actions = {ev.ALARM: alarm.alarm_actions, ev.OK: alarm.ok_actions,
               ev.INSUFFICIENT_DATA: alarm.insufficient_data_actions}[state] or []
    return [run_action(backend, alarm, arn, previous, when) for arn in actions]


# Set by the executor: the lambda-runtime's invoker, for Lambda alarm actions (None: not running).
lambda_invoker: Callable[[], Any] | None = None
LAMBDA_PRINCIPAL = "lambda.alarms.cloudwatch.amazonaws.com"


def run_action(backend: Any, alarm: Any, arn: str, previous: dict[str, Any], when: datetime) -> dict[str, Any]:
    parts = arn.split(":")
    try:
        if len(parts) < 6 or parts[2] not in ("sns", "lambda"):
            raise ValueError(f"the local cloud runs SNS topic and Lambda function actions only, not {arn}")
        if parts[2] == "lambda":
            message_id = _invoke(backend, alarm, arn, previous, when)
        else:
            message_id = _publish(backend, alarm, arn, previous["value"], when)
    except Exception as error:  # AWS records a failed action in the alarm's history; the alarm moves on
        log.warning("alarm %s: action %s failed: %s", alarm.name, arn, error)
        record(backend, alarm, "Action", f"Failed to execute action {arn}",
               {"actionState": "Failed", "stateUpdateTimestamp": int(ev.utc(when).timestamp() * 1000),
                "notificationResource": arn, "error": f"{type(error).__name__}: {error}"}, now_utc())
        return {"Action": arn, "Status": "failed", "Error": str(error)}
    record(backend, alarm, "Action", f"Successfully executed action {arn}",
           {"actionState": "Succeeded", "stateUpdateTimestamp": int(ev.utc(when).timestamp() * 1000),
            "notificationResource": arn, "publishedMessage": {"messageId": message_id}}, now_utc())
    return {"Action": arn, "Status": "delivered", "MessageId": message_id}


def _publish(backend: Any, alarm: Any, arn: str, old_state: str, when: datetime) -> str:
    from localcloud.motoapi import sns_backends

    parts = arn.split(":")
    subject = f'{alarm.state_value}: "{alarm.name}" in {region_description(backend.region_name)}'[:100]
    message = json.dumps(notification(backend, alarm, old_state, when), separators=(",", ":"))  # compact, as AWS
    return str(sns_backends[parts[4]][parts[3]].publish(message=message, arn=arn, subject=subject))


def _invoke(backend: Any, alarm: Any, arn: str, previous: dict[str, Any], when: datetime) -> str:
    """An asynchronous invocation, allowed by the function's resource policy as AWS requires."""
    from localcloud.executors import JSONPayload
    from localcloud.notifications.executor import function_policy, policy_allows

    if lambda_invoker is None:
        raise RuntimeError("the lambda-runtime executor is not running")
    region, account = arn.split(":")[3], arn.split(":")[4]
    if not policy_allows(function_policy(arn, account), LAMBDA_PRINCIPAL, alarm.alarm_arn, backend.account_id):
        raise PermissionError(f"CloudWatch Alarms is not authorized to perform lambda:InvokeFunction on {arn} "
                              f"(add a permission for principal {LAMBDA_PRINCIPAL})")
    result = lambda_invoker().invoke(arn, JSONPayload.dumps(lambda_event(backend, alarm, previous, when)),
                                     invocation_type="Event", account_id=account, region=region)
    return str(result.request_id)


def send_state_change_event(backend: Any, alarm: Any, previous: dict[str, Any], when: datetime) -> None:
    """AWS guarantees this event on every state change; rules on the default bus receive it."""
    from localcloud.motoapi import events_backends

    try:
        events_backends[backend.account_id][backend.region_name].put_events([{
            "Source": "aws.cloudwatch", "DetailType": "CloudWatch Alarm State Change",
            "Detail": json.dumps(state_change_event(alarm, previous, when)), "Resources": [alarm.alarm_arn],
            "Time": ev.utc(when).timestamp()}])
    except Exception:  # a broken rule must not stop the alarm (EventBridge retries on AWS)
        log.exception("alarm %s: state change event not delivered", alarm.name)


Apply = Callable[[Any, Any, ev.Verdict, datetime], "dict[str, Any] | None"]


def evaluate_backend(backend: Any, now: datetime, apply: Apply | None = None) -> list[dict[str, Any]]:
    """One round over an account and region: metric alarms first, then composite alarms (until none
    moves, so a composite of composites settles in the same round). Returns the transitions.

    `apply(backend, alarm, verdict, now)` makes a state change and returns the transition (None when the
    alarm moved or went meanwhile); by default `transition`, in place. The executor passes one that
    journals the change (persistence/effects.py), so a restart neither forgets nor repeats it."""
    apply = apply or transition
    moved: list[dict[str, Any]] = []
    alarms = list(backend.alarms.values())
    watched = {metric_of(a)[0] for a in alarms if not is_composite(a)}
    # moto computes AWS's own metrics (AWS/S3 bucket sizes: a walk over every key) on each read: only when watched
    data = backend.get_all_metrics() if any(str(ns).startswith("AWS/") for ns in watched) else backend.metric_data
    metrics = index_metrics(data) if watched else {}
    for alarm in alarms:
        if not is_composite(alarm):
            _apply(backend, alarm, _safely(alarm, lambda a=alarm: evaluate_metric_alarm(a, metrics, now)), now, moved,
                   apply)
    composites = [a for a in alarms if is_composite(a)]
    for _ in range(len(composites) + 1):
        before = len(moved)
        for alarm in composites:
            _apply(backend, alarm, _safely(alarm, lambda a=alarm: evaluate_composite(backend, a)), now, moved, apply)
        if len(moved) == before:
            break
    return moved


def _safely(alarm: Any, run: Any) -> ev.Verdict | None:
    try:
        return run()
    except Exception:  # one broken alarm must not stop the others
        log.exception("alarm %s: evaluation failed", alarm.name)
        return None


def _apply(backend: Any, alarm: Any, verdict: ev.Verdict | None, now: datetime, moved: list[dict[str, Any]],
           apply: Apply) -> None:
    if verdict is None or verdict.state is None or verdict.state == alarm.state_value:
        return
    if backend.alarms.get(alarm.name) is not alarm:
        return  # deleted or replaced while we were evaluating
    move = apply(backend, alarm, verdict, now)
    if move is not None:
        moved.append(move)


def transition(backend: Any, alarm: Any, verdict: ev.Verdict, now: datetime) -> dict[str, Any]:
    """Move `alarm` to the verdict's state (with its actions) in place; the transition as the admin route
    answers it."""
    old = alarm.state_value
    actions = change_state(backend, alarm, verdict.state, verdict.reason, ev.reason_data_json(verdict.reason_data), now)
    return {"AlarmName": alarm.name, "AlarmArn": alarm.alarm_arn, "OldStateValue": old,
            "NewStateValue": verdict.state, "StateReason": verdict.reason, "Actions": actions}
