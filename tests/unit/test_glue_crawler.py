"""Glue crawlers against a local cloud of their own: a student's boto3 script over a lake shaped like the
workbook's (JSON lines under raw/year=/month=/day=/) gets the table, partition keys and partitions AWS's
crawler makes; CSV and Parquet are recognised; the SchemaChangePolicy and StopCrawler behave as documented."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.glue import crawler as crawl_module
from localcloud.glue.lake import S3Object

BUCKET = "lake"
ROLE = "arn:aws:iam::123456789012:role/retail-glue-crawler"


def lake_line(invoice: str, quantity: int, price: float, day: int, customer: str | None = "17850") -> str:
    return json.dumps({"InvoiceNo": invoice, "StockCode": "85123A", "Description": "WHITE HANGING HEART",
                       "Quantity": quantity, "InvoiceDate": f"12/{day}/2010 8:26", "UnitPrice": price,
                       "CustomerID": customer, "Country": "United Kingdom", "record_id": f"{invoice}#{quantity}"},
                      separators=(",", ":"))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "glue,athena"}
    with lifecycle.running(tmp_path_factory.mktemp("glue-localcloud"), env) as url:
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def wait_ready(glue: Any, name: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    states = []
    while time.monotonic() < deadline:
        crawler = glue.get_crawler(Name=name)["Crawler"]
        states.append(crawler["State"])
        if crawler["State"] == "READY" and "LastCrawl" in crawler:
            crawler["seen_states"] = states
            return crawler
        time.sleep(0.05)
    raise AssertionError(f"crawler {name} still {states[-1]}")


@pytest.fixture(scope="module")
def raw_lake(endpoint: str) -> dict[str, int]:
    """The workbook's raw lake: a file per shard and day, JSON lines."""
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket=BUCKET)
    counts = {}
    for day in (1, 2, 3):
        for shard in ("shardId-000000000000", "shardId-000000000001"):
            lines = [lake_line(f"5365{day}{i}", i + 1, 2.55 if i % 2 else 3, day, None if i == 2 else "17850")
                     for i in range(4)]
            key = f"raw/year=2010/month=12/day={day:02d}/{shard}.jsonl"
            s3.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
            counts[key] = len(lines)
    s3.put_object(Bucket=BUCKET, Key="raw/_SUCCESS", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="raw/year=2010/month=12/day=01/notes.tmp", Body=b"not data")
    return counts


def test_crawler_over_the_raw_lake_makes_the_table_and_partitions(endpoint: str, raw_lake: dict[str, int]):
    glue = client(endpoint, "glue")
    glue.create_database(DatabaseInput={"Name": "retail"})
    glue.create_crawler(Name="raw", Role=ROLE, DatabaseName="retail", TablePrefix="lake_",
                        Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/raw/", "Exclusions": ["**.tmp"]}]},
                        SchemaChangePolicy={"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"})
    glue.start_crawler(Name="raw")
    with pytest.raises(ClientError) as again:
        glue.start_crawler(Name="raw")
    assert again.value.response["Error"]["Code"] == "CrawlerRunningException"
    crawler = wait_ready(glue, "raw")
    assert crawler["LastCrawl"]["Status"] == "SUCCEEDED", crawler["LastCrawl"]
    table = glue.get_table(DatabaseName="retail", Name="lake_raw")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == {"invoiceno": "string", "stockcode": "string", "description": "string", "quantity": "bigint",
                       "invoicedate": "string", "unitprice": "double", "customerid": "string", "country": "string",
                       "record_id": "string"}
    assert table["PartitionKeys"] == [{"Name": "year", "Type": "string"}, {"Name": "month", "Type": "string"},
                                      {"Name": "day", "Type": "string"}]
    descriptor = table["StorageDescriptor"]
    assert descriptor["Location"] == f"s3://{BUCKET}/raw/"
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert descriptor["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert table["TableType"] == "EXTERNAL_TABLE" and table["Parameters"]["classification"] == "json"
    assert table["Parameters"]["objectCount"] == "6"  # _SUCCESS and the excluded .tmp are not data
    partitions = glue.get_partitions(DatabaseName="retail", TableName="lake_raw")["Partitions"]
    assert sorted(p["Values"] for p in partitions) == [["2010", "12", "01"], ["2010", "12", "02"],
                                                       ["2010", "12", "03"]]
    first = next(p for p in partitions if p["Values"][2] == "01")
    assert first["StorageDescriptor"]["Location"] == f"s3://{BUCKET}/raw/year=2010/month=12/day=01/"
    metrics = glue.get_crawler_metrics(CrawlerNameList=["raw"])["CrawlerMetricsList"][0]
    assert metrics["TablesCreated"] == 1 and metrics["LastRuntimeSeconds"] > 0


def test_a_second_crawl_adds_new_partitions_and_updates_a_changed_schema(endpoint: str, raw_lake: dict[str, int]):
    glue, s3 = client(endpoint, "glue"), client(endpoint, "s3")
    line = json.loads(lake_line("536599", 1, 1.0, 4))
    line["Channel"] = "web"
    s3.put_object(Bucket=BUCKET, Key="raw/year=2010/month=12/day=04/shardId-000000000000.jsonl",
                  Body=(json.dumps(line) + "\n").encode())
    glue.start_crawler(Name="raw")
    crawler = wait_ready(glue, "raw")
    assert crawler["LastCrawl"]["Status"] == "SUCCEEDED"
    table = glue.get_table(DatabaseName="retail", Name="lake_raw")["Table"]
    assert "channel" in {c["Name"] for c in table["StorageDescriptor"]["Columns"]}
    assert len(glue.get_partitions(DatabaseName="retail", TableName="lake_raw")["Partitions"]) == 4
    metrics = glue.get_crawler_metrics(CrawlerNameList=["raw"])["CrawlerMetricsList"][0]
    assert (metrics["TablesCreated"], metrics["TablesUpdated"]) == (0, 1)


def test_update_behavior_log_leaves_the_table_as_it_was(endpoint: str):
    glue, s3 = client(endpoint, "glue"), client(endpoint, "s3")
    s3.put_object(Bucket=BUCKET, Key="logged/a.json", Body=b'{"a": 1}\n')
    glue.create_crawler(Name="logged", Role=ROLE, DatabaseName="retail",
                        Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/logged"}]},
                        SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"})
    glue.start_crawler(Name="logged")
    wait_ready(glue, "logged")
    s3.put_object(Bucket=BUCKET, Key="logged/b.json", Body=b'{"a": 2, "b": "new"}\n')
    glue.start_crawler(Name="logged")
    assert wait_ready(glue, "logged")["LastCrawl"]["Status"] == "SUCCEEDED"
    table = glue.get_table(DatabaseName="retail", Name="logged")["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["a"]


def test_csv_with_a_header_and_parquet_are_classified(endpoint: str, tmp_path: Path):
    import duckdb

    glue, s3 = client(endpoint, "glue"), client(endpoint, "s3")
    s3.put_object(Bucket=BUCKET, Key="csv/orders/part-0.csv",
                  Body=b"InvoiceNo,Quantity,UnitPrice,Paid,At\n536365,6,2.55,true,2010-12-01 08:26:00\n"
                       b"536366,2,1.85,false,2010-12-01 08:28:00\n")
    path = tmp_path / "things.parquet"
    connection = duckdb.connect()
    connection.execute(f"COPY (SELECT 1::BIGINT AS id, 'a' AS name, [1, 2] AS tags, {{'x': 1.5::DOUBLE}} AS point) "
                       f"TO '{path}' (FORMAT PARQUET)")
    s3.put_object(Bucket=BUCKET, Key="parquet/things/part-0.parquet", Body=path.read_bytes())
    glue.create_crawler(Name="formats", Role=ROLE, DatabaseName="formats",
                        Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/csv/orders/"},
                                               {"Path": f"s3://{BUCKET}/parquet/things/"}]})
    glue.start_crawler(Name="formats")
    assert wait_ready(glue, "formats")["LastCrawl"]["Status"] == "SUCCEEDED"
    orders = glue.get_table(DatabaseName="formats", Name="orders")["Table"]
    assert [(c["Name"], c["Type"]) for c in orders["StorageDescriptor"]["Columns"]] == [
        ("invoiceno", "bigint"), ("quantity", "bigint"), ("unitprice", "double"), ("paid", "boolean"),
        ("at", "timestamp")]
    assert orders["Parameters"]["skip.header.line.count"] == "1"
    things = glue.get_table(DatabaseName="formats", Name="things")["Table"]
    assert [(c["Name"], c["Type"]) for c in things["StorageDescriptor"]["Columns"]] == [
        ("id", "bigint"), ("name", "string"), ("tags", "array<bigint>"), ("point", "struct<x:double>")]
    assert things["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")


def test_a_missing_bucket_fails_the_crawl_with_a_message(endpoint: str):
    glue = client(endpoint, "glue")
    glue.create_crawler(Name="nowhere", Role=ROLE, DatabaseName="retail",
                        Targets={"S3Targets": [{"Path": "s3://no-such-bucket/raw/"}]})
    glue.start_crawler(Name="nowhere")
    crawler = wait_ready(glue, "nowhere")
    assert crawler["LastCrawl"]["Status"] == "FAILED"
    assert "no-such-bucket" in crawler["LastCrawl"]["ErrorMessage"]


def test_stop_crawler_cancels_a_running_crawl(endpoint: str, monkeypatch: pytest.MonkeyPatch):
    glue = client(endpoint, "glue")
    glue.create_crawler(Name="stopped", Role=ROLE, DatabaseName="retail",
                        Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/raw/"}]})
    glue.start_crawler(Name="stopped")
    try:
        glue.stop_crawler(Name="stopped")
    except ClientError as error:  # the small crawl may already be over
        assert error.response["Error"]["Code"] == "CrawlerNotRunningException"
    assert wait_ready(glue, "stopped")["LastCrawl"]["Status"] in ("CANCELLED", "SUCCEEDED")


# --------------------------------------------------------------------------------------------------
# Pure parts


def test_exclusion_globs():
    pattern = crawl_module.glob_regex("**.tmp")
    assert pattern.match("year=2010/a.tmp") and not pattern.match("year=2010/a.jsonl")
    assert crawl_module.glob_regex("*.csv").match("a.csv") and not crawl_module.glob_regex("*.csv").match("d/a.csv")
    assert crawl_module.glob_regex("year={2010,2011}/**").match("year=2011/month=01/x")


def test_plain_folders_alike_are_partitions_and_different_ones_tables():
    def obj(key: str) -> S3Object:
        return S3Object("b", key, 1, "e")

    alike = [obj("data/a/1.json"), obj("data/b/1.json")]
    [group] = crawl_module.plan("s3://b/data/", alike, lambda objs: ("json", ("x",)), "data")
    assert group.keys == ["partition_0"] and set(group.parts) == {("a",), ("b",)}
    schemas = {"data/a/1.json": ("json", ("x",)), "data/b/1.json": ("csv", ("y",))}
    groups = crawl_module.plan("s3://b/data/", alike, lambda objs: schemas[objs[0].key], "data")
    assert [(g.name, g.root) for g in groups] == [("a", "s3://b/data/a/"), ("b", "s3://b/data/b/")]


def test_a_stop_request_ends_the_crawl_before_it_writes():
    class Lake:
        def objects(self, url: str) -> list[S3Object]:
            return [S3Object("b", "raw/year=2010/a.json", 9, "e")]

        def read(self, obj: S3Object) -> bytes:
            return b'{"a": 1}\n'

    class Glue:
        databases: dict[str, Any] = {"db": type("Database", (), {"name": "db", "tables": {}})()}

    class Crawler:
        name, role, database_name, table_prefix, schema_change_policy = "c", "r", "db", "", {}
        targets = {"S3Targets": [{"Path": "s3://b/raw/"}]}

    with pytest.raises(crawl_module.Stopped):
        crawl_module.Crawl(Glue(), Crawler(), Lake(), lambda: True).run()  # type: ignore[arg-type]
    assert Glue.databases["db"].tables == {}
