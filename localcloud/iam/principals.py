"""The policies of a user, role or group, read from moto's IAM state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from localcloud.iam.model import InvalidInput, NoSuchEntity, PolicySource


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

