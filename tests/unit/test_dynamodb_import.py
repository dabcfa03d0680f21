"""DynamoDB ImportTable from S3 on the local cloud (localcloud/dynamodb_import), with boto3: CSV (header
or HeaderList, delimiter) and DYNAMODB_JSON, GZIP or not, the new table with its indexes, COMPLETED with
AWS's counts, bad items counted and logged to CloudWatch Logs, DescribeImport, ListImports, ClientToken."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.localcloud

SCHEMA = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "n", "AttributeType": "N"},
                             {"AttributeName": "customer", "AttributeType": "S"}],
    "GlobalSecondaryIndexes": [{"IndexName": "by-customer", "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}],
                                "Projection": {"ProjectionType": "ALL"}}],
    "BillingMode": "PAY_PER_REQUEST",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def finished(aws: Callable[[str], Any], arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # a busy machine: the import runs in the local cloud's thread
    while time.monotonic() < deadline:
        described = aws("dynamodb").describe_import(ImportArn=arn)["ImportTableDescription"]
        if described["ImportStatus"] != "IN_PROGRESS":
            return described
        time.sleep(0.05)
    raise AssertionError(f"import {arn} did not finish")


def start(aws: Callable[[str], Any], bucket: str, table: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return aws("dynamodb").import_table(
        S3BucketSource={"S3Bucket": bucket, "S3KeyPrefix": prefix},
        TableCreationParameters={"TableName": table, **SCHEMA}, **{"InputFormat": "CSV", **extra})["ImportTableDescription"]


@pytest.fixture()
def bucket(aws: Callable[[str], Any]) -> str:
    name = unique("ddb-import")
    aws("s3").create_bucket(Bucket=name)
    return name


def test_csv_gzip_with_header_creates_the_table_and_counts_like_aws(aws: Callable[[str], Any], bucket: str):
    rows = ["pk,n,customer,amount", "INV#1,1,c1,2.55", "INV#1,2,c1,3.10", "INV#2,1,c2,\"1,000\"",
            "INV#2,1,c2,9.99",  # the same key again: overwritten, not an error
            ",1,c3,1.00",  # an empty key: refused
            "INV#3,one,c3,1.00",  # a number key that is not a number: refused
            "INV#4,1,c4"]  # a short row: refused
    aws("s3").put_object(Bucket=bucket, Key="exports/a.csv.gz", Body=gzip.compress("\n".join(rows).encode()))
    aws("s3").put_object(Bucket=bucket, Key="exports/b.csv.gz", Body=gzip.compress(b"pk,n,customer,amount\nINV#5,7,c1,4\n"))
    table = unique("imported")
    started = start(aws, bucket, table, "exports/", InputCompressionType="GZIP")
    assert started["ImportStatus"] == "IN_PROGRESS" and started["TableArn"].endswith(f":table/{table}")
    done = finished(aws, started["ImportArn"])
    assert done["ImportStatus"] == "COMPLETED"
    assert (done["ProcessedItemCount"], done["ImportedItemCount"], done["ErrorCount"]) == (8, 4, 3)
    assert done["ProcessedSizeBytes"] == len("\n".join(rows)) + len("pk,n,customer,amount\nINV#5,7,c1,4\n")
    assert done["InputFormat"] == "CSV" and done["InputCompressionType"] == "GZIP" and "EndTime" in done

    described = aws("dynamodb").describe_table(TableName=table)["Table"]
    assert described["TableStatus"] == "ACTIVE" and described["GlobalSecondaryIndexes"][0]["IndexName"] == "by-customer"
    item = aws("dynamodb").get_item(TableName=table, Key={"pk": {"S": "INV#2"}, "n": {"N": "1"}})["Item"]
    assert item == {"pk": {"S": "INV#2"}, "n": {"N": "1"}, "customer": {"S": "c2"}, "amount": {"S": "9.99"}}
    by_customer = aws("dynamodb").query(TableName=table, IndexName="by-customer", KeyConditionExpression="customer = :c",
                                        ExpressionAttributeValues={":c": {"S": "c1"}})["Items"]
    assert sorted(i["pk"]["S"] + "/" + i["n"]["N"] for i in by_customer) == ["INV#1/1", "INV#1/2", "INV#5/7"]

    logs = aws("logs")
    stream = started["ImportArn"].rsplit("/", 1)[-1]
    events = logs.get_log_events(logGroupName="/aws-dynamodb/imports", logStreamName=stream)["events"]
    messages = [json.loads(e["message"]) for e in events]
    assert len(messages) == 3 and {m["itemS3Pointer"]["key"] for m in messages} == {"exports/a.csv.gz"}
    assert any("one" in m["errorMessages"][0] for m in messages)


def test_dynamodb_json_and_csv_options(aws: Callable[[str], Any], bucket: str):
    lines = [json.dumps({"Item": {"pk": {"S": f"K{i}"}, "n": {"N": str(i)}, "tags": {"SS": ["a", "b"]},
                                  "price": {"N": "2.5"}}}) for i in range(5)]
    aws("s3").put_object(Bucket=bucket, Key="json/part-1.json", Body=("\n".join(lines) + "\nnot json\n").encode())
    aws("s3").put_object(Bucket=bucket, Key="json/part-2.json", Body=json.dumps({"Item": {"n": {"N": "1"}}}).encode())
    table = unique("from-json")
    done = finished(aws, start(aws, bucket, table, "json/", InputFormat="DYNAMODB_JSON")["ImportArn"])
    assert (done["ImportStatus"], done["ProcessedItemCount"], done["ImportedItemCount"], done["ErrorCount"]) == \
        ("COMPLETED", 7, 5, 2)
    item = aws("dynamodb").get_item(TableName=table, Key={"pk": {"S": "K3"}, "n": {"N": "3"}})["Item"]
    assert item["tags"] == {"SS": ["a", "b"]} and item["price"] == {"N": "2.5"}

    # HeaderList: the first line is data; a semicolon delimiter
    aws("s3").put_object(Bucket=bucket, Key="semi/x.csv", Body=b"A;1;c1\nB;2;c2\n")
    table = unique("from-semi")
    done = finished(aws, start(aws, bucket, table, "semi/", InputFormatOptions={
        "Csv": {"Delimiter": ";", "HeaderList": ["pk", "n", "customer"]}})["ImportArn"])
    assert (done["ImportedItemCount"], done["ErrorCount"]) == (2, 0)
    assert done["InputFormatOptions"]["Csv"]["HeaderList"] == ["pk", "n", "customer"]
    assert aws("dynamodb").scan(TableName=table)["Count"] == 2


def test_describe_list_token_and_refusals(aws: Callable[[str], Any], bucket: str):
    dynamodb = aws("dynamodb")
    aws("s3").put_object(Bucket=bucket, Key="one/x.csv", Body=b"pk,n\nA,1\n")
    token = unique("token")
    first = start(aws, bucket, unique("listed"), "one/", ClientToken=token)
    table_arn = first["TableArn"]
    again = dynamodb.import_table(S3BucketSource={"S3Bucket": bucket, "S3KeyPrefix": "one/"}, InputFormat="CSV",
                                  ClientToken=token, TableCreationParameters={"TableName": table_arn.rsplit("/", 1)[-1],
                                                                              **SCHEMA})["ImportTableDescription"]
    assert again["ImportArn"] == first["ImportArn"]
    with pytest.raises(ClientError) as mismatch:
        start(aws, bucket, unique("other"), "one/", ClientToken=token)
    assert mismatch.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    finished(aws, first["ImportArn"])

    listed = dynamodb.list_imports(TableArn=table_arn)["ImportSummaryList"]
    assert [s["ImportArn"] for s in listed] == [first["ImportArn"]] and listed[0]["ImportStatus"] == "COMPLETED"
    for _ in range(2):
        finished(aws, start(aws, bucket, unique("paged"), "one/")["ImportArn"])
    page = dynamodb.list_imports(PageSize=1)
    assert len(page["ImportSummaryList"]) == 1 and page["NextToken"]
    everything, token_ = [], None
    while True:
        page = dynamodb.list_imports(PageSize=2, **({"NextToken": token_} if token_ else {}))
        everything += page["ImportSummaryList"]
        token_ = page.get("NextToken")
        if not token_:
            break
    assert len(everything) >= 3 and first["ImportArn"] in {s["ImportArn"] for s in everything}

    with pytest.raises(ClientError) as missing:
        dynamodb.describe_import(ImportArn=f"{table_arn}/import/01234567890123456789012345678901")
    assert missing.value.response["Error"]["Code"] == "ImportNotFoundException"
    with pytest.raises(ClientError) as ion:
        start(aws, bucket, unique("ion"), "one/", InputFormat="ION")
    assert ion.value.response["Error"]["Code"] == "ValidationException" and "ION" in ion.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as zstd:
        start(aws, bucket, unique("zstd"), "one/", InputCompressionType="ZSTD")
    assert "ZSTD" in zstd.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exists:
        start(aws, bucket, table_arn.rsplit("/", 1)[-1], "one/")
    assert exists.value.response["Error"]["Code"] == "ResourceInUseException"

    failed = finished(aws, start(aws, unique("no-such-bucket"), unique("nobucket"), "")["ImportArn"])
    assert (failed["ImportStatus"], failed["FailureCode"]) == ("FAILED", "S3NoSuchBucket")
    empty = finished(aws, start(aws, bucket, unique("empty"), "nothing-here/")["ImportArn"])
    assert empty["ImportStatus"] == "FAILED" and "nothing-here/" in empty["FailureMessage"]
