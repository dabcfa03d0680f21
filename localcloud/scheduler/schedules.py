"""Schedule expressions as EventBridge documents them: `rate(N unit)` and six-field `cron(...)` (UTC), with
the next time each fires."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator


class ScheduleError(ValueError):
    """The schedule expression is not one AWS accepts."""



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

