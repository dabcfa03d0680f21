"""The API Gateway executor in-process: APIs built with boto3 against moto's in-process backend
(mock_aws), requests sent with werkzeug's test Client to the executor's WSGI app, and Lambda
functions replaced by a fake Invoker that records what it was given."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from moto import mock_aws
from werkzeug.test import Client
from werkzeug.wrappers import Request

from localcloud.apigateway import server as apigateway
from localcloud.apigateway.vtl import PASSTHROUGH_TEMPLATE
from localcloud.executors import CloudContext, InvokeResult

ACCOUNT, REGION = "123456789012", "us-east-1"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def lambda_uri(name: str) -> str:
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn(name)}/invocations"


Handler = Callable[[dict[str, Any]], Any]


@dataclass
class FakeInvoker:
    """Runs Python callables by function name; an exception becomes a Lambda function error."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    payload_types: list[type] = field(default_factory=list)
    name: str = "lambda-runtime"

    def invoke(self, function: str, payload: bytes, **_options: Any) -> InvokeResult:
        name = function.rsplit(":", 1)[-1]
        self.payload_types.append(type(payload))
        event = json.loads(payload)
        self.calls.append((name, event))
        try:
            result = self.handlers[name](event)
        except Exception as error:  # noqa: BLE001 - mirrors Lambda's error object
            body = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
            return InvokeResult(200, json.dumps(body).encode(), function_error="Unhandled")
        return InvokeResult(200, json.dumps(result).encode())

    def events(self, name: str) -> list[Any]:
        return [event for called, event in self.calls if called == name]


class Gateway:
    """An API under construction plus a client that calls its `dev` stage."""

    def __init__(self, client: Any, http: Client, invoker: FakeInvoker):
        self.apigw, self.http, self.invoker = client, http, invoker
        self.api_id = client.create_rest_api(name="test")["id"]
        self.root_id = client.get_resources(restApiId=self.api_id)["items"][0]["id"]
        self._ids: dict[str, str] = {"/": self.root_id}

    def resource(self, path: str) -> str:
        """Create (once) every resource along a path and return the last one's id."""
        parent, built = self.root_id, ""
        for part in [p for p in path.split("/") if p]:
            built += "/" + part
            if built not in self._ids:
                self._ids[built] = self.apigw.create_resource(restApiId=self.api_id, parentId=parent,
                                                              pathPart=part)["id"]
            parent = self._ids[built]
        return parent

    def method(self, path: str, verb: str, integration: dict[str, Any], responses: list[dict[str, Any]] = (),
               **method: Any) -> str:
        resource_id = self.resource(path)
        self.apigw.put_method(restApiId=self.api_id, resourceId=resource_id, httpMethod=verb,
                              authorizationType=method.pop("authorizationType", "NONE"), **method)
        self.apigw.put_integration(restApiId=self.api_id, resourceId=resource_id, httpMethod=verb, **integration)
        for response in responses:
            self.apigw.put_integration_response(restApiId=self.api_id, resourceId=resource_id, httpMethod=verb,
                                                **response)
        return resource_id

    def proxy(self, path: str, verb: str, function: str, handler: Handler, **method: Any) -> str:
        self.invoker.handlers[function] = handler
        return self.method(path, verb, {"type": "AWS_PROXY", "integrationHttpMethod": "POST",
                                        "uri": lambda_uri(function)}, **method)

    def deploy(self, stage: str = "dev", **variables: str) -> None:
        self.apigw.create_deployment(restApiId=self.api_id, stageName=stage, variables=variables)

    def url(self, path: str, stage: str = "dev") -> str:
        return f"/restapis/{self.api_id}/{stage}/_user_request_{path}"

    def call(self, verb: str, path: str, stage: str = "dev", **kwargs: Any) -> Any:
        return self.http.open(self.url(path, stage), method=verb, **kwargs)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # boto3 must talk to the in-process moto
    with mock_aws():
        invoker = FakeInvoker()
        executor = apigateway.make_executor()
        executor.start(CloudContext("http://127.0.0.1:1", 1, Path("/tmp"), {"lambda-runtime": invoker}))

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            claimed = executor.route(Request(environ))
            assert claimed is not None, "the executor must claim every request in these tests"
            return claimed(environ, start_response)

        yield Gateway(boto3.client("apigateway", region_name=REGION), Client(app), invoker)
        executor.stop()


def echo(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event)}


def message(response: Any) -> Any:
    return json.loads(response.data)["message"]


# --------------------------------------------------------------------------------------------------
# Routing and resource matching


def test_route_claims_only_execute_api_requests():
    executor = apigateway.make_executor()
    from werkzeug.test import EnvironBuilder

    def request(path: str, host: str = "127.0.0.1:4566") -> Request:
        return Request(EnvironBuilder(path=path, headers={"Host": host}).get_environ())

    assert executor.route(request("/restapis/abc/dev/_user_request_/x")) is not None
    assert executor.route(request("/dev/x", "abc123.execute-api.localhost:4566")) is not None
    assert executor.route(request("/restapis/abc/resources")) is None  # moto's control plane
    assert executor.route(request("/2015-03-31/functions")) is None


def test_both_url_forms_reach_the_stage(gateway: Gateway):
    gateway.proxy("/main", "GET", "fn", echo)
    gateway.deploy()
    assert gateway.call("GET", "/main").status_code == 200
    via_host = gateway.http.get("/dev/main", headers={"Host": f"{gateway.api_id}.execute-api.localhost:4566"})
    assert via_host.status_code == 200
    assert json.loads(via_host.data)["requestContext"]["domainName"] == f"{gateway.api_id}.execute-api.localhost"


def test_unknown_api_stage_resource_and_method(gateway: Gateway):
    gateway.proxy("/main", "GET", "fn", echo)
    gateway.deploy()
    assert gateway.http.get("/restapis/nosuchapi/dev/_user_request_/main").status_code == 404
    unknown_stage = gateway.call("GET", "/main", stage="prod")
    assert (unknown_stage.status_code, message(unknown_stage)) == (403, "Forbidden")
    for verb, path in (("GET", "/other"), ("DELETE", "/main"), ("GET", "/")):
        answer = gateway.call(verb, path)
        assert answer.status_code == 403
        assert message(answer) == "Missing Authentication Token"
        assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_most_specific_resource_wins_and_path_parameters(gateway: Gateway):
    def named(name: str) -> Handler:
        return lambda event: {"statusCode": 200, "body": json.dumps({"by": name, "params": event["pathParameters"],
                                                                      "resource": event["resource"]})}

    gateway.proxy("/items/special", "GET", "literal", named("literal"))
    gateway.proxy("/items/{id}", "GET", "param", named("param"))
    gateway.proxy("/{proxy+}", "ANY", "greedy", named("greedy"))
    gateway.deploy()
    assert json.loads(gateway.call("GET", "/items/special").data)["by"] == "literal"
    assert json.loads(gateway.call("GET", "/items/42").data) == {
        "by": "param", "params": {"id": "42"}, "resource": "/items/{id}"}
    greedy = json.loads(gateway.call("PATCH", "/items/42/deep/er").data)
    assert greedy == {"by": "greedy", "params": {"proxy": "items/42/deep/er"}, "resource": "/{proxy+}"}
    assert json.loads(gateway.call("POST", "/items/x/y").data)["by"] == "greedy"  # ANY method
    # the most specific resource is chosen before the method: it has no POST
    assert gateway.call("POST", "/items/42").status_code == 403


def test_unicode_path_parameters_are_decoded(gateway: Gateway):
    gateway.proxy("/stores/{name}", "GET", "fn", echo)
    gateway.deploy()
    event = json.loads(gateway.call("GET", "/stores/K%C3%B6ln").data)
    assert event["pathParameters"] == {"name": "Köln"}


# --------------------------------------------------------------------------------------------------
# AWS_PROXY


def test_proxy_event_shape(gateway: Gateway):
    gateway.proxy("/orders/{id}", "POST", "fn", echo)
    gateway.deploy(region="eu")
    answer = gateway.call("POST", "/orders/7?tag=a&tag=b&x=1", data='{"n": 1}',
                          headers={"Content-Type": "application/json", "User-Agent": "pytest", "X-Multi": "1"})
    raw = json.loads(answer.data)
    event = APIGatewayProxyEvent(raw)
    assert (event.resource, event.path, event.http_method) == ("/orders/{id}", "/orders/7", "POST")
    assert event.query_string_parameters == {"tag": "b", "x": "1"}
    assert event.multi_value_query_string_parameters == {"tag": ["a", "b"], "x": ["1"]}
    assert event.path_parameters == {"id": "7"} and event.stage_variables == {"region": "eu"}
    assert event.json_body == {"n": 1} and event.is_base64_encoded is False
    assert event.headers["User-Agent"] == "pytest" and raw["multiValueHeaders"]["X-Multi"] == ["1"]
    context = event.request_context
    assert (context.account_id, context.api_id, context.stage, context.http_method) == (
        ACCOUNT, gateway.api_id, "dev", "POST")
    assert context.resource_path == "/orders/{id}" and context.path == "/dev/orders/7"
    assert context.identity.source_ip == "127.0.0.1" and context.identity.user_agent == "pytest"
    assert context.request_id and context.request_time_epoch > 0 and raw["requestContext"]["protocol"]
    assert raw["requestContext"]["resourceId"] == gateway.resource("/orders/{id}")


def test_proxy_binary_body_is_base64(gateway: Gateway):
    gateway.proxy("/upload", "PUT", "fn", echo)
    gateway.deploy()
    blob = bytes(range(256))
    event = json.loads(gateway.call("PUT", "/upload", data=blob,
                                    headers={"Content-Type": "application/octet-stream"}).data)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == blob


def test_proxy_response_mapping(gateway: Gateway):
    gateway.proxy("/r", "GET", "fn", lambda e: {
        "statusCode": 418, "headers": {"X-One": "1", "Content-Type": "text/plain"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": "teapot"})
    gateway.proxy("/bin", "GET", "bin", lambda e: {
        "statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(b"\x00\xff").decode()})
    gateway.deploy()
    answer = gateway.call("GET", "/r")
    assert (answer.status_code, answer.data, answer.headers["X-One"]) == (418, b"teapot", "1")
    assert answer.headers["Content-Type"] == "text/plain"
    assert answer.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert gateway.call("GET", "/bin").data == b"\x00\xff"


@pytest.mark.parametrize("result", [
    "not an object", {"statusCode": 200, "body": {"not": "a string"}}, {"statusCode": 200, "extra": 1},
    {"statusCode": "abc"},
])
def test_malformed_proxy_response_is_502(gateway: Gateway, result: Any):
    gateway.proxy("/bad", "GET", "fn", lambda e: result)
    gateway.deploy()
    answer = gateway.call("GET", "/bad")
    assert (answer.status_code, message(answer)) == (502, "Internal server error")


def test_proxy_function_error_is_502(gateway: Gateway):
    def boom(event: Any) -> Any:
        raise ValueError("boom")

    gateway.proxy("/err", "GET", "fn", boom)
    gateway.deploy()
    answer = gateway.call("GET", "/err")
    assert (answer.status_code, message(answer)) == (502, "Internal server error")


def test_proxy_events_are_marked_valid_json_and_template_bodies_are_not(gateway: Gateway):
    from localcloud.executors import JSONPayload

    gateway.proxy("/p", "POST", "fn", echo)
    non_proxy(gateway, "/np", "POST", lambda event: event)  # passthrough: the client's body, Lambda checks it
    gateway.deploy()
    body = '{"q": "caf\u00e9 \\"x\\""}'
    assert json.loads(json.loads(gateway.call("POST", "/p", data=body).data)["body"]) == {"q": 'caf\u00e9 "x"'}
    assert gateway.call("POST", "/np", data=body, headers={"Content-Type": "application/json"}).status_code == 200
    assert gateway.invoker.payload_types == [JSONPayload, bytes]


def test_changes_apply_without_redeploying(gateway: Gateway):
    gateway.proxy("/a", "GET", "fn", echo)
    gateway.deploy()
    gateway.proxy("/b", "GET", "fn", echo)  # served at once: moto keeps no deployment snapshot
    assert gateway.call("GET", "/b").status_code == 200
    gateway.apigw.update_stage(restApiId=gateway.api_id, stageName="dev",
                               patchOperations=[{"op": "replace", "path": "/variables/v", "value": "2"}])
    assert json.loads(gateway.call("GET", "/a").data)["stageVariables"] == {"v": "2"}


# --------------------------------------------------------------------------------------------------
# AWS (non-proxy Lambda) with mapping templates


def non_proxy(gateway: Gateway, path: str, verb: str, handler: Handler, templates: dict[str, str] | None = None,
              responses: list[dict[str, Any]] | None = None, **integration: Any) -> str:
    gateway.invoker.handlers["np"] = handler
    spec = {"type": "AWS", "integrationHttpMethod": "POST", "uri": lambda_uri("np"), **integration}
    if templates is not None:
        spec["requestTemplates"] = templates
    return gateway.method(path, verb, spec, responses if responses is not None else [{"statusCode": "200"}])


def test_passthrough_template_with_a_dataframe_body_and_no_content_type(gateway: Gateway):
    import pandas
    frame = pandas.DataFrame({"store": ["a", "b"], "sales": [1.5, 2.0]})
    templates = {"application/json": PASSTHROUGH_TEMPLATE}
    def handler(event: dict[str, Any]) -> dict[str, Any]:
        return {"rows": len(event["body-json"].get("store", {}))}

    non_proxy(gateway, "/main", "POST", handler, templates)
    non_proxy(gateway, "/main", "GET", handler, templates)
    gateway.deploy(env="test")
    answer = gateway.call("POST", "/main?limit=5", data=frame.to_json(), headers={"User-Agent": "ua"})
    assert answer.status_code == 200 and json.loads(answer.data) == {"rows": 2}
    event = gateway.invoker.events("np")[-1]
    assert event["body-json"] == json.loads(frame.to_json())
    assert event["params"]["querystring"] == {"limit": "5"} and event["params"]["path"] == {}
    assert event["params"]["header"]["User-Agent"] == "ua"
    assert event["stage-variables"] == {"env": "test"}
    context = event["context"]
    assert (context["http-method"], context["stage"], context["resource-path"]) == ("POST", "dev", "/main")
    assert context["account-id"] == "" and context["api-id"] == gateway.api_id and context["request-id"]
    assert context["source-ip"] == "127.0.0.1" and context["user-agent"] == "ua"
    assert gateway.call("GET", "/main").status_code == 200
    assert gateway.invoker.events("np")[-1]["body-json"] == {}
    assert gateway.invoker.events("np")[-1]["context"]["http-method"] == "GET"


def test_template_variables(gateway: Gateway):
    template = ('{"name": $input.json(\'$.user.name\'), "first": "$input.path(\'$.items\')[0]", '
                '"q": "$input.params(\'q\')", "h": "$input.params(\'x-h\')", "id": "$input.params(\'id\')", '
                '"esc": "$util.escapeJavaScript($input.path(\'$.quote\'))", "b64": "$util.base64Encode(\'hi\')", '
                '"unb64": "$util.base64Decode(\'aGk=\')", "url": "$util.urlEncode(\'a b&c\')", '
                '"unurl": "$util.urlDecode(\'a%20b\')", '
                '"method": "$context.httpMethod", "stage": "$context.stage", "var": "$stageVariables.color", '
                '"ip": "$context.identity.sourceIp", "raw": $input.body}')
    non_proxy(gateway, "/t/{id}", "POST", lambda e: e, {"application/json": template})
    gateway.deploy(color="blue")
    body = {"user": {"name": "Zoë"}, "items": [3, 4], "quote": 'say "hi"'}
    gateway.call("POST", "/t/9?q=1", json=body, headers={"X-H": "hv"})
    event = gateway.invoker.events("np")[-1]
    assert event["name"] == "Zoë" and event["first"] == "3" and event["raw"] == body
    assert (event["q"], event["h"], event["id"]) == ("1", "hv", "9")
    assert event["esc"] == 'say "hi"' and (event["b64"], event["unb64"]) == ("aGk=", "hi")
    assert (event["url"], event["unurl"]) == ("a%20b%26c", "a b")
    assert (event["method"], event["stage"], event["var"], event["ip"]) == ("POST", "dev", "blue", "127.0.0.1")


def test_parse_json_in_templates(gateway: Gateway):
    template = '#set($d = $util.parseJson($input.body)){"k": $d.k}'
    non_proxy(gateway, "/p", "POST", lambda e: e, {"application/json": template})
    gateway.deploy()
    assert json.loads(gateway.call("POST", "/p", data='{"k": 5}').data) == {"k": 5}


@pytest.mark.parametrize("behavior,templates,content_type,status", [
    ("NEVER", {"application/json": "{}"}, "text/plain", 415),
    ("WHEN_NO_TEMPLATES", {"application/json": "{}"}, "text/plain", 415),
    ("WHEN_NO_TEMPLATES", None, "text/plain", 200),
    ("WHEN_NO_MATCH", {"application/json": "{}"}, "text/plain", 200),
    ("NEVER", {"application/json": "{}"}, None, 200),
])
def test_passthrough_behavior(gateway: Gateway, behavior: str, templates: Any, content_type: Any, status: int):
    non_proxy(gateway, "/m", "POST", lambda e: {"ok": True}, templates, passthroughBehavior=behavior)
    gateway.deploy()
    headers = {"Content-Type": content_type} if content_type else {}
    answer = gateway.call("POST", "/m", data='{"a": 1}', headers=headers)
    assert answer.status_code == status
    if status == 415:
        assert message(answer) == "Unsupported Media Type" and not gateway.invoker.calls


def test_selection_pattern_maps_lambda_errors(gateway: Gateway):
    def handler(event: dict[str, Any]) -> Any:
        if event.get("fail"):
            raise ValueError(event["fail"])
        return {"ok": 1}

    responses = [
        {"statusCode": "200"},
        {"statusCode": "400", "selectionPattern": r"\[BadRequest\].*",
         "responseTemplates": {"application/json": '{"error": $input.json(\'$.errorMessage\')}'},
         "responseParameters": {"method.response.header.X-Reason": "'bad'"}},
    ]
    non_proxy(gateway, "/s", "POST", handler, {"application/json": "$input.body"}, responses)
    gateway.deploy()
    ok = gateway.call("POST", "/s", json={})
    assert (ok.status_code, json.loads(ok.data)) == (200, {"ok": 1})
    bad = gateway.call("POST", "/s", json={"fail": "[BadRequest] no store"})
    assert (bad.status_code, json.loads(bad.data), bad.headers["X-Reason"]) == (
        400, {"error": "[BadRequest] no store"}, "bad")
    unmatched = gateway.call("POST", "/s", json={"fail": "other"})
    assert unmatched.status_code == 200  # AWS: no pattern matched -> default response with the error
    assert json.loads(unmatched.data)["errorMessage"] == "other"


def test_no_default_integration_response_is_500(gateway: Gateway):
    non_proxy(gateway, "/n", "POST", lambda e: {}, None, responses=[])
    gateway.deploy()
    answer = gateway.call("POST", "/n", json={})
    assert (answer.status_code, message(answer)) == (500, "Internal server error")


# --------------------------------------------------------------------------------------------------
# MOCK, CORS and HTTP


def test_mock_status_code_selects_response_and_cors_preflight(gateway: Gateway):
    cors = {"method.response.header.Access-Control-Allow-Origin": "'*'",
            "method.response.header.Access-Control-Allow-Methods": "'GET,OPTIONS'"}
    gateway.method("/c", "OPTIONS", {"type": "MOCK", "requestTemplates": {"application/json": '{"statusCode": 200}'}},
                   [{"statusCode": "200", "responseParameters": cors}])
    gateway.method("/teapot", "GET", {"type": "MOCK", "requestTemplates": {
        "application/json": '{"statusCode": $input.params(\'code\')}'}},
        [{"statusCode": "200"}, {"statusCode": "418", "selectionPattern": "418",
                                 "responseTemplates": {"application/json": '{"tea": true}'}}])
    gateway.deploy()
    preflight = gateway.call("OPTIONS", "/c", headers={"Origin": "http://x"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET,OPTIONS"
    teapot = gateway.call("GET", "/teapot?code=418")
    assert (teapot.status_code, json.loads(teapot.data)) == (418, {"tea": True})
    assert gateway.call("GET", "/teapot?code=200").status_code == 200


@pytest.fixture
def local_http() -> Iterator[str]:
    class Echo(BaseHTTPRequestHandler):
        def do_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.dumps({"method": self.command, "path": self.path,
                               "body": self.rfile.read(length).decode()}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Upstream", "yes")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_proxy_to_loopback(gateway: Gateway, local_http: str):
    gateway.method("/h/{proxy+}", "ANY", {
        "type": "HTTP_PROXY", "integrationHttpMethod": "ANY", "uri": f"{local_http}/up/{{proxy}}",
        "requestParameters": {"integration.request.path.proxy": "method.request.path.proxy"}},
        requestParameters={"method.request.path.proxy": True})
    gateway.deploy()
    answer = gateway.call("PUT", "/h/a/b?x=1", data="payload")
    assert answer.status_code == 201 and answer.headers["X-Upstream"] == "yes"
    assert json.loads(answer.data) == {"method": "PUT", "path": "/up/a/b?x=1", "body": "payload"}


def test_http_integration_with_templates(gateway: Gateway, local_http: str):
    gateway.method("/hh", "POST", {
        "type": "HTTP", "integrationHttpMethod": "POST", "uri": f"{local_http}/svc",
        "requestTemplates": {"application/json": '{"wrapped": $input.json(\'$\')}'}},
        [{"statusCode": "200", "selectionPattern": "2\\d\\d",
          "responseTemplates": {"application/json": '{"upstream": $input.json(\'$.body\')}'}}])
    gateway.deploy()
    answer = gateway.call("POST", "/hh", json={"a": 1})
    assert answer.status_code == 200
    assert json.loads(json.loads(answer.data)["upstream"]) == {"wrapped": {"a": 1}}


def test_http_to_non_local_hosts_is_refused(gateway: Gateway):
    gateway.method("/ext", "GET", {"type": "HTTP_PROXY", "integrationHttpMethod": "GET",
                                   "uri": "http://example.com/"})
    gateway.deploy()
    answer = gateway.call("GET", "/ext")
    assert answer.status_code == 502 and "loopback" in message(answer)


# --------------------------------------------------------------------------------------------------
# API keys, authorizers, IAM


def key_in_plan(gateway: Gateway, stage: str = "dev", enabled: bool = True, throttle: Any = None) -> str:
    key = gateway.apigw.create_api_key(name="k", enabled=enabled)
    plan = gateway.apigw.create_usage_plan(name="p", apiStages=[{"apiId": gateway.api_id, "stage": stage}],
                                           **({"throttle": throttle} if throttle else {}))
    gateway.apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


def test_api_key_required(gateway: Gateway):
    gateway.proxy("/k", "GET", "fn", echo, apiKeyRequired=True)
    gateway.deploy()
    gateway.deploy("other")
    good = key_in_plan(gateway)
    other_stage = key_in_plan(gateway, stage="other")
    disabled = key_in_plan(gateway, enabled=False)
    loose = gateway.apigw.create_api_key(name="loose", enabled=True)["value"]
    for value in (None, "wrong", other_stage, disabled, loose):
        answer = gateway.call("GET", "/k", headers={"x-api-key": value} if value else {})
        assert (answer.status_code, message(answer)) == (403, "Forbidden"), value
    answer = gateway.call("GET", "/k", headers={"x-api-key": good})
    assert answer.status_code == 200
    assert json.loads(answer.data)["requestContext"]["identity"]["apiKey"] == good


def add_authorizer(gateway: Gateway, handler: Handler, kind: str = "TOKEN", **options: Any) -> str:
    gateway.invoker.handlers["auth"] = handler
    expression = options.pop("identityValidationExpression", None)
    authorizer = gateway.apigw.create_authorizer(restApiId=gateway.api_id, name="a", type=kind,
                                                 authorizerUri=lambda_uri("auth"), **options)["id"]
    if expression:  # moto 5.2.5 drops it on create (a typo in its backend); update_authorizer keeps it
        gateway.apigw.update_authorizer(restApiId=gateway.api_id, authorizerId=authorizer, patchOperations=[
            {"op": "replace", "path": "/identityValidationExpression", "value": expression}])
    return authorizer


def policy(effect: str, resource: str, principal: str = "user-1", **context: Any) -> dict[str, Any]:
    return {"principalId": principal, "context": context, "policyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}}


def token_authorizer(event: dict[str, Any]) -> dict[str, Any]:
    token = event["authorizationToken"]
    if token == "raise":
        raise Exception("Unauthorized")
    api_part = event["methodArn"].split("/", 1)[0]
    effect = "Deny" if token == "deny" else "Allow"
    return policy(effect, f"{api_part}/*/GET/*" if token != "narrow" else f"{api_part}/dev/POST/*", tier="gold")


def test_token_authorizer(gateway: Gateway):
    authorizer = add_authorizer(gateway, token_authorizer, identitySource="method.request.header.Authorization",
                                identityValidationExpression="^[a-z]+$", authorizerResultTtlInSeconds=300)
    gateway.proxy("/secure", "GET", "fn", echo, authorizationType="CUSTOM", authorizerId=authorizer)
    gateway.deploy()
    allowed = gateway.call("GET", "/secure", headers={"Authorization": "good"})
    assert allowed.status_code == 200
    assert json.loads(allowed.data)["requestContext"]["authorizer"] == {"principalId": "user-1", "tier": "gold"}
    event = gateway.invoker.events("auth")[0]
    assert event == {"type": "TOKEN", "authorizationToken": "good",
                     "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{gateway.api_id}/dev/GET/secure"}
    assert gateway.call("GET", "/secure", headers={"Authorization": "good"}).status_code == 200
    assert len(gateway.invoker.events("auth")) == 1  # cached by token
    denied = gateway.call("GET", "/secure", headers={"Authorization": "deny"})
    assert (denied.status_code, message(denied)) == (
        403, "User is not authorized to access this resource with an explicit deny")
    narrow = gateway.call("GET", "/secure", headers={"Authorization": "narrow"})
    assert (narrow.status_code, message(narrow)) == (403, "User is not authorized to access this resource")
    for headers in ({}, {"Authorization": "BAD-TOKEN-1"}, {"Authorization": "raise"}):
        answer = gateway.call("GET", "/secure", headers=headers)
        assert answer.status_code == 401, (headers, answer.data)
        assert message(answer) == "Unauthorized"
    assert all(e["authorizationToken"] != "BAD-TOKEN-1" for e in gateway.invoker.events("auth"))


def test_authorizer_without_cache_runs_every_time(gateway: Gateway):
    authorizer = add_authorizer(gateway, token_authorizer, authorizerResultTtlInSeconds=0,
                                identitySource="method.request.header.Authorization")
    gateway.proxy("/nc", "GET", "fn", echo, authorizationType="CUSTOM", authorizerId=authorizer)
    gateway.deploy()
    for _ in range(2):
        assert gateway.call("GET", "/nc", headers={"Authorization": "good"}).status_code == 200
    assert len(gateway.invoker.events("auth")) == 2


def test_request_authorizer_and_template_context(gateway: Gateway):
    def request_authorizer(event: dict[str, Any]) -> dict[str, Any]:
        allowed = event["headers"].get("X-User") == "ann" and event["queryStringParameters"].get("t") == "1"
        return policy("Allow" if allowed else "Deny", event["methodArn"], principal="ann", team="ops")

    authorizer = add_authorizer(gateway, request_authorizer, kind="REQUEST",
                                identitySource="method.request.header.X-User,method.request.querystring.t",
                                authorizerResultTtlInSeconds=0)
    gateway.invoker.handlers["np"] = lambda e: e
    gateway.method("/r", "GET", {"type": "AWS", "integrationHttpMethod": "POST", "uri": lambda_uri("np"),
                                 "requestTemplates": {"application/json": PASSTHROUGH_TEMPLATE.replace(
                                     '"caller"', '"team" : "$context.authorizer.team",\n    "caller"')}},
                   [{"statusCode": "200"}], authorizationType="CUSTOM", authorizerId=authorizer)
    gateway.deploy()
    assert gateway.call("GET", "/r", headers={"X-User": "ann"}).status_code == 401  # query source missing
    assert gateway.call("GET", "/r?t=1", headers={"X-User": "bob"}).status_code == 403
    answer = gateway.call("GET", "/r?t=1", headers={"X-User": "ann"})
    assert answer.status_code == 200
    context = json.loads(answer.data)["context"]
    assert context["authorizer-principal-id"] == "ann" and context["team"] == "ops"
    event = gateway.invoker.events("auth")[-1]
    assert event["type"] == "REQUEST" and event["resource"] == "/r" and event["httpMethod"] == "GET"


def test_authorizer_cache_is_evaluated_per_method_arn(gateway: Gateway):
    authorizer = add_authorizer(gateway, token_authorizer, authorizerResultTtlInSeconds=300,
                                identitySource="method.request.header.Authorization")
    gateway.proxy("/x", "GET", "fn", echo, authorizationType="CUSTOM", authorizerId=authorizer)
    gateway.proxy("/x", "POST", "fn", echo, authorizationType="CUSTOM", authorizerId=authorizer)
    gateway.deploy()
    assert gateway.call("GET", "/x", headers={"Authorization": "good"}).status_code == 200
    assert gateway.call("POST", "/x", headers={"Authorization": "good"}).status_code == 403  # policy: GET only
    assert len(gateway.invoker.events("auth")) == 1


def test_aws_iam_is_accepted_locally(gateway: Gateway):
    gateway.proxy("/iam", "GET", "fn", echo, authorizationType="AWS_IAM")
    gateway.deploy()
    assert gateway.call("GET", "/iam").status_code == 200


# --------------------------------------------------------------------------------------------------
# Validation, limits, throttling


def test_request_validation(gateway: Gateway):
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "required": ["store"], "properties": {"store": {"type": "string"}, "qty": {"type": "integer"}}}
    gateway.apigw.create_model(restApiId=gateway.api_id, name="Order", contentType="application/json",
                               schema=json.dumps(schema))
    validator = gateway.apigw.create_request_validator(restApiId=gateway.api_id, name="all",
                                                       validateRequestBody=True, validateRequestParameters=True)
    gateway.proxy("/v", "POST", "fn", echo, requestValidatorId=validator["id"],
                  requestParameters={"method.request.querystring.day": True, "method.request.header.X-Shop": True,
                                     "method.request.querystring.optional": False},
                  requestModels={"application/json": "Order"})
    gateway.deploy()
    missing = gateway.call("POST", "/v", json={"store": "a"})
    assert (missing.status_code, message(missing)) == (400, "Missing required request parameters: [day, X-Shop]")
    headers = {"X-Shop": "s"}
    for body in ('{"qty": 1}', '{"store": 5}', "not json", '{"store": "a", "qty": "x"}'):
        answer = gateway.call("POST", "/v?day=1", data=body, headers=headers)
        assert (answer.status_code, message(answer)) == (400, "Invalid request body"), body
    assert gateway.call("POST", "/v?day=1", json={"store": "a", "qty": 2}, headers=headers).status_code == 200


def test_parameters_are_not_checked_without_a_validator(gateway: Gateway):
    gateway.proxy("/nv", "GET", "fn", echo, requestParameters={"method.request.querystring.day": True})
    gateway.deploy()
    assert gateway.call("GET", "/nv").status_code == 200


def test_payload_over_10_mb_is_413(gateway: Gateway):
    gateway.proxy("/big", "POST", "fn", echo)
    gateway.deploy()
    answer = gateway.call("POST", "/big", data=b"x" * (10 * 1024 * 1024 + 1))
    assert answer.status_code == 413 and not gateway.invoker.calls


def test_stage_throttling(gateway: Gateway):
    gateway.proxy("/t", "GET", "fn", echo)
    gateway.deploy()
    gateway.apigw.update_stage(restApiId=gateway.api_id, stageName="dev", patchOperations=[
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "0.001"},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "2"}])
    statuses = [gateway.call("GET", "/t").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert message(gateway.call("GET", "/t")) == "Too Many Requests"


def test_usage_plan_throttling_per_key(gateway: Gateway):
    gateway.proxy("/u", "GET", "fn", echo, apiKeyRequired=True)
    gateway.deploy()
    first = key_in_plan(gateway, throttle={"rateLimit": 0.001, "burstLimit": 1})
    second = key_in_plan(gateway, throttle={"rateLimit": 0.001, "burstLimit": 1})
    assert gateway.call("GET", "/u", headers={"x-api-key": first}).status_code == 200
    assert gateway.call("GET", "/u", headers={"x-api-key": first}).status_code == 429
    assert gateway.call("GET", "/u", headers={"x-api-key": second}).status_code == 200


# --------------------------------------------------------------------------------------------------
# Fuzzing: the gateway answers like AWS whatever it is sent, never with a crash of its own

from urllib.parse import quote  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

METHODS = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
                    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12))
BODIES = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=256).map(str.encode),
    st.sampled_from([b"{", b'{"store": ', b"[1, 2", b"null", b'"x"', b'{"store": 1}', b"\xff\xfe\x00"]),
    st.just(b"HUGE"),  # replaced by 10 MB + 1 byte when sent (a short repr in failure reports)
)
PATHS = st.lists(st.text(min_size=1, max_size=12), max_size=4).map(
    lambda parts: "/" + "/".join(quote(part, safe="") for part in parts))
CONTENT_TYPES = st.sampled_from([None, "application/json", "text/plain", "application/octet-stream", "bogus",
                                 "application/json; charset=utf-8", ""])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(verb=METHODS, path=PATHS, body=BODIES, content_type=CONTENT_TYPES,
       prefix=st.sampled_from(["", "/main", "/v", "/m"]))
def test_fuzz_never_crashes(fuzz_gateway: Gateway, caplog: pytest.LogCaptureFixture, verb: str, path: str,
                            body: bytes, content_type: str | None, prefix: str):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    body = b"x" * (10 * 1024 * 1024 + 1) if body == b"HUGE" else body
    caplog.clear()
    answer = fuzz_gateway.call(verb, prefix + path if path != "/" or not prefix else prefix, data=body,
                               headers=headers)
    assert not [r for r in caplog.records if r.name == "localcloud.apigateway"], "the gateway itself failed"
    assert answer.status_code in {200, 201, 400, 401, 403, 404, 413, 415, 429, 500, 502}
    if answer.status_code >= 400 and verb != "HEAD":
        assert "message" in json.loads(answer.data)


@pytest.fixture
def fuzz_gateway(gateway: Gateway) -> Gateway:
    """One API with every kind of integration the fuzzer can reach."""
    gateway.proxy("/{proxy+}", "ANY", "fn", echo)
    non_proxy(gateway, "/main", "POST", lambda e: {"ok": True}, {"application/json": PASSTHROUGH_TEMPLATE})
    gateway.apigw.create_model(restApiId=gateway.api_id, name="M", contentType="application/json",
                               schema=json.dumps({"type": "object", "required": ["store"]}))
    validator = gateway.apigw.create_request_validator(restApiId=gateway.api_id, name="v",
                                                       validateRequestBody=True, validateRequestParameters=True)
    gateway.proxy("/v", "ANY", "fn", echo, requestValidatorId=validator["id"],
                  requestModels={"application/json": "M"})
    gateway.method("/m", "ANY", {"type": "MOCK", "requestTemplates": {"application/json": '{"statusCode": 200}'}},
                   [{"statusCode": "200"}])
    gateway.deploy()
    return gateway


# --------------------------------------------------------------------------------------------------
# Pure helpers

from localcloud.apigateway import security  # noqa: E402


def test_policy_evaluation_wildcards_and_explicit_deny():
    arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/dev/GET/items/7"

    def document(*statements: tuple[str, Any, Any]) -> dict[str, Any]:
        return {"Statement": [{"Effect": e, "Action": a, "Resource": r} for e, a, r in statements]}

    assert security.evaluate_policy(document(("Allow", "execute-api:Invoke", arn)), arn) == "Allow"
    assert security.evaluate_policy(document(("Allow", "execute-api:*", "arn:aws:execute-api:*:*:abc/*")), arn) == "Allow"
    assert security.evaluate_policy(document(("Allow", "*", [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/dev/GET/items/?"])), arn) == "Allow"
    assert security.evaluate_policy(document(("Allow", "execute-api:Invoke", "arn:aws:execute-api:*:*:abc/dev/POST/*")), arn) == "None"
    assert security.evaluate_policy(document(("Allow", "s3:GetObject", "*")), arn) == "None"
    assert security.evaluate_policy(document(("Allow", "execute-api:Invoke", "*"),
                                             ("Deny", "execute-api:Invoke", "*/items/*")), arn) == "Deny"
    assert security.evaluate_policy(document(("Allow", "execute-api:Invoke", "arn:aws:execute-api:*:*:abc/dev/GET/items.7")), arn) == "None"


def test_api_key_from_authorizer_usage_identifier(gateway: Gateway):
    gateway.apigw.update_rest_api(restApiId=gateway.api_id, patchOperations=[
        {"op": "replace", "path": "/apiKeySource", "value": "AUTHORIZER"}])
    gateway.proxy("/free", "GET", "fn", echo)
    gateway.deploy()
    value = key_in_plan(gateway)

    def authorizer(event: dict[str, Any]) -> dict[str, Any]:
        result = policy("Allow", "*")
        if event["authorizationToken"] == "paid":
            result["usageIdentifierKey"] = value
        return result

    authorizer_id = add_authorizer(gateway, authorizer, authorizerResultTtlInSeconds=0)
    gateway.proxy("/metered", "GET", "fn", echo, apiKeyRequired=True, authorizationType="CUSTOM",
                  authorizerId=authorizer_id)
    assert gateway.call("GET", "/metered", headers={"Authorization": "paid"}).status_code == 200
    assert gateway.call("GET", "/metered", headers={"Authorization": "free", "x-api-key": value}).status_code == 403
