"""Temporary credentials the Lambda runtime hands a function for its execution role.

On AWS a function's code runs with `AWS_ACCESS_KEY_ID=ASIA...`, a secret and a session token of its
execution role, so every call it makes is allowed or refused by that role's policies. The local cloud
does the same: `execution_role_env(...)` issues a session per worker, kept here (in memory: workers do
not outlive the server) so authentication finds the role behind the key.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass

_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Session:
    access_key: str
    secret_key: str
    session_token: str
    role_arn: str
    session_name: str


_sessions: dict[str, Session] = {}
_lock = threading.Lock()


def issue(role_arn: str, session_name: str) -> Session:
    """A new session for `role_arn` (ASIA key, 40-character secret, opaque token)."""
    session = Session("ASIA" + "".join(secrets.choice(_ALPHABET) for _ in range(16)),
                      secrets.token_urlsafe(30)[:40], "IQoJb3JpZ2luX2VjE" + secrets.token_urlsafe(96),
                      role_arn, session_name)
    with _lock:
        _sessions[session.access_key] = session
    return session


def lookup(access_key: str) -> Session | None:
    return _sessions.get(access_key)


def execution_role_env(account: str, region: str, function_name: str) -> dict[str, str]:
    """The credential variables of a function's worker: a session of its execution role, named after
    the function as AWS names it."""
    from localcloud.motoapi import lambda_backends

    try:
        role = str(lambda_backends[account][region].get_function(function_name).role)
    except Exception:  # noqa: BLE001 - a function gone meanwhile: a session of no role, allowed nothing
        role = f"arn:aws:iam::{account}:role/deleted-function-role"
    session = issue(role, function_name)
    return {"AWS_ACCESS_KEY_ID": session.access_key, "AWS_SECRET_ACCESS_KEY": session.secret_key,
            "AWS_SESSION_TOKEN": session.session_token}
