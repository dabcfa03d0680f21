"""helpers.warehouse: Data API results as typed frames, clear SQL errors, least-privilege roles, the
stream records notebook 02's API would put, Firehose -> landing table -> star schema end to end on the
session's local cloud, the BI queries against pandas, and the published figures on the full file."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from helpers import config, dataset, deploy, resources
from helpers import warehouse as wh_
from helpers.paths import PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA") or PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv")
SAMPLE = dataset.DATA_DIR / "sample.csv"


# -------------------------------------------------------------------------------------------------
# Pure parts


def test_frame_types_values_from_column_metadata():
    columns = [{"name": n, "typeName": t, "scale": s} for n, t, s in (
        ("n", "int8", 0), ("price", "numeric", 2), ("total", "numeric", 0), ("ratio", "float8", 0),
        ("flag", "bool", 0), ("at", "timestamp", 0), ("label", "varchar", 0))]
    records = [
        [{"longValue": 1}, {"stringValue": "12.50"}, {"stringValue": "7"}, {"doubleValue": 0.5},
         {"booleanValue": True}, {"stringValue": "2011-12-09 12:50:00"}, {"stringValue": "x"}],
        [{"isNull": True}] * 7,
    ]
    result = wh_.frame(columns, records)
    assert result.dtypes.astype(str).tolist() == ["Int64", "float64", "Int64", "float64", "boolean",
                                                   "datetime64[us]", "string"]
    assert result.iloc[0].tolist()[:5] == [1, 12.5, 7, 0.5, True]
    assert result.iloc[1].isna().all()


def test_roles_are_scoped_to_this_workbooks_resources():
    names = resources.Names("retail", "eu-west-1", "111122223333")
    policy = wh_.firehose_policy(names, [names.firehose_stream])
    resources_held = {r for statement in policy["Statement"] for r in statement["Resource"]}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert "*" not in resources_held and not any(a.endswith("*") for a in actions)
    assert names.stream_arn in resources_held and f"{names.staging_bucket_arn}/*" in resources_held
    assert not {"kinesis:PutRecord", "s3:DeleteObject", "redshift:*"} & actions
    trust = wh_.trust_policy(["firehose.amazonaws.com"], names.account)["Statement"][0]
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "111122223333"}}
    copy_actions = {a for s in wh_.warehouse_policy(names)["Statement"] for a in s["Action"]}
    assert copy_actions == {"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"}


def test_delivery_configuration_follows_the_firehose_api():
    names = resources.Names("retail", "us-east-1", "123456789012")
    local = wh_.Warehouse("cluster", "retail-warehouse", "dev", "jdbc:redshift://retail-warehouse.x:5439/dev", "arn:r")
    delivery = wh_.landing_delivery(names, "s3://b/jsonpaths/raw_sales.json", buffer_interval_s=120)
    config_ = wh_.delivery_configuration(delivery, local, names, "arn:aws:iam::123456789012:role/fh")
    assert config_["CopyCommand"]["DataTableColumns"] == ",".join(wh_.RAW_COLUMNS)
    assert "TIMEFORMAT 'MM/DD/YYYY HH24:MI'" in config_["CopyCommand"]["CopyOptions"]
    assert config_["S3Configuration"]["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 120}
    assert config_["Username"] == wh_.ADMIN_USER and "SecretsManagerConfiguration" not in config_
    serverless = wh_.Warehouse("workgroup", "retail-warehouse", "dev", "jdbc:redshift://w:5439/dev", "arn:r", "arn:secret")
    config_ = wh_.delivery_configuration(delivery, serverless, names, "arn:fh")
    assert config_["SecretsManagerConfiguration"]["SecretARN"] == "arn:secret" and "Password" not in config_
    import botocore.session

    shape = botocore.session.get_session().get_service_model("firehose").shape_for("RedshiftDestinationConfiguration")
    assert set(config_) <= set(shape.members)


def test_stream_records_have_the_ingest_apis_shape(monkeypatch: pytest.MonkeyPatch):
    """The records 06 puts itself are byte-for-byte what notebook 02's API puts on the stream."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import importlib.util

    spec = importlib.util.spec_from_file_location("ingest_app", PROJECT_ROOT / "lambdas/ingest_api/app.py")
    ingest = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ingest_app", ingest)
    spec.loader.exec_module(ingest)  # type: ignore[union-attr]
    raw = dataset.read_raw(SAMPLE)
    ours = wh_.stream_records(raw)
    prepared, rejected = ingest.prepare(raw[list(dataset.COLUMNS)].to_dict(orient="records"))
    assert rejected == [] and len(prepared) == len(ours) == len(raw)
    assert [json.loads(p.data) for p in prepared] == ours
    assert [json.dumps(r, ensure_ascii=False).encode() for r in ours] == [p.data for p in prepared]


# -------------------------------------------------------------------------------------------------
# On the session's local cloud


@pytest.fixture(scope="module")
def wh() -> Iterator[wh_.Warehouse]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "_current", None)
        config.configure(prefix="whtest")
        yield wh_.ensure_warehouse()


@pytest.mark.localcloud
def test_sql_errors_say_what_and_where(wh: wh_.Warehouse):
    with pytest.raises(wh_.WarehouseSqlError) as failure:
        wh_.query(wh, "SELECT * FROM no_such_table")
    assert failure.value.status == "FAILED" and "no_such_table" in failure.value.error
    assert "--- SQL ---\nSELECT * FROM no_such_table" in str(failure.value)
    with pytest.raises(wh_.WarehouseSqlError) as batch:
        wh_.execute_batch(wh, ["SELECT 1", "SELECT nope FROM nowhere"])
    assert batch.value.sql == "SELECT nope FROM nowhere"
    assert wh_.query(wh, "SELECT :n AS n", parameters={"n": "it's"})["n"].tolist() == ["it's"]


@pytest.mark.localcloud
def test_firehose_lands_every_row_once_and_the_star_schema_matches_pandas(wh: wh_.Warehouse):
    names = resources.names()
    stream_arn = deploy.ensure_stream(names.stream, 1)
    deploy.ensure_bucket(names.staging_bucket)
    wh_.ensure_tables(wh)
    role = wh_.ensure_firehose_role(names)
    landing = wh_.landing_delivery(names, wh_.put_jsonpaths(names, wh_.RAW_TABLE, wh_.RAW_JSONPATHS))
    wh_.ensure_delivery_stream(landing, wh, stream_arn=stream_arn, role_arn=role, names=names)
    assert wh_.ensure_delivery_stream(landing, wh, stream_arn=stream_arn, role_arn=role, names=names) \
        == names.firehose_arn(landing.name), "idempotent"
    wh_.deliver(landing.name)
    wh_.execute(wh, f"DELETE FROM {wh_.RAW_TABLE}")
    mark = wh_.copy_mark(wh)

    raw = dataset.read_raw(SAMPLE, nrows=400)
    records = wh_.stream_records(raw)
    records[5] = {**records[5], "Quantity": "lots"}  # a bad row: rejected into stl_load_errors, not the batch
    assert wh_.put_on_stream(names.stream, records) == 400
    report = wh_.deliver(landing.name)
    assert report["Records"] == 400 and len(report["Copied"]) == 1
    errors = wh_.load_errors(wh, after_query=mark, file_prefix=f"s3://{names.staging_bucket}/{landing.prefix}")
    assert errors[["line_number", "colname", "err_code"]].values.tolist() == [[6, "quantity", 1207]]
    counts = wh_.query(wh, f"SELECT COUNT(*) AS n, COUNT(DISTINCT record_id) AS d FROM {wh_.RAW_TABLE}").iloc[0]
    assert int(counts["n"]) == int(counts["d"]) == 400 - len(errors)

    # Firehose on AWS may COPY a batch twice: the star schema still has one row per record_id
    [manifest] = report["Manifests"]
    wh_.execute(wh, f"COPY {wh_.RAW_TABLE} ({', '.join(wh_.RAW_COLUMNS)}) FROM 's3://{names.staging_bucket}/{manifest}' "
                    f"IAM_ROLE '{wh.copy_role_arn}' MANIFEST {landing.copy_options}")
    assert wh_.scalar(wh, f"SELECT COUNT(*) FROM {wh_.RAW_TABLE}") == 2 * (400 - len(errors))
    star = wh_.build_star(wh)
    assert star[wh_.FACT_TABLE] == 400 - len(errors)
    expected = dataset.revenue_by_month(dataset.load(SAMPLE, nrows=400).drop(index=5))
    monthly = wh_.query(wh, wh_.BI_QUERIES["revenue_by_month"])
    pd.testing.assert_frame_equal(monthly.astype({"rows": "int64", "month": str}), expected.reset_index(drop=True),
                                  check_dtype=False)


@pytest.mark.localcloud
def test_bulk_load_and_every_bi_query_on_the_sample(wh: wh_.Warehouse):
    assert wh_.ensure_sales(wh, SAMPLE).startswith("loaded")
    assert wh_.ensure_sales(wh, SAMPLE).startswith("reused")
    results, seconds = wh_.run_bi_queries(wh)
    assert set(results) == set(wh_.BI_QUERIES) and all(len(frame) for frame in results.values())
    figures = dataset.profile(dataset.load(SAMPLE))
    totals = results["revenue_totals"].iloc[0]
    assert (int(totals["lines"]), float(totals["revenue_all"]), float(totals["revenue_excl_cancellations"])) == (
        figures["rows"], figures["revenue_all"], figures["revenue_excl_cancellations"])
    assert results["top_invoices"]["invoice_no"].iloc[0] == "581483"  # the year's largest invoice is in the sample
    assert results["sales_by_weekday"]["day_name"].tolist() == ["Sunday", "Monday", "Tuesday", "Wednesday",
                                                                "Thursday", "Friday"]  # no trade on Saturdays
    assert results["repeat_rate"]["customers"].iloc[0] == results["customer_rfm"].shape[0]
    assert wh_.ensure_sales(wh, SAMPLE, nrows=100).startswith("loaded")  # another source replaces it


@pytest.mark.localcloud
@pytest.mark.realdata
def test_published_figures_from_the_warehouse_on_the_full_file(wh: wh_.Warehouse):
    if not REAL_FILE.is_file():
        pytest.skip(f"full data file not found at {REAL_FILE} (set RETAIL_REAL_DATA); {dataset.REAL_FILE_HINT}")
    started = time.perf_counter()
    wh_.bulk_load(wh, REAL_FILE)
    load_s = time.perf_counter() - started
    results, seconds = wh_.run_bi_queries(wh)
    totals = results["revenue_totals"].iloc[0]
    assert int(totals["lines"]) == 541_909
    assert (float(totals["revenue_all"]), float(totals["revenue_excl_cancellations"])) == (9_747_747.93, 10_644_560.42)
    expected = dataset.revenue_by_month(dataset.load(REAL_FILE))
    monthly = results["revenue_by_month"].astype({"rows": "int64", "month": str})
    pd.testing.assert_frame_equal(monthly, expected, check_dtype=False)
    print(f"full file: bulk load {load_s:.1f} s, {len(results)} dashboard queries {sum(seconds.values()):.2f} s")
