"""The cloudwatch executor: alarms evaluated on a clock, state changes that act, EMF metrics from logs.

moto stores alarms but never evaluates them (a new alarm says `OK` forever), has no composite alarms,
alarm history or metric widget images, and does nothing with EMF log lines. This executor:

- evaluates every metric alarm and then every composite alarm every RETAIL_CLOUDWATCH_TICK_S seconds
  (default 10) and right after PutMetricAlarm / PutCompositeAlarm, as `alarms.py` and `evaluation.py`
  describe; `POST /_localcloud/cloudwatch/evaluate` evaluates now and answers the transitions
  (client: `evaluate_now(endpoint)`);
- makes a new alarm start `INSUFFICIENT_DATA` ("Unchecked: Initial alarm creation") and an updated one
  keep its state, as AWS documents for PutMetricAlarm; refuses, with an error naming the call, what it
  cannot evaluate faithfully (metric math, anomaly bands, other statistics, other actions);
- runs the actions of the new state (SNS topics; Lambda functions, asynchronously, when their resource
  policy allows lambda.alarms.cloudwatch.amazonaws.com) only on a state change and only when ActionsEnabled,
  `SetAlarmState` included (the next evaluation may change the state back, as on AWS), and sends every
  state change to EventBridge's default bus (`CloudWatch Alarm State Change`);
- turns EMF log events into metrics when they are written to CloudWatch Logs (`emf.py`);
- answers PutCompositeAlarm, DescribeAlarmHistory, GetMetricWidgetImage, DescribeAlarms' AlarmTypes and
  ListMetrics (`api.py`).

Windows slide with the clock: the newest period ends at the evaluation (AWS aligns periods and waits for
them to complete), so a breaching datapoint is seen at the next tick rather than a period later.

A state change an evaluation decides is journaled like a request (persistence/effects.py): the state, its
history and the actions it ran survive a crash, so a restart neither forgets that an alarm is in ALARM
nor moves it (and notifies) again. After a crash the journal replays the change with its actions: a
notification lost with the process (an SQS message of an SNS subscriber) comes back, at least once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from datetime import datetime
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.cloudwatch import alarms as al
from localcloud.cloudwatch import api, emf
from localcloud.cloudwatch import evaluation as ev
from localcloud.executors import CloudContext, WSGIApp
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.effects import EffectFailed, Effects

log = logging.getLogger("localcloud.cloudwatch")

EVALUATE_ROUTE = "/_localcloud/cloudwatch/evaluate"
DEFAULT_TICK_S = 10.0


class InvalidAlarm(ValueError):
    """A definition AWS itself rejects (its documented limits on Period, EvaluationPeriods, DatapointsToAlarm)."""


def validate_alarm(kwargs: dict[str, Any]) -> None:
    """Refuse an alarm AWS refuses (InvalidAlarm), or one the local cloud would not evaluate as AWS does
    (AlarmDefinitionError)."""
    for key in ("alarm_actions", "ok_actions", "insufficient_data_actions"):
        for arn in kwargs.get(key) or []:
            if str(arn).split(":")[2:3] not in (["sns"], ["lambda"]):
                raise ev.AlarmDefinitionError(f"action {arn}: the local cloud runs SNS topic and Lambda function "
                                              "actions only")
    if kwargs.get("rule") is not None:
        ev.parse_rule(kwargs["rule"])
        return
    if kwargs.get("threshold_metric_id"):
        raise ev.AlarmDefinitionError("anomaly detection bands (ThresholdMetricId) are not evaluated by the local cloud")
    queries = kwargs.get("metric_data_queries") or []
    period = int(queries[0].metric_stat.period) if queries and queries[0].metric_stat else kwargs.get("period")
    periods, needed = int(kwargs.get("evaluation_periods") or 0), kwargs.get("datapoints_to_alarm")
    if period is None or not (int(period) in (10, 20, 30) or (int(period) > 0 and int(period) % 60 == 0)):
        raise InvalidAlarm(f"Period {period} is not valid: use 10, 20, 30 or a multiple of 60 seconds")
    if periods < 1 or int(period) * periods > (86_400 if int(period) < 3600 else 604_800):
        raise InvalidAlarm("Period x EvaluationPeriods can be at most one day for periods under an hour, "
                           "seven days otherwise")
    if needed is not None and not 1 <= int(needed) <= periods:
        raise InvalidAlarm("DatapointsToAlarm must be between 1 and EvaluationPeriods")
    if queries:
        if len(queries) != 1 or queries[0].expression or queries[0].metric_stat is None:
            raise ev.AlarmDefinitionError("metric math (Metrics with Expression) is not evaluated by the local cloud; "
                                          "use one MetricStat or Namespace/MetricName")
        ev.check_statistic(queries[0].metric_stat.stat, None)
    else:
        ev.check_statistic(kwargs.get("statistic"), kwargs.get("extended_statistic"))
    if kwargs.get("comparison_operator") not in ev.COMPARISONS:
        raise ev.AlarmDefinitionError(f"ComparisonOperator {kwargs.get('comparison_operator')!r} is not evaluated "
                                      "by the local cloud (anomaly detection operators need a model)")


def _json_app(status: int, body: Any) -> WSGIApp:
    data = json.dumps(body, default=str).encode()

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
    return app


class CloudWatchExecutor:
    """Evaluates alarms on a clock and acts on their state changes; extracts EMF metrics from logs."""

    name = "cloudwatch"

    def __init__(self) -> None:
        self.tick_s = float(os.environ.get("RETAIL_CLOUDWATCH_TICK_S", DEFAULT_TICK_S))
        self._lock = threading.RLock()  # a state change at a time (requests' hooks and journaled transitions)
        self._evaluating = threading.Lock()  # one evaluation at a time (never held by a request's hook)
        self.effects = Effects("cloudwatch", self._apply_effect)
        self.cloud: CloudContext | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._undo: list[Callable[[], None]] = []
        self._emf_header = threading.local()

    # -- lifecycle

    def start(self, cloud: CloudContext) -> None:
        if self._thread is not None:
            return
        self.cloud = cloud
        self._patch_moto()
        al.lambda_invoker = cloud.invoker if "lambda-runtime" in cloud.executors else None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="localcloud-cloudwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        al.lambda_invoker = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.evaluate()
            except Exception:  # the clock must survive a backend race
                log.exception("alarm evaluation failed")

    def evaluate(self) -> list[dict[str, Any]]:
        """Evaluate every alarm of every account and region now; the transitions it caused."""
        REPLAY_DONE.wait()  # the state the journal brings back decides, not the snapshot's
        with self._evaluating:
            now = al.now_utc()
            return [move for _, _, backend in al.backends()
                    for move in al.evaluate_backend(backend, now, self._journaled_transition)]

    def _journaled_transition(self, backend: Any, alarm: Any, verdict: ev.Verdict, now: datetime) -> dict[str, Any] | None:
        """A state change through the journal (applied by `_apply_effect`); None if it did not happen."""
        content = {"kind": "transition", "account": backend.account_id, "region": backend.region_name,
                   "alarm": alarm.name, "from": alarm.state_value, "to": verdict.state, "reason": verdict.reason,
                   "reason_data": verdict.reason_data, "when": now.isoformat()}
        if self.cloud is None:
            return al.transition(backend, alarm, verdict, now)
        try:
            return self.effects.perform(self.cloud, content).get("transition")
        except EffectFailed as error:
            log.error("alarm %s: state change to %s not made: %s", alarm.name, verdict.state, error)
            return None

    def _apply_effect(self, content: dict[str, Any], _blobs: list[bytes]) -> dict[str, Any]:
        """A journaled transition, when performed and on replay: applied if the alarm is still in the state
        it was decided from (a request may have changed it first)."""
        from localcloud.motoapi import cloudwatch_backends

        if content.get("kind") != "transition":
            raise ValueError(f"unknown cloudwatch effect {content.get('kind')!r}")
        with self._lock:
            backend = cloudwatch_backends[content["account"]][content["region"]]
            alarm = backend.alarms.get(content["alarm"])
            if alarm is None or alarm.state_value != content["from"]:
                return {"transition": None}
            verdict = ev.Verdict(content["to"], content["reason"], content["reason_data"])
            return {"transition": al.transition(backend, alarm, verdict, datetime.fromisoformat(content["when"]))}

    # -- moto hooks

    def _patch_moto(self) -> None:
        executor = self

        def creating(original: Any) -> Any:
            def put_metric_alarm(backend: Any, name: str, *args: Any, **kwargs: Any) -> Any:
                try:
                    validate_alarm(kwargs)
                except InvalidAlarm as error:
                    raise motoapi.CloudWatchValidationError(str(error)) from None
                except ev.AlarmDefinitionError as error:
                    call = "PutCompositeAlarm" if kwargs.get("rule") is not None else "PutMetricAlarm"
                    raise motoapi.CloudWatchValidationError(f"{call}: {error}") from None
                with executor._lock:
                    old = backend.alarms.get(name)
                    alarm = original(backend, name, *args, **kwargs)
                    when = al.now_utc()
                    if old is not None:  # AWS: an update leaves the state unchanged
                        for attribute in ("state_value", "state_reason", "state_reason_data",
                                          "state_updated_timestamp", "state_transitioned_timestamp"):
                            if hasattr(old, attribute):
                                setattr(alarm, attribute, getattr(old, attribute))
                    else:
                        alarm.state_value = ev.INSUFFICIENT_DATA
                        alarm.state_reason, alarm.state_reason_data = "Unchecked: Initial alarm creation", None
                        alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = when
                    if alarm.rule is not None:
                        alarm.alarm_rule = alarm.rule
                    if not alarm.metric_data_queries:
                        alarm.metric_data_queries = None  # AWS omits Metrics for a plain metric alarm
                    verb = "updated" if old is not None else "created"
                    al.record(backend, alarm, "ConfigurationUpdate", f'Alarm "{name}" {verb}',
                              {"version": "1.0", "type": "Update" if old is not None else "Create"}, when)
                executor._wake.set()  # AWS evaluates a new or updated alarm promptly
                return alarm
            return put_metric_alarm

        def acting(original: Any) -> Any:
            def set_alarm_state(backend: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
                with executor._lock:
                    alarm = backend.alarms.get(alarm_name)
                    before = (alarm.state_value, alarm.state_reason) if alarm is not None else None
                    original(backend, alarm_name, reason, reason_data, state_value)
                    if before is not None and before[0] != state_value:
                        al.change_state(backend, alarm, state_value, reason, reason_data or "", al.now_utc(),
                                        old_state=before[0], old_reason=before[1])
            return set_alarm_state

        def extracting(original: Any) -> Any:
            def put_log_events(backend: Any, log_group_name: str, log_stream_name: str,
                               log_events: list[dict[str, Any]]) -> Any:
                result = original(backend, log_group_name, log_stream_name, log_events)
                if log_group_name.startswith("/aws/lambda/") or getattr(executor._emf_header, "on", False):
                    emf.extract_events(log_events, backend.account_id, backend.region_name)
                return result
            return put_log_events

        self._undo = [motoapi.replace("cloudwatch.put_metric_alarm", creating),
                      motoapi.replace("cloudwatch.set_alarm_state", acting),
                      motoapi.replace("logs.put_log_events", extracting)]

    # -- requests

    def route(self, request: Request) -> WSGIApp | None:
        # AWS extracts EMF from PutLogEvents only with this header (Lambda's own logs need none)
        self._emf_header.on = request.headers.get("x-amzn-logs-format", "").lower() == "json/emf"
        claimed = self.effects.claim(request)
        if claimed is not None:
            return claimed
        if request.path == EVALUATE_ROUTE and request.method == "POST":
            return _json_app(200, {"Transitions": self.evaluate()})
        return api.claim(request, self)


def evaluate_now(endpoint: str | None = None) -> list[dict[str, Any]]:
    """Evaluate every alarm of the local cloud at `endpoint` now; the transitions it caused (tests, notebooks)."""
    base = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
    request = urllib.request.Request(f"{base.rstrip('/')}{EVALUATE_ROUTE}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["Transitions"])


def make_executor() -> CloudWatchExecutor:
    return CloudWatchExecutor()


__all__ = ["CloudWatchExecutor", "EVALUATE_ROUTE", "evaluate_now", "make_executor", "validate_alarm"]
