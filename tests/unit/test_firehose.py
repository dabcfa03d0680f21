"""Firehose delivery: the logic against fakes (invoker, S3 writer, warehouse, clock), the executor over
moto's backends in-process (mock_aws), then a private local cloud through boto3."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from localcloud.firehose import executor as fh
from localcloud.firehose import delivery as fd
from localcloud.firehose import pipeline as fp
from localcloud.executors import InvokeResult, LambdaInvokeError

ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:transform"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/firehose"
OBJECT_NAME = r"orders-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HOUR_PREFIX = r"\d{4}/\d{2}/\d{2}/\d{2}/"


# --------------------------------------------------------------------------------------------------
# Fakes


class FakeWriter:
    """S3 in a dict; `fail` makes every put raise (a missing bucket)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = False

    def put(self, bucket: str, key: str, body: bytes) -> None:
        if self.fail:
            raise RuntimeError("NoSuchBucket")
        self.objects[f"{bucket}/{key}"] = body

    def keys(self, pattern: str = "") -> list[str]:
        return sorted(k for k in self.objects if re.search(pattern, k))


class FakeInvoker:
    """Answers each transformation event with `behaviour(records)`; keeps every event."""

    def __init__(self, behaviour: Callable[[list[dict[str, Any]]], Any]):
        self.behaviour = behaviour
        self.events: list[dict[str, Any]] = []

    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
        assert kwargs["invocation_type"] == "RequestResponse" and kwargs["account_id"] == ACCOUNT
        event = json.loads(payload)
        self.events.append(event)
        answer = self.behaviour(event["records"])
        if isinstance(answer, Exception):
            raise answer
        if answer == "error":
            return InvokeResult(200, b'{"errorMessage": "boom", "errorType": "ValueError"}', "Unhandled")
        return InvokeResult(200, json.dumps(answer).encode())


class FakeWarehouse:
    """Runs nothing; fails the first `failures` statements."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.statements: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0

    def execute_sql(self, sql: str, **kwargs: Any) -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError("Connection refused")
        self.statements.append((sql, kwargs))
        return 1


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def stream_config(**overrides: Any) -> fd.StreamConfig:
    values: dict[str, Any] = dict(name="orders", arn=f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/orders",
                                  account_id=ACCOUNT, region=REGION, version="1", created=1.0, kind="DirectPut",
                                  s3=fd.S3Target(bucket="lake", size_mb=1, interval_s=60))
    values.update(overrides)
    return fd.StreamConfig(**values)


def redshift_config(compression: str = "UNCOMPRESSED", retry_s: float = 3600, **overrides: Any) -> fd.StreamConfig:
    return stream_config(
        s3=fd.S3Target(bucket="staging", prefix="orders/", compression=compression, size_mb=1, interval_s=60),
        redshift=fd.RedshiftTarget(jdbc_url="jdbc:redshift://retail.abc123.us-east-1.redshift.amazonaws.com:5439/dev",
                                   role_arn=ROLE_ARN, table="public.orders", columns="invoice_no,quantity",
                                   copy_options="JSON 'auto' TIMEFORMAT 'auto'", retry_s=retry_s), **overrides)


def pipeline(config: fd.StreamConfig, tmp_path: Path | None = None, invoker: Any = None, warehouse: Any = None,
             writer: FakeWriter | None = None, clock: Clock | None = None, held: dict[str, Any] | None = None) -> fh.Pipeline:
    return fh.Pipeline(config, tmp_path, lambda: invoker, lambda: warehouse, writer or FakeWriter(), clock or Clock(),
                       held=held)


def records(*values: str, arrival: float | None = None) -> list[fd.FirehoseRecord]:
    return [fd.FirehoseRecord(fd.new_record_id(), v.encode(), arrival or time.time()) for v in values]


# --------------------------------------------------------------------------------------------------
# Buffering and S3 objects


class TestBuffering:
    def test_interval_counts_from_the_first_record_in_the_buffer(self):
        clock, writer = Clock(), FakeWriter()
        line = pipeline(stream_config(), writer=writer, clock=clock)
        line.accept(records("a"))
        clock.now += 59
        line.accept(records("b"))
        assert line.tick()["Objects"] == [] and writer.objects == {}
        clock.now += 1
        [key] = line.tick()["Objects"]
        assert writer.objects[f"lake/{key}"] == b"ab"  # concatenated as sent, no newline added
        clock.now += 120
        assert line.tick()["Objects"] == []  # an empty buffer is never due

    def test_size_flushes_without_waiting(self):
        writer = FakeWriter()
        line = pipeline(stream_config(), writer=writer)
        line.accept(records("x" * 600_000))
        assert line.tick()["Objects"] == []
        line.accept(records("y" * 500_000))  # 1.1 MB >= SizeInMBs=1
        assert len(line.tick()["Objects"]) == 1 and len(next(iter(writer.objects.values()))) == 1_100_000

    def test_force_flush_delivers_a_partial_buffer(self):
        line = pipeline(stream_config())
        line.accept(records("a"))
        assert line.tick(force=True)["Records"] == 1

    def test_failed_s3_write_keeps_the_records_for_the_next_attempt(self):
        writer = FakeWriter()
        line = pipeline(stream_config(), writer=writer)
        line.accept(records("a", "b"))
        writer.fail = True
        assert line.tick(force=True)["Errors"] and writer.objects == {}
        writer.fail = False
        line.clock.now += fp.RETRY_DELAY_S  # due again after the retry delay, not a whole interval
        [key] = line.tick()["Objects"]
        assert writer.objects[f"lake/{key}"] == b"ab"


class TestPrefixes:
    when = dt.datetime(2024, 3, 5, 7, 9, 11, tzinfo=dt.timezone.utc)

    def test_default_prefix_and_object_name(self):
        writer = FakeWriter()
        arrival = self.when.timestamp()
        key = fd.write_data(stream_config(), writer, records("a", arrival=arrival))
        assert re.fullmatch(r"2024/03/05/07/orders-1-2024-03-05-07-09-11-[0-9a-f-]{36}", key or "")

    def test_static_prefix_gets_the_hour_appended_and_gzip_adds_gz(self):
        config = stream_config(s3=fd.S3Target(bucket="lake", prefix="raw/orders/", compression="GZIP"))
        writer = FakeWriter()
        key = fd.write_data(config, writer, records("a", "b", arrival=self.when.timestamp()))
        assert key is not None and key.startswith("raw/orders/2024/03/05/07/orders-1-") and key.endswith(".gz")
        assert gzip.decompress(writer.objects[f"lake/{key}"]) == b"ab"

    def test_expressions(self):
        prefix = fd.expand("year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/!{firehose:random-string}/",
                           self.when)
        assert re.fullmatch(r"year=2024/month=03/day=05/[A-Za-z0-9]{11}/", prefix)
        target = fd.S3Target(bucket="b", prefix="p/!{timestamp:yyyy/MM/dd}/",
                             error_prefix="errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/")
        assert fd.data_prefix(target, self.when) == "p/2024/03/05/"
        assert fd.error_prefix(target, self.when, "processing-failed") == "errors/processing-failed/2024/03/05/"
        assert fd.error_prefix(fd.S3Target(bucket="b"), self.when, "processing-failed") == "processing-failed/2024/03/05/07/"

    def test_invalid_prefixes_are_refused(self):
        with pytest.raises(fd.PrefixError):
            fd.validate_prefixes("p/!{timestamp:yyyy}/", "")  # expressions need an ErrorOutputPrefix
        with pytest.raises(fd.PrefixError):
            fd.validate_prefixes("p/!{firehose:error-output-type}/", "e/")  # only in the error prefix
        with pytest.raises(fd.PrefixError):
            fd.validate_prefixes("p/!{nope:x}/", "e/")
        fd.validate_prefixes("p/!{timestamp:yyyy}/", "e/!{firehose:error-output-type}/")


# --------------------------------------------------------------------------------------------------
# Lambda transformation


def transform_config(retries: int = 3) -> fd.StreamConfig:
    return stream_config(processor=fd.Processor(FUNCTION_ARN, size_mb=1, interval_s=30, retries=retries))


def by_content(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Upper-cases records; 'drop' is Dropped, 'fail' ProcessingFailed, 'lose' missing from the answer."""
    out = []
    for record in records:
        text = base64.b64decode(record["data"]).decode()
        if text == "lose":
            continue
        result = {"drop": "Dropped", "fail": "ProcessingFailed"}.get(text, "Ok")
        out.append({"recordId": record["recordId"], "result": result,
                    "data": base64.b64encode(text.upper().encode()).decode()})
    return {"records": out}


class TestTransformation:
    def test_contract_ok_dropped_failed_and_missing_ids(self):
        clock, writer, invoker = Clock(), FakeWriter(), FakeInvoker(by_content)
        line = pipeline(transform_config(), invoker=invoker, writer=writer, clock=clock)
        sent = records("a|", "drop", "fail", "lose", "b|")
        line.accept(sent)
        clock.now += 29
        assert line.tick()["Objects"] == [] and invoker.events == []
        clock.now += 1  # the Lambda buffer interval: transformed, then waits for the S3 buffer
        report = line.tick()
        assert len(invoker.events) == 1 and report["Objects"] == [] and len(report["ErrorObjects"]) == 1
        event = invoker.events[0]
        assert set(event) == {"invocationId", "deliveryStreamArn", "region", "records"}
        assert event["deliveryStreamArn"].endswith("/orders") and event["region"] == REGION
        assert [r["recordId"] for r in event["records"]] == [r.record_id for r in sent]
        assert isinstance(event["records"][0]["approximateArrivalTimestamp"], int)
        clock.now += 60
        [key] = line.tick()["Objects"]
        assert writer.objects[f"lake/{key}"] == b"A|B|"
        [error_key] = writer.keys("processing-failed/")
        assert re.fullmatch(rf"lake/processing-failed/{HOUR_PREFIX}{OBJECT_NAME}", error_key)
        lines = [json.loads(x) for x in writer.objects[error_key].decode().splitlines()]
        assert [(x["errorCode"], base64.b64decode(x["rawData"])) for x in lines] == [
            ("Lambda.ProcessingFailedStatus", b"fail"), ("Lambda.MissingRecordId", b"lose")]
        assert set(lines[0]) == {"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage",
                                 "attemptEndingTimestamp", "rawData", "lambdaArn"}
        assert lines[0]["attemptsMade"] == 1 and lines[0]["lambdaArn"] == FUNCTION_ARN

    def test_failed_invocations_are_retried_then_the_batch_goes_to_the_error_prefix(self):
        writer, invoker = FakeWriter(), FakeInvoker(lambda records: "error")
        line = pipeline(transform_config(retries=2), invoker=invoker, writer=writer)
        line.accept(records("a", "b"))
        report = line.tick(force=True)
        assert len(invoker.events) == 3 and report["Objects"] == []
        lines = [json.loads(x) for x in writer.objects[writer.keys("processing-failed")[0]].splitlines()]
        assert [(x["attemptsMade"], x["errorCode"]) for x in lines] == [(3, "Lambda.FunctionError")] * 2

    def test_a_refused_invocation_then_success(self):
        answers = iter([LambdaInvokeError("TooManyRequestsException", "slow down", 429)])
        invoker = FakeInvoker(lambda records: next(answers, None) or by_content(records))
        writer = FakeWriter()
        line = pipeline(transform_config(), invoker=invoker, writer=writer)
        line.accept(records("a"))
        assert line.tick(force=True)["Records"] == 1 and len(invoker.events) == 2
        assert list(writer.objects.values()) == [b"A"]

    def test_without_a_lambda_runtime_records_fail_instead_of_vanishing(self):
        writer = FakeWriter()
        line = pipeline(transform_config(retries=0), invoker=None, writer=writer)
        line.accept(records("a"))
        line.tick(force=True)
        [line_] = [json.loads(x) for x in writer.objects[writer.keys("processing-failed")[0]].splitlines()]
        assert line_["errorCode"] == "Lambda.InvokeAccessDenied"

    def test_large_batches_are_split_under_the_payload_limit(self):
        batches = fd.lambda_batches(records(*["x" * 1_000_000] * 9))
        assert [len(b) for b in batches] == [4, 4, 1]


# --------------------------------------------------------------------------------------------------
# Redshift


class TestRedshift:
    def test_manifest_and_copy_as_aws_builds_them(self, tmp_path: Path):
        writer, warehouse = FakeWriter(), FakeWarehouse()
        line = pipeline(redshift_config(), tmp_path, warehouse=warehouse, writer=writer)
        line.accept(records('{"invoice_no": "1"}', '{"invoice_no": "2"}'))
        report = line.tick(force=True)
        [manifest], [data_key] = report["Manifests"], report["Objects"]
        assert re.fullmatch(rf"orders/manifests/{HOUR_PREFIX}{OBJECT_NAME}", manifest)
        assert re.fullmatch(rf"orders/{HOUR_PREFIX}{OBJECT_NAME}", data_key)
        assert json.loads(writer.objects[f"staging/{manifest}"]) == {
            "entries": [{"url": f"s3://staging/{data_key}", "mandatory": True}]}
        [(sql, target)] = warehouse.statements
        assert sql == (f"COPY public.orders (invoice_no,quantity) FROM 's3://staging/{manifest}' "
                       f"CREDENTIALS 'aws_iam_role={ROLE_ARN}' MANIFEST JSON 'auto' TIMEFORMAT 'auto';")
        assert target == {"cluster": "retail", "database": "dev", "account_id": ACCOUNT, "region": REGION}
        assert report["Copied"] == [manifest]

    def test_gzip_adds_the_gzip_option(self):
        sql = fd.copy_command(redshift_config("GZIP"), "m")
        assert sql.endswith("MANIFEST JSON 'auto' TIMEFORMAT 'auto' GZIP;")

    def test_retry_until_copied_once_and_never_again_even_after_a_restart(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setattr(fp, "RETRY_DELAY_S", 5.0)  # the pipeline reads it
        clock, warehouse = Clock(), FakeWarehouse(failures=2)
        line = pipeline(redshift_config(), tmp_path, warehouse=warehouse, clock=clock)
        line.accept(records("a"))
        assert line.tick(force=True)["Copied"] == [] and warehouse.attempts == 1
        clock.now += 1
        line.tick()
        assert warehouse.attempts == 1  # waits RETRY_DELAY_S between attempts
        clock.now += 5
        line.tick()
        clock.now += 5
        assert len(line.tick()["Copied"]) == 1 and warehouse.attempts == 3
        for _ in range(3):
            clock.now += 10
            line.tick(force=True)
        again = pipeline(redshift_config(), tmp_path, warehouse=warehouse, clock=clock)  # a restarted executor
        again.tick(force=True)
        assert warehouse.attempts == 3 and len(warehouse.statements) == 1

    def test_pending_batch_resumes_after_a_restart(self, tmp_path: Path):
        failing, working = FakeWarehouse(failures=99), FakeWarehouse()
        line = pipeline(redshift_config(), tmp_path, warehouse=failing)
        line.accept(records("a"))
        line.tick(force=True)
        again = pipeline(redshift_config(), tmp_path, warehouse=working)
        assert len(again.tick(force=True)["Copied"]) == 1 and len(working.statements) == 1

    def test_after_the_retry_duration_the_manifest_goes_to_errors(self, tmp_path: Path):
        clock, writer, warehouse = Clock(), FakeWriter(), FakeWarehouse(failures=99)
        line = pipeline(redshift_config(retry_s=10), tmp_path, warehouse=warehouse, writer=writer, clock=clock)
        line.accept(records("a"))
        [manifest] = line.tick(force=True)["Manifests"]
        clock.now += 11
        [error_manifest] = line.tick(force=True)["ErrorManifests"]
        assert re.fullmatch(rf"orders/errors/manifests/{HOUR_PREFIX}{OBJECT_NAME}", error_manifest)
        assert writer.objects[f"staging/{error_manifest}"] == writer.objects[f"staging/{manifest}"]
        attempts = warehouse.attempts
        clock.now += 100
        line.tick(force=True)
        assert warehouse.attempts == attempts  # a skipped batch is not retried any more

    def test_missing_warehouse_executor_is_a_failed_delivery(self, tmp_path: Path):
        def absent() -> Any:
            raise RuntimeError("no warehouse executor is running in the local cloud")

        line = fh.Pipeline(redshift_config(retry_s=0), tmp_path, lambda: None, absent, FakeWriter(), Clock())
        line.accept(records("a"))
        report = line.tick(force=True)
        assert "no warehouse executor" in report["Errors"][0] and len(report["ErrorManifests"]) == 1

    def test_retry_duration_env_override(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("RETAIL_FIREHOSE_RETRY_S", "2")
        assert fd.redshift_retry_s({"RetryOptions": {"DurationInSeconds": 7200}}) == 2.0
        monkeypatch.delenv("RETAIL_FIREHOSE_RETRY_S")
        assert fd.redshift_retry_s({}) == 3600.0

    def test_jdbc_url_parsing(self):
        from localcloud.warehouse.executor import jdbc_target
        assert jdbc_target("jdbc:redshift://retail.abc.us-east-1.redshift.amazonaws.com:5439/dev") == {"cluster": "retail", "database": "dev"}


# --------------------------------------------------------------------------------------------------
# What survives a crash: buffers in moto's state (snapshotted), deliveries as replayable changes


class TestDurableBuffers:
    def test_a_snapshot_of_the_held_buffers_delivers_after_a_restart(self):
        import pickle

        held: dict[str, Any] = {}
        line = pipeline(stream_config(), held=held)
        line.accept(records("a", "b"))
        restored = pickle.loads(pickle.dumps(held))  # what a snapshot of moto's state keeps
        writer = FakeWriter()
        again = pipeline(stream_config(), held=restored, writer=writer)
        [key] = again.tick(force=True)["Objects"]
        assert writer.objects[f"lake/{key}"] == b"ab" and again.outgoing.count == 0

    def test_replaying_accepts_and_changes_in_order_rebuilds_the_same_objects_and_buffers(self):
        import pickle

        changes: list[tuple[dict[str, Any], list[bytes]]] = []
        held: dict[str, Any] = {}
        first_writer = FakeWriter()
        line = pipeline(stream_config(), held=held, writer=first_writer)
        line.commit = lambda change, blobs: (changes.append((json.loads(json.dumps(change)), blobs)),
                                             line.apply(change, blobs))
        snapshot = pickle.dumps(held)
        a, b = records("a1", "a2"), records("b1")
        log: list[Any] = [("accept", a)]
        line.accept(a)
        line.tick(force=True)
        log.append(("change", changes[-1]))
        log.append(("accept", b))
        line.accept(b)

        replay_writer = FakeWriter()  # S3 as the snapshot had it: the delivered object is gone with the crash
        replay = pipeline(stream_config(), held=pickle.loads(snapshot), writer=replay_writer)
        for kind, entry in log:
            replay.accept(entry) if kind == "accept" else replay.apply(*entry)
        assert replay_writer.objects == first_writer.objects  # the same key and body, written once
        assert [r.data for r in replay.outgoing.records] == [b"b1"]  # b waits, as it did before the crash

    def test_a_batch_noted_as_staged_but_lost_with_a_crash_is_delivered_again(self, tmp_path: Path):
        class Writer(FakeWriter):
            def exists(self, bucket: str, key: str) -> bool:
                return f"{bucket}/{key}" in self.objects

        held: dict[str, Any] = {}
        line = pipeline(redshift_config(), tmp_path, held=held)
        line.accept(records('{"invoice_no": "1"}'))
        # a crash after the note (a file) and before the change was stored: S3 and the buffer are as before it
        line.journal.record("orders/manifests/lost", status="staged", first_attempt=0.0, attempts=0,
                            objects=["orders/lost"])
        writer, warehouse = Writer(), FakeWarehouse()
        again = pipeline(redshift_config(), tmp_path, warehouse=warehouse, writer=writer, held=held)
        report = again.tick(force=True)
        assert again.journal.batches["orders/manifests/lost"]["status"] == "lost"
        [manifest] = report["Manifests"]
        assert report["Copied"] == [manifest] and len(warehouse.statements) == 1
        assert "orders/manifests/lost" not in warehouse.statements[0][0]


# --------------------------------------------------------------------------------------------------
# The executor over moto's backends in-process (mock_aws)


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


class InProcess:
    """The executor started over mock_aws's backends; `invoker` stands in for the Lambda runtime."""

    def __init__(self, state_dir: Path, invoker: Any = None):
        import boto3

        from localcloud.executors import CloudContext

        executors = {"lambda-runtime": invoker} if invoker is not None else {}
        self.context = CloudContext(endpoint="http://unused", port=0, state_dir=state_dir, executors=executors)
        self.executor = fh.make_executor()
        self.s3, self.kinesis, self.firehose = (boto3.client(n, region_name=REGION) for n in ("s3", "kinesis", "firehose"))

    def start(self) -> "InProcess":
        self.executor.start(self.context)
        return self

    def bodies(self, bucket: str = "lake", prefix: str = "") -> list[bytes]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return [self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing]


@pytest.fixture
def local(moto_aws: None, tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    started: list[InProcess] = []

    def make(invoker: Any = None) -> InProcess:
        instance = InProcess(tmp_path / "state", invoker).start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.executor.stop()


def kinesis_stream(cloud: InProcess, name: str = "orders-stream") -> str:
    cloud.kinesis.create_stream(StreamName=name, ShardCount=1)
    return cloud.kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]


def create_kinesis_sourced(cloud: InProcess, stream_arn: str, name: str = "from-kinesis", **extended: Any) -> None:
    cloud.s3.create_bucket(Bucket="lake")
    cloud.firehose.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE_ARN},
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::lake",
                                            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}, **extended})


class TestInProcess:
    def test_kinesis_source_restart_resumes_from_the_checkpoint_without_duplicates(self, local: Callable[..., InProcess]):
        cloud = local()
        stream_arn = kinesis_stream(cloud)
        cloud.kinesis.put_records(StreamName="orders-stream", Records=[{"Data": b"a,", "PartitionKey": "k"}])
        create_kinesis_sourced(cloud, stream_arn)  # TRIM_HORIZON: the record written before creation counts
        cloud.kinesis.put_records(StreamName="orders-stream", Records=[{"Data": b"b,", "PartitionKey": "k"}])
        assert cloud.executor.flush("from-kinesis")["Records"] == 2
        cloud.kinesis.put_records(StreamName="orders-stream", Records=[{"Data": b"c,", "PartitionKey": "k"}])
        cloud.executor.stop()
        cloud.kinesis.put_records(StreamName="orders-stream", Records=[{"Data": b"d,", "PartitionKey": "k"}])
        again = local()  # a new executor over the same state_dir
        assert again.executor.flush("from-kinesis")["Records"] == 2
        assert sorted(again.bodies()) == [b"a,b,", b"c,d,"]

    def test_kinesis_records_reach_the_transformation_with_their_metadata(self, local: Callable[..., InProcess]):
        invoker = FakeInvoker(by_content)
        cloud = local(invoker)
        stream_arn = kinesis_stream(cloud)
        create_kinesis_sourced(cloud, stream_arn, ProcessingConfiguration={"Enabled": True, "Processors": [
            {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": FUNCTION_ARN}]}]})
        cloud.kinesis.put_records(StreamName="orders-stream", Records=[{"Data": b"x;", "PartitionKey": "pk"}])
        cloud.executor.flush("from-kinesis")
        assert cloud.bodies() == [b"X;"]
        record = invoker.events[0]["records"][0]
        assert record["kinesisRecordMetadata"]["partitionKey"] == "pk"
        assert record["kinesisRecordMetadata"]["shardId"] == "shardId-000000000000"
        assert invoker.events[0]["sourceKinesisStreamArn"] == stream_arn

    def test_update_destination_switches_the_transformation_on(self, local: Callable[..., InProcess]):
        invoker = FakeInvoker(by_content)
        cloud = local(invoker)
        cloud.s3.create_bucket(Bucket="lake")
        cloud.firehose.create_delivery_stream(DeliveryStreamName="orders", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::lake"})
        cloud.firehose.put_record(DeliveryStreamName="orders", Record={"Data": b"a"})
        assert cloud.executor.flush("orders")["Records"] == 1
        cloud.firehose.update_destination(
            DeliveryStreamName="orders", CurrentDeliveryStreamVersionId="1", DestinationId="destinationId-000000000001",
            ExtendedS3DestinationUpdate={"ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": FUNCTION_ARN}]}]}})
        cloud.firehose.put_record(DeliveryStreamName="orders", Record={"Data": b"b"})
        cloud.executor.flush("orders")
        assert sorted(cloud.bodies()) == [b"B", b"a"] and len(invoker.events) == 1
        keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket="lake")["Contents"]]
        assert any("/orders-2-" in k for k in keys)  # the version is part of the object name

    def test_moto_is_restored_on_stop(self, local: Callable[..., InProcess]):
        from moto.firehose.models import FirehoseBackend

        original = FirehoseBackend.put_record_batch
        cloud = local()
        assert FirehoseBackend.put_record_batch is not original
        cloud.executor.stop()
        assert FirehoseBackend.put_record_batch is original


# --------------------------------------------------------------------------------------------------
# A private local cloud, through boto3


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from localcloud import lifecycle

    executors = "firehose,awslambda"
    with lifecycle.running(tmp_path_factory.mktemp("firehose-localcloud"),
                           {"RETAIL_LOCALCLOUD_EXECUTORS": executors, "RETAIL_FIREHOSE_RETRY_S": "0"}) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def client(real: str) -> Callable[[str], Any]:
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=real, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return make


def list_bodies(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


class TestRealCloud:
    def test_direct_put_lands_in_s3_after_flush(self, real: str, client: Callable[[str], Any]):
        s3, firehose = client("s3"), client("firehose")
        s3.create_bucket(Bucket="direct-lake")
        firehose.create_delivery_stream(
            DeliveryStreamName="orders", DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::direct-lake", "Prefix": "raw/!{timestamp:yyyy/MM/dd}/",
                "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/", "CompressionFormat": "GZIP",
                "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}})
        batch = firehose.put_record_batch(DeliveryStreamName="orders", Records=[{"Data": b'{"n":1}\n'}, {"Data": b'{"n":2}\n'}])
        assert batch["FailedPutCount"] == 0 and len({r["RecordId"] for r in batch["RequestResponses"]}) == 2
        firehose.put_record(DeliveryStreamName="orders", Record={"Data": b'{"n":3}\n'})
        assert list_bodies(s3, "direct-lake") == {}  # buffered, as on AWS
        report = fh.flush(real, "orders")
        assert report["Records"] == 3
        [(key, body)] = list_bodies(s3, "direct-lake").items()
        assert re.fullmatch(r"raw/\d{4}/\d{2}/\d{2}/orders-1-\d{4}(-\d{2}){5}-[0-9a-f-]{36}\.gz", key)
        assert gzip.decompress(body) == b'{"n":1}\n{"n":2}\n{"n":3}\n'
        description = firehose.describe_delivery_stream(DeliveryStreamName="orders")["DeliveryStreamDescription"]
        assert description["DeliveryStreamStatus"] == "ACTIVE"

    def test_kinesis_source_and_direct_put_refused(self, real: str, client: Callable[[str], Any]):
        from botocore.exceptions import ClientError

        s3, firehose, kinesis = client("s3"), client("firehose"), client("kinesis")
        s3.create_bucket(Bucket="stream-lake")
        kinesis.create_stream(StreamName="clicks", ShardCount=2)
        stream_arn = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["StreamARN"]
        kinesis.put_records(StreamName="clicks", Records=[{"Data": f"{i};".encode(), "PartitionKey": f"k{i}"} for i in range(20)])
        firehose.create_delivery_stream(
            DeliveryStreamName="clicks-to-s3", DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE_ARN},
            ExtendedS3DestinationConfiguration={"RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::stream-lake",
                                                "Prefix": "clicks/"})
        with pytest.raises(ClientError) as refused:
            firehose.put_record(DeliveryStreamName="clicks-to-s3", Record={"Data": b"x"})
        assert refused.value.response["Error"]["Code"] == "InvalidArgumentException"
        assert refused.value.response["Error"]["Message"] == fh.KINESIS_SOURCE_REFUSAL
        assert fh.flush(real, "clicks-to-s3")["Records"] == 20
        bodies = list_bodies(s3, "stream-lake", "clicks/")
        assert all(re.match(r"clicks/\d{4}/\d{2}/\d{2}/\d{2}/clicks-to-s3-1-", k) for k in bodies)
        values = sorted(int(v) for body in bodies.values() for v in body.decode().split(";") if v)
        assert values == list(range(20))

    def test_buffer_interval_delivers_without_a_flush(self, client: Callable[[str], Any]):
        s3, firehose = client("s3"), client("firehose")
        s3.create_bucket(Bucket="interval-lake")
        firehose.create_delivery_stream(DeliveryStreamName="quick", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::interval-lake",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1}})
        firehose.put_record(DeliveryStreamName="quick", Record={"Data": b"tick"})
        deadline = time.monotonic() + 10
        while not (bodies := list_bodies(s3, "interval-lake")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(bodies.values()) == [b"tick"]

    def test_flush_of_an_unknown_stream_is_a_404(self, real: str):
        with pytest.raises(LookupError, match="not found"):
            fh.flush(real, "nope")

    def test_invalid_prefix_is_refused_at_creation(self, client: Callable[[str], Any]):
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError, match="ErrorOutputPrefix"):
            client("firehose").create_delivery_stream(
                DeliveryStreamName="bad-prefix", ExtendedS3DestinationConfiguration={
                    "RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::direct-lake", "Prefix": "p/!{timestamp:yyyy}/"})

    def test_redshift_without_a_warehouse_stages_then_reports_the_manifest_as_failed(self, real: str,
                                                                                     client: Callable[[str], Any]):
        s3, firehose = client("s3"), client("firehose")
        s3.create_bucket(Bucket="redshift-staging")
        firehose.create_delivery_stream(DeliveryStreamName="to-redshift", RedshiftDestinationConfiguration={
            "RoleARN": ROLE_ARN, "ClusterJDBCURL": "jdbc:redshift://retail.abc.us-east-1.redshift.amazonaws.com:5439/dev",
            "CopyCommand": {"DataTableName": "orders", "CopyOptions": "JSON 'auto'"}, "Username": "loader", "Password": "Secret123",
            "S3Configuration": {"RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::redshift-staging"}})
        firehose.put_record(DeliveryStreamName="to-redshift", Record={"Data": b'{"invoice_no": "1"}'})
        report = fh.flush(real, "to-redshift")  # RETAIL_FIREHOSE_RETRY_S=0: no retries
        assert report["Copied"] == [] and "no warehouse executor" in report["Errors"][0]
        keys = set(list_bodies(s3, "redshift-staging"))
        assert set(report["Manifests"]) | set(report["ErrorManifests"]) | set(report["Objects"]) == keys
        [error_manifest] = report["ErrorManifests"]
        assert error_manifest.startswith("errors/manifests/") and report["Manifests"][0].startswith("manifests/")
        assert fh.flush(real, "to-redshift")["ErrorManifests"] == []  # reported once

    def test_transformation_lambda_end_to_end(self, real: str, client: Callable[[str], Any], tmp_path: Path):
        import io
        import zipfile

        s3, firehose, awslambda, iam = client("s3"), client("firehose"), client("lambda"), client("iam")
        role = iam.create_role(RoleName="transform-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        source = ("import base64\n"
                  "def handler(event, context):\n"
                  "    return {'records': [{'recordId': r['recordId'], 'result': 'Ok',\n"
                  "        'data': base64.b64encode(base64.b64decode(r['data']).upper()).decode()} for r in event['records']]}\n")
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as archive:
            archive.writestr("app.py", source)
        function_arn = awslambda.create_function(FunctionName="upper", Runtime="python3.11", Role=role,
                                                 Handler="app.handler", Code={"ZipFile": bundle.getvalue()})["FunctionArn"]
        s3.create_bucket(Bucket="transformed-lake")
        firehose.create_delivery_stream(DeliveryStreamName="upper", ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE_ARN, "BucketARN": "arn:aws:s3:::transformed-lake",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [
                {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": function_arn}]}]}})
        firehose.put_record(DeliveryStreamName="upper", Record={"Data": b"hello"})
        fh.flush(real, "upper")
        assert list(list_bodies(s3, "transformed-lake").values()) == [b"HELLO"]
