"""The simulator's vocabulary: parsed policies, one simulated request, results, and AWS's errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# AWS reports every identity policy (inline, managed, input) with this type, although the model's
# enum lists user/group/role/aws-managed/user-managed; botocore does not validate it.
IAM_POLICY_TYPE = "IAM Policy"
VARIABLES_VERSION = "2012-10-17"  # policy variables exist only in this policy language version


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

