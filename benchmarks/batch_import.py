"""The batch path on the full file: the client cuts it into daily CSVs under incoming/, the deployed batch
Lambda (lambdas/batch_import) imports them into the serving table's invoice documents and the warehouse.

On a local cloud of its own: the serving table, the ledger table, the warehouse cluster and its landing
table are created, the files uploaded (timed apart), then the function is invoked (RequestResponse, as the
schedule's event would run it) until nothing is left under incoming/; the import time is from the first
invoke to the last answer, with the CPU seconds the local cloud and the function's worker used meanwhile
(the machine's load average is reported too: other work on the 2 cores stretches the wall time), and the
seconds the function says it spent staging the files, in the COPY and moving them. Then every count is
reconciled: rows = stored + quarantined, invoice documents' lines and the warehouse's rows against pandas.
The file is RETAIL_DATA, else data/full/data.csv, else the shared copy of the full file, else the sample
(said so in the result). Target: the full file in 30 s.
Run: `python -m benchmarks --only batch` (or `python -m benchmarks.batch_import`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from helpers.paths import PROJECT_ROOT

TARGET_S = 30.0
CLUSTER, ROLE = "bench-wh", "arn:aws:iam::123456789012:role/bench-copy"
BUCKET, TABLE, LEDGER, FUNCTION = "bench-lake", "bench-sales", "bench-ledger", "bench-batch-import"
RAW_DDL = """CREATE TABLE raw_sales (
    record_id VARCHAR(40) NOT NULL, invoice_no VARCHAR(10) NOT NULL, stock_code VARCHAR(20) NOT NULL,
    description VARCHAR(256), quantity INTEGER NOT NULL, invoice_date TIMESTAMP NOT NULL,
    unit_price DECIMAL(12,3) NOT NULL, customer_id VARCHAR(10), country VARCHAR(40) NOT NULL)"""


def data_file() -> tuple[Path, str]:
    """The file to import and where it came from."""
    candidates = [(os.environ.get("RETAIL_DATA"), "RETAIL_DATA"), (PROJECT_ROOT / "data/full/data.csv", "data/full"),
                  (os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"),
                   "shared full file")]
    for path, origin in candidates:
        if path and Path(path).is_file():
            return Path(path), origin
    return PROJECT_ROOT / "data/sample.csv", "sample (the full file is not on this machine)"


def _sql(data: Any, sql: str) -> list[list[Any]]:
    statement = data.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sql=sql)["Id"]
    while (described := data.describe_statement(Id=statement))["Status"] not in ("FINISHED", "FAILED", "ABORTED"):
        time.sleep(0.02)
    if described["Status"] != "FINISHED":
        raise RuntimeError(f"{sql[:60]}: {described.get('Error')}")
    if not described.get("HasResultSet"):
        return []
    return [[next(iter(v.values())) for v in r] for r in data.get_statement_result(Id=statement)["Records"]]


def _scan_totals(dynamodb: Any) -> tuple[int, int, Decimal]:
    """(documents, lines, Σ total_amount) of the serving table (projection: no lines read)."""
    documents, lines, amount, start = 0, 0, Decimal(0), None
    while True:
        page = dynamodb.scan(TableName=TABLE, ProjectionExpression="line_count, total_amount",
                             **({"ExclusiveStartKey": start} if start else {}))
        for item in page["Items"]:
            documents += 1
            lines += int(item["line_count"]["N"])
            amount += Decimal(item["total_amount"]["N"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return documents, lines, amount


def run() -> dict[str, Any]:
    import boto3

    from benchmarks.pipeline_e2e import cpu_seconds
    from helpers import bulk_files, dataset, packaging, pipelines
    from localcloud import lifecycle

    path, origin = data_file()
    started = time.perf_counter()
    parts = bulk_files.cut(path, by="day")
    cut_s = time.perf_counter() - started
    raw = dataset.read_raw(path)
    expected_amount = sum((Decimal(q) * Decimal(p) for q, p in zip(raw["Quantity"], raw["UnitPrice"])), Decimal(0))
    home = tempfile.mkdtemp(prefix="bench-batch-")
    with lifecycle.running(home, {"RETAIL_LOCALCLOUD_SNAPSHOT_S": "0"}) as endpoint:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        client = lambda name, **kw: session.client(name, endpoint_url=endpoint, **kw)  # noqa: E731
        s3, dynamodb, data = client("s3"), client("dynamodb"), client("redshift-data")
        awslambda = client("lambda", config=__import__("botocore.config").config.Config(read_timeout=900))
        s3.create_bucket(Bucket=BUCKET)
        dynamodb.create_table(TableName=TABLE, **pipelines.table_schema())
        dynamodb.create_table(TableName=LEDGER, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "object", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "object", "AttributeType": "S"}])
        client("redshift").create_cluster(ClusterIdentifier=CLUSTER, NodeType="ra3.xlplus", MasterUsername="admin",
                                          MasterUserPassword="Passw0rd!", DBName="dev", IamRoles=[ROLE])
        _sql(data, RAW_DDL)
        role = client("iam").create_role(RoleName=FUNCTION, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        client("iam").put_role_policy(RoleName=FUNCTION, PolicyName="least-privilege", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [  # the local cloud enforces IAM, as AWS does
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                 "Resource": f"arn:aws:s3:::{BUCKET}/*"},
                {"Effect": "Allow", "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:GetItem",
                                               "dynamodb:PutItem", "dynamodb:UpdateItem"],
                 "Resource": [f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}" for name in (TABLE, LEDGER)]},
                {"Effect": "Allow", "Action": "redshift-data:*", "Resource": "*"},
                {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))
        layer = awslambda.publish_layer_version(  # the record contract, as notebook 02 publishes it
            LayerName=f"{FUNCTION}-records", Content={"ZipFile": packaging.package_layer_folder("records")},
            CompatibleRuntimes=["python3.11"])["LayerVersionArn"]
        awslambda.create_function(
            FunctionName=FUNCTION, Runtime="python3.11", Role=role, Handler="app.handler", Timeout=900, MemorySize=3008,
            Code={"ZipFile": packaging.package(PROJECT_ROOT / "lambdas/batch_import")}, Layers=[layer],
            Environment={"Variables": {"LAKE_BUCKET": BUCKET, "TABLE_NAME": TABLE, "LEDGER_TABLE": LEDGER,
                                       "WAREHOUSE_CLUSTER": CLUSTER, "COPY_ROLE_ARN": ROLE}})
        started = time.perf_counter()
        bulk_files.upload(BUCKET, parts, s3=s3)
        upload_s = time.perf_counter() - started

        server_pid = lifecycle.health(urlsplit(endpoint).port).pid
        cpu_before = cpu_seconds(server_pid)
        started, invocations, answers = time.perf_counter(), 0, []
        while s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("KeyCount", 0) and invocations < 20:
            answer = awslambda.invoke(FunctionName=FUNCTION, Payload=json.dumps(
                {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}).encode())
            invocations += 1
            payload = json.loads(answer["Payload"].read())
            if answer.get("FunctionError"):
                raise RuntimeError(f"batch import failed: {payload}")
            answers.append(payload)
        import_s = time.perf_counter() - started
        cpu_after = cpu_seconds(server_pid)
        cpu = ({key: round(cpu_after[key] - cpu_before.get(key, 0.0), 1) for key in ("server", "lambda_workers")}
               if cpu_before and cpu_after else None)

        phases = {name: round(sum(answer.get("seconds", {}).get(name, 0.0) for answer in answers), 2)
                  for name in ("stage", "copy", "move")}
        files = [f for answer in answers for f in answer["files"] if f["status"] == "loaded"]
        stored, quarantined = sum(f["stored"] for f in files), sum(f["quarantined"] for f in files)
        documents, lines, amount = _scan_totals(dynamodb)
        [[wh_rows, wh_amount]] = _sql(data, "SELECT COUNT(*), SUM(quantity * unit_price) FROM raw_sales")
    reconciled = (stored + quarantined == len(raw) and lines == stored and int(wh_rows) == stored
                  and len(files) == len(parts))
    return {
        "file": str(path), "source": origin, "rows": len(raw), "files": len(parts), "cut_s": round(cut_s, 2),
        "upload_s": round(upload_s, 2), "import_s": round(import_s, 2), "invocations": invocations,
        "import_phases_s": phases,
        "rows_per_s": round(len(raw) / import_s), "cpu_s_during_import": cpu,
        "load_average_1m": round(os.getloadavg()[0], 2), "stored": stored, "quarantined": quarantined,
        "invoice_documents": documents, "document_lines": lines, "warehouse_rows": int(wh_rows),
        "amount_documents": str(amount), "amount_warehouse": str(wh_amount), "amount_pandas": str(expected_amount),
        "reconciled": reconciled and amount == expected_amount,
        "target_s": TARGET_S, "met_target": reconciled and import_s <= TARGET_S,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
