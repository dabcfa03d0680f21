"""Condition operators (String*, Numeric*, Date*, Bool, IpAddress, Arn*, ...IfExists, ForAllValues/ForAnyValue)."""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from localcloud.iam.matching import _pattern_regex, _resolver
from localcloud.iam.model import SimulationRequest, _MissingKey


def _date(text: str) -> float:
    """Epoch seconds from an ISO 8601 date/time or an epoch number."""
    try:
        return float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()


def _compare(convert: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Callable[[str, str], bool]:
    def compare(actual: str, expected: str) -> bool:
        try:
            return bool(test(convert(actual), convert(expected)))
        except (TypeError, ValueError):
            return False

    return compare


def _ip_in(actual: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _binary_equals(actual: str, expected: str) -> bool:
    try:
        return base64.b64decode(actual, validate=True) == base64.b64decode(expected, validate=True)
    except ValueError:
        return actual == expected


@dataclass(frozen=True)
class _Operator:
    """A condition operator: how one context value compares with one policy value."""

    compare: Callable[[str, str], bool] | None = None  # None: the policy value is a wildcard pattern
    negated: bool = False
    arn: bool = False  # wildcards stay within ARN segments


_EQ, _LT, _LE = (lambda a, b: a == b), (lambda a, b: a < b), (lambda a, b: a <= b)
_GT, _GE = (lambda a, b: a > b), (lambda a, b: a >= b)
_OPERATORS: dict[str, _Operator] = {
    "stringequals": _Operator(_EQ),
    "stringnotequals": _Operator(_EQ, negated=True),
    "stringequalsignorecase": _Operator(lambda a, b: a.casefold() == b.casefold()),
    "stringnotequalsignorecase": _Operator(lambda a, b: a.casefold() == b.casefold(), negated=True),
    "stringlike": _Operator(),
    "stringnotlike": _Operator(negated=True),
    "arnequals": _Operator(arn=True),  # ArnEquals takes wildcards too, like ArnLike
    "arnlike": _Operator(arn=True),
    "arnnotequals": _Operator(negated=True, arn=True),
    "arnnotlike": _Operator(negated=True, arn=True),
    "bool": _Operator(lambda a, b: a.lower() == b.lower()),
    "numericequals": _Operator(_compare(float, _EQ)),
    "numericnotequals": _Operator(_compare(float, _EQ), negated=True),
    "numericlessthan": _Operator(_compare(float, _LT)),
    "numericlessthanequals": _Operator(_compare(float, _LE)),
    "numericgreaterthan": _Operator(_compare(float, _GT)),
    "numericgreaterthanequals": _Operator(_compare(float, _GE)),
    "dateequals": _Operator(_compare(_date, _EQ)),
    "datenotequals": _Operator(_compare(_date, _EQ), negated=True),
    "datelessthan": _Operator(_compare(_date, _LT)),
    "datelessthanequals": _Operator(_compare(_date, _LE)),
    "dategreaterthan": _Operator(_compare(_date, _GT)),
    "dategreaterthanequals": _Operator(_compare(_date, _GE)),
    "ipaddress": _Operator(_ip_in),
    "notipaddress": _Operator(_ip_in, negated=True),
    "binaryequals": _Operator(_binary_equals),
}


@dataclass(frozen=True)
class _ParsedOperator:
    name: str  # lower-case base name, e.g. "stringlike"
    qualifier: str | None  # "foranyvalue" / "forallvalues"
    if_exists: bool


def _parse_operator(operator: str) -> _ParsedOperator:
    qualifier, _, name = operator.rpartition(":")
    name = name.lower()
    if_exists = name.endswith("ifexists") and name != "ifexists"
    if if_exists:
        name = name[: -len("ifexists")]
    return _ParsedOperator(name=name, qualifier=qualifier.lower() or None, if_exists=if_exists)


def condition_holds(
    operator: str, key: str, expected: Sequence[str], request: SimulationRequest, variables: bool, missing: list[str]
) -> bool:
    """One (operator, key, values) condition against the request; appends keys it lacks to `missing`."""
    parsed = _parse_operator(operator)
    actual = request.context.get(key.lower())
    if parsed.name == "null":
        wants_absent = any(value.lower() == "true" for value in expected)
        return (actual is None) == wants_absent
    spec = _OPERATORS.get(parsed.name)
    if spec is None or parsed.qualifier not in (None, "foranyvalue", "forallvalues"):
        return False  # an operator IAM does not know never matches
    if actual is None:
        if parsed.if_exists:
            return True
        missing.append(key)
        return False
    try:
        hit = _value_matcher(spec, expected, _resolver(request.context) if variables else None)
    except _MissingKey as error:
        missing.append(error.key)
        return False
    return _set_result(actual, hit, spec.negated, parsed.qualifier)


def _value_matcher(
    spec: _Operator, expected: Sequence[str], resolve: Callable[[str], str] | None
) -> Callable[[str], bool]:
    """A test 'does this context value match any of the policy values' for one operator."""
    compare = spec.compare
    if compare is None:
        regexes = [_pattern_regex(value, arn=spec.arn, resolve=resolve) for value in expected]
        return lambda actual: any(regex.fullmatch(actual) for regex in regexes)
    values = [_substitute(value, resolve) for value in expected]
    return lambda actual: any(compare(actual, value) for value in values)


def _substitute(value: str, resolve: Callable[[str], str] | None) -> str:
    if resolve is None or "${" not in value:
        return value
    return re.sub(r"\$\{([^}]*)\}", lambda match: resolve(match.group(1)), value)


def _set_result(actual: Sequence[str], hit: Callable[[str], bool], negated: bool, qualifier: str | None) -> bool:
    """Apply the set operator: a negated operator holds for a value that matches none of the policy's."""

    def holds(value: str) -> bool:
        return not hit(value) if negated else hit(value)

    if qualifier == "forallvalues":
        return all(holds(value) for value in actual)
    if qualifier == "foranyvalue":
        return any(holds(value) for value in actual)
    if negated:
        return not any(hit(value) for value in actual)
    return any(hit(value) for value in actual)

