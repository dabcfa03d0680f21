"""The four Lambda functions of the streaming pipelines and the query API's authorizer, called with the
events AWS sends them (API Gateway REST proxy and passthrough-template events, Kinesis batches built
from records read back from a real stream, TOKEN authorizer events), against the session local cloud.
Results are checked in the services themselves: the stream, the lake bucket, the table, the queue."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pandas as pd
import pytest
from retail_records import document_writes, documents

from helpers import dataset

pytestmark = pytest.mark.localcloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
REGION, ACCOUNT = "us-east-1", "123456789012"
SECRET = "test-secret-of-the-authorizer"


def load_lambda(name: str, file: str = "app.py") -> ModuleType:
    """lambdas/<name>/<file> as module `lambda_<name>` (each folder is its own deployment root)."""
    module_name = f"lambda_{name}" if file == "app.py" else f"lambda_{name}_{Path(file).stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LAMBDAS / name / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


TABLE_SCHEMA = load_lambda("stream_to_dynamodb", "schema.py").TABLE_SCHEMA


@dataclass
class FakeContext:
    function_name: str = "retail-test-function"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:retail-test-function"
    log_group_name: str = "/aws/lambda/retail-test-function"
    log_stream_name: str = "2026/11/21/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


CONTEXT = FakeContext()


# --------------------------------------------------------------------------------------------------
# Resources: unique names per test module, handlers configured by environment variables


@dataclass
class Cloud:
    aws: Callable[[str], Any]
    suffix: str
    stream: str
    bucket: str
    table: str
    queue_url: str

    @property
    def stream_arn(self) -> str:
        return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{self.stream}"


def create_table(aws: Callable[[str], Any], name: str) -> str:
    aws("dynamodb").create_table(TableName=name, **TABLE_SCHEMA)
    aws("dynamodb").get_waiter("table_exists").wait(TableName=name)
    return name


@pytest.fixture(scope="module")
def cloud(aws: Callable[[str], Any]) -> Iterator[Cloud]:
    suffix = uuid.uuid4().hex[:8]
    stream, bucket, table, queue = (f"lt-transactions-{suffix}", f"lt-lake-{suffix}", f"lt-sales-{suffix}",
                                    f"lt-quarantine-{suffix}")
    aws("kinesis").create_stream(StreamName=stream, ShardCount=2)
    aws("kinesis").get_waiter("stream_exists").wait(StreamName=stream)
    aws("s3").create_bucket(Bucket=bucket)
    create_table(aws, table)
    queue_url = aws("sqs").create_queue(QueueName=queue)["QueueUrl"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"STREAM_NAME": stream, "LAKE_BUCKET": bucket, "TABLE_NAME": table,
                           "QUARANTINE_QUEUE_URL": queue_url, "AUTH_SECRET": SECRET,
                           "PUT_BACKOFF_SECONDS": "0", "WRITE_BACKOFF_SECONDS": "0"}.items():
            patch.setenv(key, value)
        yield Cloud(aws, suffix, stream, bucket, table, queue_url)


@pytest.fixture()
def fresh_queue(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> str:
    """A queue of its own, so a test reads exactly the messages it caused."""
    url = cloud.aws("sqs").create_queue(QueueName=f"lt-q-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    monkeypatch.setenv("QUARANTINE_QUEUE_URL", url)
    return url


@pytest.fixture()
def fresh_stream(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"lt-s-{uuid.uuid4().hex[:10]}"
    cloud.aws("kinesis").create_stream(StreamName=name, ShardCount=2)
    cloud.aws("kinesis").get_waiter("stream_exists").wait(StreamName=name)
    monkeypatch.setenv("STREAM_NAME", name)
    return name


def drain(aws: Callable[[str], Any], url: str) -> list[dict[str, Any]]:
    sqs = aws("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        messages += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])


# --------------------------------------------------------------------------------------------------
# The sample


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return dataset.load()


@pytest.fixture(scope="module")
def raw_sample() -> pd.DataFrame:
    return dataset.read_raw()


def raw_rows(raw: pd.DataFrame) -> list[dict[str, str]]:
    """Rows exactly as the file has them (all text, "" for empty)."""
    return raw[list(dataset.COLUMNS)].to_dict(orient="records")


def typed_frame(sample: pd.DataFrame) -> pd.DataFrame:
    """The typed columns as a notebook holds them (datetime, Int64, float, string with <NA>)."""
    return sample[list(dataset.COLUMNS)]


# --------------------------------------------------------------------------------------------------
# Events as AWS sends them


def proxy_event(method: str, path: str, resource: str, *, body: str | None = None, base64_body: bool = False,
                path_parameters: dict[str, str] | None = None, query: dict[str, str] | None = None,
                authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event, as AWS sends it."""
    headers = {"Accept": "application/json", "Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
               "User-Agent": "python-requests/2.32", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "443",
               "X-Forwarded-Proto": "https", "X-Amzn-Trace-Id": "Root=1-5e0f2b7a-1234567890abcdef12345678"}
    request_context: dict[str, Any] = {
        "resourceId": "a1b2c3", "resourcePath": resource, "httpMethod": method,
        "extendedRequestId": "Jx9ZJHh1IAMFqJA=", "requestTime": "21/Nov/2026:20:00:00 +0000",
        "path": f"/prod{path}", "accountId": ACCOUNT, "protocol": "HTTP/1.1", "stage": "prod",
        "domainPrefix": "abc123", "requestTimeEpoch": 1795204800000, "requestId": str(uuid.uuid4()),
        "identity": {"cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                     "sourceIp": "203.0.113.7", "principalOrgId": None, "accessKey": None,
                     "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None, "userArn": None,
                     "userAgent": "python-requests/2.32", "user": None},
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "apiId": "abc123",
    }
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters or None, "stageVariables": None, "requestContext": request_context,
        "body": base64.b64encode(body.encode()).decode() if (base64_body and body is not None) else body,
        "isBase64Encoded": base64_body,
    }


def passthrough_event(body_json: Any) -> dict[str, Any]:
    """What the course's "Method Request passthrough" mapping template renders for a POST."""
    return {
        "body-json": body_json,
        "params": {"path": {}, "querystring": {}, "header": {"Content-Type": "application/json"}},
        "stage-variables": {},
        "context": {"account-id": "", "api-id": "abc123", "api-key": "", "authorizer-principal-id": "",
                    "caller": "", "cognito-authentication-provider": "", "cognito-authentication-type": "",
                    "cognito-identity-id": "", "cognito-identity-pool-id": "", "http-method": "POST",
                    "stage": "prod", "source-ip": "203.0.113.7", "user": "", "user-agent": "curl/8.5.0",
                    "user-arn": "", "request-id": str(uuid.uuid4()), "resource-id": "a1b2c3",
                    "resource-path": "/transactions"},
    }


def kinesis_record(stream_arn: str, shard: str, sequence: str, partition_key: str, data: bytes,
                   arrival: float) -> dict[str, Any]:
    """One record of a Kinesis event source mapping's event, as Lambda sends it."""
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": partition_key, "sequenceNumber": sequence,
                    "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": arrival},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/retail-consumer-role",
        "awsRegion": REGION, "eventSourceARN": stream_arn,
    }


def read_stream(aws: Callable[[str], Any], stream: str) -> dict[str, list[dict[str, Any]]]:
    """Every record of every shard, oldest first, as GetRecords returns them."""
    kinesis = aws("kinesis")
    out: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += answer["Records"]
            if not answer["Records"]:
                break
            iterator = answer.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return out


def stream_events(aws: Callable[[str], Any], stream: str, batch_size: int = 100) -> list[dict[str, Any]]:
    """The events an event source mapping with this batch size would send, shard by shard."""
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}"
    events = []
    for shard, records in read_stream(aws, stream).items():
        converted = [kinesis_record(arn, shard, r["SequenceNumber"], r["PartitionKey"], r["Data"],
                                    r["ApproximateArrivalTimestamp"].timestamp()) for r in records]
        events += [{"Records": converted[i:i + batch_size]} for i in range(0, len(converted), batch_size)]
    return events


_next_sequence = [49590338271490256608559692538361571095921575989136588898]


def synthetic_event(payloads: list[bytes], shard: str = "shardId-000000000007",
                    key: str = "536365") -> dict[str, Any]:
    """A Kinesis event for arbitrary record payloads (bad data cannot come from ingest_api)."""
    records = []
    for payload in payloads:
        _next_sequence[0] += 1_000_000_000
        records.append(kinesis_record(f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/external", shard,
                                      str(_next_sequence[0]), key, payload, 1795204800.123))
    return {"Records": records}


def body_of(response: dict[str, Any]) -> Any:
    assert set(response) <= {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
    assert isinstance(response["body"], str)
    return json.loads(response["body"])


# ==================================================================================================
# ingest_api


@pytest.fixture(scope="module")
def ingest() -> ModuleType:
    return load_lambda("ingest_api")


def post(ingest: ModuleType, document: Any, **options: Any) -> tuple[int, Any]:
    response = ingest.handler(proxy_event("POST", "/transactions", "/transactions", body=json.dumps(document),
                                          **options), CONTEXT)
    return response["statusCode"], body_of(response)


def stream_rows(aws: Callable[[str], Any], stream: str) -> list[dict[str, Any]]:
    return [json.loads(r["Data"]) | {"_pk": r["PartitionKey"]}
            for records in read_stream(aws, stream).values() for r in records]


def test_ingest_raw_rows_gets_the_dataset_record_ids(cloud: Cloud, ingest: ModuleType, fresh_stream: str,
                                                      raw_sample: pd.DataFrame, sample: pd.DataFrame):
    rows = raw_rows(raw_sample.head(120))
    status, body = post(ingest, rows)
    assert (status, body) == (200, {"accepted": 120, "rejected": [], "failed": 0})
    on_stream = stream_rows(cloud.aws, fresh_stream)
    assert sorted(r["record_id"] for r in on_stream) == sorted(sample["record_id"].head(120))
    first = next(r for r in on_stream if r["record_id"] == sample["record_id"][0])
    assert first["_pk"] == first["InvoiceNo"] == "536514"
    assert first == {"InvoiceNo": "536514", "StockCode": "22865", "Description": "HAND WARMER OWL DESIGN",
                     "Quantity": 36, "InvoiceDate": "12/1/2010 12:40", "UnitPrice": 2.1, "CustomerID": "17951",
                     "Country": "United Kingdom", "record_id": sample["record_id"][0], "_pk": "536514"}


@pytest.mark.filterwarnings("ignore:'epoch' date format is deprecated")
def test_ingest_whole_sample_as_dataframe_to_json_in_chunks(cloud: Cloud, ingest: ModuleType, fresh_stream: str,
                                                             sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    """pandas' default to_json (columns, dates as epoch ms, NaN as null): 3,712 rows in 8 PutRecords calls,
    the same record_ids as helpers.dataset, an invoice's lines in order in one shard."""
    calls: list[int] = []
    real = ingest.kinesis.put_records
    monkeypatch.setattr(ingest.kinesis, "put_records", lambda **kw: calls.append(len(kw["Records"])) or real(**kw))
    status, body = post(ingest, json.loads(typed_frame(sample).to_json(date_format="epoch")))
    assert (status, body) == (200, {"accepted": 3712, "rejected": [], "failed": 0})
    assert calls == [500] * 7 + [212]
    on_stream = stream_rows(cloud.aws, fresh_stream)
    assert sorted(r["record_id"] for r in on_stream) == sorted(sample["record_id"])
    by_id = {r["record_id"]: r for r in on_stream}
    for column in ("InvoiceNo", "StockCode", "Country"):
        assert [by_id[i][column] for i in sample["record_id"]] == sample[column].tolist()
    assert [by_id[i]["CustomerID"] for i in sample["record_id"]] == [
        None if pd.isna(c) else c for c in sample["CustomerID"]]
    shard_order = [r["record_id"] for records in read_stream(cloud.aws, fresh_stream).values() for r in
                   (json.loads(x["Data"]) for x in records) if r["InvoiceNo"] == "581483" or r["InvoiceNo"] == "536514"]
    expected = sample[sample["InvoiceNo"].isin(["536514", "581483"])]["record_id"].tolist()
    assert sorted(shard_order) == sorted(expected)


def test_ingest_records_orient_base64_and_passthrough(cloud: Cloud, ingest: ModuleType, fresh_stream: str,
                                                       sample: pd.DataFrame):
    frame = typed_frame(sample.head(5))
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    assert post(ingest, records) == (200, {"accepted": 5, "rejected": [], "failed": 0})
    assert post(ingest, records[0], base64_body=True) == (200, {"accepted": 1, "rejected": [], "failed": 0})
    answer = ingest.handler(passthrough_event(records[1:3]), CONTEXT)
    assert answer == {"accepted": 2, "rejected": [], "failed": 0}  # the HTTP status is the integration response's
    ids = [r["record_id"] for r in stream_rows(cloud.aws, fresh_stream)]
    assert sorted(set(ids)) == sorted(sample["record_id"].head(5)) and len(ids) == 8  # same rows, same ids


def test_ingest_posted_record_id_wins_and_repeats_in_one_post_are_counted(cloud: Cloud, ingest: ModuleType,
                                                                           fresh_stream: str, raw_sample: pd.DataFrame):
    row = raw_rows(raw_sample.head(1))[0]
    status, body = post(ingest, [row, row, row | {"record_id": "mine#1"}])
    assert status == 200 and body["accepted"] == 3
    ids = sorted(r["record_id"] for r in stream_rows(cloud.aws, fresh_stream))
    digest = hashlib.sha1("\x1f".join(row.values()).encode()).hexdigest()[:16]
    assert ids == sorted([f"{digest}#1", f"{digest}#2", "mine#1"])


def test_ingest_rejects_only_malformed_rows(cloud: Cloud, ingest: ModuleType, fresh_stream: str):
    good = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
            "Quantity": "6", "InvoiceDate": "12/1/2010 8:26", "UnitPrice": "2.55", "CustomerID": "17850",
            "Country": "United Kingdom"}
    rows = [
        good,
        good | {"InvoiceNo": "C536379", "StockCode": "D", "Description": "Discount", "Quantity": "-1",
                "UnitPrice": "27.5", "CustomerID": "14527"},                    # cancellation, non-product
        good | {"CustomerID": ""},                                              # guest sale
        good | {"InvoiceNo": "A563185", "StockCode": "B", "UnitPrice": "11062.06", "Quantity": "1"},
        good | {"StockCode": "POST", "Description": None},                      # postage, no description
        good | {"Quantity": "six"},
        {k: v for k, v in good.items() if k != "UnitPrice"},
        good | {"InvoiceDate": "2010-13-45 8:26"},
        good | {"InvoiceNo": "53636"},
        good | {"CustomerID": "17850x"},
        "not a row",
        good | {"Quantity": 2.5},
        good | {"Quantity": float("nan")},
        good | {"InvoiceDate": 10 ** 30},
    ]
    status, body = post(ingest, rows)  # json.dumps writes NaN, as some clients do
    assert status == 200
    assert body["accepted"] == 5 and body["failed"] == 0
    assert [r["index"] for r in body["rejected"]] == [5, 6, 7, 8, 9, 10, 11, 12, 13]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "Quantity 'six'" in reasons[5] and "missing UnitPrice" in reasons[6]
    assert "InvoiceDate" in reasons[7] and "InvoiceNo '53636'" in reasons[8] and "CustomerID" in reasons[9]
    on_stream = {r["InvoiceNo"]: r for r in stream_rows(cloud.aws, fresh_stream)}
    assert on_stream["C536379"]["Quantity"] == -1 and on_stream["C536379"]["_pk"] == "C536379"
    assert on_stream["A563185"]["UnitPrice"] == 11062.06


@pytest.mark.parametrize("body, message", [
    ("{not json", "not JSON"), ("[]", "no rows"), ("{}", "no rows"), ("", "empty body"), ("42", "no rows"),
])
def test_ingest_answers_400_for_a_body_without_rows(ingest: ModuleType, cloud: Cloud, body: str, message: str):
    response = ingest.handler(proxy_event("POST", "/transactions", "/transactions", body=body), CONTEXT)
    assert response["statusCode"] == 400 and message in body_of(response)["message"]


def test_ingest_passthrough_errors_are_raised_for_the_integration_responses(ingest: ModuleType, cloud: Cloud,
                                                                            monkeypatch: pytest.MonkeyPatch):
    """Non-proxy: the errorMessage starts [BadRequest] / [InternalError] (selectionPattern maps it to
    400 / 500); proxy: the status is in the answer."""
    with pytest.raises(ingest.RequestError, match=r"^\[BadRequest\] no rows"):
        ingest.handler(passthrough_event({}), CONTEXT)
    with pytest.raises(ingest.RequestError, match=r"^\[BadRequest\] no row accepted: row 0: Quantity"):
        ingest.handler(passthrough_event({"InvoiceNo": "536365", "StockCode": "1", "Quantity": 10 ** 40,
                                          "InvoiceDate": "12/1/2010 8:26", "UnitPrice": 1, "Country": "UK"}),
                       CONTEXT)
    monkeypatch.setenv("STREAM_NAME", "no-such-stream")
    row = {"InvoiceNo": "536365", "StockCode": "1", "Quantity": 1, "InvoiceDate": "12/1/2010 8:26",
           "UnitPrice": 1, "Country": "UK"}
    response = ingest.handler(proxy_event("POST", "/transactions", "/transactions", body=json.dumps(row)), CONTEXT)
    assert response["statusCode"] == 500 and "message" in body_of(response)
    with pytest.raises(ingest.RequestError, match=r"^\[InternalError\]"):
        ingest.handler(passthrough_event(row), CONTEXT)


def test_ingest_retries_only_the_failed_entries(cloud: Cloud, ingest: ModuleType, fresh_stream: str,
                                                raw_sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    """PutRecords answers FailedRecordCount=2 on the first call: only those 2 are sent again."""
    real = ingest.kinesis.put_records
    sent: list[list[str]] = []

    def flaky(**kwargs: Any) -> dict[str, Any]:
        ids = [json.loads(r["Data"])["record_id"] for r in kwargs["Records"]]
        sent.append(ids)
        if len(sent) > 1:
            return real(**kwargs)
        failing = {1, 3}
        answer = real(**kwargs | {"Records": [r for i, r in enumerate(kwargs["Records"]) if i not in failing]})
        results = iter(answer["Records"])
        merged = [{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
                  if i in failing else next(results) for i in range(len(kwargs["Records"]))]
        return {"FailedRecordCount": len(failing), "Records": merged}

    monkeypatch.setattr(ingest.kinesis, "put_records", flaky)
    status, body = post(ingest, raw_rows(raw_sample.head(6)))
    assert (status, body) == (200, {"accepted": 6, "rejected": [], "failed": 0})
    assert sent[1] == [sent[0][1], sent[0][3]]
    assert sorted(r["record_id"] for r in stream_rows(cloud.aws, fresh_stream)) == sorted(sent[0])


def test_ingest_reports_entries_that_keep_failing(ingest: ModuleType, cloud: Cloud, raw_sample: pd.DataFrame,
                                                  monkeypatch: pytest.MonkeyPatch):
    def always_failing(**kwargs: Any) -> dict[str, Any]:
        return {"FailedRecordCount": len(kwargs["Records"]),
                "Records": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"} for _ in kwargs["Records"]]}

    monkeypatch.setattr(ingest.kinesis, "put_records", always_failing)
    status, body = post(ingest, raw_rows(raw_sample.head(3)))
    assert status == 200 and body["accepted"] == 0 and body["failed"] == 3 and body["failed_indexes"] == [0, 1, 2]


def test_ingest_chunks_respect_the_5mb_limit(ingest: ModuleType):
    big = [ingest.Prepared(i, {"InvoiceNo": "536365"}, b"x" * 900_000) for i in range(12)]
    sizes = [sum(len(r.data) + 6 for r in chunk) for chunk in ingest.chunks(big)]
    assert all(size <= 5 * 1024 * 1024 for size in sizes) and sum(len(c) for c in ingest.chunks(big)) == 12


# ==================================================================================================
# stream_to_s3


@pytest.fixture(scope="module")
def to_s3() -> ModuleType:
    return load_lambda("stream_to_s3")


@pytest.fixture(scope="module")
def sample_stream(cloud: Cloud, aws: Callable[[str], Any], ingest: ModuleType, sample: pd.DataFrame) -> str:
    """The whole sample posted through ingest_api onto the module's stream (2 shards)."""
    response = ingest.handler(proxy_event("POST", "/transactions", "/transactions",
                                          body=typed_frame(sample).to_json(date_format="iso")), CONTEXT)
    assert body_of(response)["accepted"] == len(sample)
    return cloud.stream


def lake_objects(aws: Callable[[str], Any], bucket: str, prefix: str = "raw/") -> dict[str, bytes]:
    s3 = aws("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_stream_to_s3_partitions_by_event_date_and_replays_change_nothing(cloud: Cloud, to_s3: ModuleType,
                                                                         sample_stream: str, sample: pd.DataFrame,
                                                                         fresh_queue: str):
    events = stream_events(cloud.aws, sample_stream, batch_size=500)
    for event in events:
        assert to_s3.handler(event, CONTEXT) == {"batchItemFailures": []}
    objects = lake_objects(cloud.aws, cloud.bucket)
    lines = [json.loads(line) | {"_key": key} for key, body in objects.items() for line in body.decode().splitlines()]
    assert len(lines) == len(sample) and {r["record_id"] for r in lines} == set(sample["record_id"])
    for line in lines:
        day = datetime.strptime(line["InvoiceDate"], "%m/%d/%Y %H:%M")
        shard = "shardId-00000000000"
        assert line["_key"].startswith(f"raw/year={day.year}/month={day.month:02d}/day={day.day:02d}/{shard}")
    days_per_shard = {(r["_key"].rsplit("/", 1)[-1], r["InvoiceDate"].split(" ")[0]) for r in lines}
    assert len(objects) == len(days_per_shard)  # one file per shard and day, however the batches fell
    assert drain(cloud.aws, fresh_queue) == []

    # The same batches again (Lambda retried them), then other batch boundaries (the rows posted
    # again): the lake is byte-for-byte the same.
    for event in events:
        assert to_s3.handler(event, CONTEXT) == {"batchItemFailures": []}
    assert lake_objects(cloud.aws, cloud.bucket) == objects
    for event in stream_events(cloud.aws, sample_stream, batch_size=37):
        assert to_s3.handler(event, CONTEXT) == {"batchItemFailures": []}
    assert lake_objects(cloud.aws, cloud.bucket) == objects


def test_stream_to_s3_quarantines_bad_records_without_failing_the_batch(cloud: Cloud, to_s3: ModuleType,
                                                                        fresh_queue: str, monkeypatch: pytest.MonkeyPatch):
    bucket = f"lt-lake2-{uuid.uuid4().hex[:8]}"
    cloud.aws("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("LAKE_BUCKET", bucket)
    good = {"InvoiceNo": "536365", "InvoiceDate": "12/1/2010 8:26", "record_id": "r#1"}
    event = synthetic_event([json.dumps(good).encode(), b"\xff\xfe not text", b"{broken json",
                             json.dumps([1, 2]).encode(), json.dumps(good | {"InvoiceDate": "yesterday"}).encode(),
                             json.dumps({"InvoiceNo": "536366"}).encode()])
    assert to_s3.handler(event, CONTEXT) == {"batchItemFailures": []}
    messages = sorted(drain(cloud.aws, fresh_queue), key=lambda m: int(m["sequenceNumber"]))
    records = event["Records"]
    assert [m["sequenceNumber"] for m in messages] == [r["kinesis"]["sequenceNumber"] for r in records[1:]]
    assert [m["data"] for m in messages] == [r["kinesis"]["data"] for r in records[1:]]
    assert all(m["source"] == "stream_to_s3" and m["shardId"] == "shardId-000000000007" for m in messages)
    assert ["UTF-8" in messages[0]["reason"], "not JSON" in messages[1]["reason"], "list" in messages[2]["reason"],
            "yesterday" in messages[3]["reason"], "missing" in messages[4]["reason"]] == [True] * 5
    assert list(lake_objects(cloud.aws, bucket)) == ["raw/year=2010/month=12/day=01/shardId-000000000007.jsonl"]


def test_stream_to_s3_reports_records_whose_file_failed(cloud: Cloud, to_s3: ModuleType, fresh_queue: str,
                                                        monkeypatch: pytest.MonkeyPatch):
    rows = [{"InvoiceNo": "536365", "InvoiceDate": "12/1/2010 8:26"}, {"InvoiceNo": "536366", "InvoiceDate": "12/2/2010 9:00"},
            {"InvoiceNo": "536367", "InvoiceDate": "12/1/2010 9:30"}]
    event = synthetic_event([json.dumps(r).encode() for r in rows])
    real = to_s3.s3.put_object

    def failing_day_two(**kwargs: Any) -> Any:
        if "/day=02/" in kwargs["Key"]:
            raise RuntimeError("S3 is down for this prefix")
        return real(**kwargs)

    monkeypatch.setattr(to_s3.s3, "put_object", failing_day_two)
    assert to_s3.handler(event, CONTEXT) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][1]["kinesis"]["sequenceNumber"]}]}


# ==================================================================================================
# stream_to_dynamodb


@pytest.fixture(scope="module")
def to_ddb() -> ModuleType:
    return load_lambda("stream_to_dynamodb")


def scan(aws: Callable[[str], Any], table: str) -> list[dict[str, Any]]:
    return [item for page in aws("dynamodb").get_paginator("scan").paginate(TableName=table)
            for item in page["Items"]]


def invoice_item(aws: Callable[[str], Any], table: str, invoice: str) -> dict[str, Any]:
    return aws("dynamodb").get_item(TableName=table, Key={"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": "INVOICE"}})["Item"]


def pandas_totals(sample: pd.DataFrame) -> pd.DataFrame:
    amount = sample["Quantity"].astype("float64") * sample["UnitPrice"]
    return (sample.assign(amount=amount).groupby("InvoiceNo")
            .agg(total=("amount", "sum"), quantity=("Quantity", "sum"), lines=("record_id", "size")))


@pytest.fixture(scope="module")
def loaded_table(cloud: Cloud, to_ddb: ModuleType, sample_stream: str, aws: Callable[[str], Any]) -> dict[str, Any]:
    """The sample from the stream through stream_to_dynamodb in batches of 100, with 3 poison records."""
    events = stream_events(aws, sample_stream, batch_size=100)
    poison = synthetic_event([b"not json at all", json.dumps({"StockCode": "85123A"}).encode(),
                              json.dumps({"InvoiceNo": "536365", "Quantity": "many", "UnitPrice": 1,
                                          "InvoiceDate": "12/1/2010 8:26"}).encode()])
    events[3]["Records"][5:5] = poison["Records"]  # poison in the middle of a real batch
    queue = aws("sqs").create_queue(QueueName=f"lt-ddbq-{cloud.suffix}")["QueueUrl"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUARANTINE_QUEUE_URL", queue)
        answers = [to_ddb.handler(event, CONTEXT) for event in events]
    return {"events": events, "answers": answers, "queue": queue, "poison": poison["Records"]}


def test_stream_to_dynamodb_loses_nothing_and_totals_match_pandas(cloud: Cloud, loaded_table: dict[str, Any],
                                                                  sample: pd.DataFrame, aws: Callable[[str], Any]):
    assert all(answer == {"batchItemFailures": []} for answer in loaded_table["answers"])
    items = [{k: next(iter(v.values())) for k, v in item.items()} for item in scan(aws, cloud.table)]
    assert {i["SK"] for i in items} == {"INVOICE"}
    headers = {i["InvoiceNo"]: i for i in items}
    lines = [next(iter(v.values())) for i in items for v in i["lines"]]
    assert len(lines) == len(sample) == 3712  # every row, duplicates and repeated StockCodes included
    assert {i["record_id"]["S"] for i in lines} == set(sample["record_id"])
    longest = sample["InvoiceNo"].value_counts().index[0]
    in_order = [line["M"]["record_id"]["S"] for line in headers[longest]["lines"]]
    assert in_order == sample.loc[sample["InvoiceNo"] == longest, "record_id"].tolist()  # the stream's order
    expected = pandas_totals(sample)
    assert set(headers) == set(expected.index) and len(headers) == 224
    for invoice, row in expected.iterrows():
        header = headers[invoice]
        assert float(header["total_amount"]) == pytest.approx(row["total"], abs=0.005), invoice
        assert int(header["total_quantity"]) == row["quantity"] and int(header["line_count"]) == row["lines"]
    assert headers["C581484"]["invoice_type"] == "cancellation" and headers["A563185"]["invoice_type"] == "adjustment"
    guests = sample[sample["CustomerID"].isna()]["InvoiceNo"].unique()
    assert all("CustomerID" not in headers[g] and "GSI1PK" not in headers[g] for g in guests)
    assert headers["536514"]["GSI1PK"] == "CUSTOMER#17951"
    assert all(isinstance(i.get("CustomerID", ""), str) for i in items)

    messages = drain(aws, loaded_table["queue"])
    assert sorted(m["sequenceNumber"] for m in messages) == sorted(
        r["kinesis"]["sequenceNumber"] for r in loaded_table["poison"])
    reasons = " | ".join(m["reason"] for m in messages)
    assert "not base64 UTF-8 JSON" in reasons and "InvoiceNo is missing" in reasons and "Quantity" in reasons


def test_stream_to_dynamodb_replay_changes_nothing(cloud: Cloud, to_ddb: ModuleType, loaded_table: dict[str, Any],
                                                   aws: Callable[[str], Any], fresh_queue: str):
    def state() -> list[str]:
        return sorted(json.dumps(item, sort_keys=True) for item in scan(aws, cloud.table))

    before = state()
    for event in loaded_table["events"]:  # the same batches again
        assert to_ddb.handler(event, CONTEXT) == {"batchItemFailures": []}
    records = [r for e in loaded_table["events"] for r in e["Records"]]
    for start in range(0, len(records), 37):  # and with other batch boundaries (a bisected retry)
        assert to_ddb.handler({"Records": records[start:start + 37]}, CONTEXT) == {"batchItemFailures": []}
    assert state() == before


def test_stream_to_dynamodb_invoice_split_over_batches_counts_each_line_once(cloud: Cloud, to_ddb: ModuleType,
                                                                             aws: Callable[[str], Any], fresh_queue: str,
                                                                             monkeypatch: pytest.MonkeyPatch):
    table = create_table(aws, f"lt-split-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TABLE_NAME", table)
    rows = [{"InvoiceNo": "536365", "StockCode": "85123A", "Quantity": q, "UnitPrice": 2.55, "CustomerID": "17850",
             "InvoiceDate": "12/1/2010 8:26", "Country": "United Kingdom", "record_id": f"r{q}#1"} for q in range(1, 91)]
    event = synthetic_event([json.dumps(r).encode() for r in rows])
    records = event["Records"]
    for part in (records[:30], records[10:60], records[:90], records[55:]):
        assert to_ddb.handler({"Records": part}, CONTEXT) == {"batchItemFailures": []}
    header = invoice_item(aws, table, "536365")
    assert header["line_count"]["N"] == "90" and header["total_quantity"]["N"] == str(sum(range(1, 91)))
    assert float(header["total_amount"]["N"]) == pytest.approx(2.55 * sum(range(1, 91)))
    assert [line["M"]["record_id"]["S"] for line in header["lines"]["L"]] == [f"r{q}#1" for q in range(1, 91)]


def test_stream_to_dynamodb_header_takes_its_fields_from_the_earliest_line_whichever_batch_brings_it(
        cloud: Cloud, to_ddb: ModuleType, aws: Callable[[str], Any], fresh_queue: str,
        monkeypatch: pytest.MonkeyPatch):
    table = create_table(aws, f"lt-first-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TABLE_NAME", table)
    late, early = ({"InvoiceNo": "536365", "StockCode": "85123A", "Quantity": q, "UnitPrice": "2.55", "CustomerID": "17850",
                    "InvoiceDate": date, "Country": country, "record_id": f"r{q}#1"}
                   for q, date, country in ((2, "12/1/2010 9:00", "France"), (3, "12/1/2010 8:26", "United Kingdom")))
    calls: list[str] = []
    real_get = to_ddb.dynamodb.batch_get_item

    def counting_get(**kwargs: Any) -> dict[str, Any]:
        calls.append("BatchGetItem")
        return real_get(**kwargs)

    monkeypatch.setattr(to_ddb.dynamodb, "batch_get_item", counting_get)
    for row in (late, early, late):  # the late line first, then the earlier one, then a replay
        assert to_ddb.handler(synthetic_event([json.dumps(row).encode()]), CONTEXT) == {"batchItemFailures": []}
    header = invoice_item(aws, table, "536365")
    assert header["InvoiceDate"]["S"] == "12/1/2010 8:26" and header["Country"]["S"] == "United Kingdom"
    assert header["GSI1SK"]["S"] == "INVOICE#2010-12-01T08:26#536365" and header["first_record_id"]["S"] == "r3#1"
    assert header["total_quantity"]["N"] == "5" and header["total_amount"]["N"] == "12.75"
    assert header["line_count"]["N"] == "2" and [line["M"] for line in header["lines"]["L"]] == [
        {"record_id": {"S": f"r{q}#1"}, "StockCode": {"S": "85123A"}, "InvoiceDate": {"S": date},
         "Quantity": {"N": str(q)}, "UnitPrice": {"N": "2.55"}, "amount": {"N": amount}}
        for q, date, amount in ((2, "12/1/2010 9:00", "5.10"), (3, "12/1/2010 8:26", "7.65"))]
    assert calls == ["BatchGetItem"] * 3  # one read per batch, whatever its invoice count


def test_stream_to_dynamodb_reports_unwritten_records_without_blocking_the_rest(
        cloud: Cloud, to_ddb: ModuleType, aws: Callable[[str], Any], fresh_queue: str,
        monkeypatch: pytest.MonkeyPatch):
    table = create_table(aws, f"lt-partial-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TABLE_NAME", table)
    rows = [{"InvoiceNo": invoice, "StockCode": "22865", "Quantity": 1, "UnitPrice": 2.1, "CustomerID": "17951",
             "InvoiceDate": "12/1/2010 12:40", "Country": "United Kingdom", "record_id": f"{invoice}-{n}#1"}
            for invoice in ("536514", "536515", "536516") for n in range(3)]
    event = synthetic_event([json.dumps(r).encode() for r in rows] + [b"garbage"])
    real = document_writes.batch_write

    def throttled_536515(client: Any, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        keep = [item for item in items if item["PK"]["S"] != "INVOICE#536515"]
        stuck = [{"PutRequest": {"Item": item}} for item in items if item not in keep]
        answer = real(client, name, keep) if keep else {}
        return answer | ({"UnprocessedItems": {name: stuck}} if stuck else {"UnprocessedItems": {}})

    monkeypatch.setattr(document_writes, "batch_write", throttled_536515)
    answer = to_ddb.handler(event, CONTEXT)
    records = event["Records"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records[3:6]]}
    assert {item["PK"]["S"]: item["line_count"]["N"] for item in scan(aws, table)} == {
        "INVOICE#536514": "3", "INVOICE#536516": "3"}
    assert [m["reason"] for m in drain(aws, fresh_queue)] == [
        "data is not base64 UTF-8 JSON: Expecting value: line 1 column 1 (char 0)"]

    monkeypatch.setattr(document_writes, "batch_write", real)  # Lambda retries from the first failure
    assert to_ddb.handler({"Records": records[3:]}, CONTEXT) == {"batchItemFailures": []}
    assert sorted(int(item["line_count"]["N"]) for item in scan(aws, table)) == [3, 3, 3]
    assert len(invoice_item(aws, table, "536515")["lines"]["L"]) == 3


def test_stream_to_dynamodb_quarantines_the_lines_a_full_invoice_cannot_hold(
        cloud: Cloud, to_ddb: ModuleType, aws: Callable[[str], Any], fresh_queue: str,
        monkeypatch: pytest.MonkeyPatch):
    """An item is at most 400 KB: lines past the budget are kept in the quarantine, the rest stored."""
    table = create_table(aws, f"lt-full-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TABLE_NAME", table)
    monkeypatch.setattr(documents, "ITEM_BUDGET_BYTES", 2048 + 10 * 1024)  # 10 KB of lines
    rows = [{"InvoiceNo": "573585", "StockCode": "23084", "Description": "RABBIT NIGHT LIGHT " + "x" * 60,
             "Quantity": 2, "UnitPrice": "2.08", "CustomerID": "", "InvoiceDate": "10/31/2011 14:41",
             "Country": "United Kingdom", "record_id": f"big{n:03d}#1"} for n in range(200)]
    event = synthetic_event([json.dumps(r).encode() for r in rows])
    assert to_ddb.handler(event, CONTEXT) == {"batchItemFailures": []}
    item = invoice_item(aws, table, "573585")
    kept = int(item["line_count"]["N"])
    entry = documents.entry_bytes(item["lines"]["L"][0])
    assert 10 * 1024 // (entry + 1) - 2 <= kept <= 10 * 1024 // (entry + 1) and len(item["lines"]["L"]) == kept
    assert item["total_quantity"]["N"] == str(2 * kept)
    messages = drain(aws, fresh_queue)
    assert len(messages) == 200 - kept and all("invoice 573585 is full" in m["reason"] for m in messages)
    stored = {line["M"]["record_id"]["S"] for line in item["lines"]["L"]}
    quarantined = {json.loads(base64.b64decode(m["data"]))["record_id"] for m in messages}
    assert stored | quarantined == {r["record_id"] for r in rows} and not stored & quarantined


def test_stream_to_dynamodb_refuses_numbers_dynamodb_cannot_store(to_ddb: ModuleType):
    """38 significant digits at most: such a record is quarantined alone instead of failing its whole batch."""
    row = {"InvoiceNo": "536365", "StockCode": "85123A", "Quantity": 3, "UnitPrice": "2.55",
           "InvoiceDate": "12/1/2010 8:26", "record_id": "r#1"}
    record = synthetic_event([json.dumps(row).encode()])["Records"][0]
    assert to_ddb.decode(record).amount == Decimal("7.65")
    for price in ("1." + "1" * 40, "9." + "9" * 37):  # the price itself; then the amount (3 x) grows past 38
        bad = synthetic_event([json.dumps(row | {"UnitPrice": price}).encode()])["Records"][0]
        with pytest.raises(to_ddb.Invalid, match="DynamoDB"):
            to_ddb.decode(bad)


def test_entry_bytes_is_never_below_dynamodb_size():
    entry = {"M": {"record_id": {"S": "ab#1"}, "Description": {"S": "café"}, "UnitPrice": {"N": "12.75"}}}
    # DynamoDB: map 3 + per element 1 + name + value; "café" is 5 UTF-8 bytes; 12.75 is 3 bytes (4 digits)
    exact = 3 + (1 + 9 + 4) + (1 + 11 + 5) + (1 + 9 + 3)
    assert exact <= documents.entry_bytes(entry) <= exact + 2 + 3  # the number counted as its text


def test_table_schema_is_create_table_kwargs():
    assert {"KeySchema", "AttributeDefinitions"} <= set(TABLE_SCHEMA) and "TableName" not in TABLE_SCHEMA
    assert [k["AttributeName"] for k in TABLE_SCHEMA["KeySchema"]] == ["PK", "SK"]
    assert TABLE_SCHEMA["GlobalSecondaryIndexes"][0]["IndexName"] == load_lambda("query_api").CUSTOMER_INDEX


# ==================================================================================================
# query_api


@pytest.fixture(scope="module")
def query() -> ModuleType:
    return load_lambda("query_api")


def customer(customer_id: str) -> dict[str, Any]:
    """requestContext.authorizer as API Gateway passes a TOKEN authorizer's context."""
    return {"customerId": customer_id, "role": "customer", "principalId": customer_id, "integrationLatency": 12}


ADMIN_CONTEXT = {"customerId": "", "role": "admin", "principalId": "admin", "integrationLatency": 9}


def get(query: ModuleType, path: str, resource: str, params: dict[str, str], authorizer: dict[str, Any] | None,
        qs: dict[str, str] | None = None) -> tuple[int, Any]:
    response = query.handler(proxy_event("GET", path, resource, path_parameters=params, query=qs,
                                         authorizer=authorizer), CONTEXT)
    return response["statusCode"], body_of(response)


def get_invoice(query: ModuleType, invoice: str, authorizer: dict[str, Any] | None) -> tuple[int, Any]:
    return get(query, f"/invoices/{invoice}", "/invoices/{invoice_no}", {"invoice_no": invoice}, authorizer)


def list_invoices(query: ModuleType, customer_id: str, authorizer: dict[str, Any] | None,
                  **qs: str) -> tuple[int, Any]:
    return get(query, f"/customers/{customer_id}/invoices", "/customers/{customer_id}/invoices",
               {"customer_id": customer_id}, authorizer, qs or None)


def test_query_invoice_with_items_and_totals(query: ModuleType, loaded_table: dict[str, Any], sample: pd.DataFrame):
    status, body = get_invoice(query, "536514", customer("17951"))
    assert status == 200
    rows = sample[sample["InvoiceNo"] == "536514"]
    assert body["customer_id"] == "17951" and body["invoice_type"] == "sale" and body["invoice_date"] == "12/1/2010 12:40"
    assert len(body["items"]) == len(rows) == body["totals"]["lines"]
    assert body["totals"]["amount"] == pytest.approx(float((rows["Quantity"] * rows["UnitPrice"]).sum()), abs=0.005)
    assert {i["record_id"] for i in body["items"]} == set(rows["record_id"])


def test_query_invoice_answers(query: ModuleType, loaded_table: dict[str, Any], sample: pd.DataFrame):
    assert get_invoice(query, "536514", customer("12347"))[0] == 403
    assert get_invoice(query, "536514", ADMIN_CONTEXT)[0] == 200
    assert get_invoice(query, "999999", ADMIN_CONTEXT)[0] == 404
    for malformed in ("53651", "X536514", "5365140", "C53651"):
        status, body = get_invoice(query, malformed, ADMIN_CONTEXT)
        assert status == 400 and body["errors"][0]["parameter"] == "invoice_no", malformed
    assert get_invoice(query, "536514", None)[0] == 403
    guest = sample[sample["CustomerID"].isna()]["InvoiceNo"].iloc[0]
    assert get_invoice(query, guest, customer("17951"))[0] == 403
    status, body = get_invoice(query, guest, ADMIN_CONTEXT)
    assert status == 200 and body["customer_id"] is None
    status, body = get_invoice(query, "C581484", ADMIN_CONTEXT)
    assert status == 200 and body["invoice_type"] == "cancellation" and body["totals"]["quantity"] < 0


def test_query_customer_invoices_pagination_round_trip(query: ModuleType, loaded_table: dict[str, Any],
                                                       sample: pd.DataFrame):
    expected = (sample[sample["CustomerID"] == "12347"].drop_duplicates("InvoiceNo")
                .sort_values(["InvoiceDate", "InvoiceNo"])["InvoiceNo"].tolist())
    assert len(expected) == 7
    seen, token, pages = [], None, 0
    while True:
        status, body = list_invoices(query, "12347", customer("12347"), limit="3",
                                     **({"next_token": token} if token else {}))
        assert status == 200 and len(body["invoices"]) <= 3
        seen += [i["invoice_no"] for i in body["invoices"]]
        pages += 1
        token = body["next_token"]
        if not token:
            break
    assert seen == expected and pages >= 3
    totals = pandas_totals(sample)
    status, body = list_invoices(query, "12347", ADMIN_CONTEXT, limit="100")
    assert [i["invoice_no"] for i in body["invoices"]] == expected and body["next_token"] is None
    for invoice in body["invoices"]:
        assert invoice["total_amount"] == pytest.approx(totals.loc[invoice["invoice_no"], "total"], abs=0.005)


def test_query_customer_invoices_answers(query: ModuleType, loaded_table: dict[str, Any]):
    assert list_invoices(query, "12347", customer("17951"))[0] == 403
    assert list_invoices(query, "12347", None)[0] == 403
    assert list_invoices(query, "99999", customer("99999"))[0] == 404
    assert list_invoices(query, "99999", ADMIN_CONTEXT)[0] == 404
    assert list_invoices(query, "1234", ADMIN_CONTEXT)[0] == 404  # digits, the contract's CustomerID: unknown
    assert list_invoices(query, "12x47", ADMIN_CONTEXT)[0] == 400
    assert list_invoices(query, "1" * 21, ADMIN_CONTEXT)[0] == 400
    assert list_invoices(query, "12347", customer("12347"), limit="0")[0] == 400
    assert list_invoices(query, "12347", customer("12347"), limit="lots")[0] == 400
    assert list_invoices(query, "12347", customer("12347"), next_token="!!!garbage")[0] == 400
    _, first = list_invoices(query, "12347", customer("12347"), limit="2")
    assert list_invoices(query, "17951", customer("17951"), next_token=first["next_token"])[0] == 400


def test_query_openapi_document(query: ModuleType):
    status, document = get(query, "/openapi.json", "/openapi.json", {}, None)
    assert status == 200 and document["openapi"].startswith("3.")
    assert {"/invoices/{invoice_no}", "/customers/{customer_id}/invoices"} <= set(document["paths"])
    parameters = document["paths"]["/invoices/{invoice_no}"]["get"]["parameters"]
    assert parameters[0]["schema"]["pattern"] == r"^[CA]?[0-9]{6}$"


def test_query_unknown_route_is_404(query: ModuleType):
    assert get(query, "/nothing", "/nothing", {}, ADMIN_CONTEXT)[0] == 404


# ==================================================================================================
# customer_authorizer


@pytest.fixture(scope="module")
def authorizer() -> ModuleType:
    return load_lambda("customer_authorizer")


METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc123/prod/GET/customers/17850/invoices"


def token_event(token: str | None) -> dict[str, Any]:
    event = {"type": "TOKEN", "methodArn": METHOD_ARN}
    if token is not None:
        event["authorizationToken"] = token
    return event


def test_authorizer_allows_a_customer_on_the_whole_stage(authorizer: ModuleType, cloud: Cloud):
    token = authorizer.mint_token("17850", SECRET, lifetime_s=600, now=2_000_000_000)
    digest = __import__("hmac").new(SECRET.encode(), b"17850.2000000600", "sha256").hexdigest()[:32]
    assert token == f"Bearer 17850.2000000600.{digest}"
    token = authorizer.mint_token("17850", SECRET)
    answer = authorizer.handler(token_event(token), CONTEXT)
    assert answer == {
        "principalId": "17850",
        "policyDocument": {"Version": "2012-10-17", "Statement": [{
            "Action": "execute-api:Invoke", "Effect": "Allow",
            "Resource": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc123/prod/*/*"}]},
        "context": {"customerId": "17850", "role": "customer"},
    }


def test_authorizer_admin_and_deny(authorizer: ModuleType, cloud: Cloud):
    admin = authorizer.handler(token_event(authorizer.mint_token("admin", SECRET)), CONTEXT)
    assert admin["context"] == {"customerId": "", "role": "admin"}
    assert admin["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    forged = authorizer.handler(token_event(authorizer.mint_token("17850", "another secret")), CONTEXT)
    assert forged["policyDocument"]["Statement"][0]["Effect"] == "Deny" and "context" not in forged
    other = authorizer.mint_token("17850", SECRET).replace("17850", "12347")
    assert authorizer.handler(token_event(other), CONTEXT)["policyDocument"]["Statement"][0]["Effect"] == "Deny"


@pytest.mark.parametrize("token", [None, "", "17850", "Bearer 17850", "Bearer 17850.xyz", "Basic abc",
                                   "Bearer root.0123456789abcdef0123456789abcdef"])
def test_authorizer_unauthorized_for_missing_or_malformed_tokens(authorizer: ModuleType, cloud: Cloud,
                                                                 token: str | None):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(token_event(token), CONTEXT)


def test_authorizer_refuses_an_expired_token_with_401_and_a_token_without_expiry(authorizer: ModuleType,
                                                                                 cloud: Cloud):
    from helpers import pipelines

    now = __import__("time").time()
    expired = authorizer.mint_token("17850", SECRET, lifetime_s=60, now=now - 61)
    with pytest.raises(Exception, match="^Unauthorized$"):  # API Gateway: 401
        authorizer.handler(token_event(expired), CONTEXT)
    fresh = pipelines.customer_token(SECRET, "17850", lifetime_s=60)
    assert fresh == authorizer.mint_token("17850", SECRET, lifetime_s=60, now=int(now)) or fresh.count(".") == 2
    assert authorizer.handler(token_event(fresh), CONTEXT)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    later = fresh.replace(fresh.split(".")[1], str(int(fresh.split(".")[1]) + 3600))  # a longer life, forged
    assert authorizer.handler(token_event(later), CONTEXT)["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    legacy = "Bearer 17850." + __import__("hmac").new(SECRET.encode(), b"17850", "sha256").hexdigest()[:32]
    assert authorizer.handler(token_event(legacy), CONTEXT)["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_authorizer_without_secret_fails_closed(authorizer: ModuleType, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AUTH_SECRET", raising=False)
    with pytest.raises(RuntimeError):
        authorizer.handler(token_event(authorizer.mint_token("17850", SECRET)), CONTEXT)
