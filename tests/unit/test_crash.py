"""Acknowledged means stored, and nothing is orphaned: plain boto3 writers (Kinesis PutRecords, DynamoDB
PutItem and BatchWriteItem, S3 PutObject, and rows posted to a REST API whose Lambda proxy puts them to
Kinesis) run in threads while the server is killed with SIGKILL; `up` on the same port brings back every
acknowledged write exactly once, with the resources made before the crash, and no process of the dead
server runs on."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config

from localcloud import lifecycle

# Only what this test exercises, so an executor of another service cannot fail it; a snapshot every
# second (a pause of the writers lets one happen mid-stream, so the journal is cut and replayed after it).
ENV = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,awslambda,apigateway", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "1",
       "RETAIL_LOCALCLOUD_JOURNAL": "fsync"}
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)

INGEST = '''
import base64, json, os, boto3
from botocore.config import Config

kinesis = boto3.client("kinesis", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def handler(event, context):
    rows = json.loads(event["body"])
    answer = kinesis.put_records(StreamName=os.environ["STREAM"], Records=[
        {"Data": row.encode(), "PartitionKey": row} for row in rows])
    if answer["FailedRecordCount"]:
        return {"statusCode": 500, "body": json.dumps({"failed": answer["FailedRecordCount"]})}
    return {"statusCode": 200, "body": json.dumps({"accepted": len(rows)})}
'''


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=NO_RETRIES)


@pytest.fixture()
def cloud(tmp_path: Path) -> Iterator[tuple[int, str]]:
    with lifecycle.running(tmp_path, ENV) as endpoint:
        yield int(endpoint.rsplit(":", 1)[1]), endpoint


def _role(endpoint: str, name: str, action: str) -> str:
    """An execution role that may do `action` (what the function needs, and no more)."""
    iam = _client(endpoint, "iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="work", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
    return arn


def _deploy(endpoint: str) -> str:
    """Streams, table, bucket, and the ingestion API (REST API -> Lambda proxy -> Kinesis); its URL."""
    kinesis, awslambda, apigw = (_client(endpoint, s) for s in ("kinesis", "lambda", "apigateway"))
    kinesis.create_stream(StreamName="direct", ShardCount=2)
    kinesis.create_stream(StreamName="ingest", ShardCount=2)
    _client(endpoint, "dynamodb").create_table(
        TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    _client(endpoint, "s3").create_bucket(Bucket="crash-lake")
    _client(endpoint, "sqs").create_queue(QueueName="crash-queue")
    role = _role(endpoint, "ingest-role", "kinesis:PutRecords")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("app.py", INGEST)
    arn = awslambda.create_function(FunctionName="ingest", Runtime="python3.11", Role=role, Handler="app.handler",
                                    Code={"ZipFile": bundle.getvalue()}, Timeout=30,
                                    Environment={"Variables": {"STREAM": "ingest"}})["FunctionArn"]
    awslambda.add_permission(FunctionName="ingest", StatementId="apigw", Action="lambda:InvokeFunction",
                             Principal="apigateway.amazonaws.com")
    api = apigw.create_rest_api(name="ingestion")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    rows = apigw.create_resource(restApiId=api, parentId=root, pathPart="rows")["id"]
    apigw.put_method(restApiId=api, resourceId=rows, httpMethod="POST", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=rows, httpMethod="POST", type="AWS_PROXY",
                          integrationHttpMethod="POST",
                          uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations")
    apigw.create_deployment(restApiId=api, stageName="prod")
    return f"{endpoint}/restapis/{api}/prod/_user_request_/rows"


LAST_POST: list[str] = []  # what the last failed post got, for the assertion's message


def _post(url: str, rows: list[str]) -> bool:
    request = urllib.request.Request(url, data=json.dumps(rows).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        LAST_POST[:] = [f"{error.code} {error.read()[:300]!r}"]
        return False
    except (urllib.error.URLError, OSError) as error:
        LAST_POST[:] = [repr(error)]
        return False


class Writers:
    """Threads writing unique values until stopped; `acked[kind]` holds what was acknowledged."""

    def __init__(self, endpoint: str, api_url: str):
        self.endpoint, self.api_url = endpoint, api_url
        self.stop, self.go = threading.Event(), threading.Event()
        self.go.set()
        self.acked: dict[str, list[str]] = {"direct": [], "ingest": [], "put": [], "batch": [], "s3": [], "sqs": []}
        self.deleted: list[str] = []  # SQS messages whose DeleteMessage was acknowledged
        self.threads = [threading.Thread(target=self._loop, args=(name, write), daemon=True) for name, write in (
            ("direct", self._kinesis), ("ingest", self._api), ("put", self._put_item), ("batch", self._batch),
            ("s3", self._s3), ("sqs", self._sqs))]

    def __enter__(self) -> "Writers":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _loop(self, name: str, write: Callable[[Any, int], list[str]]) -> None:
        client = None if name == "ingest" else _client(self.endpoint, {"direct": "kinesis", "s3": "s3", "sqs": "sqs"}.get(name, "dynamodb"))
        step = 0
        while not self.stop.is_set():
            self.go.wait()
            try:
                self.acked[name] += write(client, step)
            except Exception:  # the server is gone: this write was never acknowledged
                if self.stop.is_set():
                    return
                time.sleep(0.05)
            step += 1

    def _kinesis(self, kinesis: Any, step: int) -> list[str]:
        values = [f"direct-{step}-{i}" for i in range(50)]
        answer = kinesis.put_records(StreamName="direct", Records=[{"Data": v.encode(), "PartitionKey": v} for v in values])
        return [v for v, result in zip(values, answer["Records"]) if "ErrorCode" not in result]

    def _api(self, _client: Any, step: int) -> list[str]:
        values = [f"ingest-{step}-{i}" for i in range(20)]
        return values if _post(self.api_url, values) else []

    def _put_item(self, dynamodb: Any, step: int) -> list[str]:
        key = f"put-{step}"
        dynamodb.put_item(TableName="orders", Item={"pk": {"S": key}, "n": {"N": str(step)}})
        return [key]

    def _batch(self, dynamodb: Any, step: int) -> list[str]:
        keys = [f"batch-{step}-{i}" for i in range(25)]
        answer = dynamodb.batch_write_item(RequestItems={"orders": [
            {"PutRequest": {"Item": {"pk": {"S": key}}}} for key in keys]})
        unprocessed = {r["PutRequest"]["Item"]["pk"]["S"] for r in answer.get("UnprocessedItems", {}).get("orders", [])}
        return [key for key in keys if key not in unprocessed]

    def _sqs(self, sqs: Any, step: int) -> list[str]:
        """Send a message, then receive one and delete it: an acknowledged delete must stay deleted."""
        url = sqs.get_queue_url(QueueName="crash-queue")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=f"sqs-{step}")
        sent = [f"sqs-{step}"]
        self.acked["sqs"] += sent
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            self.deleted.append(message["Body"])
        return []

    def _s3(self, s3: Any, step: int) -> list[str]:
        key = f"raw/{step:06d}.json"
        s3.put_object(Bucket="crash-lake", Key=key, Body=json.dumps({"step": step}).encode())
        return [key]


def _stream_values(kinesis: Any, stream: str) -> list[str]:
    values = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            values += [record["Data"].decode() for record in answer["Records"]]
            if not answer["Records"] or answer.get("MillisBehindLatest", 0) == 0:
                break
            iterator = answer["NextShardIterator"]
    return values


def _table_keys(dynamodb: Any) -> list[str]:
    keys = []
    for page in dynamodb.get_paginator("scan").paginate(TableName="orders"):
        keys += [item["pk"]["S"] for item in page["Items"]]
    return keys


def _bucket_keys(s3: Any) -> list[str]:
    return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crash-lake")
            for item in page.get("Contents", [])]


def _queue_bodies(sqs: Any) -> list[str]:
    url = sqs.get_queue_url(QueueName="crash-queue")["QueueUrl"]
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not messages:
            return bodies
        bodies += [message["Body"] for message in messages]


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command line, working folder) of every live process."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            if fields.get("State", "").startswith("Z"):
                continue
            folder = status.parent
            cmdline = (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(folder / "cwd")
            except OSError:
                cwd = ""
            found[int(folder.name)] = (int(fields["PPid"]), cmdline, cwd)
        except (OSError, ValueError, KeyError):
            continue
    return found


def _orphans(server_pid: int, state_dir: str) -> list[str]:
    return [f"{pid}: {cmdline}" for pid, (parent, cmdline, cwd) in _processes().items()
            if parent == server_pid or ("worker.py" in cmdline and cwd.startswith(state_dir))]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_every_acknowledged_write_survives_a_kill_9_exactly_once_and_nothing_is_orphaned(cloud: tuple[int, str]) -> None:
    port, endpoint = cloud
    api_url = _deploy(endpoint)
    assert _post(api_url, ["warm-up"])  # the function's worker is up before the clock starts
    health = lifecycle.health(port)
    assert health is not None
    server, state_dir = health.pid, health.state_dir

    with Writers(endpoint, api_url) as writers:
        time.sleep(2.0)
        writers.go.clear()  # a quiet moment: the periodic snapshot is taken and cuts the journal
        snapshot = Path(state_dir) / "moto-state.pickle"
        deadline = time.monotonic() + 15
        while not snapshot.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snapshot.exists(), "no snapshot was taken during the pause"
        writers.go.set()
        time.sleep(2.5)
        workers = [pid for pid, (parent, cmdline, _) in _processes().items() if parent == server and "worker.py" in cmdline]
        assert workers, "the ingest function's workers run under the server"
        os.kill(server, signal.SIGKILL)  # the server only: its workers must follow it by themselves
        time.sleep(0.3)
        writers.stop.set()

    deadline = time.monotonic() + 5
    while _orphans(server, state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _orphans(server, state_dir) == [], "processes of the killed server still run"
    acked = {kind: list(values) for kind, values in writers.acked.items()}
    assert all(len(values) > 10 for values in acked.values()), {k: len(v) for k, v in acked.items()}
    assert len(writers.deleted) > 10

    assert lifecycle.up(port) == endpoint  # same port, stale pidfile and all
    journal = json.loads(urllib.request.urlopen(f"{endpoint}/_localcloud/health", timeout=10).read())["journal"]
    assert journal["replayed"] > 0 and journal["mismatched"] == 0 and journal["diverged"] == 0, journal

    kinesis, dynamodb, s3 = (_client(endpoint, s) for s in ("kinesis", "dynamodb", "s3"))
    for kind, stored in (("direct", _stream_values(kinesis, "direct")),
                         ("ingest", _stream_values(kinesis, "ingest")),
                         ("dynamodb", _table_keys(dynamodb)), ("s3", _bucket_keys(s3))):
        expected = acked[kind] if kind != "dynamodb" else acked["put"] + acked["batch"]
        counts = Counter(stored)
        missing = [value for value in expected if counts[value] == 0]
        doubled = [value for value, count in counts.items() if count > 1]
        assert not missing, f"{kind}: {len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        assert not doubled, f"{kind}: stored twice: {doubled[:3]}"
    print(f"acknowledged before the kill: { {kind: len(values) for kind, values in acked.items()} }, "
          f"{len(writers.deleted)} SQS deletes; journal at restart: {journal}")
    queued = Counter(_queue_bodies(_client(endpoint, "sqs")))
    deleted = set(writers.deleted)
    assert not deleted & set(queued), f"acknowledged deletes undone: {sorted(deleted & set(queued))[:3]}"
    assert not [body for body in acked["sqs"] if body not in deleted and not queued[body]], "acknowledged sends lost"
    assert all(count == 1 for count in queued.values())
    # the resources made before the crash are there and work: the API's ids were replayed as they were
    assert _post(api_url, ["after-the-crash"]), LAST_POST
    assert "after-the-crash" in _stream_values(kinesis, "ingest")
    assert _client(endpoint, "lambda").get_function(FunctionName="ingest")["Configuration"]["Handler"] == "app.handler"


def test_up_after_a_crash_stops_what_the_dead_server_left_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process left in a dead server's process group (a stand-in that outlives its parent, as a
    worker could where the kernel has no parent-death signal) is stopped by the next `up`, which then
    starts on the same port."""
    import subprocess
    import sys

    monkeypatch.setenv("RETAIL_LOCALCLOUD_HOME", str(tmp_path))
    monkeypatch.setenv("RETAIL_LOCALCLOUD_EXECUTORS", "persistence")
    port = lifecycle.free_port()
    spawn_leftover = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                      "'import time; time.sleep(60)', 'localcloud-leftover']); time.sleep(60)")
    dead_server = subprocess.Popen([sys.executable, "-c", spawn_leftover, "localcloud.server"], start_new_session=True)
    deadline = time.monotonic() + 10
    while not lifecycle.orphans(dead_server.pid)[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    dead_server.kill()
    dead_server.wait()
    [leftover] = lifecycle.orphans(dead_server.pid)
    lifecycle.state_dir(port).mkdir(parents=True, exist_ok=True)
    lifecycle.pidfile(port).write_text(f"{dead_server.pid}\n")  # what the crashed server left
    try:
        lifecycle.up(port)
        deadline = time.monotonic() + 5
        while lifecycle._alive(leftover) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lifecycle._alive(leftover)
        assert lifecycle.health(port).pid != dead_server.pid
    finally:
        lifecycle.down(port, wipe=True)


SLOW_WRITER = '''
import time, boto3

s3 = boto3.client("s3")


def handler(event, context):
    time.sleep(0.3)
    s3.put_object(Bucket="async-results", Key=f"event-{event['n']}", Body=context.aws_request_id.encode())
'''


def test_async_invocations_accepted_before_a_crash_run_after_it(cloud: tuple[int, str]) -> None:
    """Lambda answers an Event invoke with 202 once the event is queued: queued, it runs, even if the
    server is killed before it did (at least once, with the request id it was given)."""
    port, endpoint = cloud
    s3, awslambda = _client(endpoint, "s3"), _client(endpoint, "lambda")
    s3.create_bucket(Bucket="async-results")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("app.py", SLOW_WRITER)
    role = _role(endpoint, "slow-role", "s3:PutObject")
    awslambda.create_function(FunctionName="slow", Runtime="python3.11", Role=role, Handler="app.handler",
                              Code={"ZipFile": bundle.getvalue()}, Timeout=30)
    request_ids = {}
    for n in range(20):
        answer = awslambda.invoke(FunctionName="slow", InvocationType="Event", Payload=json.dumps({"n": n}))
        assert answer["StatusCode"] == 202
        request_ids[f"event-{n}"] = answer["ResponseMetadata"]["RequestId"]
    os.kill(lifecycle.health(port).pid, signal.SIGKILL)
    time.sleep(0.5)
    lifecycle.up(port)
    done_before = set(_bucket_keys_of(s3, "async-results"))
    assert len(done_before) < 20, "the crash came too late to test anything"
    deadline = time.monotonic() + 60
    while set(_bucket_keys_of(s3, "async-results")) != set(request_ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(_bucket_keys_of(s3, "async-results")) == set(request_ids)
    for key, request_id in request_ids.items():  # the events kept their request ids across the crash
        assert s3.get_object(Bucket="async-results", Key=key)["Body"].read().decode() == request_id


def _bucket_keys_of(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]


# No periodic snapshot: every write of the test below is in the journal when the server is killed.
JOURNAL_ONLY = {**ENV, "RETAIL_LOCALCLOUD_SNAPSHOT_S": "0"}
TIMED_EXECUTORS = {**JOURNAL_ONLY, "RETAIL_LOCALCLOUD_EXECUTORS": "persistence,awslambda,apigateway,apigatewayv2,glue"}


def _write_what_has_times(endpoint: str) -> None:
    """Resources and data whose times moto sets when it applies the write."""
    kinesis, s3, dynamodb, sqs = (_client(endpoint, s) for s in ("kinesis", "s3", "dynamodb", "sqs"))
    kinesis.create_stream(StreamName="timed", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="timed", WaiterConfig={"Delay": 0.2})
    for batch in range(3):
        kinesis.put_records(StreamName="timed", Records=[
            {"Data": f"{batch}-{i}".encode(), "PartitionKey": str(i)} for i in range(100)])
    s3.create_bucket(Bucket="timed")
    for n in range(5):
        s3.put_object(Bucket="timed", Key=f"object-{n}", Body=b"x" * n)
    dynamodb.create_table(TableName="timed", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST",
                          StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    url = sqs.create_queue(QueueName="timed")["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"message-{n}")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    _client(endpoint, "lambda").create_function(
        FunctionName="timed", Runtime="python3.11", Role=_role(endpoint, "timed-role", "s3:GetObject"),
        Handler="app.handler", Code={"ZipFile": bundle.getvalue()})
    _client(endpoint, "apigateway").create_rest_api(name="timed")
    http = _client(endpoint, "apigatewayv2")  # the executors' own times: a deployment, a stage's update
    api = http.create_api(Name="timed", ProtocolType="HTTP")["ApiId"]
    integration = http.create_integration(ApiId=api, IntegrationType="HTTP_PROXY", IntegrationMethod="GET",
                                          IntegrationUri="https://example.com", PayloadFormatVersion="1.0")
    http.create_route(ApiId=api, RouteKey="GET /timed", Target=f"integrations/{integration['IntegrationId']}")
    http.create_stage(ApiId=api, StageName="live")
    deployment = http.create_deployment(ApiId=api)["DeploymentId"]
    http.update_stage(ApiId=api, StageName="live", DeploymentId=deployment)
    glue = _client(endpoint, "glue")
    glue.create_crawler(Name="timed", Role="arn:aws:iam::123456789012:role/timed", DatabaseName="timed",
                        Targets={"S3Targets": [{"Path": "s3://timed/"}]})
    glue.update_crawler(Name="timed", Description="updated")


def _times(endpoint: str) -> dict[str, Any]:
    """Every time the writes above left, read back through the APIs."""
    kinesis, s3, dynamodb, sqs = (_client(endpoint, s) for s in ("kinesis", "s3", "dynamodb", "sqs"))
    shard = kinesis.list_shards(StreamName="timed")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="timed", ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
    table = dynamodb.describe_table(TableName="timed")["Table"]
    url = sqs.get_queue_url(QueueName="timed")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["CreatedTimestamp", "LastModifiedTimestamp"])
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                   MessageAttributeNames=["All"], AttributeNames=["SentTimestamp"])["Messages"]
    http = _client(endpoint, "apigatewayv2")
    api = next(a["ApiId"] for a in http.get_apis()["Items"] if a["Name"] == "timed")
    return {
        "kinesis stream": kinesis.describe_stream_summary(StreamName="timed")["StreamDescriptionSummary"][
            "StreamCreationTimestamp"],
        "kinesis records": [(r["Data"], r["SequenceNumber"], r["ApproximateArrivalTimestamp"]) for r in records],
        "s3 bucket": [b["CreationDate"] for b in s3.list_buckets()["Buckets"] if b["Name"] == "timed"],
        "s3 objects": [(o["Key"], o["LastModified"]) for o in s3.list_objects_v2(Bucket="timed")["Contents"]],
        "s3 heads": [s3.head_object(Bucket="timed", Key=f"object-{n}")["LastModified"] for n in range(5)],
        "dynamodb table": (table["CreationDateTime"], table["LatestStreamLabel"], table["LatestStreamArn"]),
        "sqs queue": queue["Attributes"],
        "sqs messages": sorted((m["Body"], m["Attributes"]["SentTimestamp"]) for m in messages),
        "lambda": _client(endpoint, "lambda").get_function(FunctionName="timed")["Configuration"]["LastModified"],
        "iam role": _client(endpoint, "iam").get_role(RoleName="timed-role")["Role"]["CreateDate"],
        "rest api": [api["createdDate"] for api in _client(endpoint, "apigateway").get_rest_apis()["items"]],
        "http api deployment": [(d["DeploymentId"], d["CreatedDate"]) for d in http.get_deployments(ApiId=api)["Items"]],
        "http api stage": http.get_stage(ApiId=api, StageName="live")["LastUpdatedDate"],
        "glue crawler": _client(endpoint, "glue").get_crawler(Name="timed")["Crawler"]["LastUpdated"],
    }


def test_the_times_of_acknowledged_writes_are_the_same_after_a_kill_9(tmp_path: Path) -> None:
    """A write replayed from the journal keeps the times moto gave it when it was acknowledged (a Kinesis
    record's arrival, an object's LastModified, a table's creation and stream label...), as on AWS."""
    with lifecycle.running(tmp_path, TIMED_EXECUTORS) as endpoint:
        port = int(endpoint.rsplit(":", 1)[1])
        _write_what_has_times(endpoint)
        before = _times(endpoint)
        assert len(before["kinesis records"]) == 300 and len(before["sqs messages"]) == 5
        assert len(before["s3 objects"]) == 5 and before["s3 bucket"] and len(before["rest api"]) == 1
        time.sleep(1.2)  # a replay reading the live clock would give other times, even in whole seconds
        os.kill(lifecycle.health(port).pid, signal.SIGKILL)
        time.sleep(0.3)
        lifecycle.up(port)
        journal = json.loads(urllib.request.urlopen(f"{endpoint}/_localcloud/health", timeout=10).read())["journal"]
        assert journal["replayed"] >= 20 and journal["mismatched"] == 0 and journal["diverged"] == 0, journal
        after = _times(endpoint)
        changed = {kind: (value, after[kind]) for kind, value in before.items() if after[kind] != value}
        assert not changed, f"times changed by the crash: {sorted(changed)}; e.g. {next(iter(changed.items()))}"
