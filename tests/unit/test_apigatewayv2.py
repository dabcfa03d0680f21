"""HTTP APIs (API Gateway v2) in a real local cloud, built with plain boto3 as a student writes them:
a Lambda proxy integration answers through the API's ApiEndpoint, on $default and on a named stage."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Iterator

import boto3
import pytest

from localcloud import lifecycle

ACCOUNT = "123456789012"

ECHO = '''
import json
def handler(event, context):
    if event.get("rawPath", "").endswith("/plain") or event.get("path", "").endswith("/plain"):
        return "Hello from Lambda!"
    if event.get("rawPath", "").endswith("/crash"):
        raise ValueError("boom")
    if event.get("rawPath", "").endswith("/custom"):
        return {"statusCode": 201, "headers": {"x-speed": "fast"}, "cookies": ["a=1", "b=2"], "body": "made"}
    if event.get("version") == "1.0":
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(event)}
    return {"event": event}
'''


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud"), {}) as url:
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def deploy_function(endpoint: str, name: str, source: str = ECHO) -> str:
    iam, awslambda = client(endpoint, "iam"), client(endpoint, "lambda")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    arn = awslambda.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                                    Code={"ZipFile": buffer.getvalue()}, Timeout=30)["FunctionArn"]
    awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn


def allow_api(endpoint: str, function: str, api_id: str) -> None:
    client(endpoint, "lambda").add_permission(
        FunctionName=function, StatementId=f"http-api-{api_id}", Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com", SourceArn=f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{api_id}/*")


def http_api(endpoint: str, name: str, function_arn: str, route_keys: list[str], version: str = "2.0",
             auto_deploy: bool = True, stage: str = "$default") -> tuple[str, str]:
    """(api id, ApiEndpoint): one Lambda integration behind the routes, one stage."""
    apigw = client(endpoint, "apigatewayv2")
    api = apigw.create_api(Name=name, ProtocolType="HTTP")
    integration = apigw.create_integration(ApiId=api["ApiId"], IntegrationType="AWS_PROXY",
                                           IntegrationUri=function_arn, PayloadFormatVersion=version)
    for key in route_keys:
        apigw.create_route(ApiId=api["ApiId"], RouteKey=key, Target=f"integrations/{integration['IntegrationId']}")
    apigw.create_stage(ApiId=api["ApiId"], StageName=stage, AutoDeploy=auto_deploy)
    return api["ApiId"], apigw.get_api(ApiId=api["ApiId"])["ApiEndpoint"]


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def echo(endpoint: str) -> str:
    return deploy_function(endpoint, "http-echo")


def test_payload_2_0_event_through_the_default_stage(endpoint: str, echo: str):
    api_id, url = http_api(endpoint, "telemetry", echo, ["GET /speeders"])
    allow_api(endpoint, "http-echo", api_id)
    assert url == f"{endpoint}/_localcloud/httpapi/{api_id}"
    status, headers, body = call(f"{url}/speeders?date=2024-05-01&lane=1&lane=2",
                                 headers={"X-Trace": "a", "Cookie": "session=abc; theme=dark", "User-Agent": "t/1"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    event = json.loads(body)["event"]  # a dict without statusCode: the whole answer is the JSON body
    assert event["version"] == "2.0" and event["routeKey"] == "GET /speeders"
    assert event["rawPath"] == "/speeders" and event["rawQueryString"] == "date=2024-05-01&lane=1&lane=2"
    assert event["queryStringParameters"] == {"date": "2024-05-01", "lane": "1,2"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-trace"] == "a" and "cookie" not in event["headers"]
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1" and event["headers"]["x-amzn-trace-id"].startswith("Root=1-")
    assert all(name == name.lower() for name in event["headers"])
    context = event["requestContext"]
    assert context["accountId"] == ACCOUNT and context["apiId"] == api_id and context["stage"] == "$default"
    assert context["routeKey"] == "GET /speeders" and context["domainPrefix"] == api_id
    assert context["domainName"] == f"{api_id}.execute-api.us-east-1.amazonaws.com"
    assert context["http"] == {"method": "GET", "path": "/speeders", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": "t/1"}
    assert set(context) >= {"requestId", "time", "timeEpoch"} and isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False and "body" not in event and "pathParameters" not in event
    assert headers["apigw-requestid"] == context["requestId"]


def test_named_stage_answers_under_its_name_with_stage_variables(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api_id, url = http_api(endpoint, "staged", echo, ["POST /readings/{sensor}"], stage="prod")
    apigw.update_stage(ApiId=api_id, StageName="prod", StageVariables={"table": "speeds"})
    allow_api(endpoint, "http-echo", api_id)
    status, _, body = call(f"{url}/prod/readings/s-7", "POST", b'{"mph": 52}', {"Content-Type": "application/json"})
    assert status == 200
    event = json.loads(body)["event"]
    assert event["rawPath"] == "/prod/readings/s-7" and event["requestContext"]["stage"] == "prod"
    assert event["pathParameters"] == {"sensor": "s-7"} and event["stageVariables"] == {"table": "speeds"}
    assert event["body"] == '{"mph": 52}' and event["isBase64Encoded"] is False
    assert call(f"{url}/readings/s-7", "POST")[0] == 404  # no $default stage
    binary = call(f"{url}/prod/readings/s-7", "POST", b"\x00\xff", {"Content-Type": "application/octet-stream"})
    assert json.loads(binary[2])["event"]["isBase64Encoded"] is True


def test_payload_1_0_event_and_response(endpoint: str, echo: str):
    api_id, url = http_api(endpoint, "v1", echo, ["GET /items/{id}"], version="1.0")
    allow_api(endpoint, "http-echo", api_id)
    status, _, body = call(f"{url}/items/42?tag=a&tag=b", headers={"X-One": "1"})
    assert status == 200
    event = json.loads(body)
    assert event["version"] == "1.0" and event["resource"] == "/items/{id}" and event["path"] == "/items/42"
    assert event["httpMethod"] == "GET" and event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["headers"]["x-one"] == "1" and event["multiValueHeaders"]["x-one"] == ["1"]
    assert event["requestContext"]["stage"] == "$default" and event["requestContext"]["resourcePath"] == "/items/{id}"
    assert event["stageVariables"] is None and event["body"] is None


def test_response_inference_and_errors(endpoint: str, echo: str):
    api_id, url = http_api(endpoint, "answers", echo, ["ANY /{proxy+}"])
    allow_api(endpoint, "http-echo", api_id)
    status, headers, body = call(f"{url}/plain")
    assert (status, body, headers["Content-Type"]) == (200, b"Hello from Lambda!", "application/json")
    status, headers, body = call(f"{url}/custom")
    assert (status, body, headers["x-speed"]) == (201, b"made", "fast")
    status, _, body = call(f"{url}/crash")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    status, _, body = call(f"{url}/deep/er/path", "DELETE")
    assert status == 200 and json.loads(body)["event"]["pathParameters"] == {"proxy": "deep/er/path"}


def test_route_priority_and_no_route(endpoint: str, echo: str):
    api_id, url = http_api(endpoint, "priority", echo, ["GET /a/{x}", "GET /a/b", "ANY /a/{rest+}", "$default"])
    allow_api(endpoint, "http-echo", api_id)
    route = lambda path, method="GET": json.loads(call(f"{url}{path}", method)[2])["event"]["routeKey"]  # noqa: E731
    assert route("/a/b") == "GET /a/b"
    assert route("/a/c") == "GET /a/{x}"
    assert route("/a/b/c") == "ANY /a/{rest+}"
    assert route("/elsewhere", "POST") == "$default"
    api_id, url = http_api(endpoint, "narrow", echo, ["GET /speeders"])
    allow_api(endpoint, "http-echo", api_id)
    for path, method in (("/nothing", "GET"), ("/speeders", "POST")):
        status, _, body = call(f"{url}{path}", method)
        assert (status, json.loads(body)) == (404, {"message": "Not Found"})
    assert call(f"{endpoint}/_localcloud/httpapi/nosuchapi/speeders")[0] == 404


def test_missing_permission_is_a_500_and_the_function_never_runs(endpoint: str):
    arn = deploy_function(endpoint, "http-locked")
    api_id, url = http_api(endpoint, "locked", arn, ["GET /speeders"])
    status, _, body = call(f"{url}/speeders")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
    client(endpoint, "lambda").add_permission(  # another API's permission does not cover this one
        FunctionName="http-locked", StatementId="other", Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com", SourceArn=f"arn:aws:execute-api:us-east-1:{ACCOUNT}:otherapi/*")
    assert call(f"{url}/speeders")[0] == 500
    allow_api(endpoint, "http-locked", api_id)
    assert call(f"{url}/speeders")[0] == 200


def test_explicit_deployments_serve_what_was_deployed(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api_id, url = http_api(endpoint, "manual", echo, ["GET /one"], auto_deploy=False, stage="dev")
    allow_api(endpoint, "http-echo", api_id)
    assert call(f"{url}/dev/one")[0] == 404  # nothing deployed yet
    first = apigw.create_deployment(ApiId=api_id, StageName="dev", Description="first")
    assert first["DeploymentStatus"] == "DEPLOYED"
    assert apigw.get_stage(ApiId=api_id, StageName="dev")["DeploymentId"] == first["DeploymentId"]
    assert call(f"{url}/dev/one")[0] == 200
    integration = apigw.get_integrations(ApiId=api_id)["Items"][0]["IntegrationId"]
    apigw.create_route(ApiId=api_id, RouteKey="GET /two", Target=f"integrations/{integration}")
    assert call(f"{url}/dev/two")[0] == 404  # added after the last deployment
    second = apigw.create_deployment(ApiId=api_id, StageName="dev")
    assert call(f"{url}/dev/two")[0] == 200
    ids = {d["DeploymentId"] for d in apigw.get_deployments(ApiId=api_id)["Items"]}
    assert ids == {first["DeploymentId"], second["DeploymentId"]}
    apigw.update_stage(ApiId=api_id, StageName="dev", DeploymentId=first["DeploymentId"])  # roll back
    assert call(f"{url}/dev/two")[0] == 404
    apigw.update_stage(ApiId=api_id, StageName="dev", AutoDeploy=True)
    assert call(f"{url}/dev/two")[0] == 200
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_deployment(ApiId=api_id, DeploymentId="nope00")


def test_auto_deploy_serves_a_route_as_soon_as_it_exists(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api_id, url = http_api(endpoint, "auto", echo, ["GET /one"])
    allow_api(endpoint, "http-echo", api_id)
    integration = apigw.get_integrations(ApiId=api_id)["Items"][0]["IntegrationId"]
    assert call(f"{url}/two")[0] == 404
    apigw.create_route(ApiId=api_id, RouteKey="GET /two", Target=f"integrations/{integration}")
    assert call(f"{url}/two")[0] == 200


def test_quick_create_builds_integration_route_and_default_stage(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api = apigw.create_api(Name="quick", ProtocolType="HTTP", Target=echo, RouteKey="GET /speeders")
    allow_api(endpoint, "http-echo", api["ApiId"])
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=api["ApiId"])["Items"]] == ["GET /speeders"]
    assert apigw.get_stages(ApiId=api["ApiId"])["Items"][0]["StageName"] == "$default"
    status, _, body = call(f"{api['ApiEndpoint']}/speeders?date=2024-05-01")
    assert status == 200 and json.loads(body)["event"]["queryStringParameters"] == {"date": "2024-05-01"}


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        data = json.dumps({"path": self.path}).encode()
        self.send_response(203)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_proxy_to_loopback_appends_the_path_on_default_route(endpoint: str):
    upstream = HTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        apigw = client(endpoint, "apigatewayv2")
        base = f"http://127.0.0.1:{upstream.server_address[1]}"
        api = apigw.create_api(Name="proxy", ProtocolType="HTTP", Target=base)
        status, _, body = call(f"{api['ApiEndpoint']}/store/checkout?x=1")
        assert (status, json.loads(body)) == (203, {"path": "/store/checkout?x=1"})
    finally:
        upstream.shutdown()


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
def test_deployments_and_stage_updates_survive_a_restart(tmp_path_factory: pytest.TempPathFactory, crash: bool):
    """Acknowledged means stored: after a kill -9 the journal brings back what the snapshot lacked."""
    with lifecycle.running(tmp_path_factory.mktemp("restart"), {"RETAIL_LOCALCLOUD_SNAPSHOT_S": "0"}) as url:
        port = int(url.rsplit(":", 1)[1])
        arn = deploy_function(url, "http-restart")
        apigw = client(url, "apigatewayv2")
        api_id, api_url = http_api(url, "kept", arn, ["GET /speeders"], auto_deploy=False, stage="prod")
        allow_api(url, "http-restart", api_id)
        first = apigw.create_deployment(ApiId=api_id, StageName="prod")["DeploymentId"]
        integration = apigw.get_integrations(ApiId=api_id)["Items"][0]["IntegrationId"]
        apigw.create_route(ApiId=api_id, RouteKey="GET /later", Target=f"integrations/{integration}")
        second = apigw.create_deployment(ApiId=api_id, Description="with /later")["DeploymentId"]
        apigw.update_stage(ApiId=api_id, StageName="prod", DeploymentId=second, StageVariables={"v": "1"})
        if crash:
            os.killpg(lifecycle.status(port).pid, signal.SIGKILL)
            time.sleep(0.5)
        else:
            lifecycle.down(port)
        lifecycle.up(port)
        stage = apigw.get_stage(ApiId=api_id, StageName="prod")
        assert (stage["DeploymentId"], stage["StageVariables"]) == (second, {"v": "1"})
        assert {d["DeploymentId"] for d in apigw.get_deployments(ApiId=api_id)["Items"]} == {first, second}
        assert call(f"{api_url}/prod/later")[0] == 200


def test_cors_preflight_and_headers_when_configured(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api_id, url = http_api(endpoint, "cors", echo, ["GET /speeders"])
    allow_api(endpoint, "http-echo", api_id)
    origin = {"Origin": "https://dashboard.example.com"}
    assert "Access-Control-Allow-Origin" not in call(f"{url}/speeders", headers=origin)[1]
    apigw.update_api(ApiId=api_id, CorsConfiguration={"AllowOrigins": ["https://dashboard.example.com"],
                                                      "AllowMethods": ["GET"], "MaxAge": 300})
    status, headers, _ = call(f"{url}/speeders", "OPTIONS", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://dashboard.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET" and headers["Access-Control-Max-Age"] == "300"
    status, headers, _ = call(f"{url}/speeders", headers=origin)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://dashboard.example.com"
    assert "Access-Control-Allow-Origin" not in call(f"{url}/speeders", headers={"Origin": "https://evil.test"})[1]


def test_parameter_mapping_and_authorizers_are_refused_loudly(endpoint: str, echo: str):
    apigw = client(endpoint, "apigatewayv2")
    api_id, url = http_api(endpoint, "refusals", echo, ["GET /mapped"])
    allow_api(endpoint, "http-echo", api_id)
    integration = apigw.get_integrations(ApiId=api_id)["Items"][0]["IntegrationId"]
    apigw.update_integration(ApiId=api_id, IntegrationId=integration,
                             RequestParameters={"overwrite:path": "/elsewhere"})
    status, _, body = call(f"{url}/mapped")
    assert status == 500 and "parameter mapping" in json.loads(body)["message"]
    apigw.create_route(ApiId=api_id, RouteKey="GET /secured", AuthorizationType="AWS_IAM",
                       Target=f"integrations/{integration}")
    status, _, body = call(f"{url}/secured")
    assert status == 500 and "authorizers" in json.loads(body)["message"]
