"""API Gateway's checks before the integration runs: throttling, authorizers, API keys, validation.

- Throttling: a token bucket (rate per second, burst) per stage+method from the stage's method
  settings (`*/*` or `~1path/METHOD`) and per API key from its usage plan's throttle -> 429.
- Lambda authorizers (TOKEN and REQUEST): identity sources, identityValidationExpression, result
  cache per authorizerResultTtlInSeconds (default 300) keyed by the identity values, the returned
  policy evaluated against the method ARN (explicit Deny wins, `*`/`?` wildcards).
- AWS_IAM authorization is accepted without checking the signature (there is no local IAM
  enforcement); COGNITO_USER_POOLS only requires the identity header to be present.
- API keys: `x-api-key` (or the authorizer's usageIdentifierKey) must be an enabled key attached to
  a usage plan that lists this API and stage.
- Request validators: required parameters and the JSON-schema (draft 4) body model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from localcloud import trace
from localcloud.apigateway.model import GatewayError, MethodRequest
from localcloud.executors import JSONPayload

DEFAULT_AUTHORIZER_TTL = 300
LAMBDA_URI = re.compile(r"^arn:[^:]+:apigateway:[^:]+:lambda:path/[^/]+/functions/(?P<arn>.+?)/invocations$")


def lambda_arn_from_uri(uri: str | None) -> str | None:
    """The function ARN inside an `arn:aws:apigateway:...:lambda:path/.../invocations` URI."""
    matched = LAMBDA_URI.match(uri or "")
    return matched.group("arn") if matched else None


# --------------------------------------------------------------------------------------------------
# Throttling


class TokenBucket:
    """`rate` tokens per second up to `burst`; take() is False when the bucket is empty."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = max(rate, 0.0), max(burst, 0)
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttler:
    """Token buckets by key; a bucket is rebuilt when its configured limits change."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, ...], tuple[float, int, TokenBucket]] = {}
        self._lock = threading.Lock()

    def allow(self, key: tuple[str, ...], rate: float, burst: int) -> bool:
        with self._lock:
            known = self._buckets.get(key)
            if known is None or known[0] != rate or known[1] != burst:
                known = (rate, burst, TokenBucket(rate, burst))
                self._buckets[key] = known
            return known[2].take()


def stage_method_limits(request: MethodRequest) -> tuple[float, int] | None:
    """The stage's throttling for this method: its own setting, else the `*/*` default."""
    settings = request.stage.method_settings or {}
    own_key = request.resource_path.lstrip("/").replace("/", "~1")
    candidates = [f"~1{own_key}/{request.http_method}" if own_key else f"~1/{request.http_method}", "*/*"]
    for key in candidates:
        chosen = settings.get(key)
        if chosen and ("throttlingRateLimit" in chosen or "throttlingBurstLimit" in chosen):
            return float(chosen.get("throttlingRateLimit", 10000.0)), int(chosen.get("throttlingBurstLimit", 5000))
    return None


def check_throttle(throttler: Throttler, request: MethodRequest, plan: Any | None) -> None:
    limits = stage_method_limits(request)
    if limits and not throttler.allow(("stage", request.api.id, request.stage.name, request.http_method,
                                       request.resource_path), *limits):
        raise GatewayError(429, "Too Many Requests")
    throttle = (plan.throttle or {}) if plan is not None else {}
    if throttle and request.api_key_id:
        rate = float(throttle.get("rateLimit", 10000.0))
        burst = int(throttle.get("burstLimit", 5000))
        if not throttler.allow(("plan", plan.id, request.api_key_id), rate, burst):
            raise GatewayError(429, "Too Many Requests")


# --------------------------------------------------------------------------------------------------
# API keys


def find_usage_plan(request: MethodRequest, key_value: str | None) -> tuple[Any, Any] | None:
    """(api key, usage plan) when the key is enabled and a plan covers this API stage."""
    if not key_value:
        return None
    backend = request.backend
    for key in list(backend.keys.values()):
        if key.value != key_value or not key.enabled:
            continue
        for plan in list(backend.usage_plans.values()):
            stages = plan.api_stages or []
            covers = any(s.get("apiId") == request.api.id and s.get("stage") == request.stage.name for s in stages)
            if covers and key.id in backend.usage_plan_keys.get(plan.id, {}):
                return key, plan
    return None


def check_api_key(request: MethodRequest) -> Any | None:
    """The usage plan of the caller's key (403 Forbidden when the method needs one and it is bad)."""
    source = (request.api.api_key_source or "HEADER").upper()
    value = request.authorizer.get("usageIdentifierKey") if source == "AUTHORIZER" else request.header("x-api-key")
    found = find_usage_plan(request, value if isinstance(value, str) else None)
    if found is not None:
        request.api_key, request.api_key_id = found[0].value, found[0].id
    if request.method.api_key_required and found is None:
        raise GatewayError(403, "Forbidden")
    return found[1] if found else None


# --------------------------------------------------------------------------------------------------
# Authorizers


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def evaluate_policy(policy: Any, method_arn: str) -> str:
    """'Deny' (explicit), 'Allow' or 'None' for execute-api:Invoke on the method ARN."""
    if not isinstance(policy, dict):
        raise ValueError("policyDocument is not an object")
    allowed = False
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, dict):
            raise ValueError("a Statement is not an object")
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        if not any(_wildcard(a.lower()).fullmatch("execute-api:invoke") for a in actions):
            continue
        if not any(_wildcard(r).fullmatch(method_arn) for r in resources):
            continue
        if str(statement.get("Effect", "")).capitalize() == "Deny":
            return "Deny"
        allowed = allowed or str(statement.get("Effect", "")).capitalize() == "Allow"
    return "Allow" if allowed else "None"


@dataclass
class CachedPolicy:
    expires: float
    result: dict[str, Any]


class AuthorizerCache:
    """Authorizer results by (authorizer, identity values), each valid for its TTL."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], CachedPolicy] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.expires < time.monotonic():
                self._entries.pop(key, None)
                return None
            return entry.result

    def put(self, key: tuple[str, ...], result: dict[str, Any], ttl: int) -> None:
        if ttl > 0:
            with self._lock:
                self._entries[key] = CachedPolicy(time.monotonic() + ttl, result)


def identity_value(request: MethodRequest, source: str) -> str | None:
    """One identity source (`method.request.header.X`, `...querystring.q`, `stageVariables.v`, `context.x`)."""
    source = source.strip()
    for prefix, read in (
        ("method.request.header.", request.header),
        ("method.request.querystring.", request.query_value),
        ("stageVariables.", lambda name: request.stage_variables.get(name)),
        ("context.", lambda name: _context_value(request.context(), name)),
    ):
        if source.startswith(prefix):
            value = read(source[len(prefix):])
            return value if value else None
    return None


def _context_value(context: dict[str, Any], dotted: str) -> str | None:
    value: Any = context
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


def authorizer_event(request: MethodRequest, authorizer: Any, identity: list[str]) -> dict[str, Any]:
    if (authorizer.type or "TOKEN").upper() == "TOKEN":
        return {"type": "TOKEN", "authorizationToken": identity[0], "methodArn": request.method_arn}
    context = request.context()
    context.pop("authorizer", None)
    return {
        "type": "REQUEST", "methodArn": request.method_arn, "resource": request.resource_path,
        "path": request.path, "httpMethod": request.http_method, "headers": request.single_headers(),
        "multiValueHeaders": request.multi_headers(), "queryStringParameters": request.single_query(),
        "multiValueQueryStringParameters": request.multi_query(), "pathParameters": dict(request.path_params),
        "stageVariables": request.stage_variables, "requestContext": context,
    }


Invoke = Callable[[str, bytes], Any]  # (function ARN, payload) -> InvokeResult


def run_authorizer(request: MethodRequest, invoke: Invoke, cache: AuthorizerCache) -> None:
    """Run the method's Lambda authorizer (with its cache) and apply its policy to this request."""
    authorizer = request.api.authorizers.get(request.method.authorizer_id or "")
    if authorizer is None:
        raise GatewayError(500, None, "AuthorizerConfigurationException")
    sources = [s for s in (authorizer.identity_source or "method.request.header.Authorization").split(",") if s.strip()]
    identity = [identity_value(request, source) for source in sources]
    if any(value is None for value in identity):
        raise GatewayError(401, "Unauthorized")
    values = [str(value) for value in identity]
    is_token = (authorizer.type or "TOKEN").upper() == "TOKEN"
    expression = authorizer.identity_validation_expression
    if is_token and expression and not re.fullmatch(expression, values[0]):
        raise GatewayError(401, "Unauthorized")
    ttl = DEFAULT_AUTHORIZER_TTL if authorizer.authorizer_result_ttl is None else int(authorizer.authorizer_result_ttl)
    key = (request.api.id, authorizer.id, *values)
    result = cache.get(key)
    if result is None:
        with trace.span("apigateway", "authorizer-invoke"):
            result = _invoke_authorizer(request, authorizer, values, invoke)
        cache.put(key, result, ttl)
    _apply_policy(request, result)


def _invoke_authorizer(request: MethodRequest, authorizer: Any, identity: list[str], invoke: Invoke) -> dict[str, Any]:
    function_arn = lambda_arn_from_uri(authorizer.authorizer_uri)
    if function_arn is None:
        raise GatewayError(500, None, "AuthorizerConfigurationException")
    try:
        # Built here, so valid JSON: Lambda does not parse it again to check it (JSONPayload).
        outcome = invoke(function_arn, JSONPayload.dumps(authorizer_event(request, authorizer, identity)))
    except Exception:
        raise GatewayError(500, None, "AuthorizerConfigurationException") from None
    try:
        payload = json.loads(outcome.payload or b"null")
    except ValueError:
        payload = None
    if outcome.function_error:
        message = payload.get("errorMessage") if isinstance(payload, dict) else None
        if message == "Unauthorized":
            raise GatewayError(401, "Unauthorized")
        raise GatewayError(500, None, "AuthorizerConfigurationException")
    if not isinstance(payload, dict) or "policyDocument" not in payload or "principalId" not in payload:
        raise GatewayError(500, None, "AuthorizerConfigurationException")
    return payload


def _apply_policy(request: MethodRequest, result: dict[str, Any]) -> None:
    try:
        decision = evaluate_policy(result.get("policyDocument"), request.method_arn)
    except ValueError:
        raise GatewayError(500, None, "AuthorizerConfigurationException") from None
    if decision == "Deny":
        raise GatewayError(403, "User is not authorized to access this resource with an explicit deny")
    if decision != "Allow":
        raise GatewayError(403, "User is not authorized to access this resource")
    context = result.get("context") if isinstance(result.get("context"), dict) else {}
    request.authorizer = {**{k: v for k, v in context.items()}, "principalId": result.get("principalId")}
    if result.get("usageIdentifierKey"):
        request.authorizer["usageIdentifierKey"] = result["usageIdentifierKey"]


def check_authorization(request: MethodRequest, invoke: Invoke, cache: AuthorizerCache) -> None:
    kind = (request.method.authorization_type or "NONE").upper()
    if kind == "CUSTOM":
        run_authorizer(request, invoke, cache)
    elif kind == "COGNITO_USER_POOLS" and not request.header("Authorization"):
        raise GatewayError(401, "Unauthorized")
    # AWS_IAM: accepted locally (signatures are not verified by the local cloud).


# --------------------------------------------------------------------------------------------------
# Request validation


def required_parameters(method: Any) -> list[str]:
    return [name for name, required in (method.request_parameters or {}).items() if required is True
            or str(required).lower() == "true"]


def missing_parameters(request: MethodRequest) -> list[str]:
    missing = []
    for name in required_parameters(request.method):
        location, _, key = name.removeprefix("method.request.").partition(".")
        value = {"querystring": request.query_value, "header": request.header,
                 "path": request.path_params.get}.get(location, lambda _k: "x")(key)
        if value is None or value == "":
            missing.append(key)
    return missing


def body_schema(request: MethodRequest) -> dict[str, Any] | None:
    models = request.method.request_models or {}
    name = models.get(request.content_type) or models.get("application/json")
    if not name or name == "Empty":
        return None
    model = request.api.models.get(name)
    if model is None or not model.schema:
        return None
    try:
        schema = json.loads(model.schema) if isinstance(model.schema, str) else model.schema
    except ValueError:
        return None
    return schema if isinstance(schema, dict) else None


def validate_request(request: MethodRequest) -> None:
    validator_id = request.method.request_validator_id
    validator = request.api.request_validators.get(validator_id) if validator_id else None
    if validator is None:
        return
    if validator.validate_request_parameters:
        missing = missing_parameters(request)
        if missing:
            raise GatewayError(400, f"Missing required request parameters: [{', '.join(missing)}]")
    if validator.validate_request_body:
        schema = body_schema(request)
        if schema is None:
            return
        import jsonschema  # its import builds a URI grammar (seconds): only for APIs that validate bodies

        try:
            document = json.loads(request.body or b"null")
            jsonschema.Draft4Validator(schema).validate(document)
        except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
            raise GatewayError(400, "Invalid request body") from None
