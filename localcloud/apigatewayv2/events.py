"""The Lambda proxy events an HTTP API sends (payload format 1.0 and 2.0) and how it reads the answers.

From AWS's "Working with AWS Lambda proxy integrations for HTTP APIs":
- 2.0: `version`, `routeKey`, `rawPath`, `rawQueryString`, `cookies`, `headers` (names lower-cased,
  duplicates joined with commas), `queryStringParameters` (duplicates joined with commas),
  `requestContext` {accountId, apiId, domainName, domainPrefix, http {method, path, protocol,
  sourceIp, userAgent}, requestId, routeKey, stage, time, timeEpoch}, `body`, `pathParameters`,
  `isBase64Encoded`, `stageVariables`. Absent parts are left out, as AWS does.
- 1.0: the REST proxy shape plus `version`, with single and multi-value headers and query strings.
- A 2.0 answer may omit `statusCode`: valid JSON without it is the body of a 200 application/json
  answer (a JSON string is the body itself). A 1.0 answer must be the structured form. A malformed
  answer or a function error is 500 {"message":"Internal Server Error"}.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
              "application/x-www-form-urlencoded", "application/graphql", "+json", "+xml")


@dataclass
class HttpRequest:
    """One client request to an HTTP API stage, resolved to its route."""

    api_id: str
    account_id: str
    region: str
    stage: str
    route_key: str
    route_path: str | None  # "/items/{id}", None for $default
    method: str
    path: str  # the path the client used after the API's address, with the stage ("/dev/items/1")
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    request_id: str
    time_epoch_ms: int
    time_text: str  # "12/Mar/2020:19:03:58 +0000"
    path_parameters: dict[str, str] = field(default_factory=dict)
    stage_variables: dict[str, str] = field(default_factory=dict)

    @property
    def domain_name(self) -> str:
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None

    def grouped_headers(self) -> dict[str, list[str]]:
        """Headers by lower-cased name, with those API Gateway adds (x-forwarded-*, x-amzn-trace-id)."""
        grouped: dict[str, list[str]] = {}
        for key, value in self.headers:
            grouped.setdefault(key.lower(), []).append(value)
        port = (self.header("host") or "").rpartition(":")[2]
        grouped.setdefault("x-amzn-trace-id", [f"Root=1-{self.time_epoch_ms // 1000:08x}-"
                                               f"{self.request_id.replace('-', '')[:24]}"])
        grouped.setdefault("x-forwarded-for", [self.source_ip])
        grouped.setdefault("x-forwarded-port", [port if port.isdigit() else "80"])
        grouped.setdefault("x-forwarded-proto", ["http"])
        return grouped

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True)

    def body_field(self) -> tuple[str | None, bool]:
        """(body, isBase64Encoded): text types stay text, anything else is base64."""
        if not self.body:
            return None, False
        media = (self.header("content-type") or "").split(";")[0].strip().lower()
        if not media or any(kind in media if kind.startswith("+") else media.startswith(kind) for kind in TEXT_TYPES):
            try:
                return self.body.decode("utf-8"), False
            except UnicodeDecodeError:
                pass
        return base64.b64encode(self.body).decode(), True


def event_v2(request: HttpRequest) -> dict[str, Any]:
    grouped = request.grouped_headers()
    cookies = [part.strip() for value in grouped.pop("cookie", []) for part in value.split(";") if part.strip()]
    query: dict[str, list[str]] = {}
    for key, value in request.query_pairs():
        query.setdefault(key, []).append(value)
    body, encoded = request.body_field()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": request.route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = {key: ",".join(values) for key, values in grouped.items()}
    if query:
        event["queryStringParameters"] = {key: ",".join(values) for key, values in query.items()}
    event["requestContext"] = {
        "accountId": request.account_id,
        "apiId": request.api_id,
        "domainName": request.domain_name,
        "domainPrefix": request.api_id,
        "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                 "sourceIp": request.source_ip, "userAgent": request.header("user-agent") or ""},
        "requestId": request.request_id,
        "routeKey": request.route_key,
        "stage": request.stage,
        "time": request.time_text,
        "timeEpoch": request.time_epoch_ms,
    }
    if body is not None:
        event["body"] = body
    if request.path_parameters:
        event["pathParameters"] = dict(request.path_parameters)
    event["isBase64Encoded"] = encoded
    if request.stage_variables:
        event["stageVariables"] = dict(request.stage_variables)
    return event


def event_v1(request: HttpRequest) -> dict[str, Any]:
    grouped = request.grouped_headers()
    query: dict[str, list[str]] = {}
    for key, value in request.query_pairs():
        query.setdefault(key, []).append(value)
    body, encoded = request.body_field()
    resource = request.route_path or request.path
    return {
        "version": "1.0",
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": {key: values[-1] for key, values in grouped.items()},
        "multiValueHeaders": grouped,
        "queryStringParameters": {key: values[-1] for key, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "requestContext": {
            "accountId": request.account_id, "apiId": request.api_id,
            "authorizer": {"claims": None, "scopes": None},
            "domainName": request.domain_name, "domainPrefix": request.api_id,
            "extendedRequestId": request.request_id, "httpMethod": request.method,
            "identity": {"accessKey": None, "accountId": None, "caller": None,
                         "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                         "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                         "sourceIp": request.source_ip, "user": None,
                         "userAgent": request.header("user-agent") or "", "userArn": None},
            "path": request.path, "protocol": "HTTP/1.1", "requestId": request.request_id,
            "requestTime": request.time_text, "requestTimeEpoch": request.time_epoch_ms,
            "resourceId": request.route_key, "resourcePath": resource, "stage": request.stage,
        },
        "pathParameters": dict(request.path_parameters) or None,
        "stageVariables": dict(request.stage_variables) or None,
        "body": body,
        "isBase64Encoded": encoded,
    }


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class BadAnswer(Exception):
    """The function's answer is not one API Gateway can map (the client gets 500)."""


def _body_bytes(body: Any, encoded: Any) -> bytes:
    if body is None:
        return b""
    if not isinstance(body, str):
        raise BadAnswer("body is not a string")
    if encoded:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise BadAnswer("body is not base64") from None
    return body.encode()


def _status(value: Any) -> int:
    try:
        status = int(value)
    except (TypeError, ValueError):
        raise BadAnswer("statusCode is not a number") from None
    if not 100 <= status <= 599:
        raise BadAnswer("statusCode out of range")
    return status


def _headers(answer: dict[str, Any]) -> list[tuple[str, str]]:
    headers = answer.get("headers") or {}
    multi = answer.get("multiValueHeaders") or {}
    if not isinstance(headers, dict) or not isinstance(multi, dict):
        raise BadAnswer("headers are not an object")
    pairs = [(str(k), str(v)) for k, v in headers.items() if str(k).lower() not in {m.lower() for m in multi}]
    for key, values in multi.items():
        pairs.extend((str(key), str(v)) for v in (values if isinstance(values, list) else [values]))
    if not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.append(("Content-Type", "application/json"))
    return pairs


def response_v2(payload: bytes) -> HttpResponse:
    try:
        answer = json.loads(payload or b"null")
    except ValueError:
        raise BadAnswer("the answer is not JSON") from None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        body = answer.encode() if isinstance(answer, str) else payload
        return HttpResponse(200, [("Content-Type", "application/json")], body)
    pairs = _headers({"headers": answer.get("headers")})
    cookies = answer.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadAnswer("cookies is not a list")
    pairs.extend(("Set-Cookie", str(cookie)) for cookie in cookies)
    return HttpResponse(_status(answer["statusCode"]), pairs,
                        _body_bytes(answer.get("body"), answer.get("isBase64Encoded")))


def response_v1(payload: bytes) -> HttpResponse:
    try:
        answer = json.loads(payload or b"null")
    except ValueError:
        raise BadAnswer("the answer is not JSON") from None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        raise BadAnswer("a 1.0 answer needs statusCode")
    return HttpResponse(_status(answer["statusCode"]), _headers(answer),
                        _body_bytes(answer.get("body"), answer.get("isBase64Encoded")))
