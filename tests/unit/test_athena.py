"""Athena against a local cloud of its own: a student's boto3 script over a lake shaped like the workbook's
(crawled by Glue, or declared with CREATE EXTERNAL TABLE) gets Athena's answers: counts and aggregates
with the header row first and the CSV at the output location, fewer bytes scanned with a partition filter
and on a Parquet copy made by CTAS, FAILED with Athena's reasons for bad SQL and unknown tables."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.athena import engine, results

BUCKET = "lake"
RESULTS = "s3://lake-results/athena/"
DAYS = (1, 2, 3)
LINES_PER_FILE = 5


def lake_line(invoice: int, quantity: int, price: float, day: int) -> str:
    return json.dumps({"InvoiceNo": str(invoice), "StockCode": "85123A", "Description": "WHITE HANGING HEART",
                       "Quantity": quantity, "InvoiceDate": f"12/{day}/2010 8:26", "UnitPrice": price,
                       "CustomerID": "17850" if quantity % 3 else None, "Country": "United Kingdom",
                       "record_id": f"{invoice}#1"}, separators=(",", ":"))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "glue,athena"}
    with lifecycle.running(tmp_path_factory.mktemp("athena-localcloud"), env) as url:
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def lake(endpoint: str) -> dict[str, Any]:
    """The raw lake (2 shards x 3 days), crawled into retail.raw."""
    s3, glue = client(endpoint, "s3"), client(endpoint, "glue")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="lake-results")
    expected = {"rows": 0, "revenue": {}}
    invoice = 536000
    for day in DAYS:
        for shard in ("shardId-000000000000", "shardId-000000000001"):
            lines = []
            for i in range(LINES_PER_FILE):
                invoice += 1
                quantity, price = i + 1, 2.5
                lines.append(lake_line(invoice, quantity, price, day))
                expected["revenue"][day] = expected["revenue"].get(day, 0) + quantity * price
            s3.put_object(Bucket=BUCKET, Key=f"raw/year=2010/month=12/day={day:02d}/{shard}.jsonl",
                          Body=("\n".join(lines) + "\n").encode())
            expected["rows"] += len(lines)
    glue.create_database(DatabaseInput={"Name": "retail"})
    glue.create_crawler(Name="raw", Role="arn:aws:iam::123456789012:role/crawler", DatabaseName="retail",
                        Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/raw/"}]})
    glue.start_crawler(Name="raw")
    deadline = time.monotonic() + 30
    while glue.get_crawler(Name="raw")["Crawler"].get("LastCrawl", {}).get("Status") != "SUCCEEDED":
        assert time.monotonic() < deadline, glue.get_crawler(Name="raw")["Crawler"]
        time.sleep(0.05)
    return expected


def run(athena: Any, sql: str, **extra: Any) -> dict[str, Any]:
    """Start the query and poll GetQueryExecution as a student's script does; the final execution."""
    extra.setdefault("ResultConfiguration", {"OutputLocation": RESULTS})
    extra.setdefault("QueryExecutionContext", {"Database": "retail"})
    query_id = athena.start_query_execution(QueryString=sql, **extra)["QueryExecutionId"]
    deadline = time.monotonic() + 30
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.02)


def ok(athena: Any, sql: str, **extra: Any) -> dict[str, Any]:
    execution = run(athena, sql, **extra)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    return execution


def rows(athena: Any, query_id: str) -> list[list[str | None]]:
    found = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        found += [[d.get("VarCharValue") for d in row["Data"]] for row in page["ResultSet"]["Rows"]]
    return found


def test_count_with_a_result_location(endpoint: str, lake: dict[str, Any]):
    athena, s3 = client(endpoint, "athena"), client(endpoint, "s3")
    execution = ok(athena, "SELECT count(*) AS N FROM raw")
    query_id = execution["QueryExecutionId"]
    assert execution["ResultConfiguration"]["OutputLocation"] == f"{RESULTS}{query_id}.csv"
    assert execution["StatementType"] == "DML"
    answer = athena.get_query_results(QueryExecutionId=query_id)
    assert [[d.get("VarCharValue") for d in r["Data"]] for r in answer["ResultSet"]["Rows"]] == [
        ["n"], [str(lake["rows"])]]
    [info] = answer["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert (info["Name"], info["Type"]) == ("n", "bigint")
    body = s3.get_object(Bucket="lake-results", Key=f"athena/{query_id}.csv")["Body"].read().decode()
    assert body == f'"n"\n"{lake["rows"]}"\n'
    s3.head_object(Bucket="lake-results", Key=f"athena/{query_id}.csv.metadata")
    statistics = execution["Statistics"]
    assert statistics["DataScannedInBytes"] > 0 and statistics["TotalExecutionTimeInMillis"] >= 0
    time.sleep(1)  # the text objects' columnar copy is written in the background: the same answer from it
    again = ok(athena, "SELECT count(*) AS n FROM raw")
    assert rows(athena, again["QueryExecutionId"]) == [["n"], [str(lake["rows"])]]
    assert again["Statistics"]["DataScannedInBytes"] == statistics["DataScannedInBytes"]


def test_partition_filter_scans_fewer_bytes_and_aggregates_by_day(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    everything = ok(athena, "SELECT count(*) FROM retail.raw")
    one_day = ok(athena, "SELECT count(*) FROM retail.raw WHERE year = '2010' AND month = '12' AND day = '02'")
    assert rows(athena, one_day["QueryExecutionId"])[1] == [str(lake["rows"] // len(DAYS))]
    scanned_all = everything["Statistics"]["DataScannedInBytes"]
    assert 0 < one_day["Statistics"]["DataScannedInBytes"] < scanned_all / 2
    revenue = ok(athena, """
        SELECT day, round(sum(quantity * unitprice), 2) AS revenue, count(DISTINCT invoiceno) AS invoices,
               max(date_parse(invoicedate, '%m/%d/%Y %H:%i')) AS last_sale
        FROM raw GROUP BY day ORDER BY day""")
    found = rows(athena, revenue["QueryExecutionId"])
    assert found[0] == ["day", "revenue", "invoices", "last_sale"]
    assert found[1] == ["01", f"{lake['revenue'][1]:.1f}", str(2 * LINES_PER_FILE), "2010-12-01 08:26:00.000"]
    types = [c["Type"] for c in athena.get_query_results(QueryExecutionId=revenue["QueryExecutionId"])
             ["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
    assert types == ["varchar", "double", "bigint", "timestamp"]


def test_ctas_to_parquet_then_a_query_on_it_scans_fewer_bytes(endpoint: str, lake: dict[str, Any]):
    athena, glue = client(endpoint, "athena"), client(endpoint, "glue")
    created = ok(athena, """
        CREATE TABLE retail.sales_parquet
        WITH (format = 'PARQUET', external_location = 's3://lake/curated/sales/', partitioned_by = ARRAY['day'])
        AS SELECT invoiceno, quantity, unitprice, customerid, day FROM raw""")
    assert created["StatementType"] == "DDL"
    assert rows(athena, created["QueryExecutionId"])[1:] == [[str(lake["rows"])]]
    table = glue.get_table(DatabaseName="retail", Name="sales_parquet")["Table"]
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert [k["Name"] for k in table["PartitionKeys"]] == ["day"]
    assert len(glue.get_partitions(DatabaseName="retail", TableName="sales_parquet")["Partitions"]) == len(DAYS)
    on_json = ok(athena, "SELECT sum(quantity) FROM raw")
    on_parquet = ok(athena, "SELECT sum(quantity) FROM sales_parquet")
    assert rows(athena, on_json["QueryExecutionId"])[1] == rows(athena, on_parquet["QueryExecutionId"])[1]
    assert on_parquet["Statistics"]["DataScannedInBytes"] < on_json["Statistics"]["DataScannedInBytes"]
    every_column = ok(athena, "SELECT * FROM sales_parquet")  # a columnar file is read column by column
    assert on_parquet["Statistics"]["DataScannedInBytes"] < every_column["Statistics"]["DataScannedInBytes"]
    again = run(athena, "CREATE TABLE retail.sales_parquet WITH (format = 'PARQUET') AS SELECT 1 AS x")
    assert again["Status"]["State"] == "FAILED"
    assert "TABLE_ALREADY_EXISTS" in again["Status"]["StateChangeReason"]


def test_bad_sql_and_unknown_tables_fail_with_athena_reasons(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    bad = run(athena, "SELEC count(*) FROM raw")
    assert bad["Status"]["State"] == "FAILED"
    assert bad["Status"]["StateChangeReason"].startswith("line 1:")
    assert bad["Status"]["AthenaError"]["ErrorCategory"] == 2
    missing = run(athena, "SELECT * FROM retail.nowhere")
    assert missing["Status"]["State"] == "FAILED"
    assert missing["Status"]["StateChangeReason"] == \
        "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.retail.nowhere' does not exist"
    column = run(athena, "SELECT no_such_column FROM raw")
    assert column["Status"]["StateChangeReason"].startswith("COLUMN_NOT_FOUND")
    for refused in ("CREATE VIEW retail.v AS SELECT 1 AS x", "INSERT INTO raw SELECT * FROM raw"):
        execution = run(athena, refused)
        assert execution["Status"]["State"] == "FAILED"
        assert execution["Status"]["StateChangeReason"].startswith("NOT_SUPPORTED")
    with pytest.raises(ClientError) as not_done:
        athena.get_query_results(QueryExecutionId=missing["QueryExecutionId"])
    assert not_done.value.response["Error"]["Code"] == "InvalidRequestException"


def test_output_location_from_the_workgroup_and_none_at_all(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    athena.create_work_group(Name="analysts", Configuration={
        "ResultConfiguration": {"OutputLocation": "s3://lake-results/analysts/"},
        "EnforceWorkGroupConfiguration": True})
    execution = ok(athena, "SELECT 1 AS one", WorkGroup="analysts",
                   ResultConfiguration={"OutputLocation": "s3://lake-results/ignored/"})
    assert execution["ResultConfiguration"]["OutputLocation"].startswith("s3://lake-results/analysts/")
    listed = athena.list_query_executions(WorkGroup="analysts")["QueryExecutionIds"]
    assert listed == [execution["QueryExecutionId"]]
    batch = athena.batch_get_query_execution(QueryExecutionIds=[execution["QueryExecutionId"], "nope"])
    assert len(batch["QueryExecutions"]) == 1 and batch["UnprocessedQueryExecutionIds"][0]["QueryExecutionId"] == "nope"
    with pytest.raises(ClientError) as refused:
        athena.start_query_execution(QueryString="SELECT 1")
    assert "No output location provided" in refused.value.response["Error"]["Message"]
    assert athena.get_work_group(WorkGroup="analysts")["WorkGroup"]["Name"] == "analysts"  # still moto's


def test_external_table_msck_repair_and_show(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    ok(athena, """
        CREATE EXTERNAL TABLE IF NOT EXISTS retail.raw_declared (
          `InvoiceNo` string, quantity int, unitprice double, customerid string)
        PARTITIONED BY (year string, month string, day string)
        ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
        WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
        LOCATION 's3://lake/raw/'
        TBLPROPERTIES ('classification' = 'json')""")
    empty = ok(athena, "SELECT count(*) FROM raw_declared")
    assert rows(athena, empty["QueryExecutionId"])[1] == ["0"]  # no partitions registered yet, as on AWS
    repaired = ok(athena, "MSCK REPAIR TABLE raw_declared")
    assert repaired["ResultConfiguration"]["OutputLocation"].endswith(".txt")
    assert any("Added partition" in r[0] for r in rows(athena, repaired["QueryExecutionId"]))
    counted = ok(athena, "SELECT count(*), sum(quantity) FROM raw_declared WHERE day IN ('01', '03')")
    assert rows(athena, counted["QueryExecutionId"])[1][0] == str(2 * lake["rows"] // len(DAYS))
    partitions = ok(athena, "SHOW PARTITIONS raw_declared")
    assert rows(athena, partitions["QueryExecutionId"]) == [
        [f"year=2010/month=12/day={d:02d}"] for d in DAYS]
    tables = ok(athena, "SHOW TABLES IN retail")
    assert ["raw_declared"] in rows(athena, tables["QueryExecutionId"])


def test_many_rows_page_with_the_header_first(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    execution = ok(athena, "SELECT x FROM UNNEST(sequence(1, 2500)) AS t(x)")
    first = athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"], MaxResults=1000)
    assert len(first["ResultSet"]["Rows"]) == 1000 and "NextToken" in first
    assert first["ResultSet"]["Rows"][0]["Data"][0]["VarCharValue"] == "x"
    assert len(rows(athena, execution["QueryExecutionId"])) == 2501


# --------------------------------------------------------------------------------------------------
# Pure parts


def test_values_as_athena_renders_them():
    assert engine.text_value(12345678.9) == "1.23456789E7"
    assert engine.text_value(2.0) == "2.0" and engine.text_value(True) == "true"
    assert engine.text_value([1, None]) == "[1, null]" and engine.text_value({"a": 1}) == "{a=1}"


def test_result_csv_round_trip_keeps_nulls_apart_from_empty_text():
    text = results.csv_text(["a", "b"], [("x,\"y\"", None), ("", "line\nbreak")])
    assert results.read_csv(text, header=True) == [("x,\"y\"", None), ("", "line\nbreak")]


def test_csv_tables_delimited_and_opencsv_with_execution_parameters(endpoint: str, lake: dict[str, Any]):
    athena, s3 = client(endpoint, "athena"), client(endpoint, "s3")
    s3.put_object(Bucket=BUCKET, Key="csv/plain/a.csv", Body=b"invoice,quantity,price\n536365,6,2.55\n536366,2,\n")
    s3.put_object(Bucket=BUCKET, Key="csv/plain/b.csv", Body=b"invoice,quantity,price\n536367,4,1.5\n")
    s3.put_object(Bucket=BUCKET, Key="csv/quoted/a.csv",
                  Body=b'"invoice","description"\n"536365","SET OF 3, RED"\n"536366","HEART ""LOVE"""\n')
    ok(athena, """CREATE EXTERNAL TABLE retail.plain (invoice string, quantity bigint, price double)
                  ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' LOCATION 's3://lake/csv/plain/'
                  TBLPROPERTIES ('skip.header.line.count'='1')""")
    ok(athena, """CREATE EXTERNAL TABLE retail.quoted (invoice string, description string)
                  ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
                  WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '"')
                  LOCATION 's3://lake/csv/quoted/' TBLPROPERTIES ('skip.header.line.count'='1')""")
    summed = ok(athena, "SELECT count(*), sum(quantity), count(price) FROM plain WHERE quantity > ?",
                ExecutionParameters=["1"])
    assert rows(athena, summed["QueryExecutionId"])[1] == ["3", "12", "2"]  # an empty price is NULL
    described = ok(athena, "SELECT description FROM quoted ORDER BY invoice")
    assert rows(athena, described["QueryExecutionId"])[1:] == [["SET OF 3, RED"], ['HEART "LOVE"']]
    s3.put_object(Bucket=BUCKET, Key="json/bad/a.json", Body=b'{"quantity": "six"}\n')
    ok(athena, "CREATE EXTERNAL TABLE retail.bad (quantity bigint) "
               "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/json/bad/'")
    bad = run(athena, "SELECT sum(quantity) FROM bad")
    assert bad["Status"]["State"] == "FAILED" and bad["Status"]["StateChangeReason"].startswith("HIVE_BAD_DATA")
    unknown = run(athena, "CREATE EXTERNAL TABLE retail.odd (a string) STORED AS ORC LOCATION 's3://lake/orc/'")
    assert unknown["Status"]["State"] == "FAILED" and "ORC" in unknown["Status"]["StateChangeReason"]


def test_queries_survive_a_restart(tmp_path_factory: pytest.TempPathFactory):
    """Acknowledged means stored: after `down` and `up`, the execution and its results are still there
    (the records live on moto's backend; a start is journaled and replayed with the same id)."""
    import os

    home = tmp_path_factory.mktemp("athena-restart")
    env = {"RETAIL_LOCALCLOUD_HOME": str(home), "RETAIL_LOCALCLOUD_EXECUTORS": "persistence,glue,athena"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    port = lifecycle.free_port()
    try:
        endpoint = lifecycle.up(port)
        s3, athena = client(endpoint, "s3"), client(endpoint, "athena")
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="t/a.json", Body=b'{"n": 1}\n{"n": 2}\n')
        ok(athena, "CREATE EXTERNAL TABLE t (n bigint) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' "
                   "LOCATION 's3://kept/t/'", ResultConfiguration={"OutputLocation": "s3://kept/results/"},
           QueryExecutionContext={"Database": "default"})
        summed = ok(athena, "SELECT sum(n) AS total FROM t", ResultConfiguration={"OutputLocation": "s3://kept/results/"},
                    QueryExecutionContext={"Database": "default"})
        lifecycle.down(port)
        endpoint = lifecycle.up(port)
        athena = client(endpoint, "athena")
        deadline = time.monotonic() + 30  # restored from the snapshot, or replayed from the journal and run again
        while (again := athena.get_query_execution(QueryExecutionId=summed["QueryExecutionId"])["QueryExecution"])[
                "Status"]["State"] in ("QUEUED", "RUNNING") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again["Status"]["State"] == "SUCCEEDED"
        assert rows(athena, summed["QueryExecutionId"]) == [["total"], ["3"]]
        [info] = athena.get_query_results(QueryExecutionId=summed["QueryExecutionId"])["ResultSet"][
            "ResultSetMetadata"]["ColumnInfo"]
        assert info["Type"] == "bigint"
    finally:
        lifecycle.down(port, wipe=True)
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def test_athena_sees_the_glue_catalog(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    names = [d["Name"] for d in athena.list_databases(CatalogName="AwsDataCatalog")["DatabaseList"]]
    assert "retail" in names and "default" in names
    table = athena.get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="retail", TableName="raw")
    metadata = table["TableMetadata"]
    assert [k["Name"] for k in metadata["PartitionKeys"]] == ["year", "month", "day"]
    assert {"Name": "quantity", "Type": "bigint"} in metadata["Columns"]
    assert metadata["Parameters"]["location"] == f"s3://{BUCKET}/raw/"
    listed = athena.list_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="retail", Expression="raw*")
    assert "raw" in [t["Name"] for t in listed["TableMetadataList"]]
    with pytest.raises(ClientError) as missing:
        athena.get_table_metadata(CatalogName="AwsDataCatalog", DatabaseName="retail", TableName="nowhere")
    assert missing.value.response["Error"]["Code"] == "MetadataException"


def test_trino_arithmetic_and_times(endpoint: str, lake: dict[str, Any]):
    athena = client(endpoint, "athena")
    execution = ok(athena, "SELECT 7 / 2 AS whole, 7.0 / 2 AS half, from_unixtime(0) AS epoch, "
                           "date_trunc('month', date_parse('12/9/2010 8:26', '%m/%d/%Y %H:%i')) AS month")
    found = rows(athena, execution["QueryExecutionId"])
    assert found[1] == ["3", "3.5", "1970-01-01 00:00:00.000 UTC", "2010-12-01 00:00:00.000"]
    types = [c["Type"] for c in athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"])
             ["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
    assert [types[0], types[2], types[3]] == ["integer", "timestamp with time zone", "timestamp"]
