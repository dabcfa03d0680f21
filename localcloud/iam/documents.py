"""Parsing policy documents into statements, with where each statement starts and ends in the text."""

from __future__ import annotations

import json
from typing import Any

from localcloud.iam.model import VARIABLES_VERSION, InvalidInput, Policy, PolicySource, Position, Statement


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

