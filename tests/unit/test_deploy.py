"""Deploy steps against the session's local cloud: deterministic packages with offline vendoring,
create / no-op / update of functions, idempotent ensure_* steps, the REST API builder, and a teardown
that removes exactly what carries the prefix."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from helpers import config, deploy, iam, packaging, teardown
from helpers.paths import PROJECT_ROOT


HANDLER = '''
import json


def handler(event, context):
    rows = json.loads(event["body"])
    return {"statusCode": 200, "body": json.dumps({"accepted": len(rows), "rejected": [], "failed": 0})}
'''


@pytest.fixture(autouse=True)
def package_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setattr(packaging, "PACKAGE_CACHE", cache)
    return cache


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh prefix on the local cloud; everything under it is torn down afterwards."""
    name = "t" + uuid.uuid4().hex[:8]
    config.configure(target="local", prefix=name, region="us-east-1")
    yield name
    config.configure(target="local", prefix=name, region="us-east-1")
    teardown.everything(name)
    for role in config.client("iam").list_roles()["Roles"]:
        if role["RoleName"].startswith(name + "-"):
            teardown.delete_role(role["RoleName"])
    config._current = None


@pytest.fixture
def calls() -> Iterator[list[str]]:
    """Names of the Lambda and API Gateway operations called through config.client while the test runs."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    clients = [config.client("lambda"), config.client("apigateway")]
    for client in clients:
        client.meta.events.register("before-call", record)
    yield seen
    for client in clients:
        client.meta.events.unregister("before-call", record)


def function_folder(root: Path, name: str = "fn", source: str = HANDLER, requirements: str | None = None) -> Path:
    folder = root / name
    (folder / "__pycache__").mkdir(parents=True, exist_ok=True)
    (folder / "tests").mkdir(exist_ok=True)
    (folder / "app.py").write_text(source)
    (folder / "util.py").write_text("VALUE = 1\n")
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / "tests" / "test_app.py").write_text("def test(): pass\n")
    (folder / "test_local.py").write_text("def test(): pass\n")
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def names_in(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def make_role(name: str) -> str:
    """An execution role that may read the prefix's streams (IAM is enforced: an event source mapping
    is refused for a role that cannot read its stream)."""
    client = config.client("iam")
    try:
        return client.get_role(RoleName=name)["Role"]["Arn"]
    except client.exceptions.NoSuchEntityException:
        arn = client.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(iam.LAMBDA_TRUST_POLICY))["Role"]["Arn"]
    streams = f"arn:aws:kinesis:us-east-1:{config.LOCAL_ACCOUNT_ID}:stream/{name.split('-')[0]}-*"
    client.put_role_policy(RoleName=name, PolicyName="read-streams", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [iam.allow(iam.KINESIS_READ_ACTIONS, [streams], "ReadStreams")]}))
    return arn


# -------------------------------------------------------------------------------------------------
# Packaging (no cloud)


def test_package_is_deterministic_and_changes_with_the_code(tmp_path: Path, package_cache: Path):
    folder = function_folder(tmp_path)
    first = packaging.package(folder)
    assert names_in(first) == ["app.py", "util.py"]  # no caches, no tests
    assert all(info.date_time == packaging.ZIP_DATE for info in zipfile.ZipFile(io.BytesIO(first)).infolist())
    assert len(list(package_cache.glob("fn-*.zip"))) == 1
    for cached in package_cache.iterdir():
        cached.unlink()
    time.sleep(0.01)
    (folder / "app.py").touch()  # a new mtime alone changes nothing
    assert packaging.package(folder) == first
    (folder / "util.py").write_text("VALUE = 2\n")
    changed = packaging.package(folder)
    assert packaging.code_sha256(changed) != packaging.code_sha256(first)
    assert len(list(package_cache.glob("fn-*.zip"))) == 2


def test_requirements_are_vendored_from_this_environment(tmp_path: Path):
    folder = function_folder(tmp_path, requirements="# handler dependencies\naws-lambda-powertools==3.37.0\n")
    files = names_in(packaging.package(folder))
    tops = {name.split("/", 1)[0] for name in files}
    assert {"app.py", "util.py", "aws_lambda_powertools", "typing_extensions.py"} <= tops
    assert "aws_lambda_powertools-3.37.0.dist-info" in tops and "aws_lambda_powertools/__init__.py" in files
    provided = ("boto3", "botocore", "jmespath", "urllib3", "s3transfer", "dateutil", "six")
    assert not [name for name in files if name.split("/", 1)[0].split("-")[0] in provided]
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert packaging.package(folder) == packaging.package(folder)


def test_missing_or_mismatched_requirement_is_a_clear_error(tmp_path: Path):
    missing = function_folder(tmp_path, "missing", requirements="surely-not-installed-retail-pkg==1.0\n")
    with pytest.raises(packaging.PackagingError, match="is not installed in this environment"):
        packaging.package(missing)
    wrong = function_folder(tmp_path, "wrong", requirements="aws-lambda-powertools==1.0.0\n")
    with pytest.raises(packaging.PackagingError, match="3.37.0 is installed"):
        packaging.package(wrong)
    with pytest.raises(packaging.PackagingError, match="no app.py"):
        packaging.package(tmp_path)


def test_layer_puts_the_dependencies_under_python():
    files = names_in(packaging.package_layer(["aws-lambda-powertools==3.37.0"]))
    assert all(name.startswith("python/") for name in files)
    assert "python/aws_lambda_powertools/__init__.py" in files and "python/typing_extensions.py" in files


# -------------------------------------------------------------------------------------------------
# Lambda


def test_deploy_function_creates_then_skips_then_updates(tmp_path: Path, prefix: str, calls: list[str]):
    folder = function_folder(tmp_path)
    role = make_role(f"{prefix}-fn-role")
    arn = deploy.deploy_function(folder, role_arn=role, environment={"STREAM": "s1"})
    assert arn.endswith(f":function:{prefix}-fn")
    awslambda = config.client("lambda")
    current = awslambda.get_function(FunctionName=arn)["Configuration"]
    assert current["CodeSha256"] == packaging.code_sha256(packaging.package(folder))
    assert (current["Runtime"], current["Handler"], current["Timeout"], current["MemorySize"]) == \
        (packaging.RUNTIME, "app.handler", 30, 256)

    calls.clear()
    assert deploy.deploy_function(folder, role_arn=role, environment={"STREAM": "s1"}) == arn
    assert not [c for c in calls if c.startswith("Update")]
    assert awslambda.get_function(FunctionName=arn)["Configuration"]["CodeSha256"] == current["CodeSha256"]

    calls.clear()
    deploy.deploy_function(folder, role_arn=role, environment={"STREAM": "s2"}, timeout=60)
    assert [c for c in calls if c.startswith("Update")] == ["UpdateFunctionConfiguration"]
    updated = awslambda.get_function(FunctionName=arn)["Configuration"]
    assert (updated["Environment"]["Variables"], updated["Timeout"]) == ({"STREAM": "s2"}, 60)

    calls.clear()
    (folder / "util.py").write_text("VALUE = 3\n")
    deploy.deploy_function(folder, role_arn=role, environment={"STREAM": "s2"}, timeout=60)
    assert [c for c in calls if c.startswith("Update")] == ["UpdateFunctionCode"]


def test_create_waits_for_a_new_role_to_propagate(tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(deploy, "ROLE_RETRY_DELAY", 0.2)
    folder = function_folder(tmp_path, "late")
    role_name = f"{prefix}-late-role"
    role_arn = f"arn:aws:iam::{config.LOCAL_ACCOUNT_ID}:role/{role_name}"
    timer = threading.Timer(0.5, make_role, args=[role_name])
    timer.start()
    assert deploy.deploy_function(folder, role_arn=role_arn).endswith(f"{prefix}-late")
    timer.join()
    monkeypatch.setattr(deploy, "ROLE_PROPAGATION_SECONDS", 0.5)
    with pytest.raises(ClientError, match="cannot be assumed"):
        deploy.deploy_function(folder, role_arn=role_arn + "-never", name=f"{prefix}-never")


# -------------------------------------------------------------------------------------------------
# ensure_*


def test_ensure_steps_are_idempotent(tmp_path: Path, prefix: str, calls: list[str]):
    stream = deploy.ensure_stream(f"{prefix}-transactions", 1)
    assert deploy.ensure_stream(f"{prefix}-transactions", 1) == stream
    assert deploy.ensure_stream(f"{prefix}-transactions", 2) == stream
    summary = config.client("kinesis").describe_stream_summary(StreamName=f"{prefix}-transactions")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2

    queue = deploy.ensure_queue(f"{prefix}-quarantine")
    assert deploy.ensure_queue(f"{prefix}-quarantine") == queue and queue.endswith(f"/{prefix}-quarantine")

    bucket = f"{prefix}-lake-{config.LOCAL_ACCOUNT_ID}-us-east-1"
    assert deploy.ensure_bucket(bucket) == deploy.ensure_bucket(bucket) == bucket

    schema = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
              "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
              "BillingMode": "PAY_PER_REQUEST"}
    table = deploy.ensure_table(f"{prefix}-sales", schema)
    assert deploy.ensure_table(f"{prefix}-sales", schema) == table and table.endswith(f"table/{prefix}-sales")

    function = deploy.deploy_function(function_folder(tmp_path), role_arn=make_role(f"{prefix}-fn-role"))
    calls.clear()
    mapping = deploy.ensure_event_source_mapping(function, stream, StartingPosition="TRIM_HORIZON", BatchSize=100)
    again = deploy.ensure_event_source_mapping(function, stream, StartingPosition="TRIM_HORIZON", BatchSize=100)
    assert again == mapping and calls.count("CreateEventSourceMapping") == 1
    assert "UpdateEventSourceMapping" not in calls
    deploy.ensure_event_source_mapping(function, stream, StartingPosition="TRIM_HORIZON", BatchSize=50)
    assert config.client("lambda").get_event_source_mapping(UUID=mapping)["BatchSize"] == 50
    assert calls.count("UpdateEventSourceMapping") == 1


def test_bucket_outside_us_east_1_gets_its_location(prefix: str):
    config.configure(target="local", prefix=prefix, region="eu-west-1")
    bucket = f"{prefix}-lake-{config.LOCAL_ACCOUNT_ID}-eu-west-1"
    deploy.ensure_bucket(bucket)
    assert config.client("s3").get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    teardown.delete_bucket(bucket)


# -------------------------------------------------------------------------------------------------
# REST API


def build_api(tmp_path: Path, prefix: str, **options: Any) -> tuple[deploy.RestApi, str, str]:
    role = make_role(f"{prefix}-api-role")
    ingest = deploy.deploy_function(function_folder(tmp_path, "ingest"), role_arn=role)
    query = deploy.deploy_function(function_folder(tmp_path, "query"), role_arn=role)
    routes = [
        deploy.Route("/transactions", "POST", ingest),
        ("/invoices/{invoiceNo}", "GET", query),
        ("/customers/{customerId}/invoices", "GET", query, "AWS"),
    ]
    return deploy.ensure_rest_api(f"{prefix}-api", routes, **options), ingest, query


def test_ensure_rest_api_builds_resources_methods_integrations_and_permissions(
        tmp_path: Path, prefix: str, calls: list[str]):
    api, ingest, query = build_api(tmp_path, prefix)
    apigw = config.client("apigateway")
    resources = {r["path"]: r for r in apigw.get_resources(restApiId=api.id)["items"]}
    assert {"/", "/transactions", "/invoices", "/invoices/{invoiceNo}", "/customers", "/customers/{customerId}",
            "/customers/{customerId}/invoices"} <= set(resources)

    post = apigw.get_integration(restApiId=api.id, resourceId=resources["/transactions"]["id"], httpMethod="POST")
    assert post["type"] == "AWS_PROXY" and post["uri"] == deploy.lambda_uri(ingest)
    non_proxy_resource = resources["/customers/{customerId}/invoices"]["id"]
    non_proxy = apigw.get_integration(restApiId=api.id, resourceId=non_proxy_resource, httpMethod="GET")
    assert non_proxy["type"] == "AWS" and "body-json" in non_proxy["requestTemplates"]["application/json"]
    assert "200" in non_proxy["integrationResponses"]
    method = apigw.get_method(restApiId=api.id, resourceId=non_proxy_resource, httpMethod="GET")
    assert "200" in method["methodResponses"] and method["apiKeyRequired"] is False

    execute = f"arn:aws:execute-api:us-east-1:{config.LOCAL_ACCOUNT_ID}:{api.id}"
    policy = json.loads(config.client("lambda").get_policy(FunctionName=query)["Policy"])["Statement"]
    sources = sorted(s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy)
    assert sources == [f"{execute}/*/GET/customers/*/invoices", f"{execute}/*/GET/invoices/*"]
    assert all(s["Principal"] == {"Service": "apigateway.amazonaws.com"} for s in policy)
    assert api.url == f"{config.settings().endpoint_url}/restapis/{api.id}/v1/_user_request_"
    apigw.get_stage(restApiId=api.id, stageName="v1")

    calls.clear()
    again, _, _ = build_api(tmp_path, prefix)
    assert again == api
    changes = {"CreateRestApi", "CreateResource", "PutMethod", "DeleteMethod", "PutIntegration", "AddPermission",
               "CreateDeployment", "PutMethodResponse", "PutIntegrationResponse", "UpdateFunctionCode",
               "UpdateFunctionConfiguration"}
    assert not changes & set(calls), sorted(changes & set(calls))


def test_api_key_and_key_required_methods(tmp_path: Path, prefix: str):
    api, _, _ = build_api(tmp_path, prefix, api_key_required=True)
    apigw = config.client("apigateway")
    resource = next(r["id"] for r in apigw.get_resources(restApiId=api.id)["items"] if r["path"] == "/transactions")
    assert apigw.get_method(restApiId=api.id, resourceId=resource, httpMethod="POST")["apiKeyRequired"] is True
    # Still integrated after the method was replaced.
    assert apigw.get_integration(restApiId=api.id, resourceId=resource, httpMethod="POST")["type"] == "AWS_PROXY"
    key = deploy.ensure_api_key(api, f"{prefix}-clients")
    assert deploy.ensure_api_key(api, f"{prefix}-clients") == key and len(key) >= 20
    plans = [p for p in apigw.get_usage_plans()["items"] if p["name"] == f"{prefix}-clients"]
    assert len(plans) == 1 and plans[0]["apiStages"] == [{"apiId": api.id, "stage": "v1"}]


def test_authorizer_is_attached_to_every_route_and_may_invoke_its_function(tmp_path: Path, prefix: str,
                                                                          calls: list[str]):
    role = make_role(f"{prefix}-api-role")
    guard = deploy.deploy_function(function_folder(tmp_path, "guard"), role_arn=role)
    authorizer = deploy.Authorizer(f"{prefix}-customers", guard, identity_source="method.request.header.x-customer")
    api, _, _ = build_api(tmp_path, prefix, authorizer=authorizer)
    apigw = config.client("apigateway")
    found = [a for a in apigw.get_authorizers(restApiId=api.id)["items"] if a["name"] == authorizer.name]
    assert len(found) == 1 and found[0]["authorizerUri"] == deploy.lambda_uri(guard)
    for resource in apigw.get_resources(restApiId=api.id)["items"]:
        for verb in resource.get("resourceMethods") or {}:
            method = apigw.get_method(restApiId=api.id, resourceId=resource["id"], httpMethod=verb)
            assert (method["authorizationType"], method["authorizerId"]) == ("CUSTOM", found[0]["id"])
    policy = json.loads(config.client("lambda").get_policy(FunctionName=guard)["Policy"])["Statement"]
    assert [s["Condition"]["ArnLike"]["AWS:SourceArn"].rsplit(":", 1)[-1] for s in policy] == \
        [f"{api.id}/authorizers/{found[0]['id']}"]
    calls.clear()
    build_api(tmp_path, prefix, authorizer=authorizer)
    assert not {"CreateAuthorizer", "DeleteAuthorizer", "PutMethod", "CreateDeployment"} & set(calls)


def test_only_binaries_for_another_platform_are_flagged():
    class Fake:
        def __init__(self, wheel: str):
            self.wheel = wheel

        def read_text(self, name: str) -> str:
            return self.wheel

    pure = "Root-Is-Purelib: true\nTag: py3-none-any\n"
    linux = "Root-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_17_x86_64\n"
    mac = "Root-Is-Purelib: false\nTag: cp311-cp311-macosx_11_0_arm64\n"
    assert packaging._runs_on_lambda(Fake(pure)) and not packaging._runs_on_lambda(Fake(mac))
    assert packaging._runs_on_lambda(Fake(linux)) == (packaging.RUNTIME == "python3.11")


def test_invoke_url_on_aws_is_execute_api():
    config.configure(target="aws", region="eu-west-1")
    try:
        assert deploy.invoke_url("abc123", "v1") == "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
    finally:
        config._current = None


def test_client_posts_through_the_deployed_api(tmp_path: Path, prefix: str):
    from helpers import client

    api, _, _ = build_api(tmp_path, prefix)
    summary = client.send(api.url_for("/transactions"), nrows=120, batch_size=50, progress=False)
    assert (summary.accepted, summary.failed) == (120, 0), str(summary)


def test_course_ingest_api_end_to_end(prefix: str):
    """The workbook's own ingest function behind the API: the client's rows land on the stream."""
    from helpers import client
    from helpers.resources import INGEST_API, names

    n = names()
    role = iam.ensure_role(next(r for r in iam.course_roles(n) if r.folder == INGEST_API))
    assert deploy.ensure_stream(n.stream, 1) == n.stream_arn
    function = deploy.deploy_function(INGEST_API, role_arn=role, environment={"STREAM_NAME": n.stream})
    api = deploy.ensure_rest_api(f"{prefix}-ingest", [deploy.Route("/transactions", "POST", function)])
    summary = client.send(api.url_for("transactions"), nrows=300, batch_size=100, concurrency=3, progress=False)
    assert summary.failed == 0 and summary.accepted + len(summary.rejected) == 300, str(summary)
    kinesis = config.client("kinesis")
    shard = kinesis.list_shards(StreamName=n.stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=n.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    on_stream = {json.loads(record["Data"])["record_id"] for record in records}
    sent = {row["record_id"] for row in client.read_rows(nrows=300).records}
    assert on_stream == sent - {r.record_id for r in summary.rejected}


# -------------------------------------------------------------------------------------------------
# Teardown


def test_teardown_removes_the_prefix_and_nothing_else(tmp_path: Path, prefix: str):
    others = [f"{prefix}x-keep", "u" + prefix[1:] + "-keep"]  # a longer prefix, another prefix
    build_api(tmp_path, prefix)
    deploy.ensure_api_key(deploy.RestApi(deploy.find_rest_api(f"{prefix}-api"), f"{prefix}-api", "v1", ""),
                          f"{prefix}-clients")
    stream = deploy.ensure_stream(f"{prefix}-transactions")
    deploy.ensure_event_source_mapping(f"{prefix}-ingest", stream, StartingPosition="LATEST")
    deploy.ensure_queue(f"{prefix}-quarantine")
    bucket = f"{prefix}-lake-bucket"
    deploy.ensure_bucket(bucket)
    config.client("s3").put_object(Bucket=bucket, Key="raw/a.json", Body=b"{}")
    deploy.ensure_table(f"{prefix}-sales", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"})
    for other in others:
        deploy.ensure_queue(other)
        deploy.ensure_stream(other)
        deploy.ensure_bucket(other)
    try:
        planned = teardown.streaming(prefix, dry_run=True)
        assert planned["functions"] == [f"{prefix}-ingest", f"{prefix}-query"]
        assert len(planned["event_source_mappings"]) == 1 and planned["rest_apis"] == [f"{prefix}-api"]
        assert planned["buckets"] == [bucket] and planned["streams"] == [f"{prefix}-transactions"]
        assert planned["usage_plans"] == planned["api_keys"] == [f"{prefix}-clients"]

        removed = teardown.streaming(prefix)
        assert removed == planned
        assert all(not found for found in teardown.workbook_resources(prefix).values())
        for other in others:
            assert deploy.ensure_queue(other).endswith(other)
            assert other in config.client("kinesis").list_streams()["StreamNames"]
            config.client("s3").head_bucket(Bucket=other)
    finally:
        for other in others:
            teardown.delete_queue(other)
            teardown.delete_stream(other)
            teardown.delete_bucket(other)


def test_teardown_refuses_a_prefix_that_is_not_one():
    for prefix in ("", "-", "*", "a b"):
        with pytest.raises(ValueError, match="refusing"):
            teardown.streaming(prefix)
