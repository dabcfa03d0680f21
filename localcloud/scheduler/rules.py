"""EventBridge / CloudWatch Events for the local cloud: schedules fire, and targets receive what AWS sends.

moto stores rules and targets and matches `put_events` against event patterns, but schedules never
fire, Lambda and SNS targets raise NotImplementedError, DISABLED rules still deliver, schedule-only
rules match every put event, `Input` / `InputPath` are ignored, and `put_rule` accepts any `cron(...)`.
This executor:

- runs a background thread that fires each ENABLED `rate(...)` / `cron(...)` rule of the default bus
  on time (UTC), delivering AWS's "Scheduled Event" to every target; rule updates take effect on the
  next tick (state, expression, targets are read from moto's backend each time);
- replaces `moto.events.models.Rule.send_to_targets` so that every delivery (schedules, `put_events`,
  S3 -> EventBridge) skips DISABLED and schedule-only rules and sends Lambda (async invoke through the
  lambda-runtime), SQS and SNS targets the event after `Input`, `InputPath` or `InputTransformer` as
  AWS applies them; other target types (logs, archives, buses, API destinations) stay moto's;
- validates `ScheduleExpression` in `put_rule` with the same parser (ValidationException, as AWS);
- claims `POST /_localcloud/events/rules/{name}/fire?event-bus=default&region=us-east-1&account=...`
  to fire a scheduled rule now (tests and notebooks need not wait a minute): `fire_rule(name)`;
- claims `POST /_localcloud/events/clock?advance=SECONDS` to move the scheduler's clock forward (for
  every rule of this local cloud) and fire what became due at once: `advance_clock(seconds)`.

Differences from AWS: a `rate(N unit)` rule first fires N units after the scheduler first sees it
(AWS: within N units of creation); `RETAIL_LOCALCLOUD_SCHEDULER_TICK` (seconds, default 0.5) is how
often the thread looks at the clock; EventBridge's retries of failed deliveries are not emulated.

The work is split: `schedules.py` (expressions), `targets.py` (what targets receive, delivery); this module
is the executor and its admin-route clients, and the names importable from it before the split still are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.executor_base import ThreadedExecutor, json_response
from localcloud.executors import DEFAULT_ACCOUNT, DEFAULT_REGION, WSGIApp
from localcloud.scheduler.schedules import CronSchedule, RateSchedule, ScheduleError, parse_schedule
from localcloud.scheduler.targets import (
    Delivery, deliver, iso_time, json_path, render_template, scheduled_event, target_input,
)

log = logging.getLogger("localcloud.scheduler")

FIRE_ROUTE = re.compile(r"^/_localcloud/events/rules/(?P<name>[\w.\-]+)/fire$")
CLOCK_ROUTE = "/_localcloud/events/clock"
DEFAULT_TICK_S = 0.5
INVALID_SCHEDULE = "Parameter ScheduleExpression is not valid."


class Scheduler(ThreadedExecutor):
    """Fires schedule rules, fixes moto's target delivery, validates schedule expressions."""

    name = "scheduler"
    wait_first = True  # a clock: the first tick comes one interval after start

    def __init__(self) -> None:
        super().__init__()
        self._next: dict[str, tuple[str, datetime]] = {}  # rule ARN -> (expression, next fire)
        self._undo: list[Callable[[], None]] = []
        self._original_send: Callable[..., Any] | None = None
        self._lock = threading.Lock()  # one tick at a time (the thread, or a clock request)
        self.clock_offset = timedelta()  # how far advance_clock moved time forward
        self.tick_s = self.interval_s = float(os.environ.get("RETAIL_LOCALCLOUD_SCHEDULER_TICK", DEFAULT_TICK_S))

    # -- lifecycle

    def on_start(self) -> None:
        self._patch_moto()

    def on_stop(self) -> None:
        self._restore_moto()

    def thread_name(self) -> str:
        return "localcloud-scheduler"

    def _patch_moto(self) -> None:
        scheduler = self

        def delivering(original_send: Any) -> Any:
            scheduler._original_send = original_send  # deliver() passes it the targets moto delivers itself

            def send_to_targets(rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
                if rule.state != "ENABLED" or not rule.event_pattern.get_pattern():
                    return  # AWS: disabled rules and schedule-only rules never match put events
                if rule.event_pattern.matches_event(event):
                    scheduler.deliver(rule, event)
            return send_to_targets

        def validating(original_put_rule: Any) -> Any:
            def put_rule(backend: Any, name: str, *args: Any, **kwargs: Any) -> Any:
                expression = kwargs.get("scheduled_expression")
                if expression:
                    try:
                        parse_schedule(expression)
                    except ScheduleError:
                        raise motoapi.EventsValidationException(INVALID_SCHEDULE) from None
                return original_put_rule(backend, name, *args, **kwargs)
            return put_rule

        self._undo = [motoapi.replace("events.rule.send_to_targets", delivering),
                      motoapi.replace("events.put_rule", validating)]

    def _restore_moto(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    # -- delivery

    def deliver(self, rule: Any, event: dict[str, Any]) -> list[Delivery]:
        invoker = self.cloud.invoker if self.cloud and "lambda-runtime" in self.cloud.executors else None
        return deliver(rule, event, invoker, self._original_send)

    def fire(self, rule: Any, moment: datetime | None = None) -> dict[str, Any]:
        event = scheduled_event(rule.arn, rule.account_id, rule.region_name, moment)
        return {"Rule": rule.arn, "Event": event, "Deliveries": self.deliver(rule, event)}

    # -- the clock

    def supervise_once(self) -> None:
        self.tick(self.now())

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.clock_offset

    def advance(self, seconds: float) -> list[dict[str, Any]]:
        """Move the clock forward and fire what is due (at most once per rule, like a late tick)."""
        with self._lock:
            self.clock_offset += timedelta(seconds=seconds)
        return self.tick(self.now())

    def tick(self, now: datetime) -> list[dict[str, Any]]:
        """Fire every ENABLED schedule rule that is due at `now`; returns what was fired."""
        with self._lock:
            return self._tick(now)

    def _tick(self, now: datetime) -> list[dict[str, Any]]:
        fired, seen = [], set()
        for rule in list(_schedule_rules()):
            seen.add(rule.arn)
            expression = rule.scheduled_expression
            known = self._next.get(rule.arn)
            if known is None or known[0] != expression:
                try:
                    self._next[rule.arn] = (expression, parse_schedule(expression).next_after(now))
                except ScheduleError:
                    log.warning("rule %s: unusable schedule %r", rule.arn, expression)
                    self._next[rule.arn] = (expression, datetime.max.replace(tzinfo=timezone.utc))
                continue
            if now < known[1]:
                continue
            self._next[rule.arn] = (expression, parse_schedule(expression).next_after(now))
            if rule.state == "ENABLED":
                fired.append(self.fire(rule, known[1]))
        for gone in set(self._next) - seen:
            del self._next[gone]
        return fired

    # -- admin route

    def route(self, request: Request) -> WSGIApp | None:
        if request.path == CLOCK_ROUTE and request.method == "POST":
            try:
                seconds = float(request.args.get("advance", "0"))
            except ValueError:
                return json_response(400, {"message": "advance must be a number of seconds"})
            fired = self.advance(seconds)
            return json_response(200, {"Now": iso_time(self.now()), "Fired": fired})
        match = FIRE_ROUTE.match(request.path)
        if not match or request.method != "POST":
            return None
        query = request.args
        try:
            rule = _find_rule(match.group("name"), query.get("event-bus", "default"),
                              query.get("account", DEFAULT_ACCOUNT), query.get("region", DEFAULT_REGION))
        except KeyError as error:
            return json_response(404, {"message": str(error.args[0])})
        if not rule.scheduled_expression:
            return json_response(400, {"message": f"rule {rule.name} has no ScheduleExpression"})
        if rule.state != "ENABLED" and query.get("force") != "true":
            return json_response(200, {"Rule": rule.arn, "State": rule.state, "Event": None, "Deliveries": []})
        return json_response(200, {"State": rule.state, **self.fire(rule)})


def _schedule_rules() -> Iterator[Any]:
    from localcloud.motoapi import events_backends

    for _account, regions in list(events_backends.items()):
        for _region, backend in list(regions.items()):
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    if rule.scheduled_expression:
                        yield rule


def _find_rule(name: str, bus: str, account: str, region: str) -> Any:
    from localcloud.motoapi import events_backends

    try:
        return events_backends[account][region].event_buses[bus].rules[name]
    except KeyError:
        raise KeyError(f"Rule {name} does not exist on EventBus {bus}.") from None


def fire_rule(name: str, *, endpoint: str | None = None, event_bus: str = "default",
              region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT, force: bool = False) -> dict[str, Any]:
    """Fire a schedule rule of the local cloud now; returns {"Rule", "State", "Event", "Deliveries"}.

    A DISABLED rule does not fire (Deliveries is empty) unless `force`. Deliveries to Lambda are
    asynchronous, as on AWS: the function may still be running when this returns.
    """
    base = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
    query = urllib.parse.urlencode({"event-bus": event_bus, "region": region, "account": account,
                                    **({"force": "true"} if force else {})})
    url = f"{base.rstrip('/')}/_localcloud/events/rules/{urllib.parse.quote(name)}/fire?{query}"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise LookupError(json.loads(error.read() or b"{}").get("message", str(error))) from None


def advance_clock(seconds: float, *, endpoint: str | None = None) -> dict[str, Any]:
    """Move the local cloud's schedule clock forward; returns {"Now", "Fired": [...]} (tests only:
    every rule of that local cloud sees the jump)."""
    base = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
    url = f"{base.rstrip('/')}{CLOCK_ROUTE}?{urllib.parse.urlencode({'advance': seconds})}"
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30) as response:
        return json.loads(response.read())


def make_executor() -> Scheduler:
    return Scheduler()


__all__ = ["CronSchedule", "advance_clock", "RateSchedule", "ScheduleError", "Scheduler", "fire_rule", "json_path",
           "make_executor", "parse_schedule", "render_template", "scheduled_event", "target_input"]
