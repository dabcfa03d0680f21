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
"""

from __future__ import annotations

import calendar
import copy
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.executor_base import ThreadedExecutor, json_response
from localcloud.executors import DEFAULT_ACCOUNT, DEFAULT_REGION, WSGIApp

log = logging.getLogger("localcloud.scheduler")

FIRE_ROUTE = re.compile(r"^/_localcloud/events/rules/(?P<name>[\w.\-]+)/fire$")
CLOCK_ROUTE = "/_localcloud/events/clock"
DEFAULT_TICK_S = 0.5
MOTO_PLACEHOLDER_ID = "17793124-05d4-b198-2fde-7ededc63b103"
INVALID_SCHEDULE = "Parameter ScheduleExpression is not valid."


class ScheduleError(ValueError):
    """The schedule expression is not one AWS accepts."""


# --------------------------------------------------------------------------------------------------
# Schedule expressions


@dataclass(frozen=True)
class RateSchedule:
    """`rate(N unit)`: every `period`, counted from when the scheduler starts watching the rule."""

    period: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.period


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def parse_rate(expression: str) -> RateSchedule:
    match = _RATE.match(expression)
    if not match:
        raise ScheduleError(expression)
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):  # AWS: 1 -> singular, >1 -> plural
        raise ScheduleError(expression)
    return RateSchedule(_UNITS[unit.rstrip("s")] * value)


MONTH_NAMES = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
DAY_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _number(token: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    value = (names or {}).get(token.upper()) if not token.isdigit() else int(token)
    if value is None or not low <= value <= high:
        raise ScheduleError(token)
    return value


def parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """A plain cron field (`*`, `5`, `1-5`, `MON-FRI`, `0/15`, `*/5`, `10-50/10`, lists) as a value set."""
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, 1, high) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _number(first, low, high, names), _number(last, low, high, names)
            if start > end:
                raise ScheduleError(part)
        else:
            start = _number(base, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _weekday(day: datetime) -> int:
    """AWS's day-of-week number: 1 = Sunday ... 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class DayRule:
    """One day-of-month or day-of-week term that needs the month to decide (`L`, `15W`, `6L`, `2#1`)."""

    kind: str  # "last", "weekday-near", "last-weekday", "last-dow", "nth-dow"
    value: int = 0
    nth: int = 0

    def matches(self, year: int, month: int, day: int) -> bool:
        days_in_month = calendar.monthrange(year, month)[1]
        if self.kind == "last":
            return day == days_in_month - self.value
        if self.kind in ("weekday-near", "last-weekday"):
            target = days_in_month if self.kind == "last-weekday" else min(self.value, days_in_month)
            return day == _nearest_weekday(year, month, target, days_in_month)
        dow = _weekday(datetime(year, month, day))
        if self.kind == "last-dow":
            return dow == self.value and day + 7 > days_in_month
        return dow == self.value and (day - 1) // 7 + 1 == self.nth  # nth-dow


def _nearest_weekday(year: int, month: int, day: int, days_in_month: int) -> int:
    """Quartz's `W`: the weekday nearest `day` without leaving the month."""
    weekday = datetime(year, month, day).weekday()  # Mon=0 .. Sun=6
    if weekday == 5:  # Saturday -> Friday, or Monday when the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday -> Monday, or Friday when the month's last day
        return day + 1 if day < days_in_month else day - 2
    return day


@dataclass(frozen=True)
class DayField:
    """A day-of-month or day-of-week field: `?` (any), plain values, and month-relative rules."""

    any: bool
    values: frozenset[int]
    rules: tuple[DayRule, ...]
    of_week: bool

    def matches(self, year: int, month: int, day: int) -> bool:
        if self.any:
            return True
        number = _weekday(datetime(year, month, day)) if self.of_week else day
        return number in self.values or any(rule.matches(year, month, day) for rule in self.rules)


def parse_day_of_month(text: str) -> DayField:
    if text == "?":
        return DayField(True, frozenset(), (), False)
    values: set[int] = set()
    rules: list[DayRule] = []
    for part in text.split(","):
        if part == "L":
            rules.append(DayRule("last"))
        elif re.fullmatch(r"L-\d+", part):
            rules.append(DayRule("last", _number(part[2:], 0, 30)))
        elif part == "LW":
            rules.append(DayRule("last-weekday"))
        elif re.fullmatch(r"\d+W", part):
            rules.append(DayRule("weekday-near", _number(part[:-1], 1, 31)))
        else:
            values |= parse_field(part, 1, 31)
    return DayField(False, frozenset(values), tuple(rules), False)


def parse_day_of_week(text: str) -> DayField:
    if text == "?":
        return DayField(True, frozenset(), (), True)
    values: set[int] = set()
    rules: list[DayRule] = []
    for part in text.split(","):
        if part == "L":
            values.add(7)  # Quartz: L alone in day-of-week is Saturday, the last day of the week
        elif re.fullmatch(r"\w+L", part):
            rules.append(DayRule("last-dow", _number(part[:-1], 1, 7, DAY_NAMES)))
        elif re.fullmatch(r"\w+#\d", part):
            day, nth = part.split("#")
            rules.append(DayRule("nth-dow", _number(day, 1, 7, DAY_NAMES), _number(nth, 1, 5)))
        else:
            values |= parse_field(part, 1, 7, DAY_NAMES)
    return DayField(False, frozenset(values), tuple(rules), True)


@dataclass(frozen=True)
class CronSchedule:
    """`cron(minutes hours day-of-month month day-of-week year)`, evaluated in UTC."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: DayField
    months: frozenset[int]
    days_of_week: DayField
    years: frozenset[int]

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (ScheduleError if there is none)."""
        start = moment.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for day in self._days_from(start):
            first_minute = (start.hour, start.minute) if day == start.date() else (0, 0)
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    if (hour, minute) >= first_minute:
                        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
        raise ScheduleError("the schedule never fires again")

    def _days_from(self, start: datetime) -> Iterator[Any]:
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for day in range(first, calendar.monthrange(year, month)[1] + 1):
                    if self.days_of_month.matches(year, month, day) and self.days_of_week.matches(year, month, day):
                        yield datetime(year, month, day).date()


def parse_cron(expression: str) -> CronSchedule:
    match = re.fullmatch(r"cron\((.*)\)", expression)
    fields = match.group(1).split() if match else []
    if len(fields) != 6:
        raise ScheduleError(expression)
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):  # AWS: exactly one of the two must be '?'
        raise ScheduleError(expression)
    return CronSchedule(
        minutes=parse_field(minutes, 0, 59),
        hours=parse_field(hours, 0, 23),
        days_of_month=parse_day_of_month(day_of_month),
        months=parse_field(month, 1, 12, MONTH_NAMES),
        days_of_week=parse_day_of_week(day_of_week),
        years=parse_field(year, 1970, 2199),
    )


Schedule = RateSchedule | CronSchedule


def parse_schedule(expression: str) -> Schedule:
    """A `rate(...)` or `cron(...)` expression as AWS accepts it; ScheduleError otherwise."""
    try:
        if expression.startswith("rate("):
            return parse_rate(expression)
        if expression.startswith("cron("):
            return parse_cron(expression)
    except (ValueError, IndexError) as error:
        raise ScheduleError(expression) from error
    raise ScheduleError(expression)


# --------------------------------------------------------------------------------------------------
# What a target receives: Input, InputPath, InputTransformer


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


# --------------------------------------------------------------------------------------------------
# Delivery


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


# --------------------------------------------------------------------------------------------------
# The executor


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
