"""The two operations in IAM's query API: parameters in, XML out (answers and <ErrorResponse>)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Iterable, Mapping, Sequence

from localcloud.iam.evaluation import simulate
from localcloud.iam.model import EvaluationResult, InvalidInput, PolicySource, Statement, ValidationError
from localcloud.iam.principals import principal_policies

IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
SIMULATE_ACTIONS = ("SimulatePrincipalPolicy", "SimulateCustomPolicy")
DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 1000


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

