"""Executors' state survives a kill -9 as requests do: a Kinesis mapping's tumbling window (its state and
the checkpoint it covers), Firehose records accepted and not yet delivered, an alarm's state, history and
notification. Each test kills the server with SIGKILL mid-way, runs `up` on the same port, and checks that
nothing acknowledged is lost and nothing is delivered twice beyond the at-least-once AWS documents."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import threading
import time
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config

from localcloud import lifecycle

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills the server with SIGKILL")


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=NO_RETRIES)


def _kill_and_up(port: int) -> dict[str, Any]:
    """SIGKILL the server (nothing of it runs its cleanup), then `up` on the same port; what the journal's
    replay did (every replayed request, effects included, answered as it did the first time)."""
    health = lifecycle.health(port)
    assert health is not None
    os.kill(health.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lifecycle.health(port) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    endpoint = lifecycle.up(port)
    with urllib.request.urlopen(f"{endpoint}/_localcloud/health", timeout=10) as answer:
        journal = json.loads(answer.read())["journal"]
    assert journal["mismatched"] == 0, journal
    return dict(journal)


def _snapshot_after(state_dir: Path, moment: float, timeout: float = 20.0) -> None:
    """Wait until a periodic snapshot taken after `moment` is on disk (it cuts the journal there)."""
    snapshot = state_dir / "moto-state.pickle"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if snapshot.exists() and snapshot.stat().st_mtime > moment:
            return
        time.sleep(0.05)
    raise AssertionError("no snapshot was taken")


def _role(endpoint: str, name: str, actions: list[str]) -> str:
    iam = _client(endpoint, "iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="work", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    return arn


def _zip(source: str) -> bytes:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("app.py", source)
    return bundle.getvalue()


def _messages(sqs: Any, url: str, seen: dict[str, str]) -> list[str]:
    """Every message body of a queue so far, by message id (received, never deleted: a delete is a write,
    and the tests wait for quiet moments; a message received before a crash is visible again after it)."""
    while True:
        found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        if not found:
            return list(seen.values())
        seen.update({message["MessageId"]: message["Body"] for message in found})


# --------------------------------------------------------------------------------------------------
# Tumbling windows

WINDOWED = '''
import base64, json, os, time
import boto3

s3, sqs = boto3.client("s3"), boto3.client("sqs")


def handler(event, context):
    sqs.send_message(QueueUrl=os.environ["OBSERVE_URL"], MessageBody=json.dumps(event))
    state = dict(event["state"])
    for record in event["Records"]:
        value = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if value.get("slow") and not s3.list_objects_v2(Bucket=os.environ["BUCKET"]).get("KeyCount"):
            s3.put_object(Bucket=os.environ["BUCKET"], Key="slept", Body=b"")
            time.sleep(120)  # the first time only: the server is killed meanwhile
        state["total"] = state.get("total", 0) + value["v"]
        state["count"] = state.get("count", 0) + 1
    return {"state": state}
'''
WINDOW_S = 4


def test_a_tumbling_window_keeps_its_state_across_a_kill_9(tmp_path: Path) -> None:
    """Batches [1, 2] and [3, 4] are delivered and checkpointed; the server dies during [5, 6]. After `up`
    the window goes on with the saved state, [5, 6] comes again (its invocation was not checkpointed)
    and the final invoke covers the six records once each."""
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,awslambda,event_sources", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "1",
           "RETAIL_LOCALCLOUD_JOURNAL": "fsync"}
    with lifecycle.running(tmp_path, env) as endpoint:
        port = int(endpoint.rsplit(":", 1)[1])
        kinesis, sqs, s3, awslambda = (_client(endpoint, s) for s in ("kinesis", "sqs", "s3", "lambda"))
        s3.create_bucket(Bucket="window-marks")
        observed = sqs.create_queue(QueueName="window-observed")["QueueUrl"]
        role = _role(endpoint, "window-role", ["kinesis:*", "sqs:*", "s3:*", "logs:*"])
        awslambda.create_function(FunctionName="windowed", Runtime="python3.11", Role=role, Handler="app.handler",
                                  Code={"ZipFile": _zip(WINDOWED)}, Timeout=300, Environment={"Variables": {
                                      "OBSERVE_URL": observed, "BUCKET": "window-marks"}})
        kinesis.create_stream(StreamName="windows", ShardCount=1)
        arn = kinesis.describe_stream(StreamName="windows")["StreamDescription"]["StreamARN"]
        awslambda.create_event_source_mapping(FunctionName="windowed", EventSourceArn=arn, BatchSize=2,
                                              StartingPosition="TRIM_HORIZON", TumblingWindowInSeconds=WINDOW_S)
        while time.time() % WINDOW_S > WINDOW_S / 2:  # the six records arrive in one window
            time.sleep(0.05)
        values = [{"v": 1}, {"v": 2}, {"v": 3}, {"v": 4}, {"v": 5, "slow": True}, {"v": 6}]
        kinesis.put_records(StreamName="windows", Records=[
            {"Data": json.dumps(value).encode(), "PartitionKey": "p"} for value in values])
        put_at = time.time()
        seen: dict[str, str] = {}

        def invocations() -> list[dict[str, Any]]:
            return [json.loads(body) for body in _messages(sqs, observed, seen)]

        def batch(event: dict[str, Any]) -> list[int]:
            return [json.loads(base64.b64decode(r["kinesis"]["data"]))["v"] for r in event["Records"]]

        deadline = time.monotonic() + 30
        while [5, 6] not in [batch(e) for e in invocations()]:
            assert time.monotonic() < deadline, invocations()
            time.sleep(0.1)
        state_dir = Path(lifecycle.health(port).state_dir)
        _snapshot_after(state_dir, put_at)  # the records' arrival times are in it (replay would renew them)
        _kill_and_up(port)

        deadline = time.monotonic() + 40
        while not [e for e in invocations() if e["isFinalInvokeForWindow"]]:
            assert time.monotonic() < deadline, invocations()
            time.sleep(0.2)
        events = invocations()
        [final] = [e for e in events if e["isFinalInvokeForWindow"]]
        assert final["state"] == {"total": 21, "count": 6}, final  # every record of the window, once
        batches = Counter(tuple(batch(e)) for e in events if e["Records"])
        assert batches[(1, 2)] == 1 and batches[(3, 4)] == 1, batches  # checkpointed: never again
        assert batches[(5, 6)] == 2, batches  # not checkpointed when the server died: delivered again
        assert {e["window"]["start"] for e in events} == {final["window"]["start"]}


# --------------------------------------------------------------------------------------------------
# CloudWatch alarms


def test_an_alarm_in_alarm_stays_there_across_a_kill_9_without_notifying_again(tmp_path: Path) -> None:
    """No snapshot at all (the journal alone brings the state back): the transition to ALARM, its history
    and its SNS message to SQS survive, and the next evaluation finds nothing to change."""
    from localcloud.cloudwatch.executor import evaluate_now

    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,cloudwatch", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "0",
           "RETAIL_LOCALCLOUD_JOURNAL": "fsync", "RETAIL_CLOUDWATCH_TICK_S": "3600"}
    with lifecycle.running(tmp_path, env) as endpoint:
        port = int(endpoint.rsplit(":", 1)[1])
        cw, sns, sqs = (_client(endpoint, s) for s in ("cloudwatch", "sns", "sqs"))
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        queue = sqs.create_queue(QueueName="alarm-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        cw.put_metric_alarm(AlarmName="errors", Namespace="Crash", MetricName="Errors", Statistic="Maximum",
                            Period=60, EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
                            AlarmActions=[topic])
        cw.put_metric_data(Namespace="Crash", MetricData=[{"MetricName": "Errors", "Value": 9,
                                                            "Timestamp": time.time()}])
        [moved] = evaluate_now(endpoint)
        assert (moved["OldStateValue"], moved["NewStateValue"]) == ("INSUFFICIENT_DATA", "ALARM")
        before = cw.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]

        assert _kill_and_up(port)["replayed"] > 0  # no snapshot: the journal alone brings everything back

        after = cw.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]
        assert after["StateValue"] == "ALARM" and after["StateReason"] == before["StateReason"]
        assert after["StateUpdatedTimestamp"] == before["StateUpdatedTimestamp"]
        assert evaluate_now(endpoint) == []  # still breaching: no change, no message
        updates = cw.describe_alarm_history(AlarmName="errors", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
        assert [item["HistorySummary"] for item in updates] == ["Alarm updated from INSUFFICIENT_DATA to ALARM"]
        notifications = [json.loads(body) for body in _messages(sqs, queue, {})]
        assert [(n["OldStateValue"], n["NewStateValue"]) for n in notifications] == [("INSUFFICIENT_DATA", "ALARM")]


# --------------------------------------------------------------------------------------------------
# Firehose


def _delivered(s3: Any, bucket: str) -> list[str]:
    lines: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            lines += s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
    return lines


def test_firehose_records_accepted_before_a_kill_9_are_delivered_once(tmp_path: Path) -> None:
    """Buffers of 900 s / 128 MB, so nothing is delivered unless flushed: batch B waits in a buffer when a
    snapshot cuts the journal; then writers and flushes run until the kill, and batch Z waits in a buffer
    at the kill. After `up` and a flush, every acknowledged record is in S3 exactly once."""
    from localcloud.firehose.executor import flush

    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,firehose", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "1",
           "RETAIL_LOCALCLOUD_JOURNAL": "fsync"}
    with lifecycle.running(tmp_path, env) as endpoint:
        port = int(endpoint.rsplit(":", 1)[1])
        s3, firehose = _client(endpoint, "s3"), _client(endpoint, "firehose")
        s3.create_bucket(Bucket="firehose-lake")
        firehose.create_delivery_stream(DeliveryStreamName="orders", ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": "arn:aws:s3:::firehose-lake",
            "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900}})
        acked: list[str] = []

        def put(values: list[str]) -> None:
            answer = firehose.put_record_batch(DeliveryStreamName="orders", Records=[
                {"Data": f"{value}\n".encode()} for value in values])
            acked.extend(v for v, r in zip(values, answer["RequestResponses"]) if "RecordId" in r)

        put([f"a-{i}" for i in range(20)])
        assert flush(endpoint, "orders")["Records"] == 20
        put([f"b-{i}" for i in range(20)])
        _snapshot_after(Path(lifecycle.health(port).state_dir), time.time())  # b-* only in a buffer now

        stop, flushes = threading.Event(), []

        def write() -> None:
            writer = _client(endpoint, "firehose")
            step = 0
            while not stop.is_set():
                values = [f"w-{step}-{i}" for i in range(20)]
                try:
                    answer = writer.put_record_batch(DeliveryStreamName="orders", Records=[
                        {"Data": f"{value}\n".encode()} for value in values])
                except Exception:  # the server is gone: not acknowledged
                    return
                acked.extend(v for v, r in zip(values, answer["RequestResponses"]) if "RecordId" in r)
                step += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # deliveries after the snapshot: only the journal holds them
            flushes.append(flush(endpoint, "orders")["Records"])
            time.sleep(0.2)
        put([f"z-{i}" for i in range(20)])
        assert _kill_and_up(port)["replayed"] > 0  # the puts and deliveries after the snapshot
        stop.set()
        writer.join(timeout=30)

        assert sum(flushes) > 0, "nothing was delivered between the snapshot and the kill"
        flush(endpoint, "orders")
        counts = Counter(_delivered(s3, "firehose-lake"))
        missing = [value for value in acked if counts[value] == 0]
        doubled = [value for value, count in counts.items() if count > 1]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost, e.g. {missing[:3]}"
        assert not doubled, f"delivered twice: {doubled[:3]}"
        assert flush(endpoint, "orders")["Records"] == 0  # nothing left behind to come again


# --------------------------------------------------------------------------------------------------
# Glue crawlers


def _crawler_ready(glue: Any, name: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crawler = glue.get_crawler(Name=name)["Crawler"]
        if crawler["State"] == "READY" and "LastCrawl" in crawler:
            return crawler
        time.sleep(0.05)
    raise AssertionError(f"crawler {name} is still {crawler['State']}")


def test_a_finished_crawl_keeps_its_tables_across_a_kill_9_and_a_cut_one_fails(tmp_path: Path) -> None:
    """No snapshot: the crawl's tables and partitions, its SUCCEEDED and its metrics come back from the
    journal (the replayed StartCrawler does not crawl again); a crawl the kill cut short is FAILED."""
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,glue", "RETAIL_LOCALCLOUD_SNAPSHOT_S": "0",
           "RETAIL_LOCALCLOUD_JOURNAL": "fsync"}
    with lifecycle.running(tmp_path, env) as endpoint:
        port = int(endpoint.rsplit(":", 1)[1])
        s3, glue = _client(endpoint, "s3"), _client(endpoint, "glue")
        s3.create_bucket(Bucket="lake")
        for day in (1, 2, 3):
            s3.put_object(Bucket="lake", Key=f"raw/year=2010/month=12/day={day:02d}/part-0.jsonl",
                          Body=b"".join(json.dumps({"InvoiceNo": f"5365{day}{n}", "Quantity": n}).encode() + b"\n"
                                        for n in range(5)))
        role = "arn:aws:iam::123456789012:role/crawler"
        glue.create_crawler(Name="raw", Role=role, DatabaseName="retail",
                            Targets={"S3Targets": [{"Path": "s3://lake/raw/"}]})
        glue.start_crawler(Name="raw")
        before = _crawler_ready(glue, "raw")
        assert before["LastCrawl"]["Status"] == "SUCCEEDED"
        partitions = {tuple(p["Values"]) for p in glue.get_partitions(DatabaseName="retail", TableName="raw")["Partitions"]}
        assert len(partitions) == 3
        for day in (1, 2, 3):  # the catalog keeps what the crawl found (a crawl run again would find nothing)
            s3.delete_object(Bucket="lake", Key=f"raw/year=2010/month=12/day={day:02d}/part-0.jsonl")

        journal = _kill_and_up(port)
        assert journal["replayed"] > 0

        after = glue.get_crawler(Name="raw")["Crawler"]
        assert after["State"] == "READY" and after["LastCrawl"]["Status"] == "SUCCEEDED"
        assert after["LastCrawl"]["StartTime"] == before["LastCrawl"]["StartTime"]
        table = glue.get_table(DatabaseName="retail", Name="raw")["Table"]
        assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day"]
        assert {tuple(p["Values"]) for p in glue.get_partitions(DatabaseName="retail", TableName="raw")["Partitions"]} \
            == partitions
        [metrics] = glue.get_crawler_metrics(CrawlerNameList=["raw"])["CrawlerMetricsList"]
        assert metrics["TablesCreated"] == 1 and not metrics["StillEstimating"]

        # a crawl the kill cuts short (killed as StartCrawler is answered) is FAILED once the journal is
        # replayed, never left RUNNING (a crawl quicker than the kill has SUCCEEDED: both are AWS's states)
        for day in range(1, 31):
            s3.put_object(Bucket="lake", Key=f"raw/year=2010/month=12/day={day:02d}/part-0.jsonl",
                          Body=b'{"InvoiceNo": "536999", "Quantity": 1}\n')
        glue.start_crawler(Name="raw")
        _kill_and_up(port)
        cut = _crawler_ready(glue, "raw")
        assert cut["LastCrawl"]["StartTime"] > before["LastCrawl"]["StartTime"]
        assert (cut["LastCrawl"]["Status"], cut["LastCrawl"].get("ErrorMessage")) in (
            ("FAILED", "the local cloud stopped during the crawl"), ("SUCCEEDED", None))
