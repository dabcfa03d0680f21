"""Evaluation as AWS documents it: explicit deny, then allow, then implicit deny; boundaries must allow too."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from localcloud.iam.conditions import condition_holds
from localcloud.iam.documents import parse_policy
from localcloud.iam.matching import _resolver, action_matches, resource_matches
from localcloud.iam.model import (
    EvaluationResult, Policy, PolicySetResult, PolicySource, SimulationRequest, Statement, StatementMatch, _MissingKey,
)


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

