"""The decision for one caller and its asks, by AWS's evaluation logic for requests within an account.

An explicit Deny in any policy that applies (identity, resource, permissions boundary, session) wins.
Otherwise a resource-based policy (S3 bucket, SQS queue, SNS topic, Lambda function, a role's trust
policy) that allows the caller by name allows the request; else an identity-based policy must allow it,
within the permissions boundary and the session policy when there are. Else: implicit deny. The
messages are AWS's ("User: <arn> is not authorized to perform: <action> on resource: <arn> because no
identity-based policy allows the <action> action").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from localcloud.iam.documents import parse_policy
from localcloud.iam.enforcement.asks import Ask
from localcloud.iam.enforcement.authn import Caller
from localcloud.iam.evaluation import evaluate_policies
from localcloud.iam.model import NoSuchEntity, Policy, PolicySource, SimulationRequest, SimulatorError
from localcloud.iam.principals import principal_policies


@dataclass(frozen=True)
class Denial:
    ask: Ask
    message: str


@lru_cache(maxsize=4096)
def _parsed(source: PolicySource) -> Policy | None:
    try:
        return parse_policy(source)
    except SimulatorError:
        return None  # a document IAM would not have stored: it grants nothing


def _policies(sources: Sequence[PolicySource]) -> list[Policy]:
    return [policy for policy in map(_parsed, sources) if policy is not None]


def identity_policies(caller: Caller) -> tuple[list[Policy], list[Policy] | None, list[Policy] | None]:
    """(identity, boundary or None, session policy or None) of a user or role session."""
    if caller.entity_arn is None:
        return [], None, None
    try:
        identity, boundary = principal_policies(caller.entity_arn)
    except (NoSuchEntity, SimulatorError):  # a deleted role or user holds no permissions
        identity, boundary = [], []
    session = [PolicySource("session", caller.session_policy)] if caller.session_policy else []
    return _policies(identity), _policies(boundary) or None, _policies(session) or None


def _context(caller: Caller, ask: Ask, region: str) -> dict[str, tuple[str, ...]]:
    now = time.time()
    context = {key.lower(): tuple(values) for key, values in ask.context.items()}
    context.update({
        "aws:principalarn": (caller.entity_arn or caller.arn,),
        "aws:principalaccount": (caller.account,),
        "aws:principaltype": ({"user": "User", "assumed-role": "AssumedRole"}.get(caller.kind, "Account"),),
        "aws:sourceip": ("127.0.0.1",),
        "aws:securetransport": ("false",),
        "aws:currenttime": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),),
        "aws:epochtime": (str(int(now)),),
        "aws:requestedregion": (region,),
    })
    if caller.kind == "user" and caller.entity_arn:
        context["aws:username"] = (caller.entity_arn.rsplit("/", 1)[-1],)
    return context


def _principal_matches(principal: Any, caller: Caller) -> bool:
    """Whether a resource policy's Principal names this caller (not merely its account)."""
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    values = principal.get("AWS", [])
    for value in values if isinstance(values, list) else [values]:
        if value == "*" or (caller.kind != "anonymous" and value in (caller.arn, caller.entity_arn)):
            return True
    return False


def resource_policy_for(document: str | None, caller: Caller) -> list[Policy]:
    """The statements of a resource policy whose Principal names the caller, as a policy."""
    if not document:
        return []
    try:
        raw = json.loads(document)
    except ValueError:
        return []
    statements = raw.get("Statement", []) if isinstance(raw, dict) else []
    statements = statements if isinstance(statements, list) else [statements]
    mine = [{key: value for key, value in s.items() if key not in ("Principal", "NotPrincipal", "Sid")}
            for s in statements if isinstance(s, dict) and _principal_matches(s.get("Principal"), caller)]
    if not mine:
        return []
    for statement in mine:
        statement.setdefault("Resource", "*")
    return _policies([PolicySource("resource", json.dumps({"Version": raw.get("Version", "2012-10-17"),
                                                           "Statement": mine}))])


def decide(caller: Caller, asks: Sequence[Ask], region: str, resource_policy: Any) -> Denial | None:
    """None when every ask is allowed, else the first denial. `resource_policy(ask)` returns the
    resource's policy document (or None)."""
    identity, boundary, session = identity_policies(caller)
    for ask in asks:
        request = SimulationRequest(ask.action, ask.resource, _context(caller, ask, region))
        denial = _one(caller, request, identity, boundary, session,
                      resource_policy_for(resource_policy(ask), caller))
        if denial is not None:
            return Denial(ask, denial)
    return None


def _one(caller: Caller, request: SimulationRequest, identity: list[Policy], boundary: list[Policy] | None,
         session: list[Policy] | None, resource: list[Policy]) -> str | None:
    own = evaluate_policies(identity, request)
    granted = evaluate_policies(resource, request) if resource else None
    limit = evaluate_policies(boundary, request) if boundary else None
    scoped = evaluate_policies(session, request) if session else None
    head = f"User: {caller.arn} is not authorized to perform: {request.action} on resource: {request.resource}"
    if own.denies:
        return f"{head} with an explicit deny in an identity-based policy"
    if granted is not None and granted.denies:
        return f"{head} with an explicit deny in a resource-based policy"
    if limit is not None and limit.denies:
        return f"{head} with an explicit deny in a permissions boundary"
    if scoped is not None and scoped.denies:
        return f"{head} with an explicit deny in a session policy"
    if granted is not None and granted.allows:
        return None  # a resource policy naming the caller grants within the account
    if not own.allows:
        return f"{head} because no identity-based policy allows the {request.action} action"
    if limit is not None and not limit.allows:
        return f"{head} because no permissions boundary allows the {request.action} action"
    if scoped is not None and not scoped.allows:
        return f"{head} because no session policy allows the {request.action} action"
    return None
