"""API Gateway TOKEN authorizer for the query API: who is calling, as a customer id or an admin.

Token (the Authorization header): `Bearer <subject>.<expires>.<signature>` where subject is a customer
id (digits) or `admin`, expires the Unix time (seconds) after which it is refused, and signature = the
first 32 hex chars of HMAC-SHA256(key=AUTH_SECRET, msg="<subject>.<expires>"), both UTF-8: a leaked
token works for its lifetime only (an hour by default). `mint_token(subject, secret)` below makes one;
copy it (it is pure stdlib) to issue tokens.

- no token, or not of that shape -> raise Exception("Unauthorized"): API Gateway answers 401;
- well-formed but the signature does not match -> a Deny policy: API Gateway answers 403 (also the
  old `Bearer <subject>.<signature>` shape without an expiry: never allowed again);
- signed but expired -> raise Exception("Unauthorized"): 401, the client must get a new token (an
  authorizer result cached by API Gateway can outlive the expiry by its TTL, 300 s by default);
- valid -> an Allow policy for every method and resource of the stage (`.../<stage>/*/*`), so the
  cached answer for a token is right for all of the API's routes, with context {customerId, role}
  ("customer" or "admin"; an admin's customerId is ""). The query function enforces which data a
  customer may read; this function only says who they are.

A missing AUTH_SECRET is a configuration error: it raises (API Gateway answers 500), never allows.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from typing import Any

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

ADMIN = "admin"
TOKEN_RE = re.compile(r"Bearer (?P<subject>\d{1,18}|admin)(?:\.(?P<expires>\d{1,12}))?\.(?P<signature>[0-9a-f]{32})")
DEFAULT_LIFETIME_S = 3600


def signature(subject: str, secret: str) -> str:
    """The first 32 hex chars of HMAC-SHA256(secret, subject)."""
    return hmac.new(secret.encode("utf-8"), subject.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def mint_token(subject: str, secret: str, lifetime_s: int = DEFAULT_LIFETIME_S, now: float | None = None) -> str:
    """The Authorization header value for a customer id ("17850") or "admin", valid for lifetime_s."""
    expires = int(time.time() if now is None else now) + int(lifetime_s)
    return f"Bearer {subject}.{expires}.{signature(f'{subject}.{expires}', secret)}"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    secret = os.environ.get("AUTH_SECRET")
    if not secret:
        raise RuntimeError("AUTH_SECRET is not configured")
    match = TOKEN_RE.fullmatch(str(event.get("authorizationToken") or "").strip())
    if match is None:
        raise Exception("Unauthorized")  # API Gateway's own convention: answer 401
    subject, expires = match["subject"], match["expires"]
    resource = stage_resources(event["methodArn"])
    if expires is None or not hmac.compare_digest(match["signature"], signature(f"{subject}.{expires}", secret)):
        logger.info("bad signature or no expiry for %s", subject)
        return policy(subject, "Deny", resource, {})
    if int(expires) <= time.time():
        logger.info("expired token for %s", subject)
        raise Exception("Unauthorized")  # 401: sign in again
    role = ADMIN if subject == ADMIN else "customer"
    return policy(subject, "Allow", resource, {"customerId": "" if role == ADMIN else subject, "role": role})


def stage_resources(method_arn: str) -> str:
    """arn:aws:execute-api:region:account:api/stage/GET/invoices/1 -> .../api/stage/*/*"""
    prefix, _, path = method_arn.partition(":execute-api:")
    parts = path.split("/")
    if not prefix or len(parts) < 2:
        raise Exception("Unauthorized")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}/*/*"


def policy(principal: str, effect: str, resource: str, context: dict[str, str]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context:
        answer["context"] = context
    return answer
