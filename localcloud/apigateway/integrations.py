"""API Gateway integrations: AWS_PROXY and AWS (Lambda), MOCK, HTTP and HTTP_PROXY.

- AWS_PROXY: the REST (v1) proxy event; the function's answer must be a JSON object with only
  statusCode/headers/multiValueHeaders/body/isBase64Encoded, else 502 "Internal server error".
- AWS (Lambda, non-proxy): request template chosen by the request's Content-Type (none means
  application/json) and passthroughBehavior; the integration response whose selectionPattern
  matches the Lambda errorMessage is chosen, else the default one (a function error with no
  matching pattern is answered with the default response and the error body, as AWS does). A
  rendered request that is not JSON (a malformed or too deeply nested body through the passthrough
  template) is refused with 400 "Could not parse request body into json", as AWS does.
- an event over Lambda's 6 MB synchronous payload limit (the body plus the event around it): 413
  {"message": "Request Too Long"}, as API Gateway answers for either Lambda integration.
- MOCK: the request template's `statusCode` is matched against the selection patterns.
- HTTP / HTTP_PROXY: only to loopback (127.0.0.0/8, localhost); other hosts get 502 with a message,
  because the local cloud must not reach the network.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from localcloud.apigateway import vtl
from localcloud.apigateway.model import GatewayError, GatewayResponse, MethodRequest
from localcloud.apigateway.security import lambda_arn_from_uri
from localcloud.apigateway.vtl import TemplateError
from localcloud.executors import JSONPayload, LambdaInvokeError

Invoke = Callable[[str, bytes], Any]
PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
               "proxy-authorization", "proxy-authenticate", "content-length"}
DEFAULT_HTTP_TIMEOUT_S = 29.0


def internal_error() -> GatewayError:
    return GatewayError(500, "Internal server error", "InternalServerErrorException")


def bad_gateway() -> GatewayError:
    return GatewayError(502, "Internal server error", "BadGatewayException")


def is_binary(request: MethodRequest) -> bool:
    """A body is base64-encoded when its type is a binary media type of the API or not UTF-8."""
    types = [t.lower() for t in (request.api.binaryMediaTypes or [])]
    media = request.content_type
    if any(t == media or t == "*/*" or (t.endswith("/*") and media.startswith(t[:-1])) for t in types):
        return bool(request.body)
    try:
        request.body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# --------------------------------------------------------------------------------------------------
# AWS_PROXY


def proxy_event(request: MethodRequest) -> dict[str, Any]:
    binary = is_binary(request)
    body = base64.b64encode(request.body).decode() if binary else (request.body.decode() if request.body else None)
    context = request.context()
    return {
        "resource": request.resource_path,
        "path": request.path,
        "httpMethod": request.http_method,
        "headers": request.single_headers() or None,
        "multiValueHeaders": request.multi_headers() or None,
        "queryStringParameters": request.single_query() or None,
        "multiValueQueryStringParameters": request.multi_query() or None,
        "pathParameters": dict(request.path_params) or None,
        "stageVariables": request.stage_variables or None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": binary,
    }


def proxy_response(payload: Any) -> GatewayResponse:
    """Map a Lambda proxy result to the HTTP answer, or 502 when it is malformed."""
    if not isinstance(payload, dict) or set(payload) - PROXY_KEYS:
        raise bad_gateway()
    try:
        status = int(payload.get("statusCode") or 200)
    except (TypeError, ValueError):
        raise bad_gateway() from None
    body = payload.get("body")
    headers = payload.get("headers") or {}
    multi = payload.get("multiValueHeaders") or {}
    if not (100 <= status <= 599) or not isinstance(headers, dict) or not isinstance(multi, dict):
        raise bad_gateway()
    if body is not None and not isinstance(body, str):
        raise bad_gateway()
    raw = (body or "").encode()
    if payload.get("isBase64Encoded") and body:
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise bad_gateway() from None
    pairs = [(str(k), str(v)) for k, v in headers.items() if str(k).lower() not in multi and k not in multi]
    for key, values in multi.items():
        pairs.extend((str(key), str(v)) for v in (values if isinstance(values, list) else [values]))
    if not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.append(("Content-Type", "application/json"))
    return GatewayResponse(status, pairs, raw)


def invoke_lambda(request: MethodRequest, invoke: Invoke, payload: bytes) -> Any:
    function_arn = lambda_arn_from_uri(request.method.method_integration.uri)
    if function_arn is None:
        raise internal_error()
    try:
        return invoke(function_arn, payload)
    except LambdaInvokeError as error:
        if error.code == "RequestTooLargeException":  # the event over Lambda's 6 MB: AWS answers 413
            raise GatewayError(413, "Request Too Long", "RequestTooLargeException") from None
        raise internal_error() from None
    except Exception:  # refused by Lambda (unknown function, bad payload...): API Gateway answers 500
        raise internal_error() from None


def aws_proxy(request: MethodRequest, invoke: Invoke) -> GatewayResponse:
    # The proxy event is built here: marked as valid JSON, Lambda does not parse it again to check it.
    outcome = invoke_lambda(request, invoke, JSONPayload.dumps(proxy_event(request)))
    if outcome.function_error:
        raise bad_gateway()
    try:
        payload = json.loads(outcome.payload or b"null")
    except ValueError:
        raise bad_gateway() from None
    return proxy_response(payload)


# --------------------------------------------------------------------------------------------------
# Templates and integration responses (AWS, MOCK, HTTP)


def render(request: MethodRequest, template: str, body: str) -> str:
    return vtl.render(template, body=body, params=request.template_params(), context=request.context(),
                      stage_variables=request.stage_variables)


def integration_request_body(request: MethodRequest) -> str:
    """The integration request body: the template for the content type, or the passthrough rule."""
    integration = request.method.method_integration
    templates = integration.request_templates or {}
    template = templates.get(request.content_type)
    behavior = (integration.passthrough_behaviour or "WHEN_NO_MATCH").upper()
    if request.content_type not in templates:
        if behavior == "NEVER" or (behavior == "WHEN_NO_TEMPLATES" and templates):
            raise GatewayError(415, "Unsupported Media Type", "UnsupportedMediaTypeException")
        return request.body_text()
    if not template:
        return request.body_text()
    try:
        return render(request, template, request.body_text())
    except TemplateError:
        raise internal_error() from None


def select_response(integration: Any, selector: str | None) -> Any | None:
    """The integration response whose selectionPattern matches, else the default one."""
    responses = list((integration.integration_responses or {}).values())
    if selector is not None:
        for response in responses:
            pattern = response.selection_pattern
            if pattern and _full_match(pattern, selector):
                return response
    return next((r for r in responses if not r.selection_pattern), None)


def _full_match(pattern: str, text: str) -> bool:
    try:
        return re.fullmatch(pattern, text, re.DOTALL) is not None
    except re.error:
        return False


def integration_response(request: MethodRequest, chosen: Any, body: str,
                         headers: dict[str, str] | None = None) -> GatewayResponse:
    """Apply an integration response's parameters and template to the integration's answer."""
    if chosen is None:
        raise internal_error()  # AWS: "No match for output mapping and no default output mapping"
    templates = chosen.response_templates or {}
    accept = (request.header("Accept") or "").split(",")[0].split(";")[0].strip().lower()
    content_type = accept if accept in templates else "application/json" if "application/json" in templates \
        else next(iter(templates), "application/json")
    template = templates.get(content_type)
    if template:
        try:
            body = render(request, template, body)
        except TemplateError:
            raise internal_error() from None
    pairs = [("Content-Type", content_type)]
    for name, source in (chosen.response_parameters or {}).items():
        if not name.startswith("method.response.header."):
            continue
        value = _response_parameter(str(source), body, headers or {})
        if value is not None:
            header = name.removeprefix("method.response.header.")
            pairs = [(k, v) for k, v in pairs if k.lower() != header.lower()] + [(header, value)]
    return GatewayResponse(int(chosen.status_code), pairs, body.encode())


def _response_parameter(source: str, body: str, headers: dict[str, str]) -> str | None:
    if len(source) >= 2 and source.startswith("'") and source.endswith("'"):
        return source[1:-1]
    if source.startswith("integration.response.header."):
        wanted = source.removeprefix("integration.response.header.").lower()
        return next((v for k, v in headers.items() if k.lower() == wanted), None)
    if source.startswith("integration.response.body"):
        path = "$" + source.removeprefix("integration.response.body")
        try:
            return vtl.InputVariable(body, {}).json(path).strip('"')
        except TemplateError:
            return None
    return None


def aws_lambda(request: MethodRequest, invoke: Invoke) -> GatewayResponse:
    """Non-proxy Lambda integration."""
    text = integration_request_body(request)
    if text.strip():
        try:
            json.loads(text)
        except (ValueError, RecursionError) as error:  # AWS refuses it before invoking the function
            raise GatewayError(400, f"Could not parse request body into json: {str(error)[:200]}",
                               "BadRequestException") from None
    outcome = invoke_lambda(request, invoke, text.encode() if text.strip() else b"{}")
    body = (outcome.payload or b"").decode("utf-8", "replace")
    selector = None
    if outcome.function_error:
        try:
            error = json.loads(body)
            selector = str(error.get("errorMessage", "")) if isinstance(error, dict) else ""
        except ValueError:
            selector = ""
    chosen = select_response(request.method.method_integration, selector)
    return integration_response(request, chosen, body)


def mock(request: MethodRequest) -> GatewayResponse:
    text = integration_request_body(request)
    try:
        status = str(int(json.loads(text).get("statusCode", 200))) if text.strip() else "200"
    except (ValueError, AttributeError, TypeError):
        raise internal_error() from None
    chosen = select_response(request.method.method_integration, status)
    return integration_response(request, chosen, "")


# --------------------------------------------------------------------------------------------------
# HTTP and HTTP_PROXY (loopback only)


def is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


def integration_url(request: MethodRequest) -> str:
    """The URI with {placeholders} taken from the integration's path parameters or the method's."""
    integration = request.method.method_integration
    mapped = {}
    for name, source in (integration.request_parameters or {}).items():
        if name.startswith("integration.request.path."):
            source = str(source)
            key = source.removeprefix("method.request.path.")
            mapped[name.removeprefix("integration.request.path.")] = (
                source[1:-1] if source.startswith("'") else request.path_params.get(key, ""))
    values = {**request.path_params, **mapped}
    return re.sub(r"\{([^{}+]+)\+?\}", lambda m: values.get(m.group(1), m.group(0)), integration.uri or "")


def http_call(request: MethodRequest, body: bytes, proxy: bool) -> tuple[int, dict[str, str], list[tuple[str, str]], bytes]:
    integration = request.method.method_integration
    url = urlsplit(integration_url(request))
    if url.scheme not in ("http", "https") or not is_local_host(url.hostname):
        raise GatewayError(502, f"HTTP integrations may only call loopback addresses locally, not {url.hostname!r}",
                           "BadGatewayException")
    path = url.path or "/"
    query = request.query if proxy else []
    if url.query or query:
        path += "?" + "&".join(filter(None, [url.query, urlencode(query)]))
    method = request.http_method if proxy or not integration.http_method or integration.http_method == "ANY" \
        else integration.http_method
    headers = {k: v for k, v in request.headers if k.lower() not in HOP_HEADERS} if proxy else \
        {"Content-Type": "application/json"}
    timeout = (int(integration.timeout_in_millis) / 1000.0) if integration.timeout_in_millis else DEFAULT_HTTP_TIMEOUT_S
    connection_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        pairs = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS]
        return answer.status, dict(pairs), pairs, data
    except TimeoutError:
        raise GatewayError(504, "Endpoint request timed out", "IntegrationTimeoutException") from None
    except OSError:
        raise internal_error() from None
    finally:
        connection.close()


def http_proxy(request: MethodRequest) -> GatewayResponse:
    status, _headers, pairs, data = http_call(request, request.body, proxy=True)
    return GatewayResponse(status, pairs, data)


def http_integration(request: MethodRequest) -> GatewayResponse:
    text = integration_request_body(request)
    status, headers, _pairs, data = http_call(request, text.encode(), proxy=False)
    chosen = select_response(request.method.method_integration, str(status))
    return integration_response(request, chosen, data.decode("utf-8", "replace"), headers)


def run_integration(request: MethodRequest, invoke: Invoke) -> GatewayResponse:
    integration = request.method.method_integration
    if integration is None:
        raise internal_error()
    kind = (integration.integration_type or "").upper()
    if kind == "AWS_PROXY":
        return aws_proxy(request, invoke)
    if kind == "AWS" and lambda_arn_from_uri(integration.uri):
        return aws_lambda(request, invoke)
    if kind == "MOCK":
        return mock(request)
    if kind == "HTTP_PROXY":
        return http_proxy(request)
    if kind == "HTTP":
        return http_integration(request)
    raise GatewayError(500, f"Integration type {kind} with URI {integration.uri} is not supported locally",
                       "InternalServerErrorException")
