"""The lake's catalog and SQL: a Glue crawler over a raw lake shaped like the workbook's, then Athena.

The lake is what `stream_to_s3` writes: JSON lines under `raw/year=YYYY/month=MM/day=DD/<shard>.jsonl`.
With RETAIL_DATA pointing at the full file, its rows go by day and by shard (hash of InvoiceNo over 10
shards, as the ingest API partitions them): about 3,000 objects. Otherwise `data/sample.csv` is
replicated into 18 shard files a day (its 165 days: about 3,000 objects too, each row once per shard).

Measured on a local cloud of its own (executors glue and athena), as a polling boto3 caller sees it:
- the crawl: StartCrawler to READY (target 10 s), and the crawler's own LastRuntimeSeconds;
- Athena, median of 3 (target 2 s each): a count and a monthly revenue aggregate, over the whole lake
  and with a partition filter (one month), with DataScannedInBytes; then the same aggregate on a
  Parquet copy made with CTAS.
Run: `python -m benchmarks.lake_sql` (or `python -m benchmarks --only lake`).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers.paths import PROJECT_ROOT

BUCKET, RESULTS = "bench-lake", "s3://bench-lake-results/athena/"
SAMPLE_SHARDS, FULL_SHARDS = 18, 10
REPEAT = 3
CRAWL_TARGET_S, QUERY_TARGET_S = 10.0, 2.0
MONTHLY = """SELECT year, month, round(sum(quantity * unitprice), 2) AS revenue, count(DISTINCT invoiceno) AS invoices
             FROM {table} WHERE quantity > 0 {filter} GROUP BY year, month ORDER BY year, month"""
COUNT = "SELECT count(*) FROM {table} WHERE true {filter}"


def _line(row: dict[str, str], record_id: str) -> str:
    customer = row["CustomerID"].strip()
    price = float(row["UnitPrice"])
    return json.dumps({"InvoiceNo": row["InvoiceNo"], "StockCode": row["StockCode"],
                       "Description": row["Description"] or None, "Quantity": int(row["Quantity"]),
                       "InvoiceDate": row["InvoiceDate"], "UnitPrice": int(price) if price.is_integer() else price,
                       "CustomerID": customer[:-2] if customer.endswith(".0") else customer or None,
                       "Country": row["Country"], "record_id": record_id}, ensure_ascii=False, separators=(",", ":"))


def lake_objects(path: Path, full: bool) -> dict[str, bytes]:
    """key -> JSON lines of the raw lake built from the CSV file."""
    files: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            day = datetime.strptime(row["InvoiceDate"].strip(), "%m/%d/%Y %H:%M")
            folder = f"raw/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
            if full:
                shards = [zlib.crc32(row["InvoiceNo"].encode()) % FULL_SHARDS]
            else:
                shards = list(range(SAMPLE_SHARDS))
            for shard in shards:
                files[f"{folder}/shardId-{shard:012d}.jsonl"].append(_line(row, f"{number}#{shard}"))
    return {key: ("\n".join(lines) + "\n").encode() for key, lines in files.items()}


def _query(athena: Any, sql: str) -> tuple[float, dict[str, Any], list[list[str | None]]]:
    started = time.perf_counter()
    query_id = athena.start_query_execution(QueryString=sql, QueryExecutionContext={"Database": "bench"},
                                            ResultConfiguration={"OutputLocation": RESULTS})["QueryExecutionId"]
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if execution["Status"]["State"] != "SUCCEEDED":
        raise RuntimeError(f"{sql[:60]}: {execution['Status']}")
    rows = athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
    return elapsed, execution, [[d.get("VarCharValue") for d in r["Data"]] for r in rows]


def _measure(athena: Any, sql: str) -> dict[str, Any]:
    timings, last = [], None
    for _ in range(REPEAT):
        elapsed, execution, rows = _query(athena, sql)
        timings.append(elapsed)
        last = (execution, rows)
    execution, rows = last  # type: ignore[misc]
    median = statistics.median(timings)
    return {"median_s": round(median, 3), "first_s": round(timings[0], 3),
            "engine_ms": execution["Statistics"]["EngineExecutionTimeInMillis"],
            "scanned_bytes": execution["Statistics"]["DataScannedInBytes"], "result_rows": len(rows) - 1,
            "first_row": rows[1] if len(rows) > 1 else None, "met_target": median <= QUERY_TARGET_S}


def run() -> dict[str, Any]:
    import boto3

    from localcloud import lifecycle

    data = os.environ.get("RETAIL_DATA")
    path = (Path(data) if Path(data).is_absolute() else PROJECT_ROOT / data) if data else PROJECT_ROOT / "data/sample.csv"
    full = bool(data)
    objects = lake_objects(path, full)
    out: dict[str, Any] = {"data": str(path), "objects": len(objects),
                           "lake_bytes": sum(len(v) for v in objects.values())}
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "glue,athena"}
    with lifecycle.running(tempfile.mkdtemp(prefix="bench-lake-"), env) as endpoint:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3, glue, athena = (session.client(name, endpoint_url=endpoint) for name in ("s3", "glue", "athena"))
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket="bench-lake-results")
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda item: s3.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), objects.items()))
        out["lake_put_s"] = round(time.perf_counter() - started, 2)

        glue.create_database(DatabaseInput={"Name": "bench"})
        glue.create_crawler(Name="bench-raw", Role="arn:aws:iam::123456789012:role/bench", DatabaseName="bench",
                            Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/raw/"}]})
        started = time.perf_counter()
        glue.start_crawler(Name="bench-raw")
        while (crawler := glue.get_crawler(Name="bench-raw")["Crawler"])["State"] != "READY":
            time.sleep(0.02)
        crawl_s = time.perf_counter() - started
        metrics = glue.get_crawler_metrics(CrawlerNameList=["bench-raw"])["CrawlerMetricsList"][0]
        partitions = sum(len(page["Partitions"]) for page in
                         glue.get_paginator("get_partitions").paginate(DatabaseName="bench", TableName="raw"))
        out["crawl"] = {"seconds": round(crawl_s, 3), "last_runtime_s": metrics["LastRuntimeSeconds"],
                        "status": crawler["LastCrawl"]["Status"], "tables_created": metrics["TablesCreated"],
                        "partitions": partitions, "met_target": crawl_s <= CRAWL_TARGET_S}

        month = "AND year = '2011' AND month = '11'"
        out["count_all"] = _measure(athena, COUNT.format(table="raw", filter=""))
        out["count_one_month"] = _measure(athena, COUNT.format(table="raw", filter=month))
        out["monthly_revenue_all"] = _measure(athena, MONTHLY.format(table="raw", filter=""))
        out["monthly_revenue_one_month"] = _measure(athena, MONTHLY.format(table="raw", filter=month))
        started = time.perf_counter()
        _query(athena, "CREATE TABLE bench.raw_parquet WITH (format = 'PARQUET', "
                       "partitioned_by = ARRAY['year', 'month']) AS SELECT invoiceno, quantity, unitprice, "
                       "customerid, country, year, month FROM raw")
        out["ctas_parquet_s"] = round(time.perf_counter() - started, 3)
        out["monthly_revenue_parquet"] = _measure(athena, MONTHLY.format(table="raw_parquet", filter=""))
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
