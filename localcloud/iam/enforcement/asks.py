"""What a request asks IAM for: the action, the resource ARN(s), the condition keys.

Each request becomes one or more `Ask`s in the words of the Service Authorization Reference (action
`dynamodb:Scan` on `arn:aws:dynamodb:us-east-1:123456789012:table/T`). A request this module cannot
translate is `Unmapped`, which the enforcement refuses for every caller but the root: an unknown action
must never pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Ask:
    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """A request as the enforcement sees it; `params` are the JSON body, the query form or the REST
    parameters."""

    service: str  # signing name
    protocol: str  # json / query / rest-json / rest-xml
    operation: str
    method: str
    path: str
    query: Mapping[str, str]
    params: Mapping[str, Any]
    region: str
    account: str
    headers: Mapping[str, str]
    body: bytes = b""


class Unmapped(Exception):
    """The request's action (or its resource) is not known to the local cloud's enforcement."""

    def __init__(self, action: str):
        super().__init__(action)
        self.action = action


# The IAM service prefix of a signing name, where they differ.
PREFIXES = {"monitoring": "cloudwatch"}


def prefix(service: str) -> str:
    return PREFIXES.get(service, service)
