"""API Gateway REST APIs served locally: moto stores them, this executor answers their stages.

Every deployed stage answers at `{endpoint}/restapis/{api_id}/{stage}/_user_request_/{path}` and at
host `{api_id}.execute-api.localhost:{port}/{stage}/{path}`. The API is read from moto's in-process
backend on every request, so put_method / put_integration / create_deployment / update_stage take
effect at once. moto's Deployment keeps no snapshot of the resources, so a stage serves the API's
*current* resources and methods (AWS serves what was deployed; redeploying is still needed there).

Pipeline, in AWS's order: resource match (literal > {param} > {proxy+}; unknown path or method ->
403 Missing Authentication Token), payload limit (10 MB -> 413), authorization (authorizers / IAM,
see apigateway_security), API key + usage plan, throttling (429), request validation (400), then
the integration (apigateway_integrations) with VTL templates (apigateway_vtl).

The most specific resource is chosen first, then its method (or ANY): a method it lacks gives 403
even when a {proxy+} resource has it. moto 5.2.5 drops identityValidationExpression on
create_authorizer (a typo in its backend); update_authorizer sets it and is honoured here.

Local differences: an unknown API id answers 404 {"message": "Not Found"} (AWS fails at DNS); an
unknown stage 403 {"message": "Forbidden"} as AWS; AWS_IAM is accepted without signature checks;
HTTP integrations reach loopback only; quotas of usage plans are not counted.
Other executors do not call this one; it uses `cloud.invoker()` to run Lambda functions.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request

from localcloud import trace
from localcloud.apigateway import integrations
from localcloud.apigateway import security
from localcloud.apigateway.model import (
    GatewayError, GatewayResponse, MethodRequest, gateway_error, match_resource, missing_token,
)
from localcloud.executors import CloudContext, WSGIApp

log = logging.getLogger("localcloud.apigateway")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
_USER_REQUEST = re.compile(r"^/restapis/(?P<api>[^/]+)/(?P<stage>[^/]+)/_user_request_(?P<path>/.*)?$", re.DOTALL)
_EXECUTE_API_HOST = re.compile(r"^(?P<api>[a-z0-9]+)\.execute-api\.localhost(:\d+)?$", re.IGNORECASE)



def parse_target(request: Request) -> tuple[str, str, str] | None:
    """(api id, stage, path) when the request is for a deployed API, else None (moto's)."""
    matched = _USER_REQUEST.match(request.path)
    if matched:
        return matched["api"], matched["stage"], matched["path"] or "/"
    host = _EXECUTE_API_HOST.match(request.host or "")
    if host:
        parts = request.path.lstrip("/").split("/", 1)
        if parts[0]:
            return host["api"], parts[0], "/" + (parts[1] if len(parts) > 1 else "")
    return None


def find_api(api_id: str) -> tuple[Any, Any] | None:
    """(backend, RestAPI) in whichever account and region owns the id."""
    from localcloud.motoapi import apigateway_backends

    for _account, regions in list(apigateway_backends.items()):
        for _region, backend in list(regions.items()):
            api = backend.apis.get(api_id)
            if api is not None:
                return backend, api
    return None


def read_body(request: Request) -> bytes:
    """The body, refusing more than 10 MB (413) before reading it when the length is declared."""
    if request.content_length is not None and request.content_length > MAX_PAYLOAD_BYTES:
        raise GatewayError(413, "Request Too Long", "RequestTooLargeException")
    data = request.stream.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise GatewayError(413, "Request Too Long", "RequestTooLargeException")
    return data


class APIGatewayExecutor:
    """Serves moto's REST APIs: route() claims execute-api requests, the rest go to moto."""

    name = "apigateway"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.throttler = security.Throttler()
        self.authorizer_cache = security.AuthorizerCache()

    def start(self, cloud: CloudContext) -> None:
        self.cloud = cloud

    def stop(self) -> None:
        self.cloud = None

    def route(self, request: Request) -> WSGIApp | None:
        target = parse_target(request)
        if target is None:
            return None
        return lambda environ, start_response: self._serve(target, environ, start_response)

    # ----------------------------------------------------------------------------------------------

    def _serve(self, target: tuple[str, str, str], environ: dict[str, Any],
               start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        cpu = time.thread_time()
        with trace.bind(request_id), trace.span("apigateway", "request", path=target[2]) as traced:
            try:
                response = self.handle(Request(environ), *target, request_id=request_id)
            except GatewayError as error:
                response = error.response
            except Exception:  # our own bug must still look like API Gateway, not a crash
                log.exception("apigateway: request %s failed", request_id)
                response = gateway_error(500, "Internal server error")
            traced["status"], traced["cpu_ms"] = response.status, round(1000 * (time.thread_time() - cpu), 3)
        headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "transfer-encoding")]
        headers += [("Content-Length", str(len(response.body))), ("x-amzn-RequestId", request_id)]
        reason = _reason(response.status)
        start_response(f"{response.status} {reason}", headers)
        return [response.body]

    def handle(self, http: Request, api_id: str, stage_name: str, path: str, request_id: str) -> GatewayResponse:
        request = self.resolve(http, api_id, stage_name, path, request_id)
        with trace.span("apigateway", "authorization"):
            security.check_authorization(request, self.invoke, self.authorizer_cache)
        plan = security.check_api_key(request)
        security.check_throttle(self.throttler, request, plan)
        security.validate_request(request)
        with trace.span("apigateway", "integration"):
            return integrations.run_integration(request, self.invoke)

    def resolve(self, http: Request, api_id: str, stage_name: str, path: str, request_id: str) -> MethodRequest:
        """The API, stage, resource and method a request addresses (AWS's errors when there is none)."""
        found = find_api(api_id)
        if found is None:
            raise GatewayError(404, "Not Found", "NotFoundException")
        backend, api = found
        stage = api.stages.get(stage_name)
        if stage is None:
            raise GatewayError(403, "Forbidden", "ForbiddenException")
        matched = match_resource(api, path)
        if matched is None:
            raise missing_token()
        resource_path, resource, path_params = matched
        http_method = http.method.upper()
        method = resource.resource_methods.get(http_method) or resource.resource_methods.get("ANY")
        if method is None:
            raise missing_token()
        now = datetime.now(timezone.utc)
        return MethodRequest(
            api=api, backend=backend, stage=stage, resource=resource, method=method,
            resource_path=resource_path, path=path, http_method=http_method, path_params=path_params,
            query=list(http.args.items(multi=True)), headers=list(http.headers.items()), body=read_body(http),
            source_ip=http.remote_addr or "127.0.0.1",
            domain_name=(http.host or "").split(":")[0], request_id=request_id,
            request_time=now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            request_time_epoch=int(now.timestamp() * 1000),
        )

    def invoke(self, function_arn: str, payload: bytes) -> Any:
        """Run a function through the Lambda runtime executor (synchronously)."""
        if self.cloud is None:
            raise RuntimeError("the apigateway executor is not started")
        account, region = _arn_account_region(function_arn)
        return self.cloud.invoker().invoke(function_arn, payload, invocation_type="RequestResponse",
                                           account_id=account, region=region)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _arn_account_region(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    if len(parts) >= 5 and parts[0] == "arn":
        return parts[4] or "123456789012", parts[3] or "us-east-1"
    return "123456789012", "us-east-1"


def make_executor() -> APIGatewayExecutor:
    return APIGatewayExecutor()
