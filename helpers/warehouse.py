"""The warehouse side of the workbook (notebooks 06 and 08): SQL through the `redshift-data` API,
the course's table and the star schema, Firehose from the Kinesis stream into them, the BI queries.

Everything goes through boto3 (`config.client`), so the same calls run on the local cloud (a moto
Redshift cluster whose SQL the warehouse executor runs on DuckDB) and on AWS (Redshift Serverless,
created only with `allow_aws_create`). The Data API is asynchronous: `execute` submits, polls
DescribeStatement and raises `WarehouseSqlError` with Redshift's message and the SQL when it fails;
`query` returns a typed pandas DataFrame.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import pandas as pd
from botocore.exceptions import ClientError

from helpers import config, dataset, deploy
from helpers.iam import KINESIS_READ_ACTIONS, MANAGED_TAG, allow
from helpers.resources import Names, names as resource_names

DATABASE = "dev"
ADMIN_USER = "retail_admin"
# The local cluster's password: moto stores it, nothing checks it. AWS uses a Secrets Manager secret.
LOCAL_PASSWORD = "Local-only-Passw0rd"
PROJECT_TAG = {"project": "retail-pipelines"}
POLL_FIRST_S, POLL_MAX_S = 0.02, 1.0
DONE = ("FINISHED", "FAILED", "ABORTED")

# Tables ------------------------------------------------------------------------------------------
COURSE_TABLE = "course_transactions"
RAW_TABLE = "raw_sales"
FACT_TABLE = "fact_sales_line"
DIMENSIONS = ("dim_date", "dim_customer", "dim_product")
LOAD_TABLE = "load_source"
JSON_FIELDS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
               "Country")

# The course's table as its click-path builds it: every column NOT NULL, the date kept as text, the
# price a float, the customer an integer. Guest sales (no CustomerID) cannot load into it.
COURSE_DDL = f"""
CREATE TABLE IF NOT EXISTS public.{COURSE_TABLE} (
    invoiceno   VARCHAR(25)  NOT NULL,
    stockcode   VARCHAR(25)  NOT NULL,
    description VARCHAR(300) NOT NULL,
    quantity    INTEGER      NOT NULL,
    invoicedate VARCHAR(25)  NOT NULL,
    unitprice   FLOAT        NOT NULL,
    customerid  INTEGER      NOT NULL,
    country     VARCHAR(25)  NOT NULL
)"""
COURSE_JSONPATHS = {"jsonpaths": [f"$['{field}']" for field in JSON_FIELDS]}

# The landing table of the better design: typed, the timestamp parsed at COPY, optional fields
# nullable (guest sales and cancellations land too), and the record_id that makes loads idempotent.
RAW_COLUMNS = ("record_id", "invoice_no", "stock_code", "description", "quantity", "invoice_date", "unit_price",
               "customer_id", "country")
RAW_DDL = f"""
CREATE TABLE IF NOT EXISTS public.{RAW_TABLE} (
    record_id    VARCHAR(40)   NOT NULL,
    invoice_no   VARCHAR(10)   NOT NULL,
    stock_code   VARCHAR(20)   NOT NULL,
    description  VARCHAR(256),
    quantity     INTEGER       NOT NULL,
    invoice_date TIMESTAMP     NOT NULL,
    unit_price   DECIMAL(12,3) NOT NULL,
    customer_id  VARCHAR(10),
    country      VARCHAR(40)   NOT NULL
) DISTSTYLE EVEN SORTKEY (invoice_date)"""
RAW_JSONPATHS = {"jsonpaths": ["$['record_id']"] + [f"$['{field}']" for field in JSON_FIELDS]}
TIMEFORMAT = "MM/DD/YYYY HH24:MI"  # the file's "12/1/2010 8:26"

STAR_DDL = (
    """CREATE TABLE IF NOT EXISTS public.dim_date (
        date_key      INTEGER     NOT NULL,  -- yyyymmdd
        calendar_date DATE        NOT NULL,
        year          SMALLINT    NOT NULL,
        quarter       SMALLINT    NOT NULL,
        month         SMALLINT    NOT NULL,
        month_label   CHAR(7)     NOT NULL,  -- 2011-12
        day_of_month  SMALLINT    NOT NULL,
        day_of_week   SMALLINT    NOT NULL,  -- 0 = Sunday, as Redshift's DATE_PART(dow, ...)
        day_name      VARCHAR(9)  NOT NULL,
        PRIMARY KEY (date_key)
    ) DISTSTYLE ALL SORTKEY (date_key)""",
    """CREATE TABLE IF NOT EXISTS public.dim_customer (
        customer_id    VARCHAR(10) NOT NULL,
        country        VARCHAR(40) NOT NULL,  -- the country of most of its lines
        first_purchase TIMESTAMP   NOT NULL,
        last_purchase  TIMESTAMP   NOT NULL,
        PRIMARY KEY (customer_id)
    ) DISTSTYLE ALL""",
    """CREATE TABLE IF NOT EXISTS public.dim_product (
        stock_code  VARCHAR(20)  NOT NULL,
        description VARCHAR(256),             -- its most frequent description
        is_product  BOOLEAN      NOT NULL,    -- false for postage, fees, manual lines, vouchers
        PRIMARY KEY (stock_code)
    ) DISTSTYLE ALL""",
    f"""CREATE TABLE IF NOT EXISTS public.{FACT_TABLE} (
        record_id       VARCHAR(40)   NOT NULL,
        invoice_no      VARCHAR(10)   NOT NULL,
        invoiced_at     TIMESTAMP     NOT NULL,
        date_key        INTEGER       NOT NULL REFERENCES dim_date (date_key),
        hour            SMALLINT      NOT NULL,
        stock_code      VARCHAR(20)   NOT NULL REFERENCES dim_product (stock_code),
        customer_id     VARCHAR(10),            -- NULL: a guest sale
        country         VARCHAR(40)   NOT NULL,
        quantity        INTEGER       NOT NULL,
        unit_price      DECIMAL(12,3) NOT NULL,
        revenue         DECIMAL(18,3) NOT NULL, -- quantity x unit_price, negative for cancellations
        is_cancellation BOOLEAN       NOT NULL, -- C invoices: kept, flagged
        is_adjustment   BOOLEAN       NOT NULL, -- A invoices (bad debt)
        PRIMARY KEY (record_id)
    ) DISTKEY (customer_id) SORTKEY (invoiced_at)""",
    f"""CREATE TABLE IF NOT EXISTS public.{LOAD_TABLE} (
        source_id VARCHAR(80)  NOT NULL,  -- sha256 of the file : rows read
        file_name VARCHAR(256) NOT NULL,
        rows      BIGINT       NOT NULL,
        loaded_by VARCHAR(40)  NOT NULL
    )""",
)

# INSERT ... SELECT from the landing table, one transaction. One fact row per record_id, whatever
# the landing table holds: Firehose delivers at least once on AWS (a retried COPY can repeat a batch).
STAR_BUILD = (
    f"DELETE FROM {FACT_TABLE}",
    "DELETE FROM dim_date",
    "DELETE FROM dim_customer",
    "DELETE FROM dim_product",
    f"""INSERT INTO {FACT_TABLE}
        SELECT record_id, invoice_no, invoice_date,
               CAST(TO_CHAR(invoice_date, 'YYYYMMDD') AS INTEGER), CAST(EXTRACT(hour FROM invoice_date) AS SMALLINT),
               stock_code, NULLIF(customer_id, ''), country, quantity, unit_price,
               CAST(quantity * unit_price AS DECIMAL(18,3)),
               LEFT(invoice_no, 1) = 'C', LEFT(invoice_no, 1) = 'A'
        FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY invoice_date) AS copy_number
              FROM {RAW_TABLE}) landed
        WHERE copy_number = 1""",
    f"""INSERT INTO dim_date
        SELECT DISTINCT date_key, CAST(invoiced_at AS DATE), CAST(EXTRACT(year FROM invoiced_at) AS SMALLINT),
               CAST(EXTRACT(quarter FROM invoiced_at) AS SMALLINT), CAST(EXTRACT(month FROM invoiced_at) AS SMALLINT),
               TO_CHAR(invoiced_at, 'YYYY-MM'), CAST(EXTRACT(day FROM invoiced_at) AS SMALLINT),
               CAST(DATE_PART(dow, invoiced_at) AS SMALLINT),
               CASE CAST(DATE_PART(dow, invoiced_at) AS INTEGER) WHEN 0 THEN 'Sunday' WHEN 1 THEN 'Monday'
                    WHEN 2 THEN 'Tuesday' WHEN 3 THEN 'Wednesday' WHEN 4 THEN 'Thursday' WHEN 5 THEN 'Friday'
                    ELSE 'Saturday' END
        FROM {FACT_TABLE}""",
    f"""INSERT INTO dim_customer
        SELECT customer_id, country, first_purchase, last_purchase
        FROM (SELECT customer_id, country,
                     MIN(invoiced_at) OVER (PARTITION BY customer_id) AS first_purchase,
                     MAX(invoiced_at) OVER (PARTITION BY customer_id) AS last_purchase,
                     ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY lines DESC, country) AS rn
              FROM (SELECT customer_id, country, MIN(invoiced_at) AS invoiced_at, COUNT(*) AS lines
                    FROM {FACT_TABLE} WHERE customer_id IS NOT NULL GROUP BY customer_id, country) by_country
             ) ranked
        WHERE rn = 1""",
    f"""INSERT INTO dim_product
        SELECT stock_code, description, stock_code SIMILAR TO '[0-9]{{5}}[A-Za-z]*'
        FROM (SELECT l.stock_code, r.description,
                     ROW_NUMBER() OVER (PARTITION BY l.stock_code ORDER BY COUNT(r.description) DESC, r.description)
                         AS rn
              FROM {FACT_TABLE} l JOIN {RAW_TABLE} r ON r.record_id = l.record_id
              GROUP BY l.stock_code, r.description) ranked
        WHERE rn = 1""",
)


class WarehouseSqlError(RuntimeError):
    """A statement ended FAILED or ABORTED: Redshift's message, and the SQL that caused it."""

    def __init__(self, status: str, error: str, sql: str):
        self.status, self.error, self.sql = status, error, sql
        short = sql.strip() if len(sql.strip()) < 600 else sql.strip()[:600] + " ..."
        super().__init__(f"{status}: {error}\n--- SQL ---\n{short}")


@dataclass(frozen=True)
class Warehouse:
    """Where SQL runs: a provisioned cluster (local) or a Serverless workgroup (AWS)."""

    kind: Literal["cluster", "workgroup"]
    name: str
    database: str
    jdbc_url: str
    copy_role_arn: str
    admin_secret_arn: str | None = None

    @property
    def target(self) -> dict[str, str]:
        """The Data API's keywords naming this warehouse."""
        key = "ClusterIdentifier" if self.kind == "cluster" else "WorkgroupName"
        return {key: self.name, "Database": self.database}


# -------------------------------------------------------------------------------------------------
# SQL through the Data API


def execute(wh: Warehouse, sql: str, *, parameters: dict[str, Any] | None = None,
            timeout_s: float = 600.0) -> dict[str, Any]:
    """Run one statement and wait for it; its final DescribeStatement (ResultRows, HasResultSet...)."""
    data = config.client("redshift-data")
    extra: dict[str, Any] = {}
    if parameters:
        extra["Parameters"] = [{"name": k, "value": str(v)} for k, v in parameters.items()]
    statement_id = data.execute_statement(Sql=sql, **wh.target, **extra)["Id"]
    return _wait(statement_id, sql, timeout_s)


def execute_batch(wh: Warehouse, sqls: Sequence[str], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run statements as one transaction (BatchExecuteStatement): all of them, or none."""
    data = config.client("redshift-data")
    statement_id = data.batch_execute_statement(Sqls=list(sqls), **wh.target)["Id"]
    return _wait(statement_id, ";\n".join(sqls), timeout_s)


def _wait(statement_id: str, sql: str, timeout_s: float) -> dict[str, Any]:
    """Poll DescribeStatement with a growing pause (fast for quick statements, cheap for long ones)."""
    data = config.client("redshift-data")
    deadline, pause = time.monotonic() + timeout_s, POLL_FIRST_S
    while True:
        described = data.describe_statement(Id=statement_id)
        if described["Status"] in DONE:
            break
        if time.monotonic() > deadline:
            data.cancel_statement(Id=statement_id)
            raise TimeoutError(f"statement still {described['Status']} after {timeout_s:.0f} s:\n{sql[:600]}")
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_S)
    if described["Status"] != "FINISHED":
        failed = [s for s in described.get("SubStatements", []) if s.get("Status") == "FAILED"]
        failed_sql = failed[0].get("QueryString", sql) if failed else sql
        raise WarehouseSqlError(described["Status"], described.get("Error", ""), failed_sql)
    return described


def query(wh: Warehouse, sql: str, *, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame typed from the result's column metadata (all pages)."""
    described = execute(wh, sql, parameters=parameters)
    if not described.get("HasResultSet"):
        raise ValueError(f"the statement returned no rows to read:\n{sql[:300]}")
    data = config.client("redshift-data")
    pages, token = [], None
    while True:
        page = data.get_statement_result(Id=described["Id"], **({"NextToken": token} if token else {}))
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            break
    return frame(pages[0]["ColumnMetadata"], [record for page in pages for record in page["Records"]])


def scalar(wh: Warehouse, sql: str) -> Any:
    """The single value of a one-row, one-column query (None for NULL)."""
    result = query(wh, sql)
    if result.shape != (1, 1):
        raise ValueError(f"expected one value, got {result.shape[0]} rows x {result.shape[1]} columns")
    value = result.iat[0, 0]
    return None if pd.isna(value) else value.item() if hasattr(value, "item") else value


_INTEGERS = {"int2", "int4", "int8"}
_FLOATS = {"float4", "float8", "numeric", "float", "double precision", "real"}
_TIMES = {"timestamp", "timestamptz", "date"}


def _field(value: dict[str, Any]) -> Any:
    if value.get("isNull"):
        return None
    if "blobValue" in value:
        return base64.b64decode(value["blobValue"]) if isinstance(value["blobValue"], str) else value["blobValue"]
    return next(iter(value.values()))


def frame(columns: list[dict[str, Any]], records: list[list[dict[str, Any]]]) -> pd.DataFrame:
    """Data API records as a DataFrame: integers Int64, numeric/float float64, booleans boolean,
    dates and timestamps datetime64, text string (decimals arrive as text and are converted)."""
    names = [column["name"] for column in columns]
    result = pd.DataFrame([[_field(value) for value in record] for record in records], columns=names, dtype=object)
    for column, name in zip(columns, names):
        kind = column.get("typeName", "").lower()
        values = result[name]
        if kind in _INTEGERS:
            result[name] = pd.array(values, dtype="Int64")
        elif kind in _FLOATS:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            whole = kind == "numeric" and not column.get("scale") and (numbers.dropna() % 1 == 0).all()
            result[name] = numbers.astype("Int64") if whole else numbers  # SUM(integer) is an integer
        elif kind == "bool":
            result[name] = values.astype("boolean")
        elif kind in _TIMES:
            result[name] = pd.to_datetime(values)
        else:
            result[name] = values.astype("string")
    return result


# -------------------------------------------------------------------------------------------------
# IAM: the two service roles of this part, least privilege


FIREHOSE_S3_ACTIONS = ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
                       "s3:ListBucketMultipartUploads", "s3:PutObject"]


def firehose_policy(names: Names, streams: Iterable[str]) -> dict[str, Any]:
    """What the delivery streams do: read the one Kinesis stream, stage files in the one bucket,
    write their own error logs. Firehose's COPY reads the staged files with the same role."""
    log_groups = [f"arn:aws:logs:{names.region}:{names.account}:log-group:/aws/kinesisfirehose/{s}:*" for s in streams]
    return {"Version": "2012-10-17", "Statement": [
        allow(KINESIS_READ_ACTIONS, [names.stream_arn], "ReadTheStream"),
        allow(FIREHOSE_S3_ACTIONS, [names.staging_bucket_arn, f"{names.staging_bucket_arn}/*"], "StageForCopy"),
        allow(["logs:PutLogEvents"], log_groups, "OwnErrorLogs"),
    ]}


def warehouse_policy(names: Names) -> dict[str, Any]:
    """What Redshift's COPY needs from S3 for the bulk loads: read the staging bucket, nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        allow(["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"],
              [names.staging_bucket_arn, f"{names.staging_bucket_arn}/*"], "ReadStagedFiles"),
    ]}


def trust_policy(services: Sequence[str], external_id: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": list(services) if len(services) > 1
                                                                  else services[0]}, "Action": "sts:AssumeRole"}
    if external_id:  # Firehose passes the account id: no other account's stream can use the role
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def ensure_service_role(name: str, trust: dict[str, Any], policy: dict[str, Any], purpose: str) -> str:
    """A role trusted by a service with exactly one inline policy; its ARN. Idempotent, tagged so the
    teardown (helpers.iam.workbook_roles) finds it."""
    config.require_create_allowed(f"IAM role {name}")
    iam = config.client("iam")
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description=purpose,
                              Tags=[MANAGED_TAG])["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="least-privilege", PolicyDocument=json.dumps(policy))
    return arn


def ensure_firehose_role(names: Names | None = None) -> str:
    names = names or resource_names()
    return ensure_service_role(
        names.firehose_role, trust_policy(["firehose.amazonaws.com"], names.account),
        firehose_policy(names, [names.firehose_stream, names.firehose_course_stream]),
        "Firehose: Kinesis stream -> S3 staging -> Redshift COPY")


def ensure_warehouse_role(names: Names | None = None) -> str:
    names = names or resource_names()
    return ensure_service_role(
        names.warehouse_role, trust_policy(["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]),
        warehouse_policy(names), "Redshift COPY: read the staging bucket")


# -------------------------------------------------------------------------------------------------
# The warehouse itself


def ensure_warehouse(names: Names | None = None, *, timeout_s: float = 1200.0) -> Warehouse:
    """The warehouse, created if missing: a Redshift cluster on the local cloud, a Redshift Serverless
    namespace + workgroup on AWS (waited for until AVAILABLE; only with allow_aws_create)."""
    names = names or resource_names()
    role_arn = ensure_warehouse_role(names)
    if config.settings().is_local:
        return _ensure_cluster(names.warehouse_cluster, role_arn)
    return _ensure_serverless(names.warehouse_cluster, role_arn, timeout_s)


def _ensure_cluster(name: str, role_arn: str) -> Warehouse:
    redshift = config.client("redshift")
    try:
        cluster = redshift.describe_clusters(ClusterIdentifier=name)["Clusters"][0]
    except redshift.exceptions.ClusterNotFoundFault:
        config.require_create_allowed(f"Redshift cluster {name}")
        redshift.create_cluster(
            ClusterIdentifier=name, ClusterType="single-node", NodeType="ra3.xlplus", DBName=DATABASE,
            MasterUsername=ADMIN_USER, MasterUserPassword=LOCAL_PASSWORD, IamRoles=[role_arn],
            PubliclyAccessible=False, Tags=[{"Key": k, "Value": v} for k, v in PROJECT_TAG.items()])
        redshift.get_waiter("cluster_available").wait(ClusterIdentifier=name,
                                                      WaiterConfig={"Delay": 5, "MaxAttempts": 240})
        cluster = redshift.describe_clusters(ClusterIdentifier=name)["Clusters"][0]
    endpoint = cluster["Endpoint"]
    return Warehouse("cluster", name, cluster.get("DBName") or DATABASE,
                     f"jdbc:redshift://{endpoint['Address']}:{endpoint['Port']}/{cluster.get('DBName') or DATABASE}",
                     role_arn)


def _ensure_serverless(name: str, role_arn: str, timeout_s: float) -> Warehouse:
    """Namespace (database, admin password managed by Secrets Manager, the COPY role) + workgroup.

    Firehose reaches Redshift over the internet: the workgroup is publicly accessible and its security
    group must allow Firehose's CIDR for the region on port 5439 (see the Firehose developer guide,
    "Grant Firehose access to an Amazon Redshift Serverless destination"); that rule is not created here.
    """
    serverless = config.client("redshift-serverless")
    tags = [{"key": k, "value": v} for k, v in PROJECT_TAG.items()]
    try:
        namespace = serverless.get_namespace(namespaceName=name)["namespace"]
    except serverless.exceptions.ResourceNotFoundException:
        config.require_create_allowed(f"Redshift Serverless namespace {name}")
        namespace = serverless.create_namespace(
            namespaceName=name, dbName=DATABASE, adminUsername=ADMIN_USER, manageAdminPassword=True,
            iamRoles=[role_arn], defaultIamRoleArn=role_arn, tags=tags)["namespace"]
    try:
        workgroup = serverless.get_workgroup(workgroupName=name)["workgroup"]
    except serverless.exceptions.ResourceNotFoundException:
        config.require_create_allowed(f"Redshift Serverless workgroup {name} (billed per RPU-hour while it runs)")
        workgroup = serverless.create_workgroup(workgroupName=name, namespaceName=name, baseCapacity=8,
                                                publiclyAccessible=True, tags=tags)["workgroup"]
    deadline = time.monotonic() + timeout_s
    while workgroup["status"] != "AVAILABLE" or namespace["status"] != "AVAILABLE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redshift Serverless {name}: workgroup {workgroup['status']}, "
                               f"namespace {namespace['status']} after {timeout_s:.0f} s")
        time.sleep(15)
        workgroup = serverless.get_workgroup(workgroupName=name)["workgroup"]
        namespace = serverless.get_namespace(namespaceName=name)["namespace"]
    endpoint = workgroup["endpoint"]
    return Warehouse("workgroup", name, namespace.get("dbName") or DATABASE,
                     f"jdbc:redshift://{endpoint['address']}:{endpoint['port']}/{namespace.get('dbName') or DATABASE}",
                     role_arn, namespace.get("adminPasswordSecretArn"))


def ensure_tables(wh: Warehouse) -> list[str]:
    """The course's table, the landing table and the star schema (CREATE ... IF NOT EXISTS)."""
    statements = [COURSE_DDL, RAW_DDL, *STAR_DDL]
    execute_batch(wh, statements)
    return [COURSE_TABLE, RAW_TABLE, *DIMENSIONS, FACT_TABLE, LOAD_TABLE]


def table_counts(wh: Warehouse, tables: Sequence[str]) -> pd.Series:
    """Rows per table, in one query."""
    union = " UNION ALL ".join(f"SELECT '{t}' AS table_name, COUNT(*) AS row_count FROM {t}" for t in tables)
    counts = query(wh, union)
    return counts.set_index("table_name")["row_count"].reindex(list(tables)).astype("int64")


def put_jsonpaths(names: Names, table: str, document: dict[str, Any]) -> str:
    """Upload a jsonpaths file to the staging bucket; its s3:// URL for COPY ... JSON '<url>'."""
    key = f"jsonpaths/{table}.json"
    config.client("s3").put_object(Bucket=names.staging_bucket, Key=key, Body=json.dumps(document, indent=1).encode(),
                                   ContentType="application/json")
    return f"s3://{names.staging_bucket}/{key}"


def build_star(wh: Warehouse) -> pd.Series:
    """Rebuild the dimensions and the fact from the landing table in one transaction; rows per table."""
    execute_batch(wh, STAR_BUILD)
    return table_counts(wh, [*DIMENSIONS, FACT_TABLE])


# -------------------------------------------------------------------------------------------------
# Records on the stream, as notebook 02's ingest API puts them


def stream_records(raw: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of `dataset.read_raw` in the ingest API's canonical shape: texts as text, Quantity an
    integer, UnitPrice a JSON number, the file's date text, CustomerID/Description a string or null,
    plus the dataset's record_id."""
    record_ids = dataset.parse(raw)["record_id"].tolist()
    records = []
    for row, record_id in zip(raw[list(dataset.COLUMNS)].itertuples(index=False), record_ids):
        price = float(row.UnitPrice)
        records.append({
            "InvoiceNo": row.InvoiceNo, "StockCode": row.StockCode, "Description": row.Description or None,
            "Quantity": int(row.Quantity), "InvoiceDate": row.InvoiceDate,
            "UnitPrice": int(price) if price.is_integer() and "." not in row.UnitPrice else price,
            "CustomerID": row.CustomerID or None, "Country": row.Country, "record_id": record_id,
        })
    return records


def put_on_stream(stream: str, records: Sequence[dict[str, Any]], *, batch: int = 500) -> int:
    """PutRecords in batches of 500, partitioned by InvoiceNo, failed entries retried; records put."""
    kinesis = config.client("kinesis")
    put = 0
    for first in range(0, len(records), batch):
        pending = [{"Data": json.dumps(r, ensure_ascii=False).encode("utf-8"), "PartitionKey": r["InvoiceNo"]}
                   for r in records[first:first + batch]]
        for attempt in range(8):
            answer = kinesis.put_records(StreamName=stream, Records=pending)
            failed = [entry for entry, result in zip(pending, answer["Records"]) if result.get("ErrorCode")]
            put += len(pending) - len(failed)
            if not failed:
                break
            pending = failed
            time.sleep(0.1 * 2 ** attempt)
        else:
            raise RuntimeError(f"{len(pending)} records could not be put on {stream} (throughput exceeded)")
    return put


# -------------------------------------------------------------------------------------------------
# Firehose: Kinesis -> S3 staging -> COPY


@dataclass(frozen=True)
class Delivery:
    """What a Firehose delivery stream to the warehouse is made of."""

    name: str
    table: str
    columns: Sequence[str]
    copy_options: str
    prefix: str  # under the staging bucket
    buffer_interval_s: int = 60
    buffer_size_mb: int = 5
    retry_s: int = 3600  # RetryOptions.DurationInSeconds: how long Firehose retries a failing COPY


def delivery_configuration(delivery: Delivery, wh: Warehouse, names: Names, role_arn: str) -> dict[str, Any]:
    """CreateDeliveryStream's RedshiftDestinationConfiguration."""
    destination: dict[str, Any] = {
        "RoleARN": role_arn,
        "ClusterJDBCURL": wh.jdbc_url,
        "CopyCommand": {"DataTableName": delivery.table, "DataTableColumns": ",".join(delivery.columns),
                        "CopyOptions": delivery.copy_options},
        "RetryOptions": {"DurationInSeconds": delivery.retry_s},
        "S3Configuration": {
            "RoleARN": role_arn, "BucketARN": names.staging_bucket_arn, "Prefix": delivery.prefix,
            "BufferingHints": {"SizeInMBs": delivery.buffer_size_mb, "IntervalInSeconds": delivery.buffer_interval_s},
            "CompressionFormat": "UNCOMPRESSED",
        },
        "CloudWatchLoggingOptions": {"Enabled": True, "LogGroupName": f"/aws/kinesisfirehose/{delivery.name}",
                                     "LogStreamName": "DestinationDelivery"},
    }
    if wh.admin_secret_arn:  # Redshift Serverless: the credentials stay in Secrets Manager
        destination["SecretsManagerConfiguration"] = {"Enabled": True, "SecretARN": wh.admin_secret_arn,
                                                      "RoleARN": role_arn}
    else:
        destination.update(Username=ADMIN_USER, Password=LOCAL_PASSWORD)
    return destination


def ensure_delivery_stream(delivery: Delivery, wh: Warehouse, *, stream_arn: str, role_arn: str,
                           names: Names | None = None, timeout_s: float = 600.0) -> str:
    """A delivery stream from the Kinesis stream to a warehouse table, ACTIVE; returns its ARN.

    Firehose cannot change its source, and a delivery stream whose source stream was re-created would
    read a stream that is gone: those, and a changed table / COPY / buffering definition, are
    re-created (Firehose reads a new source from its latest position on AWS)."""
    names = names or resource_names()
    firehose = config.client("firehose")
    wanted = delivery_configuration(delivery, wh, names, role_arn)
    try:
        described = firehose.describe_delivery_stream(DeliveryStreamName=delivery.name)["DeliveryStreamDescription"]
    except firehose.exceptions.ResourceNotFoundException:
        described = None
    if described is not None and not _same_delivery(described, wanted, stream_arn):
        config.require_create_allowed(f"re-created Firehose delivery stream {delivery.name}")
        delete_delivery_stream(delivery.name)
        described = None
    if described is None:
        config.require_create_allowed(f"Firehose delivery stream {delivery.name}")
        _create_with_role_retry(lambda: firehose.create_delivery_stream(
            DeliveryStreamName=delivery.name, DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": role_arn},
            RedshiftDestinationConfiguration=wanted,
            Tags=[{"Key": k, "Value": v} for k, v in PROJECT_TAG.items()]))
    return _wait_delivery_active(delivery.name, timeout_s)["DeliveryStreamARN"]


def _same_delivery(described: dict[str, Any], wanted: dict[str, Any], stream_arn: str) -> bool:
    source = (described.get("Source") or {}).get("KinesisStreamSourceDescription") or {}
    if source.get("KinesisStreamARN") != stream_arn:
        return False
    stream = config.client("kinesis").describe_stream_summary(StreamName=stream_arn.rsplit("/", 1)[-1])
    if stream["StreamDescriptionSummary"]["StreamCreationTimestamp"] > described["CreateTimestamp"]:
        return False  # the source stream was deleted and created again after this delivery stream
    destination = (described.get("Destinations") or [{}])[0].get("RedshiftDestinationDescription") or {}
    staging = destination.get("S3DestinationDescription") or {}
    return (destination.get("CopyCommand") == wanted["CopyCommand"]
            and destination.get("ClusterJDBCURL") == wanted["ClusterJDBCURL"]
            and staging.get("BufferingHints") == wanted["S3Configuration"]["BufferingHints"]
            and (staging.get("Prefix") or "") == wanted["S3Configuration"]["Prefix"]
            and (destination.get("RetryOptions") or {}).get("DurationInSeconds", 3600)
            == wanted["RetryOptions"]["DurationInSeconds"])


def _create_with_role_retry(create: Callable[[], Any], seconds: float = deploy.ROLE_PROPAGATION_SECONDS * 2) -> Any:
    """A role created seconds ago may not be assumable by Firehose yet: retry that refusal only."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return create()
        except ClientError as error:
            message = error.response["Error"].get("Message", "")
            if error.response["Error"]["Code"] != "InvalidArgumentException" or "role" not in message.lower() \
                    or time.monotonic() > deadline:
                raise
            time.sleep(deploy.ROLE_RETRY_DELAY)


def _wait_delivery_active(name: str, timeout_s: float) -> dict[str, Any]:
    firehose = config.client("firehose")
    deadline = time.monotonic() + timeout_s
    while True:
        described = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        status = described["DeliveryStreamStatus"]
        if status == "ACTIVE":
            return described
        if status.endswith("FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"Firehose delivery stream {name} is {status}: "
                               f"{described.get('FailureDescription', {}).get('Details', '')}")
        time.sleep(5)


def delete_delivery_stream(name: str, timeout_s: float = 600.0) -> bool:
    """Delete a delivery stream and wait until it is gone. False when it did not exist."""
    firehose = config.client("firehose")
    try:
        firehose.delete_delivery_stream(DeliveryStreamName=name)
    except firehose.exceptions.ResourceNotFoundException:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            firehose.describe_delivery_stream(DeliveryStreamName=name)
        except firehose.exceptions.ResourceNotFoundException:
            return True
        time.sleep(2)
    raise TimeoutError(f"Firehose delivery stream {name} still exists after {timeout_s:.0f} s")


def course_delivery(names: Names, jsonpaths_url: str, buffer_interval_s: int = 60) -> Delivery:
    """The course's delivery stream: its table and jsonpaths, nothing tolerated, no retries (a batch
    Redshift refuses goes straight to errors/manifests/ in the staging bucket)."""
    return Delivery(names.firehose_course_stream, COURSE_TABLE,
                    ("invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice", "customerid",
                     "country"),
                    f"JSON '{jsonpaths_url}'", "course/", buffer_interval_s, retry_s=0)


def landing_delivery(names: Names, jsonpaths_url: str, buffer_interval_s: int = 60, max_error: int = 1000) -> Delivery:
    """The better delivery stream: the typed landing table, timestamps parsed at COPY; a row Redshift
    refuses goes to stl_load_errors instead of failing the batch (up to MAXERROR per batch)."""
    return Delivery(names.firehose_stream, RAW_TABLE, RAW_COLUMNS,
                    f"JSON '{jsonpaths_url}' TIMEFORMAT '{TIMEFORMAT}' MAXERROR {max_error}",
                    "landing/", buffer_interval_s, retry_s=3600)


def deliver(name: str, *, interval_s: int = 60, until: Callable[[], bool] | None = None,
            timeout_s: float = 900.0) -> dict[str, Any]:
    """Get what the delivery stream has read delivered now. Local: the flush route, repeated until the
    source is drained (no waiting for the buffer interval). AWS: wait for the interval, then poll
    `until()` (e.g. "the table has the rows") with a timeout. Returns the summed local flush reports."""
    total: dict[str, Any] = {"Records": 0, "Objects": [], "Manifests": [], "Copied": [], "ErrorManifests": [],
                             "Errors": []}
    current = config.settings()
    if current.is_local:
        from localcloud.firehose import executor as firehose

        while True:
            report = firehose.flush(current.endpoint_url, name, account=config.account_id(), region=current.region)
            for key, value in total.items():
                total[key] = value + report.get(key, 0 if isinstance(value, int) else [])
            if not report.get("Records"):
                return total
    time.sleep(interval_s)
    deadline = time.monotonic() + timeout_s
    while until is not None and not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: not delivered after {interval_s + timeout_s:.0f} s")
        time.sleep(15)
    return total


def copy_mark(wh: Warehouse) -> int:
    """The newest query id in stl_load_errors: errors of later COPYs are this run's."""
    return int(scalar(wh, "SELECT COALESCE(MAX(query), 0) FROM stl_load_errors") or 0)


def load_errors(wh: Warehouse, *, after_query: int, file_prefix: str) -> pd.DataFrame:
    """stl_load_errors rows of the COPYs after `after_query` that read files under `file_prefix`."""
    return query(wh, f"""
        SELECT query, TRIM(filename) AS filename, line_number, TRIM(colname) AS colname, TRIM(type) AS type,
               TRIM(raw_field_value) AS raw_field_value, err_code, TRIM(err_reason) AS err_reason, raw_line
        FROM stl_load_errors
        WHERE query > {int(after_query)} AND filename LIKE '{file_prefix}%'
        ORDER BY query, filename, line_number""")


# -------------------------------------------------------------------------------------------------
# Loads for the BI notebook: reuse what is there, else a bulk COPY of the file


def source_id(path: Path, nrows: int | None) -> str:
    return f"{dataset.file_sha256(path)[:40]}:{nrows if nrows is not None else 'all'}"


def record_source(wh: Warehouse, path: Path, nrows: int | None, rows: int, loaded_by: str) -> None:
    """Note which file (and how many of its rows) the star schema holds."""
    execute_batch(wh, [f"DELETE FROM {LOAD_TABLE}",
                       f"INSERT INTO {LOAD_TABLE} VALUES ('{source_id(path, nrows)}', "
                       f"'{path.name.replace(chr(39), '')}', {int(rows)}, '{loaded_by}')"])


def loaded_source(wh: Warehouse) -> tuple[str, int] | None:
    """(source id, rows) the star schema was built from, if it still holds exactly those rows."""
    found = query(wh, f"SELECT source_id, rows, (SELECT COUNT(*) FROM {FACT_TABLE}) AS facts FROM {LOAD_TABLE}")
    if len(found) != 1 or int(found["facts"].iloc[0]) != int(found["rows"].iloc[0]):
        return None
    return str(found["source_id"].iloc[0]), int(found["rows"].iloc[0])


def bulk_csv(path: Path, nrows: int | None = None) -> tuple[bytes, int]:
    """The file's rows as gzipped UTF-8 CSV in the landing table's column order (texts as published,
    record_id added); and the row count."""
    raw = dataset.read_raw(path, nrows=nrows)
    out = pd.DataFrame({"record_id": dataset.parse(raw)["record_id"]})
    for column in dataset.COLUMNS:
        out[column] = raw[column]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return gzip.compress(buffer.getvalue().encode("utf-8"), compresslevel=1), len(out)


def bulk_load(wh: Warehouse, path: Path, nrows: int | None = None, names: Names | None = None) -> int:
    """Load a file into the landing table with one COPY from S3 (replacing its rows), rebuild the star
    schema, note the source; rows loaded. The fast path for the BI notebook and the full-file test."""
    names = names or resource_names()
    deploy.ensure_bucket(names.staging_bucket)
    ensure_tables(wh)
    body, rows = bulk_csv(path, nrows)
    key = f"bulk/{hashlib.sha256(source_id(path, nrows).encode()).hexdigest()[:16]}/sales.csv.gz"
    config.client("s3").put_object(Bucket=names.staging_bucket, Key=key, Body=body)
    execute_batch(wh, [
        f"DELETE FROM {RAW_TABLE}",
        f"COPY {RAW_TABLE} ({', '.join(RAW_COLUMNS)}) FROM 's3://{names.staging_bucket}/{key}' "
        f"IAM_ROLE '{wh.copy_role_arn}' CSV IGNOREHEADER 1 GZIP TIMEFORMAT '{TIMEFORMAT}' EMPTYASNULL",
    ])
    loaded = int(scalar(wh, f"SELECT COUNT(*) FROM {RAW_TABLE}"))
    if loaded != rows:
        raise RuntimeError(f"COPY loaded {loaded} of {rows} rows from {path.name}")
    build_star(wh)
    record_source(wh, path, nrows, rows, "bulk COPY")
    return rows


def ensure_sales(wh: Warehouse, path: Path, nrows: int | None = None, names: Names | None = None) -> str:
    """Make the star schema hold exactly this file's (first `nrows`) rows: reuse what notebook 06 or an
    earlier run loaded when it is the same source, else bulk-load. Says which it did."""
    ensure_tables(wh)
    wanted = source_id(path, nrows)
    found = loaded_source(wh)
    if found is not None and found[0] == wanted:
        return f"reused: the warehouse already holds {found[1]:,} rows of {path.name}"
    rows = bulk_load(wh, path, nrows, names)
    return f"loaded: {rows:,} rows of {path.name} with one COPY from S3"


# -------------------------------------------------------------------------------------------------
# The BI questions, as named SQL on the star schema. "Sales" exclude cancellations and bad-debt
# adjustments (what was sold); revenue totals say which rows they include.

SALES = "NOT f.is_cancellation AND NOT f.is_adjustment"

BI_QUERIES: dict[str, str] = {
    "revenue_totals": f"""
        SELECT COUNT(*) AS lines,
               ROUND(SUM(revenue), 2) AS revenue_all,
               ROUND(SUM(CASE WHEN NOT is_cancellation THEN revenue ELSE 0 END), 2) AS revenue_excl_cancellations,
               COUNT(DISTINCT invoice_no) AS invoices, COUNT(DISTINCT customer_id) AS customers
        FROM {FACT_TABLE}""",
    "revenue_by_month": f"""
        SELECT d.month_label AS month,
               ROUND(SUM(f.revenue), 2) AS revenue_all,
               ROUND(SUM(CASE WHEN NOT f.is_cancellation THEN f.revenue ELSE 0 END), 2) AS revenue_excl_cancellations,
               COUNT(*) AS rows
        FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key
        GROUP BY d.month_label ORDER BY d.month_label""",
    "sales_by_hour": f"""
        SELECT f.hour, COUNT(DISTINCT f.invoice_no) AS invoices, ROUND(SUM(f.revenue), 2) AS revenue,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.invoice_no), 2) AS avg_invoice_value,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.date_key), 2) AS avg_revenue_per_trading_day
        FROM {FACT_TABLE} f WHERE {SALES}
        GROUP BY f.hour ORDER BY f.hour""",
    "sales_by_weekday": f"""
        SELECT d.day_of_week, d.day_name, COUNT(DISTINCT f.date_key) AS trading_days,
               COUNT(DISTINCT f.invoice_no) AS invoices, ROUND(SUM(f.revenue), 2) AS revenue,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.date_key), 2) AS avg_revenue_per_day,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.invoice_no), 2) AS avg_invoice_value
        FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key WHERE {SALES}
        GROUP BY d.day_of_week, d.day_name ORDER BY d.day_of_week""",
    "sales_by_month": f"""
        SELECT d.month_label AS month, COUNT(DISTINCT f.date_key) AS trading_days,
               COUNT(DISTINCT f.invoice_no) AS invoices, ROUND(SUM(f.revenue), 2) AS revenue,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.date_key), 2) AS avg_revenue_per_day,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.invoice_no), 2) AS avg_invoice_value
        FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key WHERE {SALES}
        GROUP BY d.month_label ORDER BY d.month_label""",
    "sales_by_year": f"""
        SELECT d.year, COUNT(DISTINCT d.month_label) AS months, COUNT(DISTINCT f.date_key) AS trading_days,
               COUNT(DISTINCT f.invoice_no) AS invoices, ROUND(SUM(f.revenue), 2) AS revenue,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT d.month_label), 2) AS avg_revenue_per_month,
               ROUND(SUM(f.revenue) / COUNT(DISTINCT f.date_key), 2) AS avg_revenue_per_day
        FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key WHERE {SALES}
        GROUP BY d.year ORDER BY d.year""",
    **{f"top_product_by_{period}": f"""
        SELECT {period}, stock_code, description, quantity
        FROM (SELECT {column} AS {period}, f.stock_code, p.description, SUM(f.quantity) AS quantity,
                     ROW_NUMBER() OVER (PARTITION BY {column} ORDER BY SUM(f.quantity) DESC, f.stock_code) AS rn
              FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key
                   JOIN dim_product p ON p.stock_code = f.stock_code
              WHERE {SALES} AND p.is_product
              GROUP BY {column}, f.stock_code, p.description) ranked
        WHERE rn = 1 ORDER BY {period}""" for period, column in
       (("hour", "f.hour"), ("month", "d.month_label"), ("year", "d.year"))},
    "top_invoices": f"""
        SELECT f.invoice_no, MIN(f.invoiced_at) AS invoiced_at, MIN(f.customer_id) AS customer_id,
               MIN(f.country) AS country, COUNT(*) AS lines, SUM(f.quantity) AS quantity,
               ROUND(SUM(f.revenue), 2) AS value
        FROM {FACT_TABLE} f WHERE {SALES}
        GROUP BY f.invoice_no ORDER BY value DESC, f.invoice_no LIMIT 10""",
    "customer_rfm": f"""
        WITH per_customer AS (
            SELECT f.customer_id,
                   DATEDIFF(day, MAX(f.invoiced_at), (SELECT MAX(invoiced_at) FROM {FACT_TABLE})) AS recency_days,
                   COUNT(DISTINCT f.invoice_no) AS frequency, ROUND(SUM(f.revenue), 2) AS monetary
            FROM {FACT_TABLE} f WHERE {SALES} AND f.customer_id IS NOT NULL
            GROUP BY f.customer_id),
        scored AS (
            SELECT *, NTILE(4) OVER (ORDER BY recency_days DESC, customer_id) AS r,
                      NTILE(4) OVER (ORDER BY frequency, customer_id) AS f,
                      NTILE(4) OVER (ORDER BY monetary, customer_id) AS m
            FROM per_customer)
        SELECT customer_id, recency_days, frequency, monetary, r, f, m,
               CASE WHEN r >= 3 AND f >= 3 THEN 'champions'
                    WHEN f >= 3 THEN 'loyal, slipping'
                    WHEN r = 4 AND f <= 2 THEN 'new or occasional'
                    WHEN r <= 2 AND m >= 3 THEN 'big spenders at risk'
                    WHEN r <= 2 THEN 'lost'
                    ELSE 'occasional' END AS segment
        FROM scored ORDER BY customer_id""",
    "repeat_rate": f"""
        SELECT COUNT(*) AS customers, SUM(CASE WHEN invoices > 1 THEN 1 ELSE 0 END) AS repeat_customers,
               ROUND(100.0 * SUM(CASE WHEN invoices > 1 THEN 1 ELSE 0 END) / COUNT(*), 1) AS repeat_rate_pct
        FROM (SELECT f.customer_id, COUNT(DISTINCT f.invoice_no) AS invoices
              FROM {FACT_TABLE} f WHERE {SALES} AND f.customer_id IS NOT NULL GROUP BY f.customer_id) c""",
    "country_mix": f"""
        SELECT f.country, COUNT(DISTINCT f.customer_id) AS customers, COUNT(DISTINCT f.invoice_no) AS invoices,
               ROUND(SUM(f.revenue), 2) AS revenue,
               ROUND(100.0 * SUM(f.revenue) / (SELECT SUM(revenue) FROM {FACT_TABLE} f WHERE {SALES}), 2) AS share_pct
        FROM {FACT_TABLE} f WHERE {SALES}
        GROUP BY f.country ORDER BY revenue DESC, f.country""",
    "cancellations_by_month": f"""
        SELECT d.month_label AS month,
               COUNT(DISTINCT CASE WHEN f.is_cancellation THEN f.invoice_no END) AS cancelled_invoices,
               ROUND(-SUM(CASE WHEN f.is_cancellation THEN f.revenue ELSE 0 END), 2) AS cancelled_value,
               ROUND(SUM(CASE WHEN {SALES} THEN f.revenue ELSE 0 END), 2) AS sales_value,
               ROUND(100.0 * -SUM(CASE WHEN f.is_cancellation THEN f.revenue ELSE 0 END)
                     / NULLIF(SUM(CASE WHEN {SALES} THEN f.revenue ELSE 0 END), 0), 1) AS cancelled_pct
        FROM {FACT_TABLE} f JOIN dim_date d ON d.date_key = f.date_key
        GROUP BY d.month_label ORDER BY d.month_label""",
    "most_cancelled_products": f"""
        SELECT f.stock_code, p.description, COUNT(DISTINCT f.invoice_no) AS cancellations,
               -SUM(f.quantity) AS quantity, ROUND(-SUM(f.revenue), 2) AS value
        FROM {FACT_TABLE} f JOIN dim_product p ON p.stock_code = f.stock_code
        WHERE f.is_cancellation
        GROUP BY f.stock_code, p.description ORDER BY value DESC, f.stock_code LIMIT 10""",
}


def run_bi_queries(wh: Warehouse, only: Iterable[str] | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every BI query (or `only` those): results by name, and seconds per query as a caller sees them."""
    results, seconds = {}, {}
    for name in only or BI_QUERIES:
        started = time.perf_counter()
        results[name] = query(wh, BI_QUERIES[name])
        seconds[name] = time.perf_counter() - started
    return results, seconds


# -------------------------------------------------------------------------------------------------
# Teardown (notebook 99): what this part builds beyond deploy.teardown's streams and buckets


def teardown(names: Names | None = None) -> dict[str, list[str]]:
    """Delete the delivery streams and the warehouse (cluster, or workgroup + namespace). The staging
    bucket and the two roles are found by deploy.teardown / iam.workbook_roles by prefix and tag."""
    names = names or resource_names()
    removed: dict[str, list[str]] = {"delivery_streams": [], "warehouse": []}
    for stream in (names.firehose_stream, names.firehose_course_stream):
        if delete_delivery_stream(stream):
            removed["delivery_streams"].append(stream)
    if config.settings().is_local:
        redshift = config.client("redshift")
        try:
            redshift.delete_cluster(ClusterIdentifier=names.warehouse_cluster, SkipFinalClusterSnapshot=True)
            removed["warehouse"].append(names.warehouse_cluster)
        except redshift.exceptions.ClusterNotFoundFault:
            pass
        return removed
    serverless = config.client("redshift-serverless")
    try:
        serverless.delete_workgroup(workgroupName=names.warehouse_cluster)
        removed["warehouse"].append(f"workgroup {names.warehouse_cluster}")
        while True:
            serverless.get_workgroup(workgroupName=names.warehouse_cluster)
            time.sleep(10)
    except serverless.exceptions.ResourceNotFoundException:
        pass
    try:
        serverless.delete_namespace(namespaceName=names.warehouse_cluster)
        removed["warehouse"].append(f"namespace {names.warehouse_cluster}")
    except serverless.exceptions.ResourceNotFoundException:
        pass
    return removed


# -------------------------------------------------------------------------------------------------
# The BI report: charts as PNG files and one HTML page that shows them


def save_figure(figure: Any, report_dir: Path, name: str) -> Path:
    """Save a matplotlib figure as `<report_dir>/<name>.png` (no timestamp in the file's metadata)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / f"{name}.png"
    figure.savefig(target, metadata={"Software": None})
    return target


def write_report(report_dir: Path, title: str, sections: Sequence[tuple[str, str, pd.DataFrame | None]],
                 intro: str = "") -> Path:
    """`<report_dir>/index.html`: per section a heading, its chart (`<name>.png`, linked next to the
    page) and optionally a small table, so people look rather than read."""
    import html

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
             "img{max-width:100%}table{border-collapse:collapse;font-size:0.85em}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>" if intro else ""]
    for heading, image, table in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><img src='{html.escape(image)}.png' alt='{html.escape(heading)}'>")
        if table is not None:
            parts.append(table.to_html(index=False, float_format=lambda x: f"{x:,.2f}", na_rep=""))
    parts.append("</body></html>")
    target = report_dir / "index.html"
    report_dir.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
