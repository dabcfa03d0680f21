"""Who signed a request: SigV4 parsed, the access key looked up, the signature recomputed.

AWS refuses a request whose key it does not know, whose signature does not match, or that carries no
signature at all; a workbook that runs offline must meet the same refusals, or a broken credential chain
only shows up on the real account. The signature is recomputed with botocore's own SigV4 code over the
request as received (method, raw path, query, the signed headers, the payload hash), so it agrees with
every client botocore can sign for.

Keys: the account root (`testing`/`testing` and RETAIL_LOCALCLOUD_ROOT_KEYS), IAM users' access keys and
`sts.assume_role` sessions (moto's state, read through the facade), and the Lambda runtime's sessions for
execution roles (`credentials.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote

from localcloud.executors import DEFAULT_ACCOUNT
from localcloud.iam.enforcement import credentials

ROOT_KEYS_ENV = "RETAIL_LOCALCLOUD_ROOT_KEYS"  # "KEY:SECRET,KEY2:SECRET2"
DEFAULT_ROOT_KEYS = {"testing": "testing"}
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
                   r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]+)")


class AuthError(Exception):
    """Authentication failed: `kind` is "unknown-key", "signature", "missing", "token", "expired-token",
    "expired" (a presigned URL) or "malformed"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass(frozen=True)
class Signed:
    """What the request says about its signature."""

    access_key: str
    date: str  # yyyymmdd of the scope
    region: str
    service: str  # the signing name: s3, dynamodb, monitoring, execute-api...
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # X-Amz-Date (SigV2 query: Expires)
    presigned: bool = False
    version: int = 4  # 2: an S3 presigned URL in SigV2 form (boto3's default for S3 in us-east-1)


@dataclass(frozen=True)
class Caller:
    """The authenticated principal. `arn` is what AWS's messages name (the session ARN for a role)."""

    kind: str  # "root" / "user" / "assumed-role" / "anonymous"
    arn: str
    account: str
    entity_arn: str | None = None  # the IAM user or role whose policies apply
    session_policy: str | None = None

    @property
    def is_root(self) -> bool:
        return self.kind == "root"


ANONYMOUS = Caller("anonymous", "anonymous", DEFAULT_ACCOUNT)


def root_keys() -> dict[str, str]:
    keys = dict(DEFAULT_ROOT_KEYS)
    for pair in os.environ.get(ROOT_KEYS_ENV, "").split(","):
        key, _, secret = pair.strip().partition(":")
        if key and secret:
            keys[key] = secret
    return keys


def parse(environ: Mapping[str, Any], query: Mapping[str, str]) -> Signed | None:
    """The SigV4 signature of a request (header or presigned query), None when it carries none."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header:
        match = _AUTH.match(header.strip())
        if match is None:
            raise AuthError("malformed", "Authorization header requires 'Credential', 'Signature' and "
                                         "'SignedHeaders' parameters in AWS4-HMAC-SHA256 form.")
        credential, signed, signature = match.group("credential", "signed", "signature")
        timestamp = environ.get("HTTP_X_AMZ_DATE", "")
        presigned = False
    elif "X-Amz-Signature" in query:
        credential, signed = query.get("X-Amz-Credential", ""), query.get("X-Amz-SignedHeaders", "")
        signature, timestamp, presigned = query["X-Amz-Signature"], query.get("X-Amz-Date", ""), True
    elif "Signature" in query and "AWSAccessKeyId" in query:
        return Signed(query["AWSAccessKeyId"], "", "us-east-1", "s3", (), query["Signature"],
                      query.get("Expires", ""), True, 2)
    else:
        return None
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AuthError("malformed", f"Credential should be scoped to a valid region, not '{credential}'.")
    return Signed(parts[0], parts[1], parts[2], parts[3], tuple(signed.split(";")), signature, timestamp,
                  presigned)


def identify(signed: Signed, environ: Mapping[str, Any]) -> tuple[Caller, str]:
    """(caller, secret key) for the signature's access key; AuthError when no such key is active."""
    key = signed.access_key
    roots = root_keys()
    if key in roots:
        return Caller("root", f"arn:aws:iam::{DEFAULT_ACCOUNT}:root", DEFAULT_ACCOUNT), roots[key]
    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
    session = credentials.lookup(key)
    if session is not None:
        _check_token(token, session.session_token)
        return _role_caller(session.role_arn, session.session_name, None), session.secret_key
    found = _moto_key(key)
    if found is None:
        raise AuthError("unknown-key", "The security token included in the request is invalid.")
    account, access_key = found
    if access_key.role_arn:
        assumed = _assumed_role(account, key)
        if assumed is None:
            raise AuthError("unknown-key", "The security token included in the request is invalid.")
        _check_token(token, assumed.session_token)
        if _expired(assumed.expiration):
            raise AuthError("expired-token", "The security token included in the request is expired")
        return _role_caller(assumed.role_arn, assumed.session_name, assumed.policy), access_key.secret_access_key
    if access_key.status != "Active" or not access_key.user_name:
        raise AuthError("unknown-key", "The security token included in the request is invalid.")
    user_arn = _user_arn(account, access_key.user_name)
    return Caller("user", user_arn, account, user_arn), access_key.secret_access_key


def _expired(expiration: Any) -> bool:
    """moto keeps a session's expiry as a naive UTC datetime."""
    from datetime import datetime, timezone

    if expiration is None:
        return False
    now = datetime.now(timezone.utc)
    return (expiration if expiration.tzinfo else expiration.replace(tzinfo=timezone.utc)) < now


def _check_token(sent: str | None, expected: str) -> None:
    if sent != expected:
        raise AuthError("token", "The security token included in the request is invalid.")


def _role_caller(role_arn: str, session_name: str, session_policy: str | None) -> Caller:
    account = role_arn.split(":")[4] or DEFAULT_ACCOUNT
    name = role_arn.rsplit("/", 1)[-1]
    return Caller("assumed-role", f"arn:aws:sts::{account}:assumed-role/{name}/{session_name}", account,
                  role_arn, session_policy or None)


def _moto_key(key: str) -> tuple[str, Any] | None:
    from localcloud.motoapi import iam_backends

    for account, backends in list(iam_backends.items()):
        backend = backends.get("aws") if hasattr(backends, "get") else None
        found = getattr(backend, "access_keys", {}).get(key) if backend is not None else None
        if found is not None:
            return account, found
    return None


def _assumed_role(account: str, key: str) -> Any:
    from localcloud.motoapi import sts_backends

    return sts_backends[account]["aws"].get_assumed_role_from_access_key(key)


def _user_arn(account: str, name: str) -> str:
    from localcloud.motoapi import iam_backends

    user = iam_backends[account]["aws"].users.get(name)
    return user.arn if user is not None else f"arn:aws:iam::{account}:user/{name}"


def verify(signed: Signed, secret: str, environ: Mapping[str, Any], body: bytes) -> None:
    """Recompute the signature with botocore's SigV4 code; AuthError("signature") on a mismatch."""
    from botocore.awsrequest import AWSRequest

    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
    path, _, query = raw.partition("?")
    _check_expiry(signed, query)
    if signed.version == 2:
        return _verify_v2(signed, secret, environ, path, query)
    if signed.presigned:
        query = "&".join(pair for pair in query.split("&") if not pair.startswith("X-Amz-Signature="))
    headers = {}
    for name in signed.signed_headers:
        value = _header(environ, name)
        if value is None:
            raise AuthError("signature", _mismatch(signed.service))
        headers[name] = value
    if signed.presigned:
        payload = "UNSIGNED-PAYLOAD"
    elif "x-amz-content-sha256" in headers:
        payload = headers["x-amz-content-sha256"]
    else:
        payload = hashlib.sha256(body).hexdigest()
    host = headers.get("host", environ.get("HTTP_HOST", "localhost"))
    request = AWSRequest(method=environ.get("REQUEST_METHOD", "GET"), url=f"http://{host}{path}"
                         + (f"?{query}" if query else ""), headers=headers, data=b"")
    request.context.update(timestamp=signed.timestamp, payload=payload)
    signer = _signers()[signed.service == "s3"]
    canonical = signer.canonical_request(request)
    string_to_sign = "\n".join(("AWS4-HMAC-SHA256", signed.timestamp,
                                 f"{signed.date}/{signed.region}/{signed.service}/aws4_request",
                                 hashlib.sha256(canonical.encode()).hexdigest()))
    key = _signing_key(secret, signed.date, signed.region, signed.service)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise AuthError("signature", _mismatch(signed.service))


@lru_cache(maxsize=1)
def _signers() -> tuple[Any, Any]:
    """botocore's SigV4 canonical-request code (S3's leaves the path as sent), with the payload hash the
    client sent or the body's."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.credentials import Credentials

    class Canonical(SigV4Auth):
        def payload(self, request: Any) -> str:
            return str(request.context["payload"])

    class S3Canonical(S3SigV4Auth):
        def payload(self, request: Any) -> str:
            return str(request.context["payload"])

    unused = Credentials("", "")
    return Canonical(unused, "", ""), S3Canonical(unused, "", "")


@lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key (AWS4+secret -> date -> region -> service -> aws4_request), once per day."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _check_expiry(signed: Signed, query: str) -> None:
    """A presigned URL past its expiry is refused, as S3 refuses it."""
    if not signed.presigned:
        return
    import calendar
    import time

    params = dict(parse_qsl(query, keep_blank_values=True))
    try:
        if signed.version == 2:
            expires = float(signed.timestamp)
        else:
            start = calendar.timegm(time.strptime(signed.timestamp, "%Y%m%dT%H%M%SZ"))
            expires = start + float(params.get("X-Amz-Expires", "604800"))
    except ValueError:
        raise AuthError("malformed", "Invalid date or expiry in the presigned URL.") from None
    if time.time() > expires:
        raise AuthError("expired", "Request has expired")


def _verify_v2(signed: Signed, secret: str, environ: Mapping[str, Any], path: str, query: str) -> None:
    """An S3 SigV2 query signature, recomputed with botocore's HmacV1 code."""
    from urllib.parse import urlsplit

    from botocore.auth import HmacV1Auth
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials

    kept = "&".join(pair for pair in query.split("&")
                    if pair.split("=", 1)[0] not in ("Signature", "AWSAccessKeyId", "Expires"))
    split = urlsplit(f"http://{environ.get('HTTP_HOST', 'localhost')}{path}" + (f"?{kept}" if kept else ""))
    class Signer(HmacV1Auth):
        def _get_date(self) -> str:  # the query's Expires stands where the Date header would
            return signed.timestamp

    signer = Signer(Credentials(signed.access_key, secret))
    string = signer.canonical_string(environ.get("REQUEST_METHOD", "GET"), split, HTTPHeaders())
    if not hmac.compare_digest(signer.sign_string(string), signed.signature):
        raise AuthError("signature", _mismatch("s3"))


def _header(environ: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    if lowered == "host":
        return environ.get("HTTP_HOST")
    if lowered == "content-type":
        return environ.get("CONTENT_TYPE")
    if lowered == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + lowered.upper().replace("-", "_"))


def _mismatch(service: str) -> str:
    if service == "s3":
        return ("The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.")
    return ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")


def query_params(environ: Mapping[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
