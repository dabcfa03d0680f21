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

The package is split by job: model.py (dataclasses, errors), documents.py (parsing), matching.py,
conditions.py, evaluation.py, principals.py (moto's IAM state), api.py (parameters and XML); this module
is the executor, and the names importable from it before the split still are.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping
from urllib.parse import parse_qs

from werkzeug.wrappers import Request

from localcloud.executor_base import read_body, respond
from localcloud.executors import CloudContext, WSGIApp
from localcloud.iam.api import SIMULATE_ACTIONS, error_xml, handle
from localcloud.iam.documents import parse_policy, statement_spans
from localcloud.iam.evaluation import evaluate, simulate
from localcloud.iam.matching import action_matches, resource_matches
from localcloud.iam.model import (
    EvaluationResult, InvalidInput, NoSuchEntity, Policy, PolicySource, Position, SimulationRequest,
    SimulatorError, Statement, ValidationError,
)

log = logging.getLogger("localcloud.iam_simulator")

_IAM_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/iam/aws4_request")


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
    return respond(status, body, "text/xml", request_id=True)


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
        params = _form(read_body(environ), environ.get("QUERY_STRING", ""))
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
    "EvaluationResult", "IamPolicySimulator", "InvalidInput", "NoSuchEntity", "Policy", "PolicySource", "Position",
    "SimulationRequest", "SimulatorError", "Statement", "ValidationError", "action_matches", "evaluate",
    "make_executor", "parse_policy", "resource_matches", "simulate", "statement_spans",
]
