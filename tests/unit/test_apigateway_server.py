"""The API Gateway executor inside a real local cloud: APIs built with plain boto3 calls, served on
loopback, and (once the Lambda runtime exists) real zip-deployed handlers behind them."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import zipfile
from typing import Any, Iterator

import boto3
import pytest

from localcloud import lifecycle
from localcloud.apigateway.vtl import PASSTHROUGH_TEMPLATE



@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env: dict[str, str] = {}
    with lifecycle.running(tmp_path_factory.mktemp("localcloud"), env) as url:
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def send(endpoint: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A raw request (http.client adds no Content-Type of its own, unlike urllib)."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(endpoint), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def new_api(apigw: Any, name: str) -> tuple[str, str]:
    api = apigw.create_rest_api(name=name)["id"]
    return api, apigw.get_resources(restApiId=api)["items"][0]["id"]


def test_mock_api_through_the_server_at_both_addresses(endpoint: str):
    apigw = client(endpoint, "apigateway")
    api, root = new_api(apigw, "mock")
    resource = apigw.create_resource(restApiId=api, parentId=root, pathPart="ping")["id"]
    apigw.put_method(restApiId=api, resourceId=resource, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=resource, httpMethod="GET", type="MOCK",
                          requestTemplates={"application/json": '{"statusCode": 200}'})
    apigw.put_method_response(restApiId=api, resourceId=resource, httpMethod="GET", statusCode="200")
    apigw.put_integration_response(restApiId=api, resourceId=resource, httpMethod="GET", statusCode="200",
                                   responseTemplates={"application/json": '{"pong": "$context.stage"}'})
    apigw.create_deployment(restApiId=api, stageName="dev")
    status, _, body = send(endpoint, "GET", f"/restapis/{api}/dev/_user_request_/ping")
    assert (status, json.loads(body)) == (200, {"pong": "dev"})
    host = f"{api}.execute-api.localhost:{port_of(endpoint)}"
    status, _, body = send(endpoint, "GET", "/dev/ping", headers={"Host": host})
    assert (status, json.loads(body)) == (200, {"pong": "dev"})
    status, headers, body = send(endpoint, "GET", f"/restapis/{api}/dev/_user_request_/nope")
    assert status == 403 and headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert apigw.get_rest_api(restApiId=api)["name"] == "mock"  # the control plane is still moto's


# --------------------------------------------------------------------------------------------------
# With real Lambda functions


def deploy_function(endpoint: str, name: str, source: str) -> str:
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
    awslambda.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                             Principal="apigateway.amazonaws.com")
    return arn


def lambda_uri(arn: str) -> str:
    return f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"


NON_PROXY_HANDLER = '''
def handler(event, context):
    body = event["body-json"]
    return {"rows": len(body.get("store", {})) if isinstance(body, dict) else 0,
            "method": event["context"]["http-method"], "query": event["params"]["querystring"],
            "columns": sorted(body) if isinstance(body, dict) else []}
'''


def test_dataframe_posted_without_content_type_reaches_a_non_proxy_lambda(endpoint: str):
    import pandas
    apigw = client(endpoint, "apigateway")
    arn = deploy_function(endpoint, "frame-reader", NON_PROXY_HANDLER)
    api, root = new_api(apigw, "frames")
    main = apigw.create_resource(restApiId=api, parentId=root, pathPart="main")["id"]
    for verb in ("POST", "GET"):
        apigw.put_method(restApiId=api, resourceId=main, httpMethod=verb, authorizationType="NONE")
        apigw.put_integration(restApiId=api, resourceId=main, httpMethod=verb, type="AWS",
                              integrationHttpMethod="POST", uri=lambda_uri(arn),
                              requestTemplates={"application/json": PASSTHROUGH_TEMPLATE},
                              passthroughBehavior="WHEN_NO_TEMPLATES")
        apigw.put_method_response(restApiId=api, resourceId=main, httpMethod=verb, statusCode="200")
        apigw.put_integration_response(restApiId=api, resourceId=main, httpMethod=verb, statusCode="200",
                                       selectionPattern="")
    apigw.create_deployment(restApiId=api, stageName="prod")
    frame = pandas.DataFrame({"store": ["north", "south", "east"], "sales": [1.0, 2.5, 3.25]})
    status, _, body = send(endpoint, "POST", f"/restapis/{api}/prod/_user_request_/main?day=2011-12-01",
                           body=frame.to_json().encode())
    assert status == 200, body
    assert json.loads(body) == {"rows": 3, "method": "POST", "query": {"day": "2011-12-01"},
                                "columns": ["sales", "store"]}
    status, _, body = send(endpoint, "GET", f"/restapis/{api}/prod/_user_request_/main")
    assert (status, json.loads(body)) == (200, {"rows": 0, "method": "GET", "query": {}, "columns": []})


PROXY_HANDLER = '''
import json


def handler(event, context):
    if event["queryStringParameters"] and event["queryStringParameters"].get("fail"):
        raise RuntimeError("asked to fail")
    return {"statusCode": 201, "headers": {"X-Handler": "proxy", "Content-Type": "application/json"},
            "body": json.dumps({"id": event["pathParameters"]["id"], "method": event["httpMethod"],
                                "stage": event["requestContext"]["stage"], "body": event["body"]})}
'''


def test_lambda_proxy_returns_status_headers_and_body(endpoint: str):
    apigw = client(endpoint, "apigateway")
    arn = deploy_function(endpoint, "proxy-handler", PROXY_HANDLER)
    api, root = new_api(apigw, "proxy")
    items = apigw.create_resource(restApiId=api, parentId=root, pathPart="items")["id"]
    item = apigw.create_resource(restApiId=api, parentId=items, pathPart="{id}")["id"]
    apigw.put_method(restApiId=api, resourceId=item, httpMethod="ANY", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=item, httpMethod="ANY", type="AWS_PROXY",
                          integrationHttpMethod="POST", uri=lambda_uri(arn))
    apigw.create_deployment(restApiId=api, stageName="dev")
    status, headers, body = send(endpoint, "PUT", f"/restapis/{api}/dev/_user_request_/items/42", body=b"hello")
    assert status == 201 and headers["X-Handler"] == "proxy"
    assert json.loads(body) == {"id": "42", "method": "PUT", "stage": "dev", "body": "hello"}
    status, _, body = send(endpoint, "GET", f"/restapis/{api}/dev/_user_request_/items/42?fail=1")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
