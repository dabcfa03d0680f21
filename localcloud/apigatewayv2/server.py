"""API Gateway HTTP APIs (v2) served locally: moto stores them, this executor answers their stages.

An HTTP API answers at its `ApiEndpoint`, which `GetApi` / `CreateApi` return as
`{endpoint}/_localcloud/httpapi/{api_id}` (AWS: `https://{api_id}.execute-api.{region}.amazonaws.com`;
locally there is no DNS for such names). As on AWS, a stage S answers at `ApiEndpoint/S/path` and the
`$default` stage at `ApiEndpoint/path` (see routing.py for the stage and route choice).

What runs (AWS's behaviour for HTTP APIs):
- AWS_PROXY integrations run the function through the local cloud's Lambda runtime with the payload
  format 1.0 or 2.0 event (events.py). API Gateway may invoke the function only when the function's
  resource policy lets `apigateway.amazonaws.com` do it for this source ARN
  (`arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}{route path}`, `.../{stage}/$default`
  for the $default route), or when the integration has a CredentialsArn; otherwise, like a function
  error or a malformed answer, the client gets 500 {"message":"Internal Server Error"}.
- HTTP_PROXY integrations call loopback URLs only (the local cloud must not reach the network): the
  `$default` route appends the request path, `{name}` placeholders take path parameters.
- No stage, no deployment, no route or a route without integration: 404 {"message":"Not Found"}.
- CORS (cors.py): with a CorsConfiguration, preflight requests are answered by the gateway and the
  configured headers replace the integration's.
Not modelled, and refused with a 500 whose message says so: authorizers (JWT, Lambda, IAM) on a
route, parameter mapping on an integration, WebSocket APIs, AWS service integrations, VPC links.
Not modelled and not refused: route throttling settings, access logs, custom domains; the 30 s
integration timeout is the function's own.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.apigateway.integrations import HOP_HEADERS, is_local_host
from localcloud.apigateway.security import lambda_arn_from_uri
from localcloud.apigatewayv2 import control, cors, events, routing
from localcloud.apigatewayv2.events import BadAnswer, HttpRequest, HttpResponse
from localcloud.executors import CloudContext, JSONPayload, LambdaInvokeError, WSGIApp
from localcloud.notifications.executor import function_policy, policy_allows

log = logging.getLogger("localcloud.apigatewayv2")

PREFIX = "/_localcloud/httpapi/"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
_PATH = re.compile(r"^/_localcloud/httpapi/(?P<api>[^/]+)(?P<rest>/.*)?$", re.DOTALL)
SERVICE_PRINCIPAL = "apigateway.amazonaws.com"


class Refused(Exception):
    """Stops a request with API Gateway's JSON answer {"message": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def not_found() -> Refused:
    return Refused(404, "Not Found")


def internal_error() -> Refused:
    return Refused(500, "Internal Server Error")


class HttpApiExecutor:
    """Serves moto's HTTP APIs and the control-plane calls moto lacks (control.py)."""

    name = "apigatewayv2"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self._undo: list[Callable[[], None]] = []

    def start(self, cloud: CloudContext) -> None:
        if self._undo:
            return
        self.cloud = cloud
        endpoint = cloud.endpoint
        self._undo = [
            motoapi.replace("apigatewayv2.api.to_json", control.api_to_json(lambda: endpoint)),
            motoapi.replace("apigatewayv2.stage.to_json", control.stage_to_json),
            motoapi.replace("apigatewayv2.response.create_api", control.quick_create),
            motoapi.replace("moto_server.dispatch", control.dispatcher),
        ]

    def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        self.cloud = None

    def route(self, request: Request) -> WSGIApp | None:
        return self._serve if request.path.startswith(PREFIX) else None

    # ----------------------------------------------------------------------------------------------

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        try:
            response = self.handle(Request(environ), request_id)
        except Refused as refused:
            response = HttpResponse(refused.status, [("Content-Type", "application/json")],
                                    json.dumps({"message": refused.message}).encode())
        except Exception:  # our own bug must still look like API Gateway, not a crash
            log.exception("apigatewayv2: request %s failed", request_id)
            response = HttpResponse(500, [("Content-Type", "application/json")],
                                    b'{"message":"Internal Server Error"}')
        headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "transfer-encoding",
                                                                              "connection")]
        headers += [("Content-Length", str(len(response.body))), ("apigw-requestid", request_id)]
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        start_response(f"{response.status} {reason}", headers)
        return [response.body]

    def handle(self, http: Request, request_id: str) -> HttpResponse:
        matched = _PATH.match(http.path)
        if matched is None:
            raise not_found()
        api = control.find_api(matched["api"])
        if api is None:
            raise not_found()
        if api.protocol_type != "HTTP":
            raise Refused(500, f"The local cloud serves HTTP APIs only, not {api.protocol_type} API {api.api_id}")
        if api.disable_execute_api_endpoint:
            raise Refused(403, "Forbidden")
        method = http.method.upper()
        lower_headers = {k.lower(): v for k, v in http.headers.items()}
        answered = cors.preflight(api, method, lower_headers)
        if answered is not None:
            return answered
        answer = self.run_route(http, api, method, matched["rest"] or "/", request_id)
        return cors.decorate(api, lower_headers.get("origin"), answer)

    def run_route(self, http: Request, api: Any, method: str, path: str, request_id: str) -> HttpResponse:
        """Stage, deployment, route and integration for `method path`, then the integration's answer."""
        split = routing.split_stage(path, api.stages)
        if split is None:
            raise not_found()
        stage_name, stage_path = split
        stage = api.stages[stage_name]
        deployed = control.served(api, stage)
        if deployed is None:
            raise not_found()
        routes, integrations = deployed
        chosen = routing.select_route(routes, method, stage_path)
        if chosen is None:
            raise not_found()
        route = chosen.route
        if (route.authorization_type or "NONE").upper() != "NONE":
            raise Refused(500, f"The local cloud does not run HTTP API authorizers: route {chosen.route_key} has "
                               f"authorizationType {route.authorization_type}")
        integration = integrations.get(str(route.target or "").removeprefix("integrations/"))
        if integration is None:
            raise not_found()
        body = read_body(http)
        now = datetime.now(timezone.utc)
        request = HttpRequest(
            api_id=api.api_id, account_id=api.backend.account_id, region=api.backend.region_name,
            stage=stage_name, route_key=chosen.route_key, route_path=chosen.route_path, method=method,
            path=path, raw_query=http.query_string.decode("latin-1"), headers=list(http.headers.items()),
            body=body, source_ip=http.remote_addr or "127.0.0.1", request_id=request_id,
            time_epoch_ms=int(now.timestamp() * 1000), time_text=now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            path_parameters=chosen.path_parameters, stage_variables=dict(stage.stage_variables or {}),
        )
        if integration.request_parameters or integration.response_parameters:
            raise Refused(500, f"The local cloud does not apply parameter mapping (RequestParameters / "
                               f"ResponseParameters) of HTTP API integration {integration.id}")
        kind = (integration.integration_type or "").upper()
        if kind == "AWS_PROXY" and not integration.integration_subtype:
            return self.run_lambda(request, integration)
        if kind == "HTTP_PROXY" and not integration.connection_id:
            return http_proxy(request, integration, stage_path)
        raise Refused(500, f"The local cloud does not run {kind} integrations "
                           f"{integration.integration_subtype or integration.integration_uri} of HTTP APIs")

    def run_lambda(self, request: HttpRequest, integration: Any) -> HttpResponse:
        uri = integration.integration_uri or ""
        function_arn = lambda_arn_from_uri(uri) or (uri if uri.startswith("arn:") and ":lambda:" in uri else None)
        if function_arn is None:
            raise internal_error()
        account = function_arn.split(":")[4] or request.account_id
        if not integration.credentials_arn:
            source_arn = (f"arn:aws:execute-api:{request.region}:{request.account_id}:{request.api_id}/"
                          f"{request.stage}/" + (f"{request.method}{request.route_path}" if request.route_path
                                                 else "$default"))
            if not policy_allows(function_policy(function_arn, account), SERVICE_PRINCIPAL, source_arn,
                                 request.account_id):
                log.warning("apigatewayv2: %s may not invoke %s (no lambda:InvokeFunction permission for %s)",
                            source_arn, function_arn, SERVICE_PRINCIPAL)
                raise internal_error()
        version = str(integration.payload_format_version or "1.0")
        event = events.event_v2(request) if version == "2.0" else events.event_v1(request)
        if self.cloud is None:
            raise RuntimeError("the apigatewayv2 executor is not started")
        try:
            outcome = self.cloud.invoker().invoke(function_arn, JSONPayload.dumps(event),
                                                  invocation_type="RequestResponse", account_id=account,
                                                  region=function_arn.split(":")[3] or request.region)
        except LambdaInvokeError as error:
            log.warning("apigatewayv2: invoking %s was refused: %s", function_arn, error)
            raise internal_error() from None
        if outcome.function_error:
            raise internal_error()
        try:
            return events.response_v2(outcome.payload) if version == "2.0" else events.response_v1(outcome.payload)
        except BadAnswer as error:
            log.warning("apigatewayv2: %s answered what API Gateway cannot map: %s", function_arn, error)
            raise internal_error() from None


def read_body(http: Request) -> bytes:
    if http.content_length is not None and http.content_length > MAX_PAYLOAD_BYTES:
        raise Refused(413, "Request Entity Too Large")
    data = http.stream.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise Refused(413, "Request Entity Too Large")
    return data


def http_proxy(request: HttpRequest, integration: Any, stage_path: str) -> HttpResponse:
    """Forward the request to a loopback URL and answer what it answers."""
    uri = re.sub(r"\{([^{}+]+)\+?\}", lambda m: quote(request.path_parameters.get(m.group(1), m.group(0)), safe="/"),
                 integration.integration_uri or "")
    if request.route_path is None:
        uri = uri.rstrip("/") + stage_path
    url = urlsplit(uri)
    if url.scheme not in ("http", "https") or not is_local_host(url.hostname):
        raise Refused(500, f"HTTP integrations may only call loopback addresses locally, not {url.hostname!r}")
    target = (url.path or "/") + (f"?{url.query}&{request.raw_query}" if url.query and request.raw_query
                                  else f"?{url.query or request.raw_query}" if url.query or request.raw_query else "")
    method = request.method if (integration.integration_method or "ANY").upper() == "ANY" \
        else integration.integration_method.upper()
    headers = {k: v for k, v in request.headers if k.lower() not in HOP_HEADERS}
    connection_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(url.hostname, url.port, timeout=(integration.timeout_in_millis or 30000) / 1000)
    try:
        connection.request(method, target, body=request.body or None, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        return HttpResponse(answer.status, [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS],
                            data)
    except TimeoutError:
        raise Refused(503, "Service Unavailable") from None
    except OSError:
        raise internal_error() from None
    finally:
        connection.close()


def make_executor() -> HttpApiExecutor:
    return HttpApiExecutor()
