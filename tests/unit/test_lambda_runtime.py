"""The local Lambda runtime against the session's local cloud: functions deployed with plain boto3
calls run from their deployed zip with AWS's environment, errors, logs, async semantics and limits."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
import zipfile
from typing import Any, Callable

import pytest

from localcloud.awslambda.functions import split_function

PROBE = '''
import os, sys, time
import boto3

CALLS = 0
s3 = boto3.client("s3")
print("init output")


def handler(event, context):
    global CALLS
    CALLS += 1
    print("event", event)
    action = event.get("do")
    if action == "raise":
        raise ValueError("boom")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        sys.exit(3)
    if action == "garbage":
        return object()
    if action == "big":
        return "x" * (7 * 1024 * 1024)
    return {
        "calls": CALLS, "pid": os.getpid(), "path0": sys.path[0],
        "context": {"function_name": context.function_name, "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn, "memory_limit_in_mb": context.memory_limit_in_mb,
                    "aws_request_id": context.aws_request_id, "log_group_name": context.log_group_name,
                    "remaining": context.get_remaining_time_in_millis()},
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "_HANDLER", "GREETING"))},
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "version": VERSION,
    }

VERSION = "v1"
'''


def bundle(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def role(aws: Callable[[str], Any]) -> str:
    name = f"runtime-test-{uuid.uuid4().hex[:8]}"
    arn = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    # what the test functions call (IAM is enforced on the execution role's session)
    aws("iam").put_role_policy(RoleName=name, PolicyName="probe", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:PutObject", "s3:GetObject", "sqs:SendMessage",
                                       "sns:Publish", "lambda:InvokeFunction", "events:PutEvents"], "Resource": "*"}]}))
    return arn


@pytest.fixture(scope="module")
def deploy(aws: Callable[[str], Any], role: str) -> Callable[..., str]:
    """deploy(source or {file: text}, **create_function kwargs) -> a new function's name."""

    def create(source: str | dict[str, str] = PROBE, **kwargs: Any) -> str:
        name = kwargs.pop("FunctionName", f"fn-{uuid.uuid4().hex[:10]}")
        files = {"app.py": source} if isinstance(source, str) else source
        code = kwargs.pop("Code", {"ZipFile": bundle(files)})
        aws("lambda").create_function(FunctionName=name, Runtime="python3.11", Role=role,
                                      Handler=kwargs.pop("Handler", "app.handler"), Code=code, **kwargs)
        return name
    return create


def call(aws: Callable[[str], Any], name: str, event: Any = None, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = aws("lambda").invoke(FunctionName=name, Payload=json.dumps(event or {}), **kwargs)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


# --------------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("function, expected", [
    ("fn", ("fn", None, "111111111111", "eu-west-1")),
    ("fn:live", ("fn", "live", "111111111111", "eu-west-1")),
    ("222222222222:function:fn", ("fn", None, "222222222222", "eu-west-1")),
    ("arn:aws:lambda:us-east-2:333333333333:function:fn:7", ("fn", "7", "333333333333", "us-east-2")),
    ("arn%3Aaws%3Alambda%3Aus-east-2%3A333333333333%3Afunction%3Afn", ("fn", None, "333333333333", "us-east-2")),
])
def test_function_names_arns_and_qualifiers_are_understood(function: str, expected: tuple[Any, ...]) -> None:
    assert split_function(function, None, "111111111111", "eu-west-1") == expected


# --------------------------------------------------------------------------------------------------
# Running the deployed bundle


def test_a_function_runs_from_its_deployed_zip_with_the_aws_environment_and_context(aws: Any, deploy: Any, endpoint: str) -> None:
    aws("s3").create_bucket(Bucket="runtime-test-visible")
    name = deploy(Environment={"Variables": {"GREETING": "hi"}}, MemorySize=256, Timeout=7)
    response, body = call(aws, name)
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    env = body["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["GREETING"] == "hi"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}" and env["_HANDLER"] == "app.handler"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11" and env["AWS_ENDPOINT_URL"] == endpoint
    assert body["path0"] == env["LAMBDA_TASK_ROOT"] and "/lambda/code/" in body["path0"]  # the zip, not the source tree
    context = body["context"]
    assert context["function_name"] == name and context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert 6000 < context["remaining"] <= 7000
    assert context["aws_request_id"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert "runtime-test-visible" in body["buckets"]  # an unmodified boto3 client reached the local cloud


def test_module_globals_survive_between_invocations_and_an_update_starts_fresh_workers(aws: Any, deploy: Any) -> None:
    name = deploy()
    first, second = call(aws, name)[1], call(aws, name)[1]
    assert (first["calls"], second["calls"]) == (1, 2) and first["pid"] == second["pid"]

    aws("lambda").update_function_configuration(FunctionName=name, Environment={"Variables": {"GREETING": "new"}})
    after_config = call(aws, name)[1]
    assert after_config["calls"] == 1 and after_config["pid"] != first["pid"] and after_config["env"]["GREETING"] == "new"

    aws("lambda").update_function_code(FunctionName=name, ZipFile=bundle({"app.py": PROBE.replace('VERSION = "v1"', 'VERSION = "v2"')}))
    after_code = call(aws, name)[1]
    assert after_code["version"] == "v2" and after_code["calls"] == 1 and after_code["pid"] != after_config["pid"]


def test_code_from_s3_and_a_layer_resolve_like_a_deployment_package(aws: Any, deploy: Any) -> None:
    aws("s3").create_bucket(Bucket="runtime-test-code")
    source = "import shared_lib\n\ndef handler(event, context):\n    return shared_lib.answer()\n"
    aws("s3").put_object(Bucket="runtime-test-code", Key="fn.zip", Body=bundle({"app.py": source}))
    layer = aws("lambda").publish_layer_version(
        LayerName="shared", Content={"ZipFile": bundle({"python/shared_lib.py": "def answer():\n    return 42\n"})},
        CompatibleRuntimes=["python3.11"])["LayerVersionArn"]
    without_layer = deploy(Code={"S3Bucket": "runtime-test-code", "S3Key": "fn.zip"})
    response, body = call(aws, without_layer)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'app': No module named 'shared_lib'"
    with_layer = deploy(Code={"S3Bucket": "runtime-test-code", "S3Key": "fn.zip"}, Layers=[layer])
    assert call(aws, with_layer)[1] == 42


def test_only_what_the_aws_runtime_provides_is_importable(aws: Any, deploy: Any) -> None:
    name = deploy("import pandas\n\ndef handler(event, context):\n    return 1\n")
    response, body = call(aws, name)
    assert body["errorType"] == "Runtime.ImportModuleError" and "No module named 'pandas'" in body["errorMessage"]
    helpers = deploy("import helpers\n\ndef handler(event, context):\n    return 1\n")
    assert call(aws, helpers)[1]["errorType"] == "Runtime.ImportModuleError"


# --------------------------------------------------------------------------------------------------
# Errors as AWS words them; the worker is replaced and the local cloud stays up


def test_a_raised_exception_answers_aws_error_shape(aws: Any, deploy: Any) -> None:
    name = deploy()
    response, body = call(aws, name, {"do": "raise"})
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "boom"
    assert body["requestId"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 'raise ValueError("boom")' in body["stackTrace"][0] and "lambda_worker" not in "".join(body["stackTrace"])


def test_stack_traces_name_files_where_aws_has_them(aws: Any, deploy: Any) -> None:
    """The bundle is /var/task, a layer /opt, the runtime's packages /var/lang: never the local cloud's
    folders where the zip was extracted."""
    layer = aws("lambda").publish_layer_version(
        LayerName="failing", Content={"ZipFile": bundle({"python/checks.py": "def check(n):\n    raise KeyError(n)\n"})},
        CompatibleRuntimes=["python3.11"])["LayerVersionArn"]
    source = "import json\nimport checks\n\ndef handler(event, context):\n    if event.get('json'):\n        json.loads('{')\n    checks.check('sku')\n"
    name = deploy({"app.py": source}, Layers=[layer])
    response, body = call(aws, name, LogType="Tail")
    assert body["errorType"] == "KeyError" and body["errorMessage"] == "'sku'"
    assert body["stackTrace"] == ['  File "/var/task/app.py", line 7, in handler\n    checks.check(\'sku\')\n',
                                  '  File "/opt/python/checks.py", line 2, in check\n    raise KeyError(n)\n']
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "[ERROR] KeyError: 'sku'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 7" in tail
    assert "/lambda/code/" not in tail and "/lambda/layers/" not in tail
    _, body = call(aws, name, {"json": True})
    assert body["stackTrace"][0].startswith('  File "/var/task/app.py", line 6, in handler')
    assert all(line.startswith('  File "/var/lang/lib/python3.') for line in body["stackTrace"][1:])


def test_a_warm_worker_outlives_the_connection_that_started_it(aws: Any, deploy: Any, endpoint: str) -> None:
    """Workers are started from one long-lived thread: the kernel's parent-death signal (which follows
    the starting *thread*) must not kill them when a request thread ends with its connection."""
    import urllib.request

    name = deploy()

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def invoke_on_a_new_connection() -> int:
        url = f"{endpoint}/2015-03-31/functions/{name}/invocations"
        signed = AWSRequest(method="POST", url=url, data=b"{}", headers={"Connection": "close"})
        SigV4Auth(Credentials("testing", "testing"), "lambda", "us-east-1").add_auth(signed)
        request = urllib.request.Request(url, data=b"{}", method="POST", headers=dict(signed.headers))
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(json.loads(response.read())["pid"])

    first = invoke_on_a_new_connection()
    time.sleep(0.5)  # that connection's server thread has ended
    assert invoke_on_a_new_connection() == first


def test_a_timeout_is_reported_as_aws_does_and_the_worker_is_replaced(aws: Any, deploy: Any) -> None:
    name = deploy(Timeout=1)
    pid = call(aws, name)[1]["pid"]
    started = time.monotonic()
    response, body = call(aws, name, {"do": "sleep", "seconds": 5})
    assert time.monotonic() - started < 3
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 1.00 seconds")
    again = call(aws, name)[1]
    assert again["pid"] != pid and again["calls"] == 1


@pytest.mark.parametrize("event, error_type, message", [
    ({"do": "exit"}, "Runtime.ExitError", "Runtime exited with error: exit status 3"),
    ({"do": "garbage"}, "Runtime.MarshalError", "Unable to marshal response: Object of type object is not JSON serializable"),
    ({"do": "big"}, "Function.ResponseSizeTooLarge", "exceeded maximum allowed payload size (6291456 bytes)"),
])
def test_exits_garbage_and_oversized_results_answer_aws_errors(aws: Any, deploy: Any, event: dict[str, Any],
                                                              error_type: str, message: str) -> None:
    name = deploy()
    response, body = call(aws, name, event)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == error_type and message in body["errorMessage"]
    assert call(aws, name)[1]["calls"] >= 1  # the function still answers


def test_broken_handlers_answer_import_and_handler_errors(aws: Any, deploy: Any) -> None:
    missing = deploy(Handler="app.nothing_here")
    body = call(aws, missing)[1]
    assert body["errorType"] == "Runtime.HandlerNotFound" and body["errorMessage"] == "Handler 'nothing_here' missing on module 'app'"
    syntax = deploy("def handler(event, context)\n    return 1\n")
    assert call(aws, syntax)[1]["errorType"] == "Runtime.ImportModuleError"
    exits_at_import = deploy("import sys\nsys.exit(2)\n")
    response, body = call(aws, exits_at_import)
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"


def test_invocation_is_refused_as_aws_refuses_it(aws: Any, deploy: Any) -> None:
    from botocore.exceptions import ClientError

    client = aws("lambda")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="Function not found"):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    name = deploy()
    with pytest.raises(client.exceptions.InvalidRequestContentException, match="Could not parse request body into json"):
        client.invoke(FunctionName=name, Payload=b"{not json")
    with pytest.raises(ClientError) as too_large:
        client.invoke(FunctionName=name, Payload=json.dumps({"x": "y" * (6 * 1024 * 1024)}).encode())
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert client.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert call(aws, name)[1]["calls"] == 1  # DryRun ran nothing


def test_reserved_concurrency_throttles_with_429(aws: Any, deploy: Any, endpoint: str) -> None:
    import boto3
    from botocore.config import Config

    # botocore retries throttles by itself: without retries the 429 itself is seen.
    client = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    zero = deploy()
    client.put_function_concurrency(FunctionName=zero, ReservedConcurrentExecutions=0)
    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.invoke(FunctionName=zero, Payload=b"{}")

    one = deploy(Timeout=10)
    client.put_function_concurrency(FunctionName=one, ReservedConcurrentExecutions=1)
    call(aws, one)  # warm
    slow = threading.Thread(target=call, args=(aws, one, {"do": "sleep", "seconds": 1.5}))
    slow.start()
    time.sleep(0.5)
    try:
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.invoke(FunctionName=one, Payload=b"{}")
    finally:
        slow.join()
    assert call(aws, one)[0]["StatusCode"] == 200


# --------------------------------------------------------------------------------------------------
# Versions and aliases


def test_published_versions_and_aliases_run_their_own_code(aws: Any, deploy: Any) -> None:
    client = aws("lambda")
    name = deploy()
    version = client.publish_version(FunctionName=name)["Version"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    client.update_function_code(FunctionName=name, ZipFile=bundle({"app.py": PROBE.replace('VERSION = "v1"', 'VERSION = "v2"')}))
    latest = call(aws, name)
    pinned = call(aws, name, Qualifier=version)
    alias = call(aws, f"{name}:live")
    assert latest[1]["version"] == "v2" and latest[0]["ExecutedVersion"] == "$LATEST"
    assert pinned[1]["version"] == "v1" and pinned[0]["ExecutedVersion"] == version
    assert alias[1]["version"] == "v1" and alias[0]["ExecutedVersion"] == version
    assert pinned[1]["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == version


# --------------------------------------------------------------------------------------------------
# Logs


def test_output_and_start_end_report_lines_reach_cloudwatch_logs(aws: Any, deploy: Any) -> None:
    name = deploy()
    response, _ = call(aws, name, {"hello": "logs"}, LogType="Tail")
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"START RequestId: {request_id} Version: $LATEST" in tail and "event {'hello': 'logs'}" in tail
    assert f"END RequestId: {request_id}" in tail and "Init Duration:" in tail and "Memory Size: 128 MB" in tail
    events = aws("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    messages = [e["message"] for e in events]
    assert messages[0] == "init output" and messages[1].startswith("START RequestId:")
    assert messages[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    call(aws, name, {"do": "raise"})
    messages = [e["message"] for e in aws("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]]
    assert any(m.startswith("[ERROR] ValueError: boom") for m in messages)
    assert sum("Init Duration" in m for m in messages) == 1  # only the cold start reports it


# --------------------------------------------------------------------------------------------------
# Asynchronous invocation


def _queue(aws: Any) -> tuple[str, str]:
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=f"dest-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _receive(aws: Any, url: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        got = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        messages += [json.loads(m["Body"]) for m in got]
    return messages


def test_async_invocations_retry_twice_then_reach_the_on_failure_destination(aws: Any, deploy: Any) -> None:
    counter_queue, _ = _queue(aws)
    failures, failure_arn = _queue(aws)
    successes, success_arn = _queue(aws)
    source = f'''
import json
import boto3
sqs = boto3.client("sqs")

def handler(event, context):
    sqs.send_message(QueueUrl="{counter_queue}", MessageBody=json.dumps(context.aws_request_id))
    if event.get("fail"):
        raise RuntimeError("always fails")
    return {{"ok": event["n"]}}
'''
    name = deploy(source)
    aws("lambda").put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": failure_arn}, "OnSuccess": {"Destination": success_arn}})
    accepted = aws("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"fail": True, "n": 1}))
    assert accepted["StatusCode"] == 202 and accepted["Payload"].read() == b""
    aws("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 2}))

    [failure] = _receive(aws, failures, 1)
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"].endswith(f"function:{name}:$LATEST")
    assert failure["requestPayload"] == {"fail": True, "n": 1}
    assert failure["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert failure["responsePayload"]["errorMessage"] == "always fails"
    [success] = _receive(aws, successes, 1)
    assert success["requestContext"]["condition"] == "Success" and success["responsePayload"] == {"ok": 2}
    attempts = _receive(aws, counter_queue, 4)
    assert len(attempts) == 4 and len(set(attempts)) == 2  # 3 tries of one request id + 1 of the other


def test_the_legacy_invoke_async_api_queues_an_event(aws: Any, deploy: Any) -> None:
    queue_url, _ = _queue(aws)
    name = deploy(f'import boto3\n\ndef handler(event, context):\n    boto3.client("sqs").send_message(QueueUrl="{queue_url}", MessageBody=\'"ran"\')\n')
    assert aws("lambda").invoke_async(FunctionName=name, InvokeArgs=b"{}")["Status"] == 202
    assert _receive(aws, queue_url, 1) == ["ran"]


def test_many_concurrent_callers_all_get_their_own_answer(aws: Any, deploy: Any) -> None:
    name = deploy("import time\n\ndef handler(event, context):\n    time.sleep(0.05)\n    return event['i']\n")
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        results[i] = call(aws, name, {"i": i})[1]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i for i in range(24)}


# --------------------------------------------------------------------------------------------------
# The invoke payload path: raw bytes over the worker pipe, no re-validation of the local cloud's own JSON

ECHO = '''
def handler(event, context):
    if event == {}:
        return None
    return {"event": event, "extra": "caf\\u00e9 \\"quoted\\" back\\\\slash \\u2028 \\U0001F600"}
'''


def _awkward_event(size: int) -> dict[str, Any]:
    """Quotes, backslashes, control characters, non-ASCII and astral characters, and a large body."""
    text = 'a "quoted" \\ back\\slash\n\t\x00 caf\u00e9 \u65e5\u672c \U0001F600 \u2028 '
    return {"records": [{"i": i, "text": text, "blob": "x" * 100} for i in range(size // (len(text) + 120))],
            "nested": {"empty": "", "list": [None, True, 1.5, -0]}}


def test_worker_messages_carry_the_payload_verbatim_after_a_small_json_header() -> None:
    import os

    from localcloud.awslambda import worker as lambda_worker

    payload = json.dumps(_awkward_event(2_000_000), ensure_ascii=False).encode()  # larger than a pipe buffer
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=lambda: (lambda_worker.write_message(write_fd, {"request_id": "r\u00e9"}, payload),
                                              lambda_worker.write_message(write_fd, {"ready": True}),
                                              os.close(write_fd)))
    writer.start()
    try:
        header, received = lambda_worker.read_message(read_fd)  # type: ignore[misc]
        assert header == {"request_id": "r\u00e9"} and received == payload
        assert lambda_worker.read_message(read_fd) == ({"ready": True}, b"")
        assert lambda_worker.read_message(read_fd) is None  # closed
    finally:
        writer.join()
        os.close(read_fd)

    raw_fd, raw_write = os.pipe()
    lambda_worker.write_message(raw_write, {"k": 1}, b'{"q": "\\""}')
    os.close(raw_write)
    with os.fdopen(raw_fd, "rb") as raw:
        assert raw.read() == b'\x00\x00\x00\x08\x00\x00\x00\x0b{"k": 1}{"q": "\\""}'  # not re-escaped


def test_a_small_message_is_one_write_and_read_back_in_two_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read or write of the control pipe lets go of the server's GIL, and getting it back can wait
    for another thread's turn: an invocation's request and answer take as few as they can."""
    import os

    from localcloud.awslambda import worker as lambda_worker

    writes, reads = [], []
    real_write, real_read = os.write, os.read
    monkeypatch.setattr(lambda_worker.os, "write", lambda fd, data: writes.append(len(data)) or real_write(fd, data))
    monkeypatch.setattr(lambda_worker.os, "read", lambda fd, size: reads.append(size) or real_read(fd, size))
    read_fd, write_fd = os.pipe()
    try:
        lambda_worker.write_message(write_fd, {"request_id": "r"}, b'{"small": true}')
        assert len(writes) == 1
        assert lambda_worker.read_message(read_fd) == ({"request_id": "r"}, b'{"small": true}')
        assert len(reads) == 2
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_large_awkward_payload_round_trips_exactly_through_the_invoke_api(aws: Any, deploy: Any) -> None:
    name = deploy(ECHO)
    event = _awkward_event(3_000_000)
    payload = json.dumps(event, ensure_ascii=False).encode()
    response = aws("lambda").invoke(FunctionName=name, Payload=payload)
    expected = {"event": event, "extra": "caf\u00e9 \"quoted\" back\\slash \u2028 \U0001F600"}
    assert "FunctionError" not in response and response["Payload"].read() == json.dumps(expected).encode()
    assert aws("lambda").invoke(FunctionName=name, Payload=b"")["Payload"].read() == b"null"  # {} for no payload


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """A LambdaRuntime in this process over mock_aws, and the ARN of an ECHO function, to watch its internals."""
    import boto3
    from moto import mock_aws

    from localcloud.executors import CloudContext
    from localcloud.awslambda.runtime import LambdaRuntime

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        arn = boto3.client("lambda").create_function(
            FunctionName="echo", Runtime="python3.11", Role=role, Handler="app.handler",
            Code={"ZipFile": bundle({"app.py": ECHO})})["FunctionArn"]
        runtime = LambdaRuntime()
        runtime.start(CloudContext(endpoint="http://127.0.0.1:1", port=1, state_dir=tmp_path))
        try:
            yield runtime, arn
        finally:
            runtime.stop()


def test_internal_payloads_skip_the_validation_parse_and_external_ones_keep_it(
        in_process: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from localcloud.event_sources import pollers as event_sources
    from localcloud.awslambda import runtime as lambda_runtime
    from localcloud.executors import LambdaInvokeError

    runtime, arn = in_process
    checked: list[bytes] = []
    real_check = lambda_runtime._check_json
    monkeypatch.setattr(lambda_runtime, "_check_json", lambda payload: (checked.append(payload), real_check(payload)))

    event = _awkward_event(500_000)
    config = event_sources.MappingConfig(uuid="u", function_arn=arn, source_arn="arn:aws:kinesis:us-east-1:1:stream/s")
    result = event_sources.invoke_batch(runtime, config, event, threading.Event())
    expected = {"event": event, "extra": "caf\u00e9 \"quoted\" back\\slash \u2028 \U0001F600"}
    assert result.function_error is None and result.payload == json.dumps(expected).encode()
    assert checked == []  # the event source's own JSON is not parsed again

    external = json.dumps(event, ensure_ascii=False).encode()
    assert runtime.invoke(arn, external).payload == json.dumps(expected).encode()
    assert checked == [external]
    with pytest.raises(LambdaInvokeError) as refused:
        runtime.invoke(arn, b'{"not": json')
    assert refused.value.code == "InvalidRequestContentException" and refused.value.status == 400
    assert "Could not parse request body into json" in refused.value.message


def test_async_destinations_to_another_function_send_marked_json() -> None:
    from localcloud.awslambda import async_invoke
    from localcloud.awslambda.functions import FunctionSpec
    from localcloud.executors import JSONPayload

    sent: list[bytes] = []

    class Recorder:
        def invoke(self, function: str, payload: bytes, **kwargs: Any) -> None:
            sent.append(payload)

    spec = FunctionSpec("123456789012", "us-east-1", "fn", "$LATEST", "arn", "app.handler",
                                       "python3.11", "sha", 3, 128, (), (), None)
    record = {"requestPayload": {"q": "\"caf\u00e9\""}}
    async_invoke.send_to_destination("arn:aws:lambda:us-east-1:123456789012:function:next", record, "Success",
                                       spec, Recorder())  # type: ignore[arg-type]
    assert [type(p) for p in sent] == [JSONPayload] and json.loads(sent[0]) == record


def test_a_worker_exits_when_the_server_end_of_its_pipe_closes_even_mid_invocation(tmp_path: Any) -> None:
    """The portable half of 'never outlive the server' (the other is Linux's parent-death signal): a
    handler still running does not keep the worker alive once the server's end of the control pipe is gone."""
    import os
    import subprocess
    import sys

    from localcloud.awslambda import worker as lambda_worker
    from localcloud.awslambda.environments import WORKER

    (tmp_path / "app.py").write_text("import time\n\ndef handler(event, context):\n    time.sleep(60)\n")
    to_worker_r, to_worker = os.pipe()
    from_worker, from_worker_w = os.pipe()
    env = {"PATH": os.environ.get("PATH", ""), "LAMBDA_TASK_ROOT": str(tmp_path), "_HANDLER": "app.handler",
           "AWS_LAMBDA_FUNCTION_NAME": "sleeper", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/sleeper",
           "AWS_LAMBDA_LOG_STREAM_NAME": "s"}
    process = subprocess.Popen([sys.executable, "-S", "-u", str(WORKER), str(to_worker_r), str(from_worker_w),
                                str(os.getpid()), "{}"], pass_fds=(to_worker_r, from_worker_w), env=env,
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_worker_r)
    os.close(from_worker_w)
    try:
        assert lambda_worker.read_message(from_worker)[0]["ready"]
        lambda_worker.write_message(to_worker, {"request_id": "r", "invoked_function_arn": "arn", "deadline_ms": 0,
                                                "client_context": None}, b"{}")
        time.sleep(0.5)  # the handler is sleeping now
        assert process.poll() is None
        os.close(to_worker)  # what the server's death does to the pipe
        assert process.wait(timeout=5) != 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(from_worker)
