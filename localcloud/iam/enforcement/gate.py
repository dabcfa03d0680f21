"""The enforcement in the request path: authenticate, translate, decide, or answer the service's refusal.

`check(environ)` runs before the executors and moto; it returns None to let the request through, or the
WSGI answer refusing it. Local admin routes (`/_localcloud/`, moto's `/moto-api/`) and API Gateway stage
invocations (public unless an authorizer says otherwise, handled by the apigateway executor) stay open.
Requests replayed from the write-ahead journal were authorized when they were acknowledged.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl

from localcloud.executor_base import read_body
from localcloud.executors import WSGIApp
from localcloud.iam.enforcement import authn, errors, json_asks, rest_asks, s3_asks, service_checks
from localcloud.iam.enforcement.asks import Ask, Request, Unmapped, prefix
from localcloud.iam.enforcement.decide import decide
from localcloud.iam.enforcement.resources import resource_policy

log = logging.getLogger("localcloud.iam.enforcement")

OPEN_PREFIXES = ("/_localcloud/", "/moto-api")
_USER_REQUEST = re.compile(r"^/restapis/[^/]+/[^/]+/_user_request_")
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.localhost(:\d+)?$", re.IGNORECASE)
QUERY_SERVICES = frozenset({"sns", "iam", "sts", "redshift"})
# Needs no permission on AWS (GetCallerIdentity works even under an explicit deny).
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})


def is_open(environ: Mapping[str, Any]) -> bool:
    path = environ.get("PATH_INFO", "")
    return (path.startswith(OPEN_PREFIXES) or _USER_REQUEST.match(path) is not None
            or _EXECUTE_API_HOST.match(environ.get("HTTP_HOST", "")) is not None)


def _unsigned_protocol(environ: Mapping[str, Any], path: str) -> tuple[str, str]:
    """(service, protocol) of a request that carries no signature, from its shape alone."""
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json", "json"
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") or "Action=" in environ.get("QUERY_STRING", ""):
        return "query", "query"
    if re.match(r"^/(20\d\d-\d\d-\d\d|restapis|v2/|apikeys|usageplans|domainnames)", path):
        return "rest", "rest-json"
    return "s3", "rest-xml"


def check(environ: dict[str, Any]) -> WSGIApp | None:
    """None to let the request through, or the service's refusal."""
    if is_open(environ):
        return None
    body = read_body(environ)
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    try:
        signed = authn.parse(environ, query)
    except authn.AuthError as error:
        service, protocol = _unsigned_protocol(environ, environ.get("PATH_INFO", ""))
        return errors.refusal(service, protocol, error.kind, error.message)
    if signed is None:
        service, protocol = _unsigned_protocol(environ, environ.get("PATH_INFO", ""))
        if service == "s3":
            return _anonymous_s3(environ, query, body)
        return errors.refusal(service, protocol, "missing", errors.MISSING_TOKEN)
    protocol = _protocol(signed.service, environ)
    try:
        caller, secret = authn.identify(signed, environ)
        authn.verify(signed, secret, environ, body)
    except authn.AuthError as error:
        return errors.refusal(signed.service, protocol, error.kind, error.message)
    if caller.is_root:  # the account root may do everything; the services' own checks still apply
        if signed.service == "lambda" and environ.get("REQUEST_METHOD") == "POST" and \
                environ.get("PATH_INFO", "").rstrip("/").endswith("/event-source-mappings"):
            return service_checks.check(_request(signed, protocol, environ, query, body, caller.account))
        if signed.service == "sts" and _request(signed, protocol, environ, query, body,
                                                caller.account).operation == "AssumeRole":
            return errors.refusal("sts", protocol, "denied", "Roles may not be assumed by root accounts.")
        return None
    try:
        request = _own_user(_request(signed, protocol, environ, query, body, caller.account), caller)
        asks = _asks(request)
    except Unmapped as unmapped:
        return errors.refusal(signed.service, protocol, "denied",
                              f"User: {caller.arn} is not authorized to perform: {unmapped.action}: the local cloud "
                              f"cannot authorize {unmapped.action}, so it refuses it to every principal but the "
                              "account root")
    refused = service_checks.check(request)  # what the service itself checks (an event source's role...)
    if refused is not None:
        return refused
    asks += service_checks.extra_asks(request)
    if all(ask.action in ALWAYS_ALLOWED for ask in asks):
        return None
    trust = service_checks.trust_refusal(caller, asks)
    if trust is not None:
        return errors.refusal(signed.service, protocol, "denied", trust)
    denial = decide(caller, asks, signed.region, lambda ask: resource_policy(ask, caller.account, signed.region))
    if denial is None:
        hidden = service_checks.missing_object_refusal(caller, asks, signed.region) if signed.service == "s3" else None
        return None if hidden is None else errors.refusal("s3", protocol, "denied", hidden)
    message = denial.message
    if signed.service == "s3":
        message = message.replace(f"on resource: {denial.ask.resource}", f'on resource: "{denial.ask.resource}"')
    log.info("denied: %s", message)
    return errors.refusal(signed.service, protocol, "denied", message)


def _protocol(service: str, environ: Mapping[str, Any]) -> str:
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    if service == "s3":
        return "rest-xml"
    if service in QUERY_SERVICES:
        return "query"
    return "rest-json" if service in ("lambda", "apigateway", "scheduler") else "json"


def _request(signed: authn.Signed, protocol: str, environ: Mapping[str, Any], query: Mapping[str, str],
             body: bytes, account: str) -> Request:
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
    headers = {"x-amz-copy-source": environ.get("HTTP_X_AMZ_COPY_SOURCE", ""), "host": environ.get("HTTP_HOST", "")}
    if protocol == "json":
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        params: Mapping[str, Any] = json_asks.json_params(body, environ)  # type: ignore[arg-type]
    elif protocol == "query":
        params = {**query, **dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))}
        operation = str(params.get("Action", ""))
        if not operation:
            raise Unmapped(f"{prefix(signed.service)}:<no Action>")
    elif signed.service == "lambda":
        found = rest_asks.lambda_operation(method, path)
        if found is None:
            raise Unmapped(f"lambda:{method} {path}")
        operation, params = found[0], {**found[1], **json_asks.json_params(body)}
    else:
        operation, params = f"{method} {path}", {}
    return Request(signed.service, protocol, operation, method, path, query, params, signed.region, account,
                   headers, body)


# IAM operations that act on the calling user when UserName is left out.
SELF_USER_OPERATIONS = frozenset({"GetUser", "ListAccessKeys", "CreateAccessKey", "DeleteAccessKey", "UpdateAccessKey",
                                  "ListUserPolicies", "ListAttachedUserPolicies", "ListGroupsForUser",
                                  "ChangePassword", "ListMFADevices", "ListSSHPublicKeys"})


def _own_user(r: Request, caller: authn.Caller) -> Request:
    if r.service != "iam" or "UserName" in r.params or r.operation not in SELF_USER_OPERATIONS \
            or caller.kind != "user" or caller.entity_arn is None:
        return r
    params = {**r.params, "UserName": caller.entity_arn.rsplit("/", 1)[-1]}
    return Request(r.service, r.protocol, r.operation, r.method, r.path, r.query, params, r.region, r.account,
                   r.headers, r.body)


def _asks(r: Request) -> list[Ask]:
    if r.service == "s3":
        return s3_asks.asks(r.method, r.headers.get("host", ""), r.path, r.query, r.headers, r.body)
    if r.service == "lambda":
        return rest_asks.lambda_asks(r.method, r.path, r.query, r.body, r.region, r.account)[1]
    if r.service == "apigateway":
        return rest_asks.apigateway_asks(r.method, r.path, r.region)
    if r.protocol in ("json", "query"):
        if r.protocol == "query":
            r = _query_lists(r)
        return json_asks.asks(r)
    raise Unmapped(f"{prefix(r.service)}:{r.operation}")


def _query_lists(r: Request) -> Request:
    """`Names.member.1`... of the query protocol as lists, the way the JSON protocol sends them."""
    params = dict(r.params)
    for key in [k for k in params if ".member." in k]:
        name, _, rest = key.partition(".member.")
        if rest.isdigit():
            params.setdefault(name, [])
            if isinstance(params[name], list):
                params[name].append(params[key])
    return Request(r.service, r.protocol, r.operation, r.method, r.path, r.query, params, r.region, r.account,
                   r.headers, r.body)


def _anonymous_s3(environ: Mapping[str, Any], query: Mapping[str, str], body: bytes) -> WSGIApp | None:
    """An unsigned S3 request is the anonymous principal: only a bucket policy allowing "*" lets it in."""
    try:
        asks = s3_asks.asks(environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_HOST", ""),
                            environ.get("PATH_INFO", "/"), query,
                            {"x-amz-copy-source": environ.get("HTTP_X_AMZ_COPY_SOURCE", "")}, body)
    except Unmapped:
        return errors.refusal("s3", "rest-xml", "missing", "Access Denied")
    denial = decide(authn.ANONYMOUS, asks, "us-east-1",
                    lambda ask: resource_policy(ask, authn.ANONYMOUS.account, "us-east-1"))
    return None if denial is None else errors.refusal("s3", "rest-xml", "missing", "Access Denied")
