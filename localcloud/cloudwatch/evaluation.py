"""The arithmetic of a CloudWatch alarm, without moto: statistics per period, the threshold, M out of N,
missing data, the state reason AWS writes, and composite alarm rules.

Missing data follows AWS's "Configuring how CloudWatch alarms treat missing data": the alarm looks at an
evaluation range a little longer than EvaluationPeriods (here N + 2 periods, the range of the documented
examples). With N or more real datapoints in the range the N most recent real ones decide, and the
treatment is not used; with none, `missing` -> INSUFFICIENT_DATA, `ignore` keeps the state, `breaching`
-> ALARM, `notBreaching` -> OK; with fewer than N, `breaching` / `notBreaching` fill the gaps (as few as
needed), `missing` decides on the real ones alone (ALARM when at least min(M, real) of them breach: the
documented "premature alarm"), and `ignore` does the same except that it never alarms on partial data.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)
EXTRA_RANGE_PERIODS = 2  # evaluation range = EvaluationPeriods + this
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100)$")


class AlarmDefinitionError(ValueError):
    """An alarm the local cloud cannot evaluate faithfully (refused at PutMetricAlarm/PutCompositeAlarm)."""


def utc(moment: datetime) -> datetime:
    """moto keeps naive UTC datetimes (its clock) or aware ones (parsed requests): one kind here."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    """AWS's timestamp in alarm reason data and notifications: 2022-11-08T11:26:05.399+0000."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc(moment).microsecond // 1000:03d}+0000"


# --------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class Bucket:
    """What one period holds: raw values and pre-aggregated statistic sets (PutMetricData StatisticValues)."""

    values: list[float] = field(default_factory=list)
    sets: list[tuple[float, float, float, float]] = field(default_factory=list)  # sum, min, max, count

    def sample_count(self) -> float:
        return len(self.values) + sum(count for *_, count in self.sets)

    def statistic(self, name: str) -> float | None:
        """SampleCount, Average, Sum, Minimum, Maximum or pNN; None when the period has no data."""
        count = self.sample_count()
        if not count:
            return None
        if name == "SampleCount":
            return float(count)
        if name == "Sum":
            return math.fsum(self.values) + math.fsum(s for s, *_ in self.sets)
        if name == "Average":
            return (math.fsum(self.values) + math.fsum(s for s, *_ in self.sets)) / count
        if name == "Minimum":
            return min([*self.values, *(low for _, low, _, _ in self.sets)])
        if name == "Maximum":
            return max([*self.values, *(high for _, _, high, _ in self.sets)])
        if _PERCENTILE.match(name):
            if not self.values:
                return None  # a percentile needs the raw values (AWS: statistic sets have none)
            ordered = sorted(self.values)
            rank = max(1, math.ceil(float(name[1:]) / 100 * len(ordered)))  # nearest rank
            return ordered[rank - 1]
        raise AlarmDefinitionError(f"statistic {name!r} is not one the local cloud computes")


def check_statistic(statistic: str | None, extended: str | None) -> str:
    """The statistic an alarm evaluates; AlarmDefinitionError for what is not computed here."""
    name = extended or statistic
    if name in STATISTICS or (extended and _PERCENTILE.match(extended)):
        return str(name)
    raise AlarmDefinitionError(f"statistic {name!r} is not evaluated by the local cloud "
                               f"(supported: {', '.join(STATISTICS)} and pNN percentiles)")


def buckets(points: Iterable[tuple[datetime, Any]], end: datetime, period: int, count: int) -> list[Bucket | None]:
    """`count` periods ending at `end`, oldest first; a point is (timestamp, value) where value is a float
    or a (sum, min, max, sample count) tuple. A period without data is None."""
    start = end - timedelta(seconds=period * count)
    found: list[Bucket | None] = [None] * count
    for moment, value in points:
        moment = utc(moment)
        if not start <= moment < end:
            continue
        index = int((moment - start).total_seconds() // period)
        bucket = found[index] = found[index] or Bucket()
        if isinstance(value, tuple):
            bucket.sets.append(value)
        else:
            bucket.values.append(float(value))
    return found


# --------------------------------------------------------------------------------------------------
# One evaluation


@dataclass(frozen=True)
class Verdict:
    """The state an evaluation leads to (None: keep the current one) and why, in AWS's words."""

    state: str | None
    reason: str
    reason_data: dict[str, Any]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _short(moment: datetime) -> str:
    return utc(moment).strftime("%d/%m/%y %H:%M:%S")


def _listing(points: Sequence[tuple[datetime, float]]) -> str:
    return "[" + ", ".join(f"{value!r} ({_short(moment)})" for moment, value in points) + "]"


def evaluate(values: Sequence[float | None], starts: Sequence[datetime], *, comparison: str, threshold: float,
             evaluation_periods: int, datapoints_to_alarm: int | None, treat_missing: str | None,
             current: str, statistic: str, period: int, now: datetime,
             sample_counts: Sequence[float] | None = None) -> Verdict:
    """Decide an alarm's state from the evaluation range: `values[i]` is the statistic of the period
    starting at `starts[i]` (oldest first), None when no data arrived in it."""
    compare, words = COMPARISONS[comparison]
    n, m = evaluation_periods, datapoints_to_alarm or evaluation_periods
    treat = treat_missing or "missing"
    real = [(starts[i], v, (sample_counts or [1.0] * len(values))[i]) for i, v in enumerate(values) if v is not None]
    data: dict[str, Any] = {"version": "1.0", "queryDate": iso(now), "startDate": iso(starts[0]),
                            "statistic": statistic, "period": period,
                            "recentDatapoints": [v for _, v, _ in real], "threshold": float(threshold)}
    recent = real[-n:][::-1]  # newest first, as AWS lists them
    data["evaluatedDatapoints"] = [{"timestamp": iso(moment), "sampleCount": float(count), "value": v}
                                   for moment, v, count in recent]
    breaching = [(moment, v) for moment, v, _ in recent if compare(v, threshold)]
    fine = [(moment, v) for moment, v, _ in recent if not compare(v, threshold)]
    gaps = n - len(recent)
    if not recent:
        if treat == "missing":
            data["evaluatedDatapoints"] = [{"timestamp": iso(moment)} for moment in starts[::-1]]
            return Verdict(INSUFFICIENT_DATA, f"Insufficient Data: {_plural(len(values), 'datapoint')} "
                           f"{'was' if len(values) == 1 else 'were'} unknown.", data)
        if treat == "ignore":
            return Verdict(None, "", data)
        kind = "Breaching" if treat == "breaching" else "NonBreaching"
        data["evaluatedDatapoints"] = [{"timestamp": iso(moment)} for moment in starts[-n:][::-1]]
        return Verdict(ALARM if treat == "breaching" else OK,
                       f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
                       f"{_plural(n, 'missing datapoint')} {'was' if n == 1 else 'were'} treated as [{kind}].", data)
    if gaps and treat in ("breaching", "notBreaching"):
        count = len(breaching) + (gaps if treat == "breaching" else 0)
        state = ALARM if count >= m else OK
    elif gaps:  # missing / ignore: the real datapoints alone
        state = ALARM if len(breaching) >= min(m, len(recent)) else OK
        if state == ALARM and treat == "ignore":
            return Verdict(None, "", data)
    else:
        state = ALARM if len(breaching) >= m else OK
    shown = breaching if state == ALARM else fine
    verb = "was" if len(shown) == 1 else "were"
    minimum = m if state == ALARM else n - m + 1
    reason = (f"Threshold Crossed: {len(shown)} out of the last {len(recent)} datapoints "
              f"{_listing(shown)} {verb} {'' if state == ALARM else 'not '}{words} the threshold ({float(threshold)!r})")
    if gaps and treat in ("breaching", "notBreaching"):
        reason += (f" and {_plural(gaps, 'missing datapoint')} {'was' if gaps == 1 else 'were'} treated as "
                   f"[{'Breaching' if treat == 'breaching' else 'NonBreaching'}]")
    reason += f" (minimum {_plural(minimum, 'datapoint')} for {current} -> {state} transition)."
    return Verdict(state, reason, data)


# --------------------------------------------------------------------------------------------------
# Composite alarm rules: ALARM(x) / OK(x) / INSUFFICIENT_DATA(x), TRUE, FALSE, AND, OR, NOT, parentheses


_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')
Rule = tuple[Any, ...]


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise AlarmDefinitionError(f"AlarmRule: cannot parse near {text[position:position + 20]!r}")
            break
        position = match.end()
        opening, closing, quoted, word = match.groups()
        out.append("(" if opening else ")" if closing else ("\0" + quoted) if quoted is not None else word)
    return out


def parse_rule(text: str) -> Rule:
    """An AlarmRule as a tree: ("state", STATE, name) | ("const", bool) | ("not", r) | ("and"/"or", a, b)."""
    tokens = _tokens(text)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = peek()
        if token is None or (expected and token.upper() != expected):
            raise AlarmDefinitionError(f"AlarmRule: expected {expected or 'more'} in {text!r}")
        position += 1
        return token

    def expression() -> Rule:
        node = term()
        while (peek() or "").upper() == "OR":
            take()
            node = ("or", node, term())
        return node

    def term() -> Rule:
        node = factor()
        while (peek() or "").upper() == "AND":
            take()
            node = ("and", node, factor())
        return node

    def factor() -> Rule:
        token = take()
        upper = token.upper()
        if upper == "NOT":
            return ("not", factor())
        if token == "(":
            node = expression()
            take(")")
            return node
        if upper in ("TRUE", "FALSE"):
            return ("const", upper == "TRUE")
        if upper in STATES:
            take("(")
            name = take()
            take(")")
            return ("state", upper, name[1:] if name.startswith("\0") else name)
        raise AlarmDefinitionError(f"AlarmRule: {token!r} is not evaluated by the local cloud in {text!r} "
                                   "(supported: ALARM(), OK(), INSUFFICIENT_DATA(), TRUE, FALSE, AND, OR, NOT)")

    tree = expression()
    if peek() is not None:
        raise AlarmDefinitionError(f"AlarmRule: unexpected {peek()!r} in {text!r}")
    return tree


def rule_children(tree: Rule) -> list[str]:
    """The alarm names or ARNs a rule refers to, in order."""
    if tree[0] == "state":
        return [tree[2]]
    return [name for child in tree[1:] if isinstance(child, tuple) for name in rule_children(child)]


def rule_holds(tree: Rule, state_of: Callable[[str], str | None]) -> bool:
    """Whether the rule is true given each child's state (None for an alarm that does not exist)."""
    kind = tree[0]
    if kind == "state":
        return state_of(tree[2]) == tree[1]
    if kind == "const":
        return bool(tree[1])
    if kind == "not":
        return not rule_holds(tree[1], state_of)
    if kind == "and":
        return rule_holds(tree[1], state_of) and rule_holds(tree[2], state_of)
    return rule_holds(tree[1], state_of) or rule_holds(tree[2], state_of)


def reason_data_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))
