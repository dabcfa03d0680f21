"""S3 and SNS notifications in the local cloud: event shapes and resource-policy checks on their own,
then through a real server of its own (S3 -> SQS/Lambda, SNS -> Lambda, permission errors)."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event, SNSEvent
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.notifications import executor as nt

ACCOUNT = "123456789012"

# --------------------------------------------------------------------------------------------------
# Event shapes (pure)

BUCKET = SimpleNamespace(name="lake", region_name="us-east-1", account_id=ACCOUNT)
KEY = SimpleNamespace(name="raw/my report (1).csv", size=42, etag='"abc123"', version_id="v1")


def test_s3_event_parses_with_powertools_and_encodes_the_key_as_aws():
    event = S3Event(nt.s3_event("s3:ObjectCreated:Put", BUCKET, KEY, "cfg-1", ACCOUNT))
    record = event.record
    assert record.event_version == "2.1" and record.event_source == "aws:s3"
    assert record.event_name == "ObjectCreated:Put" and record.aws_region == "us-east-1"
    assert record.s3.get_object.key == "raw/my+report+%281%29.csv"
    assert event.object_key == "raw/my report (1).csv"  # powertools decodes it back
    assert record.s3.get_object.size == 42 and record.s3.get_object.etag == "abc123"
    assert record.s3.get_object.version_id == "v1" and record.s3.get_object.sequencer
    assert record.s3.bucket.name == "lake" and record.s3.bucket.arn == "arn:aws:s3:::lake"
    assert record.s3.bucket.owner_identity.principal_id == ACCOUNT
    assert record.s3.configuration_id == "cfg-1" and record.s3.s3_schema_version == "1.0"
    assert record.user_identity.principal_id and record.request_parameters.source_ip_address
    assert set(record.response_elements) == {"x-amz-request-id", "x-amz-id-2"}
    assert record.event_time.endswith("Z")


def test_s3_delete_event_has_no_size_or_etag():
    raw = nt.s3_event("s3:ObjectRemoved:Delete", BUCKET, KEY, "cfg", ACCOUNT)["Records"][0]
    assert raw["eventName"] == "ObjectRemoved:Delete" and "size" not in raw["s3"]["object"]


def test_sns_event_parses_with_powertools():
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:orders"
    event = SNSEvent(nt.sns_event(f"{topic}:sub-1", topic, "m-1", "hello", "Subj",
                                  {"kind": {"Type": "String", "Value": "order"}}))
    record = event.record
    assert record.event_source == "aws:sns" and record.event_version == "1.0"
    assert record.event_subscription_arn == f"{topic}:sub-1"
    sns = record.sns
    assert (sns.get_type, sns.message_id, sns.topic_arn, sns.subject, sns.message) == (
        "Notification", "m-1", topic, "Subj", "hello")
    assert sns.message_attributes["kind"].get_type == "String" and sns.message_attributes["kind"].value == "order"
    assert sns.timestamp.endswith("Z") and sns.signature_version and sns.unsubscribe_url


# --------------------------------------------------------------------------------------------------
# Resource policies (pure)

FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"


def statement(principal: Any = None, condition: dict[str, Any] | None = None, effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal or {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction", "Resource": FN, **({"Condition": condition} if condition else {})}


def allows(*statements: dict[str, Any], source: str = "arn:aws:s3:::lake") -> bool:
    return nt.policy_allows({"Statement": list(statements)}, "s3.amazonaws.com", source, ACCOUNT)


def test_policy_needs_the_service_principal():
    assert allows(statement())
    assert not allows()
    assert not allows(statement({"Service": "sns.amazonaws.com"}))
    assert allows(statement("*"))


def test_policy_conditions_on_source_arn_and_account():
    assert allows(statement(condition={"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::lake"}}))
    assert allows(statement(condition={"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::la*"}}))
    assert not allows(statement(condition={"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::other"}}))
    assert allows(statement(condition={"StringEquals": {"AWS:SourceAccount": ACCOUNT}}))
    assert not allows(statement(condition={"StringEquals": {"AWS:SourceAccount": "999999999999"}}))


def test_explicit_deny_wins():
    assert not allows(statement(), statement(effect="Deny"))


# --------------------------------------------------------------------------------------------------
# Through a real local cloud


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud")) as url:
        yield url


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# The handler AWS would run: it forwards the event it received to a queue named in its environment.
FORWARDER = """
import os, json, boto3
def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT_QUEUE"], MessageBody=json.dumps(event))
    return {"ok": True}
"""


def zipped(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def role(aws: Any) -> str:
    """The forwarders' execution role: it may send to the test's queues (the local cloud enforces IAM)."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    name = unique("fn")
    arn = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    aws("iam").put_role_policy(RoleName=name, PolicyName="forward", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:123456789012:*"}]}))
    return arn


def make_queue(aws: Any) -> tuple[str, str]:
    url = aws("sqs").create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def make_forwarder(aws: Any, role: str) -> tuple[str, str]:
    """A deployed function forwarding its events to a fresh queue: (function ARN, queue URL)."""
    url, _ = make_queue(aws)
    arn = aws("lambda").create_function(
        FunctionName=unique("fwd"), Runtime="python3.11", Role=role, Handler="app.handler",
        Code={"ZipFile": zipped(FORWARDER)}, Timeout=10, Environment={"Variables": {"OUT_QUEUE": url}},
    )["FunctionArn"]
    return arn, url


def allow(aws: Any, function_arn: str, principal: str, source_arn: str) -> None:
    aws("lambda").add_permission(FunctionName=function_arn, StatementId=unique("s"), Action="lambda:InvokeFunction",
                                 Principal=principal, SourceArn=source_arn, SourceAccount=ACCOUNT)


def receive(aws: Any, url: str, expected: int = 1, wait_s: float = 15.0) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    while len(bodies) < expected and time.monotonic() < deadline:
        response = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        bodies += [json.loads(m["Body"]) for m in response.get("Messages", [])]
        if len(bodies) < expected:
            time.sleep(0.1)
    return bodies


def lambda_configuration(function_arn: str, **filters: str) -> dict[str, Any]:
    configuration: dict[str, Any] = {"Id": "to-fn", "LambdaFunctionArn": function_arn, "Events": ["s3:ObjectCreated:*"]}
    if filters:
        configuration["Filter"] = {"Key": {"FilterRules": [{"Name": k, "Value": v} for k, v in filters.items()]}}
    return configuration


def test_missing_permission_is_refused_like_aws(aws: Any, role: str):
    function_arn, _ = make_forwarder(aws, role)
    bucket = unique("b")
    aws("s3").create_bucket(Bucket=bucket)
    config = {"LambdaFunctionConfigurations": [lambda_configuration(function_arn)]}
    with pytest.raises(ClientError) as error:
        aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    assert error.value.response["Error"]["Code"] == "InvalidArgument"
    assert "Unable to validate the following destination configurations" in error.value.response["Error"]["Message"]
    allow(aws, function_arn, "s3.amazonaws.com", "arn:aws:s3:::some-other-bucket")
    with pytest.raises(ClientError):
        aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    allow(aws, function_arn, "s3.amazonaws.com", f"arn:aws:s3:::{bucket}")
    aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def test_s3_to_sqs_gets_the_aws_record(aws: Any):
    url, queue_arn = make_queue(aws)
    bucket = unique("b")
    aws("s3").create_bucket(Bucket=bucket)
    aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "q", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:Put"]}]})
    aws("sqs").purge_queue(QueueUrl=url)  # the s3:TestEvent S3 sends on configuration
    aws("s3").put_object(Bucket=bucket, Key="in/a b.csv", Body=b"x,y\n")
    [body] = receive(aws, url)
    record = S3Event(body).record
    assert record.s3.get_object.key == "in/a+b.csv" and record.s3.configuration_id == "q"
    assert record.s3.get_object.sequencer and record.user_identity.principal_id


def test_tags_stored_by_put_object_do_not_send_a_tagging_event(aws: Any):
    url, queue_arn = make_queue(aws)
    bucket = unique("b")
    aws("s3").create_bucket(Bucket=bucket)
    aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "q", "QueueArn": queue_arn,
                                 "Events": ["s3:ObjectCreated:*", "s3:ObjectTagging:*", "s3:ObjectRemoved:*"]}]})
    aws("sqs").purge_queue(QueueUrl=url)
    aws("s3").put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="team=data")
    aws("s3").put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    aws("s3").delete_object(Bucket=bucket, Key="k")
    names = [S3Event(body).record.event_name for body in receive(aws, url, 3)]
    assert names == ["ObjectCreated:Put", "ObjectTagging:Put", "ObjectRemoved:Delete"]


def test_s3_put_invokes_the_function_with_filters(aws: Any, role: str):
    function_arn, out = make_forwarder(aws, role)
    bucket = unique("b")
    aws("s3").create_bucket(Bucket=bucket)
    allow(aws, function_arn, "s3.amazonaws.com", f"arn:aws:s3:::{bucket}")
    aws("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [lambda_configuration(function_arn, prefix="raw/", suffix=".csv")]})
    aws("s3").put_object(Bucket=bucket, Key="other/x.csv", Body=b"1")  # prefix mismatch
    aws("s3").put_object(Bucket=bucket, Key="raw/x.json", Body=b"1")  # suffix mismatch
    aws("s3").put_object(Bucket=bucket, Key="raw/day 1.csv", Body=b"1,2")
    received = receive(aws, out, 2, wait_s=8.0)
    assert len(received) == 1
    event = S3Event(received[0])
    assert event.object_key == "raw/day 1.csv" and event.record.s3.get_object.key == "raw/day+1.csv"
    assert event.record.event_name == "ObjectCreated:Put" and event.bucket_name == bucket


def test_sns_publish_invokes_a_permitted_function_only(aws: Any, role: str):
    permitted, permitted_out = make_forwarder(aws, role)
    refused, refused_out = make_forwarder(aws, role)
    topic = aws("sns").create_topic(Name=unique("t"))["TopicArn"]
    allow(aws, permitted, "sns.amazonaws.com", topic)
    for function_arn in (permitted, refused):
        aws("sns").subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function_arn)
    message_id = aws("sns").publish(TopicArn=topic, Message="hello", Subject="greeting", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "order"}})["MessageId"]
    [body] = receive(aws, permitted_out)
    sns = SNSEvent(body).record.sns
    assert (sns.message, sns.subject, sns.topic_arn, sns.message_id) == ("hello", "greeting", topic, message_id)
    assert sns.message_attributes["kind"].value == "order"
    assert receive(aws, refused_out, wait_s=0.5) == []


# --------------------------------------------------------------------------------------------------
# In process, with a fake Invoker standing in for the lambda-runtime


class FakeInvoker:
    """Records what would have been invoked."""

    name = "lambda-runtime"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def invoke(self, function: str, payload: bytes, *, invocation_type: str = "RequestResponse", **_: Any) -> Any:
        self.calls.append((function, json.loads(payload), invocation_type))


@pytest.fixture()
def fake_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeInvoker, Any]]:
    from moto import mock_aws

    from localcloud.executors import CloudContext

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    invoker, executor = FakeInvoker(), nt.make_executor()
    with mock_aws():
        executor.start(CloudContext("http://fake", 0, tmp_path, {"lambda-runtime": invoker}))
        try:
            yield invoker, lambda service: boto3.client(service, region_name="us-east-1")
        finally:
            executor.stop()


def test_s3_and_sns_invoke_asynchronously_through_the_invoker(fake_cloud: tuple[FakeInvoker, Any]):
    invoker, aws = fake_cloud
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = aws("iam").create_role(RoleName="r", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    function_arn = aws("lambda").create_function(FunctionName="f", Runtime="python3.11", Role=role,
                                                 Handler="app.handler", Code={"ZipFile": zipped(FORWARDER)})["FunctionArn"]
    aws("s3").create_bucket(Bucket="lake")
    allow(aws, function_arn, "s3.amazonaws.com", "arn:aws:s3:::lake")
    aws("s3").put_bucket_notification_configuration(Bucket="lake", NotificationConfiguration={
        "LambdaFunctionConfigurations": [lambda_configuration(function_arn, prefix="raw/")]})
    aws("s3").put_object(Bucket="lake", Key="other/a.csv", Body=b"1")
    aws("s3").put_object(Bucket="lake", Key="raw/a b.csv", Body=b"1")
    [(function, event, invocation_type)] = invoker.calls
    assert (function, invocation_type) == (function_arn, "Event")
    assert S3Event(event).record.s3.get_object.key == "raw/a+b.csv"

    invoker.calls.clear()
    topic = aws("sns").create_topic(Name="t")["TopicArn"]
    aws("sns").subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function_arn)
    aws("sns").publish(TopicArn=topic, Message="not yet allowed")
    assert invoker.calls == []
    allow(aws, function_arn, "sns.amazonaws.com", topic)
    message_id = aws("sns").publish(TopicArn=topic, Message="hello")["MessageId"]
    [(function, event, invocation_type)] = invoker.calls
    assert (function, invocation_type) == (function_arn, "Event")
    record = SNSEvent(event).record
    assert (record.sns.message, record.sns.message_id, record.sns.topic_arn) == ("hello", message_id, topic)
    assert record.event_subscription_arn.startswith(topic + ":")
