"""IAM's policy simulator for the local cloud: `SimulatePrincipalPolicy` and `SimulateCustomPolicy`.

moto stores roles, users, groups and their policies but does not answer the simulator, and the
workbook proves every least-privilege role with `iam.simulate_principal_policy` so that the same code
runs on a real account. This executor claims just those two IAM query-API calls, reads the entity's
policies from moto's in-process IAM backend and evaluates them as AWS documents it:

- for each (action, resource): a matching explicit Deny gives `explicitDeny`, else a matching Allow
  gives `allowed`, else `implicitDeny`; a permissions boundary must allow too;
- Action/NotAction match case-insensitively, Resource/NotResource case-sensitively (ARNs segment by
  segment), both with `*` and `?`; policy variables (`${aws:username}`) in 2012-10-17 policies;
- conditions read `ContextEntries`; a key the request does not supply makes its statement not apply
  and is reported in `MissingContextValues`, as the simulator does.

The evaluator is written here (pure functions over small dataclasses) instead of reusing moto's
IAMPolicy, whose action matching is case-sensitive and does not escape regex characters.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs

from werkzeug.wrappers import Request

from localcloud.executors import CloudContext, WSGIApp

log = logging.getLogger("localcloud.iam_simulator")

IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
SIMULATE_ACTIONS = ("SimulatePrincipalPolicy", "SimulateCustomPolicy")
# AWS reports every identity policy (inline, managed, input) with this type, although the model's
# enum lists user/group/role/aws-managed/user-managed; botocore does not validate it.
IAM_POLICY_TYPE = "IAM Policy"
DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 1000
VARIABLES_VERSION = "2012-10-17"  # policy variables exist only in this policy language version

_IAM_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/iam/aws4_request")


# --------------------------------------------------------------------------------------------------
# Errors (each becomes an AWS <ErrorResponse>)


class SimulatorError(Exception):
    """An error AWS would return for the request; the message is shown to the caller."""

    code = "InvalidInput"
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(SimulatorError):
    code = "InvalidInput"


class ValidationError(SimulatorError):
    code = "ValidationError"


class NoSuchEntity(SimulatorError):
    code = "NoSuchEntity"
    status = 404


# --------------------------------------------------------------------------------------------------
# The policy model


@dataclass(frozen=True)
class Position:
    """Line and column (1-based) in a policy document, as the simulator reports statements."""

    line: int
    column: int


@dataclass(frozen=True)
class PolicySource:
    """One policy document taking part in a simulation and how the answer names it."""

    policy_id: str
    document: str
    policy_type: str = IAM_POLICY_TYPE


@dataclass(frozen=True)
class Statement:
    """One parsed statement; `actions`/`resources` are None when the Not- form is used instead."""

    effect: str
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]
    policy_id: str
    policy_type: str
    variables: bool = False
    start: Position | None = None
    end: Position | None = None


@dataclass(frozen=True)
class Policy:
    policy_id: str
    policy_type: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class SimulationRequest:
    """One (action, resource) pair with the caller's context; context keys are lower-cased."""

    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class StatementMatch:
    applies: bool
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySetResult:
    """What one set of policies (identity or boundary) says about a request."""

    allows: tuple[Statement, ...]
    denies: tuple[Statement, ...]
    missing: tuple[str, ...]

    @property
    def decision(self) -> str:
        if self.denies:
            return "explicitDeny"
        return "allowed" if self.allows else "implicitDeny"


@dataclass(frozen=True)
class EvaluationResult:
    action: str
    resource: str
    decision: str
    matched: tuple[Statement, ...]
    missing: tuple[str, ...]
    allowed_by_boundary: bool | None = None


class _MissingKey(Exception):
    """A policy variable names a context key the request does not supply."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


# --------------------------------------------------------------------------------------------------
# Parsing policy documents


def parse_policy(source: PolicySource) -> Policy:
    """Parse and check a policy document; InvalidInput when it is not a usable IAM policy."""
    try:
        document = json.loads(source.document)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"Syntax errors in policy {source.policy_id}: {error}") from None
    if not isinstance(document, dict) or "Statement" not in document:
        raise InvalidInput(f"Policy {source.policy_id} has no Statement element.")
    raw = document["Statement"]
    raw_statements = raw if isinstance(raw, list) else [raw]
    spans = statement_spans(source.document)
    variables = document.get("Version") == VARIABLES_VERSION
    statements = []
    for index, statement in enumerate(raw_statements):
        span = spans[index] if len(spans) == len(raw_statements) else (None, None)
        statements.append(_parse_statement(statement, source, variables, span))
    return Policy(source.policy_id, source.policy_type, tuple(statements))


def _parse_statement(
    raw: Any, source: PolicySource, variables: bool, span: tuple[Position | None, Position | None]
) -> Statement:
    if not isinstance(raw, dict):
        raise InvalidInput(f"Policy {source.policy_id}: a Statement must be an object.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise InvalidInput(f"Policy {source.policy_id}: Effect must be Allow or Deny, not {effect!r}.")
    if ("Action" in raw) == ("NotAction" in raw):
        raise InvalidInput(f"Policy {source.policy_id}: a statement needs exactly one of Action, NotAction.")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise InvalidInput(f"Policy {source.policy_id}: a statement needs exactly one of Resource, NotResource.")
    return Statement(
        effect=effect,
        actions=_strings(raw.get("Action")),
        not_actions=_strings(raw.get("NotAction")),
        resources=_strings(raw.get("Resource")),
        not_resources=_strings(raw.get("NotResource")),
        conditions=_parse_conditions(raw.get("Condition"), source.policy_id),
        policy_id=source.policy_id,
        policy_type=source.policy_type,
        variables=variables,
        start=span[0],
        end=span[1],
    )


def _strings(value: Any) -> tuple[str, ...] | None:
    """A policy element that may be a single value or a list, as strings (None when absent)."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return tuple(_condition_text(item) for item in values)


def _condition_text(value: Any) -> str:
    """Policy values as IAM compares them: JSON booleans as 'true'/'false', numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_conditions(raw: Any, policy_id: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(block, dict) for block in raw.values()):
        raise InvalidInput(f"Policy {policy_id}: Condition must map operators to {{key: values}} objects.")
    return tuple(
        (operator, key, _strings(values) or ())
        for operator, block in raw.items()
        for key, values in block.items()
    )


def statement_spans(text: str) -> list[tuple[Position, Position]]:
    """Where each statement sits in the document text, as the simulator reports it.

    Start is just after the delimiter before the statement ('[', ',' or ':'), end just after its
    closing brace. Returns [] when the text cannot be walked (positions are then left out).
    """
    try:
        index = _value_index_of_key(text, "Statement")
        if index is None:
            return []
        return [(_position(text, start), _position(text, end)) for start, end in _element_ranges(text, index)]
    except (IndexError, ValueError):
        return []


def _value_index_of_key(text: str, wanted: str) -> int | None:
    """Offset of the value of a top-level key of the JSON object in `text`."""
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if text[index] != "{":
        return None
    index += 1
    while True:
        index = _skip_space(text, index)
        if text[index] == "}":
            return None
        key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
        index = _skip_space(text, index)
        index = _skip_space(text, index + 1)  # past ':'
        if key == wanted:
            return index
        _, index = decoder.raw_decode(text, index)
        index = _skip_space(text, index)
        if text[index] == ",":
            index += 1


def _element_ranges(text: str, index: int) -> list[tuple[int, int]]:
    """(after-delimiter, after-closing-brace) offsets of one object or of each object in an array."""
    decoder = json.JSONDecoder()
    if text[index] == "{":
        delimiter = text.rfind(":", 0, index)
        _, end = decoder.raw_decode(text, index)
        return [(delimiter + 1, end)]
    ranges = []
    delimiter = index  # the '['
    while True:
        index = _skip_space(text, delimiter + 1)
        if text[index] == "]":
            return ranges
        _, end = decoder.raw_decode(text, index)
        ranges.append((delimiter + 1, end))
        delimiter = _skip_space(text, end)
        if text[delimiter] == "]":
            return ranges


def _skip_space(text: str, index: int) -> int:
    while text[index] in " \t\r\n":
        index += 1
    return index


def _position(text: str, offset: int) -> Position:
    line_start = text.rfind("\n", 0, offset)
    return Position(line=text.count("\n", 0, offset) + 1, column=offset - line_start)


# --------------------------------------------------------------------------------------------------
# Matching actions, resources and policy variables


def _pattern_regex(
    pattern: str,
    *,
    ignore_case: bool = False,
    arn: bool = False,
    resolve: Callable[[str], str] | None = None,
) -> re.Pattern[str]:
    """Compile an IAM wildcard pattern: `*` any run, `?` one character, everything else literal.

    With `arn`, wildcards in the first five ARN segments stay inside their segment (as ArnLike and
    Resource matching do). With `resolve`, `${...}` policy variables are substituted literally.
    """
    arn = arn and pattern.startswith("arn:")
    parts: list[str] = []
    colons = 0
    for token in re.finditer(r"\$\{([^}]*)\}|[*?]|[^*?$]+|\$", pattern):
        text = token.group(0)
        if token.group(1) is not None and resolve is not None:
            parts.append(re.escape(resolve(token.group(1))))
        elif text in ("*", "?"):
            inside_segment = arn and colons < 5
            any_char = "[^:]" if inside_segment else "."
            parts.append(any_char + "*" if text == "*" else any_char)
        else:
            colons += text.count(":")
            parts.append(re.escape(text))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _matches(pattern: str, value: str, **options: Any) -> bool:
    return _pattern_regex(pattern, **options).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    """IAM action names compare case-insensitively ('KINESIS:putrecord' is kinesis:PutRecord)."""
    return _matches(pattern, action, ignore_case=True)


def resource_matches(pattern: str, resource: str, resolve: Callable[[str], str] | None = None) -> bool:
    """Resources compare case-sensitively; an ARN pattern's wildcards stay within their segment."""
    return pattern == "*" or _matches(pattern, resource, arn=True, resolve=resolve)


def _resolver(context: Mapping[str, tuple[str, ...]]) -> Callable[[str], str]:
    """Looks up `${key}` / `${key, 'default'}` in the request context; `${*}` `${?}` `${$}` are literal."""

    def resolve(body: str) -> str:
        if body in ("*", "?", "$"):
            return body
        match = re.fullmatch(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?", body)
        if match is None:
            raise _MissingKey(body.strip())
        key, default = match.group(1), match.group(2)
        values = context.get(key.lower())
        if values and len(values) == 1:
            return values[0]
        if default is not None:
            return default
        raise _MissingKey(key)

    return resolve


# --------------------------------------------------------------------------------------------------
# Conditions


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


# --------------------------------------------------------------------------------------------------
# Evaluation


def statement_applies(statement: Statement, request: SimulationRequest) -> StatementMatch:
    """Whether the statement covers the request; keys it would need but lacks are reported."""
    if not _action_covered(statement, request.action):
        return StatementMatch(False)
    missing: list[str] = []
    if not _resource_covered(statement, request, missing):
        return StatementMatch(False, tuple(missing))
    holds = [
        condition_holds(operator, key, values, request, statement.variables, missing)
        for operator, key, values in statement.conditions
    ]
    return StatementMatch(all(holds) and not missing, tuple(dict.fromkeys(missing)))


def _action_covered(statement: Statement, action: str) -> bool:
    if statement.actions is not None:
        return any(action_matches(pattern, action) for pattern in statement.actions)
    return not any(action_matches(pattern, action) for pattern in statement.not_actions or ())


def _resource_covered(statement: Statement, request: SimulationRequest, missing: list[str]) -> bool:
    resolve = _resolver(request.context) if statement.variables else None
    patterns = statement.resources if statement.resources is not None else statement.not_resources or ()
    found, lacking = False, []
    for pattern in patterns:
        try:
            found = found or resource_matches(pattern, request.resource, resolve)
        except _MissingKey as error:
            lacking.append(error.key)
    if statement.resources is not None:
        if not found:
            missing.extend(lacking)
        return found
    if lacking:  # NotResource: cannot tell whether the request is excluded
        missing.extend(lacking)
        return False
    return not found


def evaluate_policies(policies: Iterable[Policy], request: SimulationRequest) -> PolicySetResult:
    allows: list[Statement] = []
    denies: list[Statement] = []
    missing: list[str] = []
    for policy in policies:
        for statement in policy.statements:
            match = statement_applies(statement, request)
            missing.extend(match.missing)
            if match.applies:
                (denies if statement.effect == "Deny" else allows).append(statement)
    return PolicySetResult(tuple(allows), tuple(denies), tuple(dict.fromkeys(missing)))


def evaluate(
    identity: Sequence[Policy], boundary: Sequence[Policy] | None, request: SimulationRequest
) -> EvaluationResult:
    """AWS's decision for one request: explicit Deny wins, then Allow (within the boundary), else implicit deny."""
    own = evaluate_policies(identity, request)
    limit = evaluate_policies(boundary, request) if boundary else None
    missing = tuple(dict.fromkeys(own.missing + (limit.missing if limit else ())))
    allowed_by_boundary = None if limit is None else limit.decision == "allowed"
    denies = own.denies + (limit.denies if limit else ())
    if denies:
        decision, matched = "explicitDeny", denies
    elif own.allows and allowed_by_boundary is not False:
        decision, matched = "allowed", own.allows
    else:
        decision, matched = "implicitDeny", ()
    return EvaluationResult(request.action, request.resource, decision, matched, missing, allowed_by_boundary)


def simulate(
    identity: Sequence[PolicySource],
    boundary: Sequence[PolicySource],
    actions: Sequence[str],
    resources: Sequence[str],
    context: Mapping[str, Sequence[str]],
) -> list[EvaluationResult]:
    """Every (action, resource) pair, actions outermost, as AWS orders its results."""
    identity_policies = [parse_policy(source) for source in identity]
    boundary_policies = [parse_policy(source) for source in boundary] or None
    lowered = {key.lower(): tuple(values) for key, values in context.items()}
    return [
        evaluate(identity_policies, boundary_policies, SimulationRequest(action, resource, lowered))
        for action in actions
        for resource in resources
    ]


# --------------------------------------------------------------------------------------------------
# The request: query-API parameters


def member_list(params: Mapping[str, str], name: str) -> list[str]:
    """`Name.member.1`, `Name.member.2`... as a list (the query protocol's encoding of lists)."""
    values = []
    while f"{name}.member.{len(values) + 1}" in params:
        values.append(params[f"{name}.member.{len(values) + 1}"])
    return values


def context_entries(params: Mapping[str, str]) -> dict[str, list[str]]:
    """`ContextEntries.member.N.{ContextKeyName, ContextKeyValues.member.M}` as {key: values}."""
    entries: dict[str, list[str]] = {}
    index = 1
    while f"ContextEntries.member.{index}.ContextKeyName" in params:
        prefix = f"ContextEntries.member.{index}"
        values = member_list(params, f"{prefix}.ContextKeyValues")
        entries.setdefault(params[f"{prefix}.ContextKeyName"], []).extend(values)
        index += 1
    return entries


def _required(name: str, values: Sequence[str] | str | None) -> None:
    """AWS's own wording for a missing required parameter."""
    if not values:
        field = name[0].lower() + name[1:]
        raise ValidationError(
            f"1 validation error detected: Value null at '{field}' failed to satisfy constraint: "
            "Member must not be null"
        )


def _page(results: list[EvaluationResult], params: Mapping[str, str]) -> tuple[list[EvaluationResult], str | None]:
    """MaxItems/Marker pagination (AWS defaults to 100 results per answer)."""
    try:
        max_items = int(params.get("MaxItems") or DEFAULT_MAX_ITEMS)
    except ValueError:
        raise ValidationError("MaxItems must be an integer.") from None
    if not 1 <= max_items <= MAX_MAX_ITEMS:
        raise ValidationError(
            f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy constraint: "
            f"Member must have value between 1 and {MAX_MAX_ITEMS}"
        )
    marker = params.get("Marker")
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise InvalidInput("Invalid Marker.") from None
    end = start + max_items
    return results[start:end], (str(end) if end < len(results) else None)


# --------------------------------------------------------------------------------------------------
# moto's IAM state


@dataclass(frozen=True)
class Principal:
    kind: str  # "role" / "user" / "group"
    name: str
    account_id: str
    partition: str


def parse_principal_arn(arn: str) -> Principal:
    match = re.fullmatch(r"arn:([\w-]+):iam::(\d{12}):(role|user|group)(/(?:[^/]+/)*)?([^/]+)", arn)
    if match is None:
        raise InvalidInput(f"Invalid Entity Arn: {arn} does not clearly define entity type and name.")
    partition, account_id, kind, _path, name = match.groups()
    return Principal(kind=kind, name=name, account_id=account_id, partition=partition)


def _iam_backend(principal: Principal) -> Any:
    from localcloud.motoapi import iam_backends

    return iam_backends[principal.account_id][principal.partition]


def _find_entity(backend: Any, principal: Principal) -> Any:
    if principal.kind == "role":
        entity = next((role for role in list(backend.roles.values()) if role.name == principal.name), None)
    elif principal.kind == "user":
        entity = backend.users.get(principal.name)
    else:
        entity = backend.groups.get(principal.name)
    if entity is None:
        raise NoSuchEntity(f"The {principal.kind} with name {principal.name} cannot be found.")
    return entity


def _managed_document(policy: Any) -> str:
    default = next((version for version in policy.versions if version.is_default), policy.versions[-1])
    return str(default.document)


def _entity_sources(kind: str, entity: Any) -> list[PolicySource]:
    """An entity's inline policies (named `<kind>_<entity>_<policy>` as AWS does) and attached ones."""
    inline = [
        PolicySource(f"{kind}_{entity.name}_{name}", _document_text(document))
        for name, document in dict(entity.policies).items()
    ]
    attached = [
        PolicySource(policy.name, _managed_document(policy)) for policy in dict(entity.managed_policies).values()
    ]
    return inline + attached


def _document_text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


def principal_policies(arn: str) -> tuple[list[PolicySource], list[PolicySource]]:
    """The identity policies and the permissions boundary of a role, user (with its groups) or group."""
    principal = parse_principal_arn(arn)
    backend = _iam_backend(principal)
    entity = _find_entity(backend, principal)
    sources = _entity_sources(principal.kind, entity)
    if principal.kind == "user":
        for group in list(backend.groups.values()):
            if entity in group.users:
                sources += _entity_sources("group", group)
    boundary_arn = getattr(entity, "permissions_boundary_arn", None)
    boundary_policy = backend.managed_policies.get(boundary_arn) if boundary_arn else None
    boundary = [PolicySource(boundary_policy.name, _managed_document(boundary_policy))] if boundary_policy else []
    return sources, boundary


# --------------------------------------------------------------------------------------------------
# Handling the two operations


def _input_sources(params: Mapping[str, str], name: str) -> list[PolicySource]:
    return [PolicySource(f"{name}.{index}", document) for index, document in enumerate(member_list(params, name), 1)]


def handle(action: str, params: Mapping[str, str]) -> bytes:
    """The XML answer of SimulatePrincipalPolicy / SimulateCustomPolicy (SimulatorError on bad input)."""
    actions = member_list(params, "ActionNames")
    if action == "SimulatePrincipalPolicy":
        _required("PolicySourceArn", params.get("PolicySourceArn"))
        _required("ActionNames", actions)
        identity, boundary = principal_policies(params["PolicySourceArn"])
        identity += _input_sources(params, "PolicyInputList")
    else:
        identity, boundary = _input_sources(params, "PolicyInputList"), []
        _required("PolicyInputList", identity)
        _required("ActionNames", actions)
    boundary = _input_sources(params, "PermissionsBoundaryPolicyInputList") or boundary  # the input replaces it
    resources = member_list(params, "ResourceArns")
    results = simulate(identity, boundary, actions, resources or ["*"], context_entries(params))
    page, marker = _page(results, params)
    return response_xml(action, page, marker, per_resource=bool(resources))


# --------------------------------------------------------------------------------------------------
# XML


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _statements_xml(parent: ET.Element, statements: Iterable[Statement]) -> None:
    container = _add(parent, "MatchedStatements")
    for statement in statements:
        member = _add(container, "member")
        _add(member, "SourcePolicyId", statement.policy_id)
        _add(member, "SourcePolicyType", statement.policy_type)
        for tag, position in (("StartPosition", statement.start), ("EndPosition", statement.end)):
            if position is not None:
                element = _add(member, tag)
                _add(element, "Line", str(position.line))
                _add(element, "Column", str(position.column))


def _missing_xml(parent: ET.Element, keys: Iterable[str]) -> None:
    container = _add(parent, "MissingContextValues")
    for key in keys:
        _add(container, "member", key)


def _boundary_xml(parent: ET.Element, allowed: bool | None) -> None:
    if allowed is not None:
        detail = _add(parent, "PermissionsBoundaryDecisionDetail")
        _add(detail, "AllowedByPermissionsBoundary", _bool(allowed))


def _result_xml(parent: ET.Element, result: EvaluationResult, per_resource: bool) -> None:
    """One result per (action, resource), plus the same answer under ResourceSpecificResults when
    resources were named (AWS's newer shape reads decisions there)."""
    member = _add(parent, "member")
    _add(member, "EvalActionName", result.action)
    _add(member, "EvalResourceName", result.resource)
    _add(member, "EvalDecision", result.decision)
    _statements_xml(member, result.matched)
    _missing_xml(member, result.missing)
    _boundary_xml(member, result.allowed_by_boundary)
    if per_resource:
        specific = _add(_add(member, "ResourceSpecificResults"), "member")
        _add(specific, "EvalResourceName", result.resource)
        _add(specific, "EvalResourceDecision", result.decision)
        _statements_xml(specific, result.matched)
        _missing_xml(specific, result.missing)
        _boundary_xml(specific, result.allowed_by_boundary)


def response_xml(action: str, results: Sequence[EvaluationResult], marker: str | None, per_resource: bool) -> bytes:
    root = ET.Element(f"{action}Response", xmlns=IAM_NAMESPACE)
    body = _add(root, f"{action}Result")
    evaluation = _add(body, "EvaluationResults")
    for result in results:
        _result_xml(evaluation, result, per_resource)
    _add(body, "IsTruncated", _bool(marker is not None))
    if marker is not None:
        _add(body, "Marker", marker)
    _add(_add(root, "ResponseMetadata"), "RequestId", str(uuid.uuid4()))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def error_xml(code: str, message: str, sender: bool = True) -> bytes:
    root = ET.Element("ErrorResponse", xmlns=IAM_NAMESPACE)
    error = _add(root, "Error")
    _add(error, "Type", "Sender" if sender else "Receiver")
    _add(error, "Code", code)
    _add(error, "Message", message)
    _add(root, "RequestId", str(uuid.uuid4()))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------------------------------
# The executor


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put an identical stream back, so moto still sees it when not claimed."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        chunks, remaining = [], length
        while remaining > 0:
            chunk = stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        body = b"".join(chunks)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _is_iam_query(environ: Mapping[str, Any]) -> bool:
    """Cheap header-only test: a POSTed form signed for the IAM service."""
    return (
        environ.get("REQUEST_METHOD") == "POST"
        and "application/x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "").lower()
        and _IAM_SCOPE.search(environ.get("HTTP_AUTHORIZATION", "")) is not None
    )


def _form(body: bytes, query: str) -> dict[str, str]:
    text = body.decode("utf-8", "replace")
    merged = {**parse_qs(query, keep_blank_values=True), **parse_qs(text, keep_blank_values=True)}
    return {key: values[0] for key, values in merged.items()}


def _respond(status: int, body: bytes) -> WSGIApp:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(
            f"{status} {reasons.get(status, '')}".strip(),
            [("Content-Type", "text/xml"), ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))],
        )
        return [body]

    return app


class IamPolicySimulator:
    """Answers IAM's SimulatePrincipalPolicy and SimulateCustomPolicy from moto's IAM state."""

    name = "iam-policy-simulator"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None

    def start(self, cloud: CloudContext) -> None:
        self.cloud = cloud

    def stop(self) -> None:
        self.cloud = None

    def route(self, request: Request) -> WSGIApp | None:
        environ = request.environ
        if not _is_iam_query(environ):
            return None
        params = _form(_read_body(environ), environ.get("QUERY_STRING", ""))
        action = params.get("Action")
        if action not in SIMULATE_ACTIONS:
            return None
        return self._answer(action, params)

    def _answer(self, action: str, params: Mapping[str, str]) -> WSGIApp:
        try:
            return _respond(200, handle(action, params))
        except SimulatorError as error:
            return _respond(error.status, error_xml(error.code, error.message))
        except Exception as error:  # an evaluator bug must answer like AWS, not kill the request
            log.exception("%s failed", action)
            return _respond(500, error_xml("ServiceFailure", f"{type(error).__name__}: {error}", sender=False))


def make_executor() -> IamPolicySimulator:
    return IamPolicySimulator()


__all__ = [
    "EvaluationResult", "IamPolicySimulator", "Policy", "PolicySource", "SimulationRequest", "Statement",
    "action_matches", "evaluate", "make_executor", "parse_policy", "resource_matches", "simulate",
    "statement_spans",
]
