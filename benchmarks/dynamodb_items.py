"""What the local cloud's own CPU costs for the serving table's two reads and its bulk write, by invoice size.

The serving table, created with the schema of the function that writes it (one document per invoice
with its `lines`, a GSI1 index of the customer's invoices projecting their totals), on a local cloud of
its own with only the journal's executor. For invoices of LINES lines: GetItem (the query API's
`GET /invoices/{n}`) and a Query of 20 invoices of one customer through GSI1
(`GET /customers/{id}/invoices`). Reported per call: the server process's CPU (user + system, from
/proc, over CALLS calls) and the wall time seen by a boto3 client (which includes botocore parsing the
answer: what a Lambda function pays too). And a BatchWriteItem of 25 such documents (what the stream and
batch writers send): the local cloud parses the request, builds and measures every item.

Run: `python -m benchmarks --only dynamodb` (or `python -m benchmarks.dynamodb_items`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Callable

LINES = (10, 100, 700)  # the file's median invoice has 10 lines, 2.6% have 100 or more, the largest 1,114
CALLS = 60
CUSTOMER_INVOICES = 40  # the customer's invoices in the index (the query reads a page of 20)


def _line(n: int) -> dict[str, Any]:
    return {"M": {"record_id": {"S": f"{n:016x}5a9f0c1d2e3b4a59"}, "StockCode": {"S": "85123A"},
                  "Description": {"S": "WHITE HANGING HEART T-LIGHT HOLDER"}, "InvoiceDate": {"S": "12/1/2010 8:26"},
                  "Quantity": {"N": "6"}, "UnitPrice": {"N": "2.55"}, "amount": {"N": "15.3"}}}


def _document(invoice: str, customer: str, lines: int, minute: int) -> dict[str, Any]:
    return {"PK": {"S": f"INVOICE#{invoice}"}, "SK": {"S": "INVOICE"}, "InvoiceNo": {"S": invoice},
            "GSI1PK": {"S": f"CUSTOMER#{customer}"}, "GSI1SK": {"S": f"INVOICE#2011-12-01T08:{minute:02d}#{invoice}"},
            "CustomerID": {"S": customer}, "Country": {"S": "United Kingdom"}, "invoice_type": {"S": "sale"},
            "InvoiceDate": {"S": "12/1/2011 8:26"}, "invoice_time": {"S": f"2011-12-01T08:{minute:02d}"},
            "total_amount": {"N": str(round(15.3 * lines, 2))}, "total_quantity": {"N": str(6 * lines)},
            "line_count": {"N": str(lines)}, "lines": {"L": [_line(n) for n in range(lines)]}}


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(pid: int, call: Callable[[], Any]) -> dict[str, float]:
    for _ in range(5):
        call()
    cpu, started = _cpu_s(pid), time.perf_counter()
    for _ in range(CALLS):
        call()
    return {"server_cpu_ms": round(1000 * (_cpu_s(pid) - cpu) / CALLS, 2),
            "client_wall_ms": round(1000 * (time.perf_counter() - started) / CALLS, 2)}


def run() -> dict[str, Any]:
    import boto3

    from helpers import pipelines
    from localcloud import lifecycle

    if not os.path.exists("/proc/self/stat"):
        return {"skipped": "needs /proc to read the server's CPU time"}
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence", "RETAIL_LOCALCLOUD_FASTPATH": "on"}
    with lifecycle.running(tempfile.mkdtemp(prefix="bench-dynamodb-"), env) as endpoint:
        pid = lifecycle.health(int(endpoint.rsplit(":", 1)[1])).pid
        client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_table(TableName="serving", **pipelines.table_schema())  # the serving table, GSI1 and all
        result: dict[str, Any] = {"calls": CALLS}
        for lines in LINES:
            customer = str(10000 + lines)
            for n in range(CUSTOMER_INVOICES):
                client.put_item(TableName="serving", Item=_document(f"{lines:04d}{n:02d}", customer, lines, n % 60))
            key = {"PK": {"S": f"INVOICE#{lines:04d}00"}, "SK": {"S": "INVOICE"}}
            size = len(json.dumps(client.get_item(TableName="serving", Key=key)["Item"]))
            batch = {"serving": [{"PutRequest": {"Item": _document(f"{lines:04d}{n:02d}", customer, lines, n % 60)}}
                                 for n in range(25)]}
            result[f"{lines}_lines"] = {
                "item_json_kb": round(size / 1024, 1),
                "get_item": _measure(pid, lambda key=key: client.get_item(TableName="serving", Key=key)),
                "query_20_of_customer": _measure(pid, lambda customer=customer: client.query(
                    TableName="serving", IndexName="GSI1", KeyConditionExpression="GSI1PK = :c", Limit=20,
                    ScanIndexForward=False, ExpressionAttributeValues={":c": {"S": f"CUSTOMER#{customer}"}})),
                "batch_write_25": _measure(pid, lambda batch=batch: client.batch_write_item(RequestItems=batch)),
            }
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
