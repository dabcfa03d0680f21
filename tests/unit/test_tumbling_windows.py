"""Tumbling windows on stream event source mappings (Kinesis, DynamoDB Streams), as AWS documents them:
windows aligned on the epoch by arrival time, `state` carried between a window's invocations, a final
invoke when the window closes, an answer without `state` counted as a failure, partial batch failures
inside a window, the 0-900 s range. A real local cloud runs deployed functions; the early termination
of a window whose state outgrows 1 MB is checked in-process."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from localcloud.event_sources import pollers as es
from localcloud.executors import InvokeResult

WINDOWED_HANDLER = '''
import base64
import json
import os

import boto3

sqs = boto3.client("sqs")


def handler(event, context):
    sqs.send_message(QueueUrl=os.environ["OBSERVE_URL"], MessageBody=json.dumps(event))
    mode = os.environ.get("MODE", "sum")
    if mode == "no-state":
        return {"batchItemFailures": []}
    state = dict(event["state"])
    failures = []
    for record in event["Records"]:
        if "kinesis" in record:
            value = base64.b64decode(record["kinesis"]["data"]).decode()
            if value == "bad" and mode == "partial" and not state.get("seen_bad"):
                state["seen_bad"] = True
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
                break
            if value != "bad":
                state["total"] = state.get("total", 0) + int(value)
        else:
            state["total"] = state.get("total", 0) + int(record["dynamodb"]["NewImage"]["v"]["N"])
        state["count"] = state.get("count", 0) + 1
    return {"state": state, "batchItemFailures": failures}
'''


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("app.py", source)
    return buffer.getvalue()


class Cloud:
    """boto3 clients on a private local cloud, a windowed function and the queue it reports to."""

    def __init__(self, endpoint: str):
        import boto3

        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        self.kinesis, self.sqs, self.ddb, self.awslambda, self.iam = (
            session.client(name, endpoint_url=endpoint) for name in ("kinesis", "sqs", "dynamodb", "lambda", "iam"))
        self.role = self.iam.create_role(RoleName="windows", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        self.iam.put_role_policy(RoleName="windows", PolicyName="read-streams", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
                "kinesis:ListShards", "kinesis:ListStreams", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                "dynamodb:DescribeStream", "dynamodb:ListStreams", "sqs:SendMessage", "sqs:ReceiveMessage",
                "sqs:DeleteMessage", "sqs:GetQueueAttributes", "logs:CreateLogStream", "logs:PutLogEvents"]}]}))

    def queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def function(self, mode: str = "sum") -> tuple[str, str]:
        name = f"windows-{uuid.uuid4().hex[:8]}"
        url, _ = self.queue(f"{name}-observed")
        self.awslambda.create_function(
            FunctionName=name, Runtime="python3.11", Role=self.role, Handler="app.handler", Timeout=10,
            Code={"ZipFile": _zip(WINDOWED_HANDLER)}, Environment={"Variables": {"OBSERVE_URL": url, "MODE": mode}})
        return name, url

    def stream(self) -> tuple[str, str]:
        name = f"s-{uuid.uuid4().hex[:8]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        return name, self.kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]

    def events(self, url: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(events):
            assert time.monotonic() < deadline, f"{len(events)} events observed: {events[-3:]}"
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            time.sleep(0.05)
        return events


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    from localcloud import lifecycle

    with lifecycle.running(tmp_path_factory.mktemp("windows-cloud")) as endpoint:
        yield Cloud(endpoint)


def finals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["isFinalInvokeForWindow"]]


def _epoch(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


class TestKinesisWindows:
    def test_state_is_carried_and_each_window_ends_with_a_final_invoke(self, cloud: Cloud):
        function, observed = cloud.function()
        stream, arn = cloud.stream()
        mapping = cloud.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=arn, StartingPosition="TRIM_HORIZON", BatchSize=2,
            TumblingWindowInSeconds=2)
        assert mapping["TumblingWindowInSeconds"] == 2
        assert cloud.awslambda.get_event_source_mapping(UUID=mapping["UUID"])["TumblingWindowInSeconds"] == 2
        values = list(range(1, 8))
        for value in values:
            cloud.kinesis.put_record(StreamName=stream, Data=str(value).encode(), PartitionKey="v")
        arrivals = [r["ApproximateArrivalTimestamp"].timestamp() for r in cloud.kinesis.get_records(
            ShardIterator=cloud.kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000",
                                                           ShardIteratorType="TRIM_HORIZON")["ShardIterator"])["Records"]]
        expected_windows = sorted({a - a % 2 for a in arrivals})
        events = cloud.events(observed, lambda e: len(finals(e)) >= len(expected_windows), timeout=20)
        for event in events:
            start, end = _epoch(event["window"]["start"]), _epoch(event["window"]["end"])
            assert end - start == 2 and start % 2 == 0  # aligned on the epoch
            assert event["shardId"] == "shardId-000000000000" and event["eventSourceARN"] == arn
            assert event["isWindowTerminatedEarly"] is False
            for record in event["Records"]:
                assert start <= record["kinesis"]["approximateArrivalTimestamp"] < end
        assert [_epoch(e["window"]["start"]) for e in finals(events)] == expected_windows
        for final in finals(events):
            assert final["Records"] == []
            window = [e for e in events if e["window"] == final["window"] and not e["isFinalInvokeForWindow"]]
            seen = [int(base64.b64decode(r["kinesis"]["data"])) for e in window for r in e["Records"]]
            assert final["state"] == {"total": sum(seen), "count": len(seen)}
            assert window[0]["state"] == {}  # a window starts with an empty state
        assert sum(f["state"]["total"] for f in finals(events)) == sum(values)

    def test_an_answer_without_state_is_a_failed_invocation(self, cloud: Cloud):
        function, observed = cloud.function(mode="no-state")
        failures_url, failures_arn = cloud.queue(f"failures-{uuid.uuid4().hex[:6]}")
        stream, arn = cloud.stream()
        cloud.kinesis.put_record(StreamName=stream, Data=b"5", PartitionKey="v")
        cloud.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=arn, StartingPosition="TRIM_HORIZON", TumblingWindowInSeconds=60,
            MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": failures_arn}})
        events = cloud.events(observed, lambda e: len(e) >= 2)
        assert [len(e["Records"]) for e in events[:2]] == [1, 1]  # tried, retried once
        record = json.loads(_first_body(cloud, failures_url))
        assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert record["KinesisBatchInfo"]["batchSize"] == 1

    def test_partial_failure_inside_a_window_retries_from_the_failed_record_with_the_returned_state(self, cloud: Cloud):
        function, observed = cloud.function(mode="partial")
        stream, arn = cloud.stream()
        cloud.kinesis.put_records(StreamName=stream, Records=[
            {"Data": value.encode(), "PartitionKey": "v"} for value in ("1", "2", "bad", "4")])
        cloud.awslambda.create_event_source_mapping(
            FunctionName=function, EventSourceArn=arn, StartingPosition="TRIM_HORIZON", BatchSize=10,
            TumblingWindowInSeconds=1, FunctionResponseTypes=["ReportBatchItemFailures"])
        events = cloud.events(observed, lambda e: len(finals(e)) >= 1)
        values = [[base64.b64decode(r["kinesis"]["data"]).decode() for r in e["Records"]] for e in events]
        assert values[:3] == [["1", "2", "bad", "4"], ["bad", "4"], []]
        assert events[1]["state"] == {"total": 3, "count": 2, "seen_bad": True}
        assert events[2]["state"] == {"total": 7, "count": 4, "seen_bad": True}

    @pytest.mark.parametrize("value", [901, -1])
    def test_window_outside_0_to_900_seconds_is_refused(self, cloud: Cloud, value: int):
        from botocore.exceptions import ClientError, ParamValidationError

        function, _ = cloud.function()
        _, arn = cloud.stream()
        with pytest.raises((ClientError, ParamValidationError)) as refused:
            cloud.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=arn,
                                                        StartingPosition="LATEST", TumblingWindowInSeconds=value)
        assert "900" in str(refused.value) or "TumblingWindowInSeconds" in str(refused.value)

    def test_update_checks_the_window_and_sqs_has_none(self, cloud: Cloud):
        from botocore.exceptions import ClientError

        function, _ = cloud.function()
        _, arn = cloud.stream()
        uuid_ = cloud.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=arn,
                                                            StartingPosition="LATEST")["UUID"]
        with pytest.raises(ClientError, match="900"):
            cloud.awslambda.update_event_source_mapping(UUID=uuid_, TumblingWindowInSeconds=1000)
        assert cloud.awslambda.update_event_source_mapping(UUID=uuid_, TumblingWindowInSeconds=900)[
            "TumblingWindowInSeconds"] == 900
        _, queue_arn = cloud.queue(f"q-{uuid.uuid4().hex[:6]}")
        with pytest.raises(ClientError, match="Kinesis and DynamoDB"):
            cloud.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=queue_arn,
                                                        TumblingWindowInSeconds=30)


def _first_body(cloud: Cloud, url: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = cloud.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if messages:
            return messages[0]["Body"]
        time.sleep(0.05)
    raise AssertionError("nothing on the failure queue")


class TestDynamoDBStreamWindows:
    def test_new_images_are_summed_per_window(self, cloud: Cloud):
        function, observed = cloud.function()
        table = f"t-{uuid.uuid4().hex[:6]}"
        stream_arn = cloud.ddb.create_table(
            TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})["TableDescription"]["LatestStreamArn"]
        cloud.awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=stream_arn,
                                                    StartingPosition="TRIM_HORIZON", TumblingWindowInSeconds=1)
        for i in range(1, 5):
            cloud.ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
        events = cloud.events(observed, lambda e: sum(f["state"].get("count", 0) for f in finals(e)) >= 4)
        assert sum(f["state"]["total"] for f in finals(events)) == 10
        assert all(e["eventSourceARN"] == stream_arn and e["shardId"] for e in events)


class TestEarlyTermination:
    def test_a_state_over_1_mb_ends_the_window_early_and_it_goes_on_afresh(self):
        events: list[dict[str, Any]] = []

        class Invoker:
            def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
                event = json.loads(payload)
                events.append(event)
                first = event["Records"] and event["Records"][0]["kinesis"]["sequenceNumber"] == "1"
                big = "x" * (1024 * 1024) if first else ""
                return InvokeResult(200, json.dumps({"state": {"blob": big, "n": len(event["Records"])}}).encode())

        start = time.time() // 60 * 60
        records = []
        for seq in (1, 2):
            event = {"kinesis": {"partitionKey": "k", "sequenceNumber": str(seq), "data": "MQ==",
                                 "approximateArrivalTimestamp": start + 1}, "eventSource": "aws:kinesis"}
            records.append(es.SourceRecord(seq=seq, partition_key="k", arrival=start + 1, event=event, identifier=str(seq)))
        window = es.TumblingWindow.containing(start + 1, 60)
        cfg = es.MappingConfig(uuid="u", function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                               source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s", batch_size=1,
                               tumbling_window_s=60)
        es.StreamDelivery(cfg, Invoker(), "shardId-000000000000", lambda r: None, window=window).deliver(records)
        shapes = [(len(e["Records"]), e["isFinalInvokeForWindow"], e["isWindowTerminatedEarly"], len(e["state"].get("blob", "")))
                  for e in events]
        assert shapes == [(1, False, False, 0), (0, True, True, 1024 * 1024), (1, False, False, 0)]
        assert window.state == {"blob": "", "n": 1}

    def test_a_failed_final_invoke_is_retried_until_it_succeeds(self):
        answers = iter([b'{"errorMessage": "boom", "errorType": "ValueError"}', b'{"batchItemFailures": []}',
                        b'{"state": {"n": 1}}'])
        events: list[dict[str, Any]] = []

        class Invoker:
            def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
                events.append(json.loads(payload))
                answer = next(answers)
                return InvokeResult(200, answer, "Unhandled" if b"errorType" in answer else None)

        window = es.TumblingWindow(start=1_767_225_600.0, size=60, state={"n": 1})
        cfg = es.MappingConfig(uuid="u", function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                               source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s", tumbling_window_s=60,
                               max_retries=0)  # the retry limit is for records; a window's end is retried regardless
        es.StreamDelivery(cfg, Invoker(), "shardId-000000000000", lambda r: None, sleep=lambda s: None,
                          window=window).close_window()
        assert [(e["Records"], e["isFinalInvokeForWindow"], e["state"]) for e in events] == [([], True, {"n": 1})] * 3
        assert events[0]["window"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z"}


class TestSavedWindows:
    """A window's state is saved with the position it covers, so a restart resumes both together."""

    @staticmethod
    def _records(*seqs: int) -> list[es.SourceRecord]:
        out = []
        for seq in seqs:
            event = {"kinesis": {"partitionKey": "k", "sequenceNumber": str(seq), "data": "MQ==",
                                 "approximateArrivalTimestamp": 1.0}, "eventSource": "aws:kinesis"}
            out.append(es.SourceRecord(seq=seq, partition_key="k", arrival=1.0, event=event, identifier=str(seq)))
        return out

    def test_each_accepted_state_is_reported_with_the_last_record_it_covers(self):
        answers = iter([{"state": {"n": 1}, "batchItemFailures": [{"itemIdentifier": "12"}]},  # 11 done, 12 failed
                        {"state": {"n": 9}, "batchItemFailures": [{"itemIdentifier": "12"}]},  # nothing new done
                        {"state": {"n": 3}}, {"state": {"n": 4}}])
        saved: list[tuple[int | None, dict[str, Any]]] = []
        window = es.TumblingWindow(start=0.0, size=60)

        class Invoker:
            def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
                return InvokeResult(200, json.dumps(next(answers)).encode())

        cfg = es.MappingConfig(uuid="u", function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                               source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s", batch_size=3,
                               tumbling_window_s=60, report_item_failures=True)
        es.StreamDelivery(cfg, Invoker(), "shardId-000000000000", lambda r: None, sleep=lambda s: None, window=window,
                          progress=lambda seq: saved.append((seq, dict(window.state)))).deliver(self._records(11, 12, 13, 14))
        assert saved == [(11, {"n": 1}), (None, {"n": 9}), (13, {"n": 3}), (14, {"n": 4})]

    def test_the_window_and_its_position_are_written_together_and_read_back(self, tmp_path: Path):
        path = tmp_path / "mapping.json"
        store = es.CheckpointStore(path)
        store.set_window("shard-0", es.TumblingWindow(start=120.0, size=60, state={"total": 3}).saved(), 7)
        store.set("shard-1", 4)
        again = es.CheckpointStore(path)
        assert again.get("shard-0") == 7 and again.get("shard-1") == 4
        assert es.TumblingWindow.restored(again.window("shard-0")) == es.TumblingWindow(120.0, 60, {"total": 3})
        again.set_window("shard-0", None)  # the final invoke succeeded: nothing to resume
        assert es.CheckpointStore(path).window("shard-0") is None and es.CheckpointStore(path).get("shard-0") == 7
