"""Event source mappings: the delivery logic against a fake Invoker, then the executor in a real local
cloud with zip-deployed handlers (Kinesis, DynamoDB Streams, SQS)."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from localcloud.event_sources import pollers as es
from localcloud.executors import InvokeResult, LambdaInvokeError

ACCOUNT = "123456789012"
STREAM_ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:consumer"
# What the functions' role needs on AWS (and in the local cloud, which enforces IAM): read the sources
# (as AWSLambdaKinesisExecutionRole, AWSLambdaDynamoDBExecutionRole, AWSLambdaSQSQueueExecutionRole), send to
# the OnFailure destinations and the recorder's queue, write the course function's items, write logs.
EXECUTION_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
    "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
    "kinesis:ListShards", "kinesis:ListStreams", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
    "dynamodb:DescribeStream", "dynamodb:ListStreams", "sqs:ReceiveMessage", "sqs:DeleteMessage",
    "sqs:GetQueueAttributes", "sqs:SendMessage", "sns:Publish", "logs:CreateLogGroup", "logs:CreateLogStream",
    "dynamodb:UpdateItem", "logs:PutLogEvents"]}]})


# --------------------------------------------------------------------------------------------------
# Pure logic with a fake Invoker


class FakeInvoker:
    """Records every batch it is given; `behaviour(records)` decides the result."""

    def __init__(self, behaviour: Callable[[list[dict[str, Any]]], Any] | None = None):
        self.behaviour = behaviour or (lambda records: None)
        self.batches: list[list[str]] = []

    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
        assert kwargs["invocation_type"] == "RequestResponse"
        records = json.loads(payload)["Records"]
        self.batches.append([r["kinesis"]["sequenceNumber"] for r in records])
        answer = self.behaviour(records)
        if isinstance(answer, Exception):
            raise answer
        if answer == "error":
            return InvokeResult(200, b'{"errorMessage": "boom", "errorType": "ValueError"}', "Unhandled")
        return InvokeResult(200, json.dumps(answer).encode())


def data_of(record: dict[str, Any]) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


def make_records(values: list[str], start: int = 1, keys: list[str] | None = None, arrival: float | None = None) -> list[es.SourceRecord]:
    out = []
    for i, value in enumerate(values):
        seq = str(start + i)
        key = keys[i] if keys else "pk"
        event = {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": key, "sequenceNumber": seq,
                             "data": base64.b64encode(value.encode()).decode(),
                             "approximateArrivalTimestamp": arrival or time.time()},
                 "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{seq}"}
        out.append(es.SourceRecord(seq=int(seq), partition_key=key, arrival=arrival or time.time(), event=event,
                                   identifier=seq, filter_view=es._kinesis_filter_view(event)))
    return out


def config(**overrides: Any) -> es.MappingConfig:
    return es.MappingConfig(uuid="u", function_arn=FUNCTION_ARN, source_arn=STREAM_ARN, **overrides)


def run(cfg: es.MappingConfig, invoker: FakeInvoker, records: list[es.SourceRecord]) -> list[dict[str, Any]]:
    failures: list[dict[str, Any]] = []
    es.StreamDelivery(cfg, invoker, "shardId-000000000000", failures.append, sleep=lambda s: None).deliver(records)
    return failures


def poison(records: list[dict[str, Any]]) -> Any:
    return "error" if any(data_of(r) == "bad" for r in records) else None


class TestStreamDelivery:
    def test_batches_follow_batch_size_in_order(self):
        invoker = FakeInvoker()
        assert run(config(batch_size=2), invoker, make_records(list("abcde"))) == []
        assert invoker.batches == [["1", "2"], ["3", "4"], ["5"]]

    def test_finite_retries_then_on_failure_record_and_the_shard_moves_on(self):
        invoker = FakeInvoker(poison)
        failures = run(config(batch_size=2, max_retries=2), invoker, make_records(["a", "bad", "c"]))
        assert invoker.batches == [["1", "2"]] * 3 + [["3"]]
        [failure] = failures
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert failure["requestContext"]["functionArn"] == FUNCTION_ARN
        assert failure["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
        info = failure["KinesisBatchInfo"]
        assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
            "shardId-000000000000", "1", "2", 2)
        assert info["streamArn"] == STREAM_ARN and info["approximateArrivalOfFirstRecord"].endswith("Z")
        assert failure["version"] == "1.0" and failure["timestamp"].endswith("Z")

    def test_bisect_halves_until_the_bad_record_is_alone(self):
        invoker = FakeInvoker(poison)
        failures = run(config(batch_size=8, max_retries=0, bisect=True), invoker,
                       make_records(["a", "b", "c", "d", "e", "bad", "g", "h"]))
        assert [len(b) for b in invoker.batches] == [8, 4, 4, 2, 1, 1, 2]
        assert invoker.batches[-3:] == [["5"], ["6"], ["7", "8"]]
        assert [f["KinesisBatchInfo"]["startSequenceNumber"] for f in failures] == ["6"]

    def test_partial_batch_response_retries_from_the_lowest_failed_sequence_number(self):
        calls = iter([{"batchItemFailures": [{"itemIdentifier": "4"}, {"itemIdentifier": "3"}]},
                      {"batchItemFailures": []}])
        invoker = FakeInvoker(lambda records: next(calls))
        assert run(config(batch_size=5, report_item_failures=True), invoker, make_records(list("abcde"))) == []
        assert invoker.batches == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]

    def test_unknown_item_identifier_fails_the_whole_batch(self):
        calls = iter([{"batchItemFailures": [{"itemIdentifier": "nope"}]}, None])
        invoker = FakeInvoker(lambda records: next(calls))
        run(config(batch_size=3, report_item_failures=True), invoker, make_records(list("abc")))
        assert invoker.batches == [["1", "2", "3"]] * 2

    def test_partial_response_is_ignored_without_report_batch_item_failures(self):
        invoker = FakeInvoker(lambda records: {"batchItemFailures": [{"itemIdentifier": "1"}]})
        run(config(batch_size=3), invoker, make_records(list("abc")))
        assert invoker.batches == [["1", "2", "3"]]

    def test_throttles_are_retried_without_counting(self):
        answers = iter([LambdaInvokeError("TooManyRequestsException", "slow down", 429)] * 3 + [None])
        invoker = FakeInvoker(lambda records: next(answers))
        assert run(config(max_retries=0), invoker, make_records(["a"])) == []
        assert len(invoker.batches) == 4

    def test_expired_records_go_to_on_failure_without_invoking(self):
        invoker = FakeInvoker()
        old = make_records(["a", "b"], arrival=time.time() - 120)
        failures = run(config(max_record_age_s=60), invoker, old + make_records(["c"], start=3))
        assert invoker.batches == [["3"]]
        assert failures[0]["requestContext"]["condition"] == "RecordAgeExceeded"
        assert failures[0]["KinesisBatchInfo"]["batchSize"] == 2

    def test_the_batch_is_sent_as_json_marked_valid_so_the_runtime_does_not_parse_it_again(self):
        from localcloud.executors import JSONPayload

        sent: list[bytes] = []

        class Recorder:
            def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
                sent.append(payload)
                return InvokeResult(200, b"null")

        event = {"Records": [{"data": 'caf\u00e9 "quoted" \\ \U0001F600'}]}
        es.invoke_batch(Recorder(), config(), event, threading.Event())  # type: ignore[arg-type]
        assert [type(p) for p in sent] == [JSONPayload] and sent[0] == json.dumps(event).encode()

    def test_parallelization_keeps_each_partition_key_in_order(self):
        keys = [f"k{i % 5}" for i in range(40)]
        records = make_records([str(i) for i in range(40)], keys=keys)
        split = es.lanes(records, 4)
        assert sum(len(lane) for lane in split) == 40 and len(split) > 1
        for lane in split:
            assert [r.seq for r in lane] == sorted(r.seq for r in lane)
            for key in {r.partition_key for r in lane}:
                assert all(key not in {r.partition_key for r in other} for other in split if other is not lane)


class TestFiltersAndCheckpoints:
    def test_kinesis_filter_matches_decoded_json_data(self):
        records = make_records([json.dumps({"country": "France"}), json.dumps({"country": "UK"}), "not json"])
        matching = es.RecordFilter([json.dumps({"data": {"country": ["France"]}})])
        assert [matching.matches(r) for r in records] == [True, False, False]
        assert all(es.RecordFilter([]).matches(r) for r in records)

    def test_checkpoints_survive_a_new_store(self, tmp_path: Path):
        path = tmp_path / "m.json"
        es.CheckpointStore(path).set("shardId-000000000000", 42)
        assert es.CheckpointStore(path).get("shardId-000000000000") == 42
        assert es.CheckpointStore(path).get("other") is None


class FakeSource:
    """A shard in memory, for the poller without moto."""

    def __init__(self, records: list[es.SourceRecord]):
        self.records, self.config = records, None

    def shard_ids(self) -> list[str]:
        return ["shardId-000000000000"]

    def initial_position(self, shard_id: str) -> int:
        return 0

    def read(self, shard_id: str, after: int, limit: int) -> list[es.SourceRecord]:
        return [r for r in self.records if r.seq > after][:limit]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class TestStreamPoller:
    def test_filtered_records_are_checkpointed_and_disabled_mappings_wait(self, tmp_path: Path):
        values = [json.dumps({"keep": i % 2 == 0}) for i in range(6)]
        invoker = FakeInvoker()
        store = es.CheckpointStore(tmp_path / "c.json")
        cfg = config(batch_size=10, filters=(json.dumps({"data": {"keep": [True]}}),))
        poller = es.StreamPoller(cfg, invoker, FakeSource(make_records(values)), store)
        try:
            poller.refresh(cfg)
            wait_for(lambda: store.get("shardId-000000000000") == 6)
            assert invoker.batches == [["1", "3", "5"]]
            poller.refresh(es.MappingConfig(**{**cfg.__dict__, "enabled": False}))
            time.sleep(0.2)
            poller.source.records += make_records([json.dumps({"keep": True})], start=7)
            time.sleep(0.3)
            assert len(invoker.batches) == 1
            poller.refresh(cfg)
            wait_for(lambda: len(invoker.batches) == 2)
        finally:
            poller.stop()
        assert es.CheckpointStore(tmp_path / "c.json").get("shardId-000000000000") == 7


# --------------------------------------------------------------------------------------------------
# The executor over moto's real backends, in-process (mock_aws), with a Python function as Invoker


class HandlerInvoker:
    """Runs `handler(event)` in-process; an exception is a function error, like the runtime reports."""

    def __init__(self, handler: Callable[[dict[str, Any]], Any]):
        self.handler = handler
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
        event = json.loads(payload)
        with self.lock:
            self.events.append(event)
        try:
            return InvokeResult(200, json.dumps(self.handler(event)).encode())
        except Exception as error:  # the function failed
            body = {"errorMessage": str(error), "errorType": type(error).__name__}
            return InvokeResult(200, json.dumps(body).encode(), "Unhandled")

    def records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for event in self.events for r in event["Records"]]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


class InProcessCloud:
    """The executor started over mock_aws's backends with a HandlerInvoker."""

    def __init__(self, state_dir: Path, invoker: HandlerInvoker):
        import boto3

        from localcloud.executors import CloudContext

        self.invoker = invoker
        self.context = CloudContext(endpoint="http://unused", port=0, state_dir=state_dir,
                                    executors={"lambda-runtime": invoker})
        self.executor = es.make_executor()
        self.kinesis, self.sqs, self.ddb, self.awslambda, self.iam = (
            boto3.client(name) for name in ("kinesis", "sqs", "dynamodb", "lambda", "iam"))

    def start(self) -> None:
        self.executor.start(self.context)

    def stop(self) -> None:
        self.executor.stop()

    def function(self, name: str = "consumer") -> str:
        role = self.iam.create_role(RoleName=f"r-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.iam.put_role_policy(RoleName=f"r-{name}", PolicyName="execution", PolicyDocument=EXECUTION_POLICY)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr("app.py", "def handler(event, context):\n    return None\n")
        return self.awslambda.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                                              Code={"ZipFile": buffer.getvalue()})["FunctionArn"]

    def stream(self, name: str = "orders", shards: int = 1) -> str:
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return self.kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]


@pytest.fixture
def cloud(aws: Any, tmp_path: Path) -> Iterator[Callable[..., InProcessCloud]]:
    started: list[InProcessCloud] = []

    def make(handler: Callable[[dict[str, Any]], Any] = lambda event: None) -> InProcessCloud:
        instance = InProcessCloud(tmp_path / "state", HandlerInvoker(handler))
        instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop()


def put(cloud: InProcessCloud, stream: str, values: list[Any], key: str | None = None) -> None:
    entries = [{"Data": json.dumps(v).encode(), "PartitionKey": key or f"k{i}"} for i, v in enumerate(values)]
    for start in range(0, len(entries), 500):
        cloud.kinesis.put_records(StreamName=stream, Records=entries[start:start + 500])


def decoded(records: list[dict[str, Any]]) -> list[Any]:
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in records]


class TestInProcess:
    def test_kinesis_every_record_once_in_shard_order_with_aws_shape(self, cloud: Callable[..., InProcessCloud]):
        from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

        local = cloud()
        local.function()
        stream_arn = local.stream(shards=2)
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                    StartingPosition="TRIM_HORIZON", BatchSize=50)
        put(local, "orders", list(range(300)))
        wait_for(lambda: len(local.invoker.records()) >= 300)
        time.sleep(0.2)
        records = local.invoker.records()
        assert sorted(decoded(records)) == list(range(300))  # all, once (moto's inline path is off)
        assert max(len(e["Records"]) for e in local.invoker.events) <= 50
        for shard in {r["eventID"].split(":")[0] for r in records}:
            seqs = [int(r["kinesis"]["sequenceNumber"]) for r in records if r["eventID"].startswith(shard)]
            assert seqs == sorted(seqs)
        event = KinesisStreamEvent(local.invoker.events[0])
        first = next(iter(event.records))
        assert first.event_source == "aws:kinesis" and first.event_name == "aws:kinesis:record"
        assert first.event_source_arn == stream_arn and first.invoke_identity_arn.startswith("arn:aws:iam::")
        assert first.kinesis.kinesis_schema_version == "1.0" and isinstance(first.kinesis.data_as_json(), int)
        assert first.event_id == f"{first.event_id.split(':')[0]}:{first.kinesis.sequence_number}"

    def test_latest_skips_old_records_and_at_timestamp_starts_there(self, cloud: Callable[..., InProcessCloud]):
        local = cloud()
        local.function()
        stream_arn = local.stream()
        put(local, "orders", ["old"])
        time.sleep(0.05)
        boundary = time.time()
        time.sleep(0.05)
        put(local, "orders", ["mid"])
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                    StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=boundary)
        mapping = local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                              StartingPosition="LATEST")
        time.sleep(0.5)  # both pollers have taken their starting positions
        put(local, "orders", ["new"])
        wait_for(lambda: len(local.invoker.records()) >= 3)
        time.sleep(0.2)
        assert sorted(decoded(local.invoker.records())) == ["mid", "new", "new"]
        assert mapping["State"] in ("Creating", "Enabled")

    def test_disable_stops_delivery_and_enable_resumes_without_loss(self, cloud: Callable[..., InProcessCloud]):
        local = cloud()
        local.function()
        stream_arn = local.stream()
        mapping = local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                              StartingPosition="TRIM_HORIZON")
        put(local, "orders", [1])
        wait_for(lambda: len(local.invoker.records()) == 1)
        updated = local.awslambda.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        assert updated["State"] in ("Disabling", "Disabled")
        time.sleep(0.3)
        put(local, "orders", [2, 3])
        time.sleep(0.5)
        assert decoded(local.invoker.records()) == [1]
        local.awslambda.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
        wait_for(lambda: len(local.invoker.records()) == 3)
        assert decoded(local.invoker.records()) == [1, 2, 3]

    def test_restart_resumes_from_the_checkpoint(self, cloud: Callable[..., InProcessCloud]):
        local = cloud()
        local.function()
        stream_arn = local.stream()
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                    StartingPosition="TRIM_HORIZON")
        put(local, "orders", [1, 2])
        wait_for(lambda: len(local.invoker.records()) == 2)
        local.stop()
        put(local, "orders", [3])
        again = cloud()  # a new executor over the same state_dir
        wait_for(lambda: len(again.invoker.records()) >= 1)
        time.sleep(0.3)
        assert decoded(again.invoker.records()) == [3]

    def test_poison_record_goes_to_on_failure_queue_and_the_shard_moves_on(self, cloud: Callable[..., InProcessCloud]):
        def handler(event: dict[str, Any]) -> None:
            if "bad" in decoded(event["Records"]):
                raise ValueError("poison")

        local = cloud(handler)
        local.function()
        stream_arn = local.stream()
        dlq_url = local.sqs.create_queue(QueueName="esm-failures")["QueueUrl"]
        dlq_arn = local.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        put(local, "orders", ["a", "bad", "c"], key="same")
        local.awslambda.create_event_source_mapping(
            FunctionName="consumer", EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=1,
            MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": dlq_arn}})
        wait_for(lambda: "c" in decoded(local.invoker.records()))
        assert decoded(local.invoker.records()) == ["a", "bad", "bad", "c"]
        [message] = wait_for(lambda: local.sqs.receive_message(QueueUrl=dlq_url).get("Messages"))
        failure = json.loads(message["Body"])
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 2
        assert failure["KinesisBatchInfo"]["startSequenceNumber"] == "2" and failure["KinesisBatchInfo"]["batchSize"] == 1

    def test_sqs_deletes_on_success_and_keeps_partial_failures(self, cloud: Callable[..., InProcessCloud]):
        from aws_lambda_powertools.utilities.data_classes import SQSEvent

        def handler(event: dict[str, Any]) -> dict[str, Any]:
            failed = [r["messageId"] for r in event["Records"] if r["body"] == "fail"]
            return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

        local = cloud(handler)
        local.function()
        url = local.sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
        arn = local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for body in ("ok1", "fail", "ok2"):
            local.sqs.send_message(QueueUrl=url, MessageBody=body,
                                   MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}})
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=arn, BatchSize=10,
                                                    FunctionResponseTypes=["ReportBatchItemFailures"])
        wait_for(lambda: [r["body"] for r in local.invoker.records()].count("fail") >= 2, timeout=10)
        bodies = [r["body"] for r in local.invoker.records()]
        assert bodies.count("ok1") == 1 and bodies.count("ok2") == 1  # deleted after the first success
        event = SQSEvent(local.invoker.events[0])
        record = next(iter(event.records))
        assert record.event_source == "aws:sqs" and record.event_source_arn == arn
        assert record.message_attributes["kind"].string_value == "x"
        assert record.attributes.approximate_receive_count == "1"

    def test_sqs_failures_redrive_to_the_dlq_after_max_receive_count(self, cloud: Callable[..., InProcessCloud]):
        def handler(event: dict[str, Any]) -> None:
            raise RuntimeError("always")

        local = cloud(handler)
        local.function()
        dlq_url = local.sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
        dlq_arn = local.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = local.sqs.create_queue(QueueName="jobs2", Attributes={
            "VisibilityTimeout": "1", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
        arn = local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        local.sqs.send_message(QueueUrl=url, MessageBody="doomed")
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=arn)
        [message] = wait_for(lambda: local.sqs.receive_message(QueueUrl=dlq_url).get("Messages"), timeout=10)
        assert message["Body"] == "doomed"
        assert len(local.invoker.records()) == 2

    def test_dynamodb_stream_images_follow_the_view_type(self, cloud: Callable[..., InProcessCloud]):
        from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

        local = cloud()
        local.function()
        table = local.ddb.create_table(
            TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})["TableDescription"]
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=table["LatestStreamArn"],
                                                    StartingPosition="TRIM_HORIZON")
        local.ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
        local.ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"N": "2"}})
        local.ddb.delete_item(TableName="t", Key={"pk": {"S": "a"}})
        wait_for(lambda: len(local.invoker.records()) == 3)
        records = local.invoker.records()
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
        assert "OldImage" not in records[0]["dynamodb"] and records[0]["dynamodb"]["NewImage"]["v"] == {"N": "1"}
        assert records[1]["dynamodb"]["OldImage"]["v"] == {"N": "1"} and records[1]["dynamodb"]["NewImage"]["v"] == {"N": "2"}
        assert "NewImage" not in records[2]["dynamodb"]
        parsed = [r.event_name.name for e in local.invoker.events for r in DynamoDBStreamEvent(e).records]
        assert parsed == ["INSERT", "MODIFY", "REMOVE"]
        # moto's inline path empties the stream when it delivers; ours leaves it readable
        from moto.dynamodb.models import dynamodb_backends

        assert len(dynamodb_backends[ACCOUNT]["us-east-1"].get_table("t").stream_shard.items) == 3


class TestTumblingWindows:
    def test_state_is_carried_within_a_window_and_the_window_closes_with_a_final_invoke(self, tmp_path: Path):
        events: list[dict[str, Any]] = []

        def handler(event: dict[str, Any]) -> dict[str, Any]:
            events.append(event)
            total = event["state"].get("total", 0) + sum(json.loads(data_of(r)) for r in event["Records"])
            return {"state": {"total": total}}

        invoker = HandlerInvoker(handler)
        now = time.time()
        window_start = now - now % 1 - 10  # a closed window in the past, then the next one
        first = make_records(["1", "2"], arrival=window_start + 0.1)
        second = make_records(["5"], start=3, arrival=window_start + 1.2)
        cfg = config(batch_size=1, tumbling_window_s=1)
        poller = es.StreamPoller(cfg, invoker, FakeSource(first + second), es.CheckpointStore(None))
        try:
            poller.refresh(cfg)
            wait_for(lambda: len(events) >= 5)
        finally:
            poller.stop()
        shapes = [(len(e["Records"]), e["state"], e["isFinalInvokeForWindow"]) for e in events[:5]]
        assert shapes == [(1, {}, False), (1, {"total": 1}, False), (0, {"total": 3}, True),
                          (1, {}, False), (0, {"total": 5}, True)]
        assert events[0]["window"]["end"] == events[3]["window"]["start"]
        assert events[0]["shardId"] == "shardId-000000000000" and events[0]["eventSourceARN"] == STREAM_ARN
        assert events[0]["isWindowTerminatedEarly"] is False


# --------------------------------------------------------------------------------------------------
# A real local cloud (own port and state) with zip-deployed handlers run by the Lambda runtime


COURSE_HANDLER = '''
import base64
import json

import boto3

dynamodb = boto3.client("dynamodb")


def lambda_handler(event, context):
    for record in event["Records"]:
        order = json.loads(base64.b64decode(record["kinesis"]["data"]).decode("utf-8"))
        dynamodb.update_item(
            TableName="course-orders",
            Key={"InvoiceNo": {"S": str(order["InvoiceNo"])}},
            AttributeUpdates={"Quantity": {"Value": {"N": str(order["Quantity"])}, "Action": "PUT"}},
        )
    return {"statusCode": 200}
'''

RECORDER_HANDLER = '''
import base64
import json
import os

import boto3

sqs = boto3.client("sqs")
QUEUE = os.environ["OBSERVE_URL"]
MODE = os.environ.get("MODE", "ok")


def _value(record):
    if "kinesis" in record:
        return base64.b64decode(record["kinesis"]["data"]).decode()
    return record.get("body", record.get("eventName"))


def _identifier(record):
    if "kinesis" in record:
        return record["kinesis"]["sequenceNumber"]
    return record.get("messageId") or record["dynamodb"]["SequenceNumber"]


def handler(event, context):
    sqs.send_message(QueueUrl=QUEUE, MessageBody=json.dumps(event))
    bad = [_identifier(r) for r in event["Records"] if _value(r) == "bad"]
    if MODE == "raise" and bad:
        raise ValueError("poison record")
    if MODE == "partial":
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}
    return None
'''


def zip_bundle(tmp: Path, filename: str, source: str) -> bytes:
    path = tmp / f"{uuid.uuid4().hex}.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(filename, source)
    return path.read_bytes()


class RealCloud:
    """boto3 clients on the module's local cloud, and helpers to deploy and observe."""

    def __init__(self, endpoint: str, tmp: Path):
        import boto3

        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        self.kinesis, self.sqs, self.ddb, self.awslambda, self.iam = (
            session.client(name, endpoint_url=endpoint) for name in ("kinesis", "sqs", "dynamodb", "lambda", "iam"))
        self.tmp = tmp
        self.role = self.iam.create_role(RoleName="esm-tests", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        self.iam.put_role_policy(RoleName="esm-tests", PolicyName="execution", PolicyDocument=EXECUTION_POLICY)

    def queue(self, name: str, **attributes: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return url, self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def recorder(self, mode: str = "ok") -> tuple[str, str]:
        """A deployed recorder function and the queue where it posts every event it receives."""
        name = f"recorder-{uuid.uuid4().hex[:8]}"
        url, _ = self.queue(f"{name}-observed")
        self.awslambda.create_function(
            FunctionName=name, Runtime="python3.11", Role=self.role, Handler="app.handler", Timeout=10,
            Code={"ZipFile": zip_bundle(self.tmp, "app.py", RECORDER_HANDLER)},
            Environment={"Variables": {"OBSERVE_URL": url, "MODE": mode}})
        return name, url

    def stream(self, shards: int = 1) -> tuple[str, str]:
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name, self.kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]

    def put(self, stream: str, values: list[str], key: str = "same") -> None:
        self.kinesis.put_records(StreamName=stream, Records=[{"Data": v.encode(), "PartitionKey": key} for v in values])

    def observed(self, url: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The events a recorder received, waiting for `count` of them."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(events) < count and time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            time.sleep(0.05)
        assert len(events) >= count, f"{len(events)} events observed, expected {count}"
        return events


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCloud]:
    from localcloud import lifecycle

    home = tmp_path_factory.mktemp("esm-localcloud")
    previous = os.environ.get("RETAIL_LOCALCLOUD_HOME")
    os.environ["RETAIL_LOCALCLOUD_HOME"] = str(home)
    port = lifecycle.free_port()
    try:
        endpoint = lifecycle.up(port)
        yield RealCloud(endpoint, home)
    finally:
        lifecycle.down(port)
        if previous is None:
            os.environ.pop("RETAIL_LOCALCLOUD_HOME", None)
        else:
            os.environ["RETAIL_LOCALCLOUD_HOME"] = previous


def kinesis_values(events: list[dict[str, Any]]) -> list[list[str]]:
    return [[base64.b64decode(r["kinesis"]["data"]).decode() for r in e["Records"]] for e in events]


class TestRealCloud:
    def test_course_style_lambda_processes_every_record(self, real: RealCloud):
        real.ddb.create_table(TableName="course-orders", KeySchema=[{"AttributeName": "InvoiceNo", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "InvoiceNo", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        real.awslambda.create_function(
            FunctionName="course-consumer", Runtime="python3.11", Role=real.role,
            Handler="lambda_function.lambda_handler",
            Code={"ZipFile": zip_bundle(real.tmp, "lambda_function.py", COURSE_HANDLER)})
        stream, stream_arn = real.stream(shards=2)
        real.awslambda.create_event_source_mapping(FunctionName="course-consumer", EventSourceArn=stream_arn,
                                                   StartingPosition="TRIM_HORIZON", BatchSize=25)
        orders = [{"InvoiceNo": f"5{i:05d}", "Quantity": i} for i in range(120)]
        real.kinesis.put_records(StreamName=stream, Records=[
            {"Data": json.dumps(o).encode(), "PartitionKey": o["InvoiceNo"]} for o in orders])

        def stored() -> int:
            return real.ddb.scan(TableName="course-orders", Select="COUNT")["Count"]

        wait_for(lambda: stored() == 120, timeout=30)
        item = real.ddb.get_item(TableName="course-orders", Key={"InvoiceNo": {"S": "500007"}})["Item"]
        assert item["Quantity"] == {"N": "7"}

    def test_poison_record_goes_to_on_failure_and_the_shard_moves_on(self, real: RealCloud):
        from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

        function, observed = real.recorder("raise")
        failures_url, failures_arn = real.queue(f"failures-{uuid.uuid4().hex[:6]}")
        stream, stream_arn = real.stream()
        real.put(stream, ["a", "bad", "c"])
        real.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=2,
            MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": failures_arn}})
        events = real.observed(observed, 3)
        assert kinesis_values(events) == [["a", "bad"], ["a", "bad"], ["c"]]
        record = next(iter(KinesisStreamEvent(events[0]).records))
        assert record.kinesis.data_as_text() == "a" and record.event_id.endswith(f":{record.kinesis.sequence_number}")
        [message] = wait_for(lambda: real.sqs.receive_message(QueueUrl=failures_url).get("Messages"))
        failure = json.loads(message["Body"])
        assert set(failure) == {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 2
        assert failure["responseContext"]["functionError"] == "Unhandled"
        info = failure["KinesisBatchInfo"]
        assert info["batchSize"] == 2 and info["streamArn"] == stream_arn
        assert int(info["endSequenceNumber"]) == int(info["startSequenceNumber"]) + 1

    def test_partial_batch_response_retries_from_the_failed_record(self, real: RealCloud):
        function, observed = real.recorder("partial")
        stream, stream_arn = real.stream()
        real.put(stream, ["a", "bad", "c"])
        real.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=10,
            MaximumRetryAttempts=1, FunctionResponseTypes=["ReportBatchItemFailures"])
        assert kinesis_values(real.observed(observed, 2)) == [["a", "bad", "c"], ["bad", "c"]]

    def test_bisect_isolates_the_bad_record(self, real: RealCloud):
        function, observed = real.recorder("raise")
        stream, stream_arn = real.stream()
        real.put(stream, ["a", "b", "bad", "d"])
        real.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=4,
            MaximumRetryAttempts=0, BisectBatchOnFunctionError=True)
        batches = kinesis_values(real.observed(observed, 5))
        assert batches == [["a", "b", "bad", "d"], ["a", "b"], ["bad", "d"], ["bad"], ["d"]]

    def test_disabled_mapping_stops_and_enabling_resumes_without_loss(self, real: RealCloud):
        function, observed = real.recorder()
        stream, stream_arn = real.stream()
        mapping = real.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=stream_arn,
                                                             StartingPosition="TRIM_HORIZON", BatchSize=10)
        real.put(stream, ["1"])
        assert kinesis_values(real.observed(observed, 1)) == [["1"]]
        real.awslambda.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        assert real.awslambda.get_event_source_mapping(UUID=mapping["UUID"])["State"] in ("Disabling", "Disabled")
        time.sleep(0.5)
        real.put(stream, ["2", "3"])
        time.sleep(1.0)
        assert real.sqs.receive_message(QueueUrl=observed).get("Messages") is None
        real.awslambda.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
        assert [v for batch in kinesis_values(real.observed(observed, 1)) for v in batch] == ["2", "3"]

    def test_sqs_deletes_on_success_and_redrives_failures_to_the_dlq(self, real: RealCloud):
        from aws_lambda_powertools.utilities.data_classes import SQSEvent

        function, observed = real.recorder("raise")
        dlq_url, dlq_arn = real.queue(f"dlq-{uuid.uuid4().hex[:6]}")
        # 3 s: a success must be deleted within the visibility timeout or SQS delivers it again (at least once),
        # and a loaded machine took more than 1 s to invoke and delete
        url, arn = real.queue(f"jobs-{uuid.uuid4().hex[:6]}", VisibilityTimeout="3",
                              RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}))
        real.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=arn, BatchSize=1)
        real.sqs.send_message(QueueUrl=url, MessageBody="fine")
        real.sqs.send_message(QueueUrl=url, MessageBody="bad")
        [dead] = wait_for(lambda: real.sqs.receive_message(QueueUrl=dlq_url).get("Messages"), timeout=30)
        assert dead["Body"] == "bad"
        bodies = [r.body for e in real.observed(observed, 3) for r in SQSEvent(e).records]
        assert sorted(bodies) == ["bad", "bad", "fine"]
        attributes = real.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"

    def test_dynamodb_stream_delivers_changes_per_view_type(self, real: RealCloud):
        from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

        function, observed = real.recorder()
        table = real.ddb.create_table(
            TableName=f"t-{uuid.uuid4().hex[:6]}", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})["TableDescription"]
        real.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=table["LatestStreamArn"],
                                                   StartingPosition="TRIM_HORIZON", BatchSize=10,
                                                   MaximumBatchingWindowInSeconds=1)
        name = table["TableName"]
        real.ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
        real.ddb.update_item(TableName=name, Key={"pk": {"S": "a"}},
                             AttributeUpdates={"v": {"Value": {"N": "2"}, "Action": "PUT"}})
        real.ddb.delete_item(TableName=name, Key={"pk": {"S": "a"}})
        records = []
        while len(records) < 3:
            records += [r for e in real.observed(observed, 1) for r in DynamoDBStreamEvent(e).records]
        assert [r.event_name.name for r in records] == ["INSERT", "MODIFY", "REMOVE"]
        assert records[1].dynamodb.new_image == {"pk": "a", "v": 2} and records[1].dynamodb.old_image == {}
        assert records[0].event_source == "aws:dynamodb" and records[0].event_source_arn == table["LatestStreamArn"]


def test_batches_respect_the_6_mb_payload_limit():
    big = make_records(["x" * 1_000_000] * 9)
    assert [len(b) for b in es.batches(big, 100)] == [4, 4, 1]
    assert [len(b) for b in es.batches(make_records(list("abcde")), 2)] == [2, 2, 1]


class TestInProcessMore:
    def test_sqs_filter_criteria_deletes_messages_that_do_not_match(self, cloud: Callable[..., InProcessCloud]):
        local = cloud()
        local.function()
        url = local.sqs.create_queue(QueueName="filtered")["QueueUrl"]
        arn = local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        local.awslambda.create_event_source_mapping(
            FunctionName="consumer", EventSourceArn=arn,
            FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"country": ["France"]}})}]})
        for country in ("France", "UK", "France"):
            local.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"country": country}))
        local.sqs.send_message(QueueUrl=url, MessageBody="plain text")
        wait_for(lambda: local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                 ["ApproximateNumberOfMessages"] == "0" and len(local.invoker.records()) == 2)
        time.sleep(0.2)
        assert sorted(json.loads(r["body"])["country"] for r in local.invoker.records()) == ["France", "France"]
        attributes = local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"

    def test_parallelization_factor_keeps_per_key_order(self, cloud: Callable[..., InProcessCloud]):
        running, peak, lock = [0], [0], threading.Lock()

        def handler(event: dict[str, Any]) -> None:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

        local = cloud(handler)
        local.function()
        stream_arn = local.stream()
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                    StartingPosition="TRIM_HORIZON", BatchSize=5, ParallelizationFactor=4)
        entries = [{"Data": json.dumps([f"k{i % 3}", i]).encode(), "PartitionKey": f"k{i % 3}"} for i in range(60)]
        local.kinesis.put_records(StreamName="orders", Records=entries)
        wait_for(lambda: len(local.invoker.records()) == 60)
        seen = decoded(local.invoker.records())
        for key in ("k0", "k1", "k2"):
            values = [i for k, i in seen if k == key]
            assert values == sorted(values) and len(values) == 20
        assert max(len(e["Records"]) for e in local.invoker.events) <= 5
        assert peak[0] > 1  # lanes of one shard ran concurrently

    def test_moto_inline_delivery_is_off_while_running_and_restored_on_stop(self, cloud: Callable[..., InProcessCloud]):
        from moto.kinesis.models import kinesis_backends

        local = cloud()
        local.function()
        stream_arn = local.stream()
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn)
        stream = kinesis_backends[ACCOUNT]["us-east-1"].streams["orders"]
        assert stream.lambda_event_source_mappings == {}
        local.stop()
        assert list(stream.lambda_event_source_mappings) == [stream_arn]

    def test_sqs_fifo_keeps_group_order_and_fifo_attributes(self, cloud: Callable[..., InProcessCloud]):
        from aws_lambda_powertools.utilities.data_classes import SQSEvent

        local = cloud()
        local.function()
        url = local.sqs.create_queue(QueueName="orders.fifo", Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        arn = local.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for i in range(6):
            local.sqs.send_message(QueueUrl=url, MessageBody=str(i), MessageGroupId="g")
        local.awslambda.create_event_source_mapping(FunctionName="consumer", EventSourceArn=arn, BatchSize=10)
        wait_for(lambda: len(local.invoker.records()) == 6)
        records = [r for e in local.invoker.events for r in SQSEvent(e).records]
        assert [r.body for r in records] == [str(i) for i in range(6)]
        assert all(r.attributes.message_group_id == "g" and r.attributes.sequence_number for r in records)
