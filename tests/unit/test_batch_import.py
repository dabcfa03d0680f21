"""The batch Lambda (lambdas/batch_import) against the session's local cloud: files cut by the client
under incoming/, the serving table's invoice documents, the warehouse through redshift-data, the ledger.

Proves: the batch rules are ingest_api's (ids, decisions, reasons); the same rows by stream and by batch
give the same items; stored + quarantined = rows read; DynamoDB and warehouse totals equal pandas; a rerun
and an overlapping run load nothing twice; a file cut short by the deadline is continued, and reaches the
warehouse only once it is whole; a schedule rule runs the deployed function."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import io
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pandas as pd
import pytest
import retail_records as contract

from helpers import bulk_files, dataset, deploy, packaging
from helpers.resources import RECORDS_LAYER

pytestmark = pytest.mark.localcloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample.csv"
ROLE = "arn:aws:iam::123456789012:role/retail-warehouse-copy"
RAW_DDL = """CREATE TABLE {table} (
    record_id VARCHAR(40) NOT NULL, invoice_no VARCHAR(10) NOT NULL, stock_code VARCHAR(20) NOT NULL,
    description VARCHAR(256), quantity INTEGER NOT NULL, invoice_date TIMESTAMP NOT NULL,
    unit_price DECIMAL(12,3) NOT NULL, customer_id VARCHAR(10), country VARCHAR(40) NOT NULL)"""
BAD_ROWS = [  # malformed rows a file may carry: each must be quarantined with the contract's reason
    ["536999", "85123A", "BAD QUANTITY", "six", "12/1/2010 8:26", "2.55", "17850", "United Kingdom"],
    ["X36999", "85123A", "BAD INVOICE", "6", "12/1/2010 8:26", "2.55", "17850", "United Kingdom"],
    ["536999", "85123A", "BAD PRICE", "6", "12/1/2010 8:26", "2,55", "17850", "United Kingdom"],
    ["536999", "", "NO CODE", "6", "12/1/2010 8:26", "2.55", "17850.0", "United Kingdom"],
    ["536999", "85123A", "BAD CUSTOMER", "6", "12/1/2010 8:26", "2.55", "17x50", "United Kingdom"],
    ["536999", "85123A", "HUGE PRICE", "6", "12/1/2010 8:26", "9" * 39, "17850", "United Kingdom"],
]


def load(name: str, file: str, module_name: str) -> ModuleType:
    """A Lambda folder's module, with the folder on sys.path as its task root (as the runtime has it)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = str(LAMBDAS / name)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(module_name, LAMBDAS / name / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


@dataclass
class Context:
    """Lambda's context object; `remaining` scripts get_remaining_time_in_millis (last value repeats)."""

    remaining: list[int] = field(default_factory=lambda: [300_000])
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "retail-batch-import"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining.pop(0) if len(self.remaining) > 1 else self.remaining[0]


@dataclass
class Setup:
    aws: Callable[[str], Any]
    bucket: str
    table: str
    ledger: str
    warehouse_table: str

    def scan(self, table: str | None = None) -> list[dict[str, Any]]:
        items, start = [], None
        while True:
            page = self.aws("dynamodb").scan(TableName=table or self.table, ConsistentRead=True,
                                             **({"ExclusiveStartKey": start} if start else {}))
            items += page["Items"]
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(items, key=lambda item: item["PK"]["S"] if "PK" in item else item["object"]["S"])

    def sql(self, text: str) -> list[list[Any]]:
        data = self.aws("redshift-data")
        statement = data.execute_statement(Sql=text, ClusterIdentifier=CLUSTER, Database="dev")["Id"]
        for _ in range(600):
            described = data.describe_statement(Id=statement)
            if described["Status"] in ("FINISHED", "FAILED", "ABORTED"):
                break
            time.sleep(0.02)
        assert described["Status"] == "FINISHED", described.get("Error")
        if not described.get("HasResultSet"):
            return []
        return [[None if v.get("isNull") else next(iter(v.values())) for v in record]
                for record in data.get_statement_result(Id=statement)["Records"]]

    def keys(self, prefix: str) -> list[str]:
        page = self.aws("s3").list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in page.get("Contents", []))

    def upload(self, parts: list[bulk_files.Part]) -> None:
        bulk_files.upload(self.bucket, parts, s3=self.aws("s3"))


CLUSTER = "bi-warehouse"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load("stream_to_dynamodb", "schema.py", "lambda_stream_to_dynamodb_schema").TABLE_SCHEMA


@pytest.fixture(scope="module")
def batch() -> ModuleType:
    return load("batch_import", "app.py", "lambda_batch_import")


@pytest.fixture(scope="module")
def cluster(aws: Callable[[str], Any]) -> str:
    try:
        aws("redshift").create_cluster(ClusterIdentifier=CLUSTER, NodeType="ra3.xlplus", MasterUsername="admin",
                                       MasterUserPassword="Passw0rd!", DBName="dev", IamRoles=[ROLE])
    except aws("redshift").exceptions.ClusterAlreadyExistsFault:
        pass
    return CLUSTER


@pytest.fixture()
def setup(aws: Callable[[str], Any], schema: dict[str, Any], cluster: str, monkeypatch: pytest.MonkeyPatch) -> Setup:
    """A fresh bucket, serving table, ledger table and warehouse table; the handler's environment."""
    suffix = uuid.uuid4().hex[:8]
    made = Setup(aws, f"bi-lake-{suffix}", f"bi-sales-{suffix}", f"bi-ledger-{suffix}", f"raw_sales_{suffix}")
    aws("s3").create_bucket(Bucket=made.bucket)
    aws("dynamodb").create_table(TableName=made.table, **schema)
    aws("dynamodb").create_table(TableName=made.ledger, BillingMode="PAY_PER_REQUEST",
                                 KeySchema=[{"AttributeName": "object", "KeyType": "HASH"}],
                                 AttributeDefinitions=[{"AttributeName": "object", "AttributeType": "S"}])
    made.sql(RAW_DDL.format(table=made.warehouse_table))
    for key, value in {"LAKE_BUCKET": made.bucket, "TABLE_NAME": made.table, "LEDGER_TABLE": made.ledger,
                       "WAREHOUSE_CLUSTER": cluster, "WAREHOUSE_TABLE": made.warehouse_table,
                       "COPY_ROLE_ARN": ROLE, "WRITE_BACKOFF_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    return made


def sample_rows(nrows: int | None = None) -> pd.DataFrame:
    return dataset.read_raw(SAMPLE, nrows=nrows)


def with_bad_rows(raw: pd.DataFrame) -> bulk_files.Part:
    """The first day of `raw` plus the malformed rows, as one file."""
    first_day = raw[raw["InvoiceDate"].str.startswith(raw["InvoiceDate"].iloc[0].split()[0])]
    frame = pd.concat([first_day[list(dataset.COLUMNS)], pd.DataFrame(BAD_ROWS, columns=dataset.COLUMNS)])
    return bulk_files.Part("with-bad-rows.csv", bulk_files._csv(frame), len(frame))


def expected_totals(raw: pd.DataFrame) -> tuple[int, Decimal, int]:
    """(rows, Σ Quantity × UnitPrice exactly, Σ Quantity) of rows as published."""
    amount = sum((Decimal(q) * Decimal(p) for q, p in zip(raw["Quantity"], raw["UnitPrice"])), Decimal(0))
    return len(raw), amount, int(raw["Quantity"].astype(int).sum())


def document_totals(items: list[dict[str, Any]]) -> tuple[int, Decimal, int]:
    docs = [item for item in items if item.get("entity", {}).get("S") == "INVOICE"]
    return (sum(int(d["line_count"]["N"]) for d in docs), sum((Decimal(d["total_amount"]["N"]) for d in docs), Decimal(0)),
            sum(int(d["total_quantity"]["N"]) for d in docs))


def warehouse_totals(made: Setup) -> tuple[int, Decimal, int]:
    [[rows, amount, quantity]] = made.sql(
        f"SELECT COUNT(*), SUM(quantity * unit_price), SUM(quantity) FROM {made.warehouse_table}")
    return int(rows), Decimal(str(amount or 0)).quantize(Decimal("0.001")), int(quantity or 0)


# --------------------------------------------------------------------------------------------------
# The rules are the record contract's, as ingest_api applies them


def test_batch_rows_get_ingest_api_ids_decisions_and_reasons(batch: ModuleType, monkeypatch: pytest.MonkeyPatch):
    """The batch function reads CSV text; ingest_api gets the same rows posted: one contract, one answer."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ingest = load("ingest_api", "app.py", "lambda_ingest_api")
    raw = sample_rows()
    body = bulk_files._csv(pd.concat([raw[list(dataset.COLUMNS)], pd.DataFrame(BAD_ROWS, columns=dataset.COLUMNS)]))
    rows, problem = batch.read_rows(body)
    assert problem is None and len(rows) == len(raw) + len(BAD_ROWS)
    accepted, refused = contract.prepare(rows)
    prepared, rejected = ingest.prepare(rows)
    assert [(a.index, a.record) for a in accepted] == [(p.index, p.record) for p in prepared]
    assert [(r.index, r.reason) for r in refused] == [(r["index"], r["reason"]) for r in rejected]
    assert len(refused) == 6 and len(accepted) == len(rows) - 6  # the huge price too: the contract bounds it
    ids = dataset.parse(raw)["record_id"].tolist()
    assert [a.record["record_id"] for a in accepted if a.index < len(raw)] == ids
    # UnitPrice as the stream carries it (JSON written by ingest_api, parsed by the consumer)
    for a, p in list(zip(accepted, prepared))[:200]:
        carried = json.loads(p.data, parse_float=Decimal)["UnitPrice"]
        assert str(contract.stream_number(a.record["UnitPrice"])) == str(Decimal(str(carried)))


# --------------------------------------------------------------------------------------------------
# Stream and batch give the same documents


def test_same_rows_by_stream_and_by_batch_give_the_same_items(setup: Setup, batch: ModuleType, schema: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch):
    raw = sample_rows()
    setup.upload(bulk_files.cut(SAMPLE, by="day"))
    answer = batch.handler({"source": "aws.events"}, Context())
    assert answer["loaded"] == answer["files"].__len__() and answer["busy"] == 0

    stream_table = f"{setup.table}-stream"
    setup.aws("dynamodb").create_table(TableName=stream_table, **schema)
    queue = setup.aws("sqs").create_queue(QueueName=f"bi-q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("TABLE_NAME", stream_table)
    monkeypatch.setenv("QUARANTINE_QUEUE_URL", queue)
    ingest = load("ingest_api", "app.py", "lambda_ingest_api")
    stream = load("stream_to_dynamodb", "app.py", "lambda_stream_to_dynamodb")
    rows = raw[list(dataset.COLUMNS)].to_dict("records")
    prepared, rejected = ingest.prepare(rows)
    assert not rejected
    events = [{"eventID": f"shardId-000000000000:{i}", "eventSource": "aws:kinesis",
               "kinesis": {"data": base64.b64encode(p.data).decode(), "sequenceNumber": str(10**20 + i),
                           "partitionKey": p.record["InvoiceNo"], "kinesisSchemaVersion": "1.0",
                           "approximateArrivalTimestamp": 1.7e9}} for i, p in enumerate(prepared)]
    for start in range(0, len(events), 1000):
        outcome = stream.write_batch(events[start:start + 1000])
        assert not outcome.failed and outcome.quarantined == 0

    by_stream, by_batch = setup.scan(stream_table), setup.scan()
    assert len(by_batch) == raw["InvoiceNo"].nunique()
    assert by_batch == by_stream


# --------------------------------------------------------------------------------------------------
# Counts, totals, reruns


def test_every_row_stored_or_quarantined_and_totals_equal_pandas(setup: Setup, batch: ModuleType):
    raw = sample_rows(1500)
    parts = bulk_files.cut(SAMPLE, by="day", nrows=1500) + [with_bad_rows(raw)]
    setup.upload(parts)
    answer = batch.handler({}, Context())
    files = {f["key"]: f for f in answer["files"]}
    assert answer["loaded"] == len(parts) and set(files) == {f"incoming/{p.name}" for p in parts}
    for part in parts:
        report = files[f"incoming/{part.name}"]
        assert report["rows"] == part.rows == report["stored"] + report["quarantined"]
    assert files["incoming/with-bad-rows.csv"]["quarantined"] == len(BAD_ROWS)

    quarantined = [json.loads(line) for key in setup.keys("quarantine/")
                   for line in setup.aws("s3").get_object(Bucket=setup.bucket, Key=key)["Body"].read().splitlines()]
    assert sorted(q["row"]["Description"] for q in quarantined) == sorted(r[2] for r in BAD_ROWS)
    assert {q["reason"] for q in quarantined} >= {"Quantity 'six' is not an integer", "missing StockCode",
                                                 "CustomerID '17x50' is not digits (at most 20)"}
    assert any("is outside -10,000,000..10,000,000" in q["reason"] for q in quarantined)

    # the first day's rows twice (its own file and the one with bad rows): documents count them once
    first_day = raw[raw["InvoiceDate"].str.startswith(raw["InvoiceDate"].iloc[0].split()[0])]
    rows, amount, quantity = expected_totals(raw)
    assert document_totals(setup.scan()) == (rows, amount, quantity)
    w_rows, w_amount, w_quantity = expected_totals(pd.concat([raw, first_day]))
    assert warehouse_totals(setup) == (w_rows, w_amount.quantize(Decimal("0.001")), w_quantity)
    assert setup.keys("incoming/") == [] and len(setup.keys("processed/")) == len(parts)

    # a rerun finds nothing; the same files uploaded again are recognised by their ETag and only moved
    before = setup.scan()
    assert batch.handler({}, Context())["files"] == []
    setup.upload(parts[:2])
    again = batch.handler({}, Context())
    assert [f["status"] for f in again["files"]] == ["already_loaded", "already_loaded"]
    assert setup.scan() == before and warehouse_totals(setup)[0] == w_rows


def test_overlapping_runs_split_the_files_and_load_nothing_twice(setup: Setup, batch: ModuleType):
    raw = sample_rows()
    parts = bulk_files.cut(SAMPLE, by="day")
    setup.upload(parts)
    answers: list[dict[str, Any]] = []
    runs = [threading.Thread(target=lambda: answers.append(batch.handler({}, Context()))) for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    loaded = [f["key"] for answer in answers for f in answer["files"] if f["status"] == "loaded"]
    assert sorted(loaded) == sorted(f"incoming/{p.name}" for p in parts)  # each file loaded by exactly one run
    assert document_totals(setup.scan()) == expected_totals(raw)
    rows, amount, quantity = expected_totals(raw)
    assert warehouse_totals(setup) == (rows, amount.quantize(Decimal("0.001")), quantity)


def test_a_file_cut_short_by_the_deadline_is_continued_and_copied_once_whole(setup: Setup, batch: ModuleType,
                                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHUNK_ROWS", "100")
    raw = sample_rows(1000)
    [part] = bulk_files.cut(SAMPLE, by="rows", rows=5000, nrows=1000)
    setup.upload([part])
    # time for the first look, the lease and three chunks, then below SAFETY_MS (20 s)
    first = batch.handler({}, Context(remaining=[300_000] * 5 + [5_000]))
    [report] = first["files"]
    assert report["status"] == "continued" and report["offset"] == 300
    assert warehouse_totals(setup)[0] == 0  # nothing reaches the warehouse before the file is whole
    assert setup.keys("incoming/") == [f"incoming/{part.name}"]
    assert document_totals(setup.scan())[0] == 300

    ledger_item = setup.scan(setup.ledger)[0]
    assert ledger_item["status"]["S"] == "IN_PROGRESS" and ledger_item["offset"]["N"] == "300"
    second = batch.handler({}, Context())
    [report] = second["files"]
    assert report["status"] == "loaded" and report["stored"] == 1000 and report["quarantined"] == 0
    rows, amount, quantity = expected_totals(raw)
    assert document_totals(setup.scan()) == (rows, amount, quantity)
    assert warehouse_totals(setup) == (rows, amount.quantize(Decimal("0.001")), quantity)
    assert len(setup.keys("staged/")) == 10 + 1  # the parts and the manifest


def test_a_chunk_redone_after_a_crash_adds_nothing(setup: Setup, batch: ModuleType, monkeypatch: pytest.MonkeyPatch):
    """An invocation that dies mid-file records nothing past its last release: the next one redoes the
    chunks from there (the documents skip the lines they list, the parts are overwritten)."""
    monkeypatch.setenv("CHUNK_ROWS", "100")
    raw = sample_rows(600)
    [part] = bulk_files.cut(SAMPLE, by="rows", rows=5000, nrows=600)
    setup.upload([part])
    app = sys.modules["lambda_batch_import"]
    calls = {"n": 0}
    original = app.import_chunk

    def dying(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("the worker died")
        return original(*args)

    monkeypatch.setattr(app, "import_chunk", dying)
    with pytest.raises(RuntimeError):
        batch.handler({}, Context(remaining=[30_000]))  # its lease ends with its time (30 s + 60 s)
    monkeypatch.setattr(app, "import_chunk", original)
    assert document_totals(setup.scan())[0] == 300 and warehouse_totals(setup)[0] == 0
    assert batch.handler({}, Context())["busy"] == 1  # the dead invocation's lease still holds
    item = setup.scan(setup.ledger)[0]
    setup.aws("dynamodb").update_item(TableName=setup.ledger, Key={"object": item["object"]},
                                      UpdateExpression="SET lease_until = :past", ExpressionAttributeValues={":past": {"N": "0"}})
    answer = batch.handler({}, Context())
    assert answer["loaded"] == 1 and answer["stored"] == 600
    rows, amount, quantity = expected_totals(raw)
    assert document_totals(setup.scan()) == (rows, amount, quantity)
    assert warehouse_totals(setup) == (rows, amount.quantize(Decimal("0.001")), quantity)


def test_a_file_without_the_published_header_is_refused_whole(setup: Setup, batch: ModuleType):
    setup.aws("s3").put_object(Bucket=setup.bucket, Key="incoming/other.csv", Body=b"a,b\n1,2\n")
    [report] = batch.handler({}, Context())["files"]
    assert report["status"] == "refused" and "expected InvoiceNo,StockCode" in report["reason"]
    assert setup.keys("quarantine/") == ["quarantine/other.csv"] and setup.keys("incoming/") == []


# --------------------------------------------------------------------------------------------------
# Deployed, run by a schedule rule


def function_log(aws: Callable[[str], Any], name: str) -> str:
    """The tail of a function's CloudWatch log, to say why a run did not happen."""
    logs, group = aws("logs"), f"/aws/lambda/{name}"
    try:
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    except logs.exceptions.ResourceNotFoundException:
        return f"no log group {group}: the function never ran"
    lines = [e["message"] for s in streams for e in logs.get_log_events(logGroupName=group,
                                                                          logStreamName=s["logStreamName"])["events"]]
    return "\n".join(lines[-40:])


def test_schedule_rule_runs_the_deployed_function(setup: Setup, endpoint: str):
    from localcloud.scheduler.rules import fire_rule

    aws = setup.aws
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    name = f"bi-fn-{uuid.uuid4().hex[:8]}"
    role = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    lake, tables = f"arn:aws:s3:::{setup.bucket}", "arn:aws:dynamodb:us-east-1:123456789012:table"
    aws("iam").put_role_policy(RoleName=name, PolicyName="least-privilege", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": lake},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": f"{lake}/*"},
            {"Effect": "Allow", "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
             "Resource": f"{tables}/{setup.table}"},
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
             "Resource": f"{tables}/{setup.ledger}"},
            {"Effect": "Allow", "Action": ["redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement",
                                           "redshift-data:DescribeStatement", "redshift-data:GetStatementResult"],
             "Resource": "*"},
            {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": "*"}]}))
    env = {"LAKE_BUCKET": setup.bucket, "TABLE_NAME": setup.table, "LEDGER_TABLE": setup.ledger,
           "WAREHOUSE_CLUSTER": CLUSTER, "WAREHOUSE_TABLE": setup.warehouse_table, "COPY_ROLE_ARN": ROLE,
           "CHUNK_ROWS": "400"}
    arn = aws("lambda").create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler", Timeout=120,
        Code={"ZipFile": packaging.package(LAMBDAS / "batch_import")}, Environment={"Variables": env},
        Layers=[deploy.ensure_folder_layer(RECORDS_LAYER)])["FunctionArn"]
    rule_arn = aws("events").put_rule(Name=name, ScheduleExpression="rate(1 hour)")["RuleArn"]
    aws("events").put_targets(Rule=name, Targets=[{"Id": "batch-import", "Arn": arn}])
    aws("lambda").add_permission(FunctionName=name, StatementId="schedule", Action="lambda:InvokeFunction",
                                 Principal="events.amazonaws.com", SourceArn=rule_arn)
    raw = sample_rows()
    setup.upload(bulk_files.cut(SAMPLE, by="day"))
    for _ in range(2):  # two overlapping runs of the schedule
        assert fire_rule(name, endpoint=endpoint)["Deliveries"][0]["Status"] == "delivered"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and setup.keys("incoming/"):
        time.sleep(0.5)
    assert setup.keys("incoming/") == [], function_log(aws, name)
    assert {item["status"]["S"] for item in setup.scan(setup.ledger)} == {"DONE"}
    rows, amount, quantity = expected_totals(raw)
    assert document_totals(setup.scan()) == (rows, amount, quantity)
    assert warehouse_totals(setup) == (rows, amount.quantize(Decimal("0.001")), quantity)


def test_every_client_the_file_threads_share_has_a_connection_for_each(batch: ModuleType):
    """FILE_THREADS files in flight share the S3 and DynamoDB clients: each keeps that many connections (boto3's
    default of 10 would open and throw away a connection for every request beyond it)."""
    shared = {"s3": batch.s3, "ledger": sys.modules["ledger"].dynamodb,
              "serving table": sys.modules["serving_table"].dynamodb}
    assert batch.FILE_THREADS == 16
    for name, client in shared.items():
        assert client.meta.config.max_pool_connections >= batch.FILE_THREADS, name
