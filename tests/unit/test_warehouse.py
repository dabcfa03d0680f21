"""The Redshift-compatible warehouse: SQL translation and COPY parsing on their own, the Python entry
in-process over moto, then boto3's `redshift-data` against a local cloud of its own (only the warehouse
executor), including a restart that keeps the data."""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.warehouse import executor as wh
from localcloud.warehouse import sql as wsql
from localcloud.executors import CloudContext
from helpers.paths import PROJECT_ROOT

ROLE = "arn:aws:iam::123456789012:role/redshift-copy"
CLUSTER = "retail-wh"
SAMPLE = PROJECT_ROOT / "data" / "sample.csv"
SALES_DDL = """
    CREATE TABLE IF NOT EXISTS public.sales (
        id BIGINT IDENTITY(1, 1),
        invoice_no VARCHAR(10) NOT NULL ENCODE zstd,
        quantity INTEGER NOT NULL,
        unit_price DECIMAL(10, 2),
        sold_at TIMESTAMP,
        country CHAR(2),
        PRIMARY KEY (id)
    ) DISTSTYLE KEY DISTKEY (invoice_no) COMPOUND SORTKEY (sold_at)"""


# --------------------------------------------------------------------------------------------------
# Pure parts


class TestTranslation:
    def test_redshift_table_attributes_are_dropped_and_types_recorded(self):
        translation = wsql.translate(SALES_DDL + "")
        [sequence, create] = translation.statements
        assert sequence.startswith('CREATE SEQUENCE IF NOT EXISTS "public"."sales_id_identity_')
        assert "DISTKEY" not in create.upper() and "ENCODE" not in create.upper() and "PRIMARY" not in create.upper()
        assert "DEFAULT NEXTVAL" in create.upper()
        schema, table, columns = translation.declared
        assert (schema, table) == ("public", "sales")
        by_name = {column.name: column for column in columns}
        assert by_name["invoice_no"].kind == "varchar" and by_name["invoice_no"].length == 10
        assert by_name["invoice_no"].not_null and by_name["id"].identity
        assert (by_name["unit_price"].precision, by_name["unit_price"].scale) == (10, 2)
        assert by_name["country"].kind == "bpchar" and by_name["country"].length == 2

    def test_column_level_distkey_sortkey_and_functions(self):
        create = wsql.translate("CREATE TABLE t (a INT DISTKEY SORTKEY, b VARCHAR(MAX)) DISTSTYLE ALL SORTKEY AUTO")
        assert create.statements == ["CREATE TABLE t (a INT, b TEXT(MAX))"]
        assert create.declared[2][1].length == wsql.MAX_VARCHAR
        query = wsql.translate("SELECT DATEPART(month, ts), GETDATE(), NVL(a, 0) FROM t").statements[0]
        assert "DATE_PART('month', ts)" in query and "CURRENT_TIMESTAMP" in query and "COALESCE" in query

    def test_statements_split_outside_quotes_and_parameters_bind_as_literals(self):
        script = "SELECT ';' AS a; -- a comment; here\nSELECT 2;;"
        assert wsql.split_statements(script) == ["SELECT ';' AS a", "-- a comment; here\nSELECT 2"]
        bound = wsql.bind_parameters("SELECT :name, x::int, ':name'", [{"name": "name", "value": "O'Hara"}])
        assert bound == "SELECT 'O''Hara', x::int, ':name'"

    def test_copy_options(self):
        command = wsql.parse_copy(
            "COPY retail.sales_raw (invoice_no, quantity) FROM 's3://b/p/' IAM_ROLE 'arn:x' FORMAT AS CSV "
            "IGNOREHEADER 1 DELIMITER '\\t' GZIP MAXERROR AS 5 DATEFORMAT 'auto' TIMEFORMAT 'MM/DD/YYYY HH24:MI' "
            "ACCEPTINVCHARS EMPTYASNULL REGION 'us-east-1' COMPUPDATE OFF")
        assert (command.schema, command.table, command.columns) == ("retail", "sales_raw", ["invoice_no", "quantity"])
        assert (command.data_format, command.delimiter, command.ignore_header) == ("csv", "\t", 1)
        assert (command.compression, command.max_error, command.accept_inv_chars) == ("gzip", 5, "?")
        assert command.empty_as_null and wsql.strptime_format(command.time_format) == "%m/%d/%Y %H:%M"
        firehose = wsql.parse_copy("COPY t (a,b) FROM 's3://b/manifests/m' CREDENTIALS 'aws_iam_role=arn:x' "
                                   "MANIFEST JSON 'auto' GZIP;")
        assert firehose.manifest and firehose.data_format == "json" and firehose.json_spec == "auto"
        with pytest.raises(wsql.SqlError, match="authorization"):
            wsql.parse_copy("COPY t FROM 's3://b/p' CSV")
        with pytest.raises(wsql.SqlError, match="BOGUS"):
            wsql.parse_copy("COPY t FROM 's3://b/p' IAM_ROLE 'x' BOGUS")

    def test_jsonpaths_become_duckdb_paths(self):
        document = json.dumps({"jsonpaths": ["$['InvoiceNo']", "$.a.b", "$.items[0]"]}).encode()
        assert wsql.redshift_jsonpaths(document, 3) == ['$."InvoiceNo"', '$."a"."b"', '$."items"[0]']
        with pytest.raises(wsql.SqlError, match="JSONPath size: 3"):
            wsql.redshift_jsonpaths(document, 2)

    def test_jdbc_urls(self):
        assert wh.parse_jdbc_url("jdbc:redshift://retail-wh.abc123.us-east-1.redshift.amazonaws.com:5439/dev") == (
            "retail-wh", "dev")
        serverless = "jdbc:redshift://wg.123456789012.us-east-1.redshift-serverless.amazonaws.com:5439/analytics"
        assert wh.parse_jdbc_url(serverless) == ("wg", "analytics")
        assert wh.jdbc_target(serverless) == {"workgroup": "wg", "database": "analytics"}
        assert wh.jdbc_target("jdbc:redshift://retail-wh:5439/dev?ssl=true") == {"cluster": "retail-wh", "database": "dev"}
        with pytest.raises(ValueError):
            wh.parse_jdbc_url("jdbc:postgresql://host:5432/db")


def test_execute_sql_runs_copy_for_other_executors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The entry Firehose uses: in-process, over moto's in-process S3 and Redshift."""
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # talk to moto in this process, not a server
    with mock_aws():
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        session.client("redshift").create_cluster(ClusterIdentifier="retail", NodeType="dc2.large",
                                                  MasterUsername="admin", MasterUserPassword="Passw0rd!")
        s3 = session.client("s3")
        s3.create_bucket(Bucket="stage")
        s3.put_object(Bucket="stage", Key="data/1.json.gz", Body=gzip.compress(b'{"a": 1, "b": "x"}\n{"a": 2}'))
        s3.put_object(Bucket="stage", Key="bad/1.json", Body=b'{"a": "one"}')
        s3.put_object(Bucket="stage", Key="manifests/m", Body=json.dumps(
            {"entries": [{"url": "s3://stage/data/1.json.gz", "mandatory": True}]}).encode())
        warehouse = wh.make_executor()
        warehouse.start(CloudContext(endpoint="http://127.0.0.1:1", port=1, state_dir=tmp_path))
        try:
            target = wh.jdbc_target("jdbc:redshift://retail.abc.us-east-1.redshift.amazonaws.com:5439/dev")
            assert warehouse.execute_sql("CREATE TABLE t (a INT NOT NULL, b VARCHAR(5))", **target) == 0
            copy = "COPY t (a, b) FROM 's3://stage/manifests/m' CREDENTIALS 'aws_iam_role=arn:x' MANIFEST JSON 'auto' GZIP"
            assert warehouse.execute_sql(copy, **target) == 2
            with pytest.raises(wh.WarehouseError, match="endpoint doesn't exist"):
                warehouse.execute_sql("SELECT 1", cluster="nope", database="dev")
            with pytest.raises(wh.WarehouseError, match=r"Load into table 't' failed\.  Check 'stl_load_errors'"):
                warehouse.execute_sql("COPY t FROM 's3://stage/bad/' IAM_ROLE 'arn:x' JSON 'auto'", **target)
        finally:
            warehouse.stop()
        assert (tmp_path / "warehouse" / "123456789012" / "us-east-1" / "cluster-retail" / "dev.duckdb").exists()


# --------------------------------------------------------------------------------------------------
# Through boto3, against a local cloud of its own


class Cloud:
    """A private local cloud with only the warehouse executor, restartable on the same port and state."""

    def __init__(self, home: Path):
        self.env = {"RETAIL_LOCALCLOUD_HOME": str(home), "RETAIL_LOCALCLOUD_EXECUTORS": "warehouse",
                    "RETAIL_WAREHOUSE_PAGE_BYTES": "4096"}
        self.port = lifecycle.free_port()
        self.endpoint = ""

    def _with_env(self, action: Callable[[], Any]) -> Any:
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            return action()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def up(self) -> None:
        self.endpoint = self._with_env(lambda: lifecycle.up(self.port))

    def down(self) -> None:
        self._with_env(lambda: lifecycle.down(self.port))

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    running = Cloud(tmp_path_factory.mktemp("warehouse-localcloud"))
    running.up()
    try:
        create_cluster(running)
        running.client("s3").create_bucket(Bucket="lake")
        yield running
    finally:
        running.down()


def create_cluster(cloud: Cloud) -> None:
    cloud.client("redshift").create_cluster(ClusterIdentifier=CLUSTER, NodeType="ra3.xlplus", MasterUsername="admin",
                                            MasterUserPassword="Passw0rd!", DBName="dev", IamRoles=[ROLE])


@pytest.fixture(scope="module")
def data(cloud: Cloud) -> Any:
    return cloud.client("redshift-data")


def run(data: Any, sql: str, database: str = "dev", **extra: Any) -> dict[str, Any]:
    """Execute, poll DescribeStatement like a boto3 caller does, return the final description."""
    target = extra.pop("target", {"ClusterIdentifier": CLUSTER})
    statement_id = data.execute_statement(Sql=sql, Database=database, **target, **extra)["Id"]
    return wait(data, statement_id)


def wait(data: Any, statement_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = data.describe_statement(Id=statement_id)
        if described["Status"] in ("FINISHED", "FAILED", "ABORTED"):
            return described
        time.sleep(0.02)
    raise AssertionError(f"statement {statement_id} did not finish")


def ok(data: Any, sql: str, **extra: Any) -> dict[str, Any]:
    described = run(data, sql, **extra)
    assert described["Status"] == "FINISHED", described.get("Error")
    return described


def rows(data: Any, sql: str, **extra: Any) -> list[list[Any]]:
    """All rows of a query, following NextToken, as plain Python values."""
    statement_id = ok(data, sql, **extra)["Id"]
    result, token = [], None
    while True:
        page = data.get_statement_result(Id=statement_id, **({"NextToken": token} if token else {}))
        result += [[None if field.get("isNull") else next(iter(field.values())) for field in record]
                   for record in page["Records"]]
        token = page.get("NextToken")
        if not token:
            return result


def put(cloud: Cloud, key: str, body: bytes) -> str:
    cloud.client("s3").put_object(Bucket="lake", Key=key, Body=body)
    return f"s3://lake/{key}"


def fresh_sales(data: Any) -> None:
    ok(data, "DROP TABLE IF EXISTS public.sales")
    ok(data, SALES_DDL)


class TestStatements:
    def test_ddl_insert_select_typed_values_and_paging(self, data: Any):
        ok(data, "DROP TABLE IF EXISTS typed")
        ok(data, "CREATE TABLE typed (n INTEGER, big BIGINT, price DECIMAL(8,2), ratio DOUBLE PRECISION, "
                 "r REAL, label VARCHAR(20), flag BOOLEAN, day DATE, at TIMESTAMP)")
        inserted = ok(data, "INSERT INTO typed VALUES (1, 9007199254740993, 12.50, 0.25, 1.5, 'one', true, "
                            "'2011-12-09', '2011-12-09 12:50:00'), (2, NULL, NULL, NULL, NULL, NULL, false, NULL, NULL)")
        assert inserted["ResultRows"] == 2 and inserted["HasResultSet"] is False
        statement_id = ok(data, "SELECT * FROM typed ORDER BY n")["Id"]
        result = data.get_statement_result(Id=statement_id)
        first, second = result["Records"]
        assert first == [{"longValue": 1}, {"longValue": 9007199254740993}, {"stringValue": "12.50"},
                         {"doubleValue": 0.25}, {"doubleValue": 1.5}, {"stringValue": "one"},
                         {"booleanValue": True}, {"stringValue": "2011-12-09"}, {"stringValue": "2011-12-09 12:50:00"}]
        assert second[1] == {"isNull": True} and second[6] == {"booleanValue": False}
        types = [(column["name"], column["typeName"]) for column in result["ColumnMetadata"]]
        assert types == [("n", "int4"), ("big", "int8"), ("price", "numeric"), ("ratio", "float8"), ("r", "float4"),
                         ("label", "varchar"), ("flag", "bool"), ("day", "date"), ("at", "timestamp")]
        assert result["ColumnMetadata"][2]["precision"] == 8 and result["ColumnMetadata"][2]["scale"] == 2

        ok(data, "INSERT INTO typed (n, label) SELECT n + 2, 'copy' FROM typed")  # INSERT ... SELECT
        for _ in range(7):
            ok(data, "INSERT INTO typed (n, label) SELECT n + (SELECT max(n) FROM typed), label FROM typed")
        big = ok(data, "SELECT n, label FROM typed ORDER BY n")
        assert big["ResultRows"] == 512
        first_page = data.get_statement_result(Id=big["Id"])
        assert first_page["TotalNumRows"] == 512 and "NextToken" in first_page and len(first_page["Records"]) < 512
        assert [row[0] for row in rows(data, "SELECT n FROM typed ORDER BY n")] == list(range(1, 513))

    def test_redshift_sql_the_course_uses(self, data: Any):
        fresh_sales(data)
        ok(data, "INSERT INTO sales (invoice_no, quantity, unit_price, sold_at, country) VALUES "
                 "('536365', 6, 2.55, '2010-12-01 08:26:00', 'GB'), ('536366', 2, 1.85, '2010-12-01 08:28:00', 'GB'), "
                 "('581587', 3, 4.95, '2011-12-09 12:50:00', 'FR')")
        result = rows(data, """
            WITH monthly AS (
                SELECT DATE_TRUNC('month', sold_at) AS month, EXTRACT(year FROM sold_at) AS year,
                       DATEPART(month, sold_at) AS m, TO_CHAR(sold_at, 'YYYY-MM') AS label,
                       SUM(quantity * unit_price) AS revenue
                FROM sales GROUP BY 1, 2, 3, 4)
            SELECT label, year, m, revenue, SUM(revenue) OVER (ORDER BY month ROWS UNBOUNDED PRECEDING) AS running,
                   GETDATE() IS NOT NULL AS now_known
            FROM monthly ORDER BY month""")
        assert result == [["2010-12", 2010, 12, "19.00", "19.00", True], ["2011-12", 2011, 12, "14.85", "33.85", True]]
        assert rows(data, "SELECT id, invoice_no FROM sales ORDER BY id") == [[1, "536365"], [2, "536366"], [3, "581587"]]
        ok(data, "CREATE OR REPLACE VIEW gb_sales AS SELECT * FROM sales WHERE country = 'GB'")
        assert rows(data, "SELECT count(*) FROM gb_sales") == [[2]]
        ok(data, "TRUNCATE sales")
        assert rows(data, "SELECT count(*) FROM sales") == [[0]]

    def test_bad_sql_fails_with_its_error(self, data: Any):
        failed = run(data, "SELECT * FROM no_such_table")
        assert failed["Status"] == "FAILED" and "no_such_table" in failed["Error"]
        assert failed["Error"].startswith("ERROR:")
        with pytest.raises(ClientError) as error:
            data.get_statement_result(Id=failed["Id"])
        assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
        typo = run(data, "SELEC 1")
        assert typo["Status"] == "FAILED" and "syntax error" in typo["Error"]

    def test_cluster_or_workgroup_is_required_and_checked(self, data: Any):
        cases = [({}, "must be specified"), ({"ClusterIdentifier": CLUSTER, "WorkgroupName": "wg1"}, "not both"),
                 ({"ClusterIdentifier": "no-such-cluster"}, "endpoint doesn't exist")]
        for target, message in cases:
            with pytest.raises(ClientError) as error:
                data.execute_statement(Sql="SELECT 1", Database="dev", **target)
            assert error.value.response["Error"]["Code"] == "ValidationException"
            assert message in error.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as missing:
            data.describe_statement(Id="00000000-0000-4000-8000-000000000000")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        # moto has no redshift-serverless: any workgroup name is accepted, with its own databases
        assert rows(data, "SELECT 40 + 2", target={"WorkgroupName": "analytics"}) == [[42]]

    def test_batch_is_one_transaction_with_sub_statement_results(self, data: Any):
        ok(data, "CREATE TABLE IF NOT EXISTS batchy (a INT)")
        good = data.batch_execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sqls=[
            "INSERT INTO batchy VALUES (1)", "SELECT count(*) AS n FROM batchy"])["Id"]
        described = wait(data, good)
        assert described["Status"] == "FINISHED" and len(described["SubStatements"]) == 2
        assert data.get_statement_result(Id=f"{good}:2")["Records"] == [[{"longValue": 1}]]
        bad = wait(data, data.batch_execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sqls=[
            "INSERT INTO batchy VALUES (2)", "INSERT INTO batchy VALUES ('x')"])["Id"])
        assert bad["Status"] == "FAILED" and bad["SubStatements"][1]["Status"] == "FAILED"
        assert rows(data, "SELECT count(*) FROM batchy") == [[1]]  # the first insert was rolled back

    def test_a_running_statement_can_be_cancelled(self, data: Any):
        slow = data.execute_statement(ClusterIdentifier=CLUSTER, Database="dev",
                                      Sql="SELECT count(*) FROM range(100000000000) a WHERE a % 7 = 3")["Id"]
        time.sleep(0.3)
        assert data.cancel_statement(Id=slow)["Status"] is True
        described = wait(data, slow)
        assert described["Status"] == "ABORTED" and described["Duration"] < 10e9
        assert rows(data, "SELECT 1") == [[1]]  # the database is usable again

    def test_parameters_list_and_cancel(self, data: Any):
        described = ok(data, "SELECT :who AS who", Parameters=[{"name": "who", "value": "it's me"}],
                       StatementName="param-check")
        assert data.get_statement_result(Id=described["Id"])["Records"] == [[{"stringValue": "it's me"}]]
        listed = data.list_statements(StatementName="param-", Status="FINISHED")["Statements"]
        assert [item["Id"] for item in listed] == [described["Id"]]
        with pytest.raises(ClientError) as error:
            data.cancel_statement(Id=described["Id"])
        assert "already in FINISHED state" in error.value.response["Error"]["Message"]


class TestCopy:
    def test_csv_with_header_delimiter_and_gzip(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        body = "invoice|qty|price|when|country\n536365|6|2.55|2010-12-01 08:26:00|GB\n536366|2|1.85||FR\n"
        source = put(cloud, "csv/pipe/part-0.csv.gz", gzip.compress(body.encode()))
        described = ok(data, f"COPY sales (invoice_no, quantity, unit_price, sold_at, country) FROM '{source}' "
                             f"IAM_ROLE '{ROLE}' CSV DELIMITER '|' IGNOREHEADER 1 GZIP")
        assert described["ResultRows"] == 2
        assert rows(data, "SELECT invoice_no, quantity, unit_price, sold_at, country FROM sales ORDER BY id") == [
            ["536365", 6, "2.55", "2010-12-01 08:26:00", "GB"], ["536366", 2, "1.85", None, "FR"]]
        assert rows(data, "SELECT filename, lines_scanned FROM stl_load_commits "
                          "WHERE query = pg_last_copy_id()") == [[source, 2]]

    def test_prefix_loads_every_object_under_it(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        for part in range(3):
            put(cloud, f"csv/prefix/part-{part}.csv", f"{part},1,1.00,,GB\n{part},2,2.00,,GB\n".encode())
        ok(data, f"COPY sales (invoice_no, quantity, unit_price, sold_at, country) FROM 's3://lake/csv/prefix/part' "
                 f"IAM_ROLE '{ROLE}' CSV")
        assert rows(data, "SELECT count(*), sum(quantity) FROM sales") == [[6, 9]]

    def test_json_auto_and_jsonpaths(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        put(cloud, "json/auto/1.json", b'{"invoice_no": "A1", "quantity": 3, "unit_price": 1.5, "country": "GB", '
                                       b'"extra": true}\n{"invoice_no": "A2", "quantity": 4, "Unit_Price": 9}')
        ok(data, f"COPY sales FROM 's3://lake/json/auto/' IAM_ROLE '{ROLE}' FORMAT AS JSON 'auto'")
        assert rows(data, "SELECT invoice_no, quantity, unit_price FROM sales ORDER BY id") == [
            ["A1", 3, "1.50"], ["A2", 4, None]]  # 'auto' matches keys case-sensitively, like Redshift
        ok(data, f"COPY sales FROM 's3://lake/json/auto/' IAM_ROLE '{ROLE}' JSON 'auto ignorecase'")
        assert rows(data, "SELECT unit_price FROM sales WHERE invoice_no = 'A2' ORDER BY id") == [[None], ["9.00"]]

        paths = put(cloud, "json/paths.json", json.dumps({"jsonpaths": [
            "$['InvoiceNo']", "$.line.Quantity", "$.line['UnitPrice']", "$.InvoiceDate"]}).encode())
        put(cloud, "json/paths/1.json", json.dumps({"InvoiceNo": "B1", "InvoiceDate": "12/1/2010 8:26",
                                                    "line": {"Quantity": 6, "UnitPrice": 2.55}}).encode())
        ok(data, f"COPY sales (invoice_no, quantity, unit_price, sold_at) FROM 's3://lake/json/paths/' "
                 f"IAM_ROLE '{ROLE}' JSON '{paths}' TIMEFORMAT 'MM/DD/YYYY HH24:MI'")
        assert rows(data, "SELECT quantity, unit_price, sold_at FROM sales WHERE invoice_no = 'B1'") == [
            [6, "2.55", "2010-12-01 08:26:00"]]

    def test_manifest_as_firehose_writes_it(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        first = put(cloud, "fh/2011/12/09/part-1.gz", gzip.compress(b'{"invoice_no":"M1","quantity":1}'))
        second = put(cloud, "fh/2011/12/09/part-2.gz", gzip.compress(b'{"invoice_no":"M2","quantity":2}'))
        put(cloud, "fh/2011/12/09/not-listed.gz", gzip.compress(b'{"invoice_no":"NO","quantity":9}'))
        manifest = put(cloud, "manifests/m-1", json.dumps({"entries": [
            {"url": first, "mandatory": True}, {"url": second, "mandatory": True},
            {"url": "s3://lake/fh/gone.gz", "mandatory": False}]}).encode())
        described = ok(data, f"COPY sales (invoice_no, quantity) FROM '{manifest}' "
                             f"CREDENTIALS 'aws_iam_role={ROLE}' MANIFEST JSON 'auto' GZIP")
        assert described["ResultRows"] == 2
        assert rows(data, "SELECT invoice_no FROM sales ORDER BY invoice_no") == [["M1"], ["M2"]]

    def test_failures_in_stl_load_errors_and_maxerror(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        body = ("invoice_no,quantity,unit_price\n"
                "G1,1,1.00\n"
                "G2,,2.00\n"              # line 3: quantity NOT NULL
                "G3,1x,3.00\n"            # line 4: bad integer
                "TOO-LONG-INVOICE,1,1\n"  # line 5: longer than VARCHAR(10)
                "G5,5,5.00\n")
        source = put(cloud, "csv/errors.csv", body.encode())
        copy = (f"COPY sales (invoice_no, quantity, unit_price) FROM '{source}' IAM_ROLE '{ROLE}' "
                f"CSV IGNOREHEADER 1")
        failed = run(data, copy)
        assert failed["Status"] == "FAILED"
        assert failed["Error"] == "Load into table 'sales' failed.  Check 'stl_load_errors' system table for details."
        assert rows(data, "SELECT count(*) FROM sales") == [[0]]  # nothing loaded
        errors = rows(data, "SELECT line_number, colname, raw_field_value, err_code, err_reason, raw_line, filename "
                            "FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number")
        assert [row[:5] for row in errors] == [
            [3, "quantity", "", 1213, "Missing data for not-null field"],
            [4, "quantity", "1x", 1207, "Invalid digit, Value 'x', Pos 1, Type: Integer"],
            [5, "invoice_no", "TOO-LONG-INVOICE", 1204, "String length exceeds DDL length"]]
        assert errors[0][5] == "G2,,2.00" and errors[0][6] == source

        within = ok(data, copy + " MAXERROR 3")
        assert within["ResultRows"] == 2
        assert rows(data, "SELECT invoice_no FROM sales ORDER BY invoice_no") == [["G1"], ["G5"]]
        assert run(data, copy + " MAXERROR 2")["Status"] == "FAILED"

    def test_files_of_one_copy_keep_their_own_lines_order_and_counts(self, cloud: Cloud, data: Any):
        """Several files are read together: each file's lines still count from its own first line (past its
        header), rows load in the manifest's file order, and an empty or header-only file loads nothing."""
        fresh_sales(data)
        bodies = ["invoice_no,quantity\nA1,1\nA2,2\nA3,x3\n", "", "invoice_no,quantity\n",
                  "invoice_no,quantity\nB1,,\nB2,5\n"]
        urls = [put(cloud, f"csv/many/{index}.csv", body.encode()) for index, body in enumerate(bodies)]
        manifest = put(cloud, "manifests/many", json.dumps({"entries": [
            {"url": url, "mandatory": True} for url in reversed(urls)]}).encode())
        copy = f"COPY sales (invoice_no, quantity) FROM '{manifest}' IAM_ROLE '{ROLE}' MANIFEST CSV IGNOREHEADER 1"
        assert ok(data, copy + " MAXERROR 5")["ResultRows"] == 3
        assert rows(data, "SELECT invoice_no FROM sales ORDER BY id") == [["B2"], ["A1"], ["A2"]]
        errors = rows(data, "SELECT filename, line_number, raw_line FROM stl_load_errors "
                            "WHERE query = pg_last_copy_id() ORDER BY filename")
        assert errors == [[urls[0], 4, "A3,x3"], [urls[3], 2, "B1,,"]]
        assert rows(data, "SELECT filename, lines_scanned FROM stl_load_commits WHERE query = pg_last_copy_id() "
                          "ORDER BY filename") == [[url, lines] for url, lines in zip(urls, (3, 0, 0, 2))]

    def test_sample_file_matches_pandas(self, cloud: Cloud, data: Any):
        expected = pd.read_csv(SAMPLE, encoding="ISO-8859-1", dtype=str)
        source = put(cloud, "raw/sample.csv", SAMPLE.read_bytes())
        ok(data, "DROP TABLE IF EXISTS sales_raw")
        ok(data, """CREATE TABLE sales_raw (invoice_no VARCHAR(10) NOT NULL, stock_code VARCHAR(20) NOT NULL,
                    description VARCHAR(64), quantity INTEGER NOT NULL, invoice_date TIMESTAMP NOT NULL,
                    unit_price DECIMAL(10,3) NOT NULL, customer_id VARCHAR(10), country VARCHAR(32))""")
        loaded = ok(data, f"COPY sales_raw FROM '{source}' IAM_ROLE '{ROLE}' CSV IGNOREHEADER 1 "
                          f"TIMEFORMAT 'MM/DD/YYYY HH24:MI' ACCEPTINVCHARS EMPTYASNULL")
        assert loaded["ResultRows"] == len(expected) == 3712
        [[count, quantity, customers, pounds]] = rows(
            data, "SELECT count(*), sum(quantity), count(customer_id), "
                  "count(CASE WHEN description LIKE '%?%' THEN 1 END) FROM sales_raw")
        assert (count, quantity) == (len(expected), expected["Quantity"].astype(int).sum())
        assert customers == expected["CustomerID"].notna().sum() and pounds >= 2  # '£' replaced by '?'
        without = run(data, f"COPY sales_raw FROM '{source}' IAM_ROLE '{ROLE}' CSV IGNOREHEADER 1 "
                            f"TIMEFORMAT 'MM/DD/YYYY HH24:MI'")
        assert without["Status"] == "FAILED"  # ISO-8859-1 '£' is not UTF-8: Redshift rejects those rows
        assert rows(data, "SELECT DISTINCT err_code FROM stl_load_errors WHERE query = pg_last_copy_id()") == [[1220]]


class TestCatalog:
    def test_list_and_describe(self, data: Any):
        fresh_sales(data)
        ok(data, "CREATE SCHEMA IF NOT EXISTS retail")
        ok(data, "CREATE TABLE IF NOT EXISTS retail.customers (customer_id VARCHAR(10) NOT NULL, country CHAR(2))")
        target = {"ClusterIdentifier": CLUSTER, "Database": "dev"}
        assert "dev" in data.list_databases(**target)["Databases"]
        assert {"public", "retail"} <= set(data.list_schemas(**target)["Schemas"])
        tables = data.list_tables(**target, SchemaPattern="retail")["Tables"]
        assert tables == [{"name": "customers", "schema": "retail", "type": "TABLE"}]
        assert {"name": "sales", "schema": "public", "type": "TABLE"} in data.list_tables(**target, TablePattern="sal%")["Tables"]
        described = data.describe_table(**target, Schema="public", Table="sales")
        columns = {column["name"]: column for column in described["ColumnList"]}
        assert described["TableName"] == "sales"
        assert (columns["invoice_no"]["typeName"], columns["invoice_no"]["length"]) == ("varchar", 10)
        assert columns["invoice_no"]["nullable"] == 0 and columns["unit_price"]["scale"] == 2
        assert rows(data, "SELECT type FROM pg_table_def WHERE tablename = 'customers' ORDER BY \"column\"") == [
            ["character(2)"], ["character varying(10)"]]
        assert rows(data, "SELECT \"table\" FROM svv_table_info WHERE schema = 'retail'") == [["customers"]]

    def test_unload_writes_to_s3(self, cloud: Cloud, data: Any):
        fresh_sales(data)
        ok(data, "INSERT INTO sales (invoice_no, quantity) VALUES ('U1', 1), ('U2', 2)")
        ok(data, f"UNLOAD ('SELECT invoice_no, quantity FROM sales WHERE invoice_no LIKE ''U%'' ORDER BY 1') "
                 f"TO 's3://lake/unload/sales_' IAM_ROLE '{ROLE}' FORMAT CSV HEADER PARALLEL OFF")
        body = cloud.client("s3").get_object(Bucket="lake", Key="unload/sales_000.csv")["Body"].read()
        assert pd.read_csv(io.BytesIO(body)).values.tolist() == [["U1", 1], ["U2", 2]]
        again = run(data, f"UNLOAD ('SELECT 1') TO 's3://lake/unload/sales_' IAM_ROLE '{ROLE}' CSV PARALLEL OFF")
        assert again["Status"] == "FAILED" and "ALLOWOVERWRITE" in again["Error"]


def _cluster(cloud: Cloud, name: str) -> None:
    cloud.client("redshift").create_cluster(ClusterIdentifier=name, NodeType="ra3.xlplus", MasterUsername="admin",
                                            MasterUserPassword="Passw0rd!", DBName="dev")


def test_a_deleted_cluster_takes_its_tables_with_it(cloud: Cloud, data: Any):
    """AWS: DeleteCluster deletes the data; a cluster created again under the same name is empty."""
    target = {"ClusterIdentifier": "doomed"}
    _cluster(cloud, "doomed")
    ok(data, "CREATE TABLE gone (a INT)", target=target)
    ok(data, "INSERT INTO gone VALUES (1), (2)", target=target)
    folder = cloud_state(cloud) / "cluster-doomed"
    assert (folder / "dev.duckdb").exists()

    cloud.client("redshift").delete_cluster(ClusterIdentifier="doomed", SkipFinalClusterSnapshot=True)
    assert not folder.exists()
    with pytest.raises(ClientError, match="endpoint doesn't exist"):
        data.execute_statement(Sql="SELECT 1", Database="dev", **target)

    _cluster(cloud, "doomed")
    described = run(data, "SELECT count(*) FROM gone", target=target)
    assert described["Status"] == "FAILED" and "gone" in described["Error"]
    assert rows(data, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                target=target) == [[0]]
    cloud.client("redshift").delete_cluster(ClusterIdentifier="doomed", SkipFinalClusterSnapshot=True)


def test_a_final_snapshot_keeps_the_data_and_a_restore_brings_it_back(cloud: Cloud, data: Any):
    """AWS: 'set SkipFinalClusterSnapshot to false and specify a name for FinalClusterSnapshotIdentifier.
    You can later restore this snapshot to resume using the cluster.'"""
    redshift = cloud.client("redshift")
    _cluster(cloud, "paused")
    ok(data, "CREATE TABLE kept_in_snapshot (a INT)", target={"ClusterIdentifier": "paused"})
    ok(data, "INSERT INTO kept_in_snapshot VALUES (5), (6)", target={"ClusterIdentifier": "paused"})
    redshift.delete_cluster(ClusterIdentifier="paused", SkipFinalClusterSnapshot=False,
                            FinalClusterSnapshotIdentifier="paused-final")
    assert not (cloud_state(cloud) / "cluster-paused").exists()

    redshift.restore_from_cluster_snapshot(ClusterIdentifier="resumed", SnapshotIdentifier="paused-final")
    assert rows(data, "SELECT sum(a) FROM kept_in_snapshot", target={"ClusterIdentifier": "resumed"}) == [[11]]

    redshift.delete_cluster_snapshot(SnapshotIdentifier="paused-final")
    assert not (cloud_state(cloud) / "snapshot-paused-final").exists()
    redshift.delete_cluster(ClusterIdentifier="resumed", SkipFinalClusterSnapshot=True)
    assert not any(path.name.startswith("snapshot-rs:resumed") for path in cloud_state(cloud).iterdir())


def cloud_state(cloud: Cloud) -> Path:
    """The warehouse folder of the test cloud's account and region."""
    state = Path(cloud.env["RETAIL_LOCALCLOUD_HOME"])
    found = list(state.glob("**/warehouse/123456789012/us-east-1"))
    assert len(found) == 1, found
    return found[0]


def test_zz_data_survives_a_restart(cloud: Cloud, data: Any):
    """Last in the module: the local cloud stops and starts on the same state folder (moto forgets the
    cluster, as it forgets everything, so it is created again; the warehouse files remain)."""
    ok(data, "CREATE TABLE IF NOT EXISTS kept (a INT)")
    ok(data, "INSERT INTO kept VALUES (7), (8)")
    cloud.down()
    cloud.up()
    create_cluster(cloud)
    assert rows(cloud.client("redshift-data"), "SELECT sum(a) FROM kept") == [[15]]
