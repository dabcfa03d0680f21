"""The request as API Gateway sees it, the answer it gives, and how it finds the resource to run.

Shared by the gateway pipeline (apigateway.py), its security checks (apigateway_security.py) and
its integrations (apigateway_integrations.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

GATEWAY_ERROR_TYPES = {
    400: "BadRequestException",
    401: "UnauthorizedException",
    403: "AccessDeniedException",
    404: "NotFoundException",
    413: "RequestTooLargeException",
    415: "UnsupportedMediaTypeException",
    429: "TooManyRequestsException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    504: "IntegrationTimeoutException",
}


@dataclass
class GatewayResponse:
    """What the gateway answers: status, headers (several values allowed) and body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def gateway_error(status: int, message: str | None, error_type: str | None = None) -> GatewayResponse:
    """An AWS-shaped gateway error: JSON {"message": ...} plus x-amzn-ErrorType."""
    body = json.dumps({"message": message}).encode()
    error_type = error_type or GATEWAY_ERROR_TYPES.get(status, "InternalServerErrorException")
    return GatewayResponse(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], body)


class GatewayError(Exception):
    """Stops the pipeline with an AWS-shaped error response."""

    def __init__(self, status: int, message: str | None, error_type: str | None = None):
        super().__init__(message)
        self.response = gateway_error(status, message, error_type)


def missing_token() -> GatewayError:
    return GatewayError(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


@dataclass
class MethodRequest:
    """One client request resolved to an API, stage, resource and method."""

    api: Any  # moto RestAPI
    backend: Any  # moto APIGatewayBackend owning the API
    stage: Any  # moto Stage
    resource: Any  # moto Resource
    method: Any  # moto Method
    resource_path: str  # "/main/{id}"
    path: str  # "/main/42" (without the stage)
    http_method: str
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    domain_name: str
    request_id: str
    request_time: str
    request_time_epoch: int
    api_key: str | None = None
    api_key_id: str | None = None
    authorizer: dict[str, Any] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        return self.backend.account_id

    @property
    def region(self) -> str:
        return self.backend.region_name

    @property
    def stage_variables(self) -> dict[str, str]:
        return dict(self.stage.variables or {})

    def header(self, name: str) -> str | None:
        """The last value of a header (case-insensitive), as API Gateway's `headers` map keeps."""
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found

    def query_value(self, name: str) -> str | None:
        found = None
        for key, value in self.query:
            if key == name:
                found = value
        return found

    @property
    def content_type(self) -> str:
        """The media type used to select templates; none given means application/json (as AWS)."""
        raw = self.header("Content-Type")
        return raw.split(";", 1)[0].strip().lower() if raw and raw.strip() else "application/json"

    @property
    def method_arn(self) -> str:
        return (f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api.id}/{self.stage.name}/"
                f"{self.http_method}{self.path}")

    def single_headers(self) -> dict[str, str]:
        return {key: value for key, value in self.headers}

    def multi_headers(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key, value in self.headers:
            grouped.setdefault(key, []).append(value)
        return grouped

    def single_query(self) -> dict[str, str]:
        return {key: value for key, value in self.query}

    def multi_query(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key, value in self.query:
            grouped.setdefault(key, []).append(value)
        return grouped

    def body_text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def template_params(self) -> dict[str, dict[str, str]]:
        """`$input.params()`: path, querystring and header maps."""
        return {"path": dict(self.path_params), "querystring": self.single_query(), "header": self.single_headers()}

    def context(self) -> dict[str, Any]:
        """`$context` / the proxy event's requestContext."""
        return {
            "accountId": self.account_id,
            "apiId": self.api.id,
            "stage": self.stage.name,
            "resourceId": self.resource.id,
            "resourcePath": self.resource_path,
            "httpMethod": self.http_method,
            "requestId": self.request_id,
            "extendedRequestId": self.request_id,
            "path": f"/{self.stage.name}{self.path}",
            "protocol": "HTTP/1.1",
            "domainName": self.domain_name,
            "domainPrefix": self.domain_name.split(".", 1)[0],
            "requestTime": self.request_time,
            "requestTimeEpoch": self.request_time_epoch,
            "identity": {
                "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                "apiKey": self.api_key, "apiKeyId": self.api_key_id, "accessKey": None,
                "sourceIp": self.source_ip, "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None, "userArn": None,
                "userAgent": self.header("User-Agent"), "user": None, "principalOrgId": None,
            },
            "authorizer": dict(self.authorizer) if self.authorizer else None,
        }


# --------------------------------------------------------------------------------------------------
# Resource matching

_PARAM = re.compile(r"^\{([^{}+]+)\}$")
_GREEDY = re.compile(r"^\{([^{}+]+)\+\}$")
LITERAL, PARAM, GREEDY = 2, 1, 0


def split_path(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def resource_paths(api: Any) -> dict[str, Any]:
    """Every resource of the API by its full path ("/", "/main", "/main/{id}")."""
    resources = dict(api.resources)
    paths: dict[str, str] = {}

    def path_of(resource_id: str, depth: int = 0) -> str:
        if resource_id in paths:
            return paths[resource_id]
        resource = resources[resource_id]
        if not resource.parent_id or resource.parent_id not in resources or depth > 64:
            result = "/"
        else:
            parent = path_of(resource.parent_id, depth + 1)
            result = parent.rstrip("/") + "/" + resource.path_part
        paths[resource_id] = result
        return result

    return {path_of(resource_id): resource for resource_id, resource in resources.items()}


def match_segments(pattern: list[str], segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """How specifically a resource path matches (a score per segment) and its path parameters."""
    score: list[int] = []
    params: dict[str, str] = {}
    for index, part in enumerate(pattern):
        greedy = _GREEDY.match(part)
        if greedy:
            if index != len(pattern) - 1 or index >= len(segments):
                return None
            params[greedy.group(1)] = "/".join(segments[index:])
            score.append(GREEDY)
            return tuple(score), params
        if index >= len(segments):
            return None
        single = _PARAM.match(part)
        if single:
            params[single.group(1)] = segments[index]
            score.append(PARAM)
        elif part == segments[index]:
            score.append(LITERAL)
        else:
            return None
    if len(pattern) != len(segments):
        return None
    return tuple(score), params


def match_resource(api: Any, path: str) -> tuple[str, Any, dict[str, str]] | None:
    """The most specific resource for a request path: literal beats {param} beats {proxy+}."""
    segments = split_path(path)
    best: tuple[tuple[int, ...], str, Any, dict[str, str]] | None = None
    for resource_path, resource in resource_paths(api).items():
        matched = match_segments(split_path(resource_path), segments)
        if matched is None:
            continue
        score, params = matched
        if best is None or score > best[0]:
            best = (score, resource_path, resource, params)
    return None if best is None else (best[1], best[2], best[3])
