"""The warehouse helpers: Data API results as typed frames, clear SQL errors, the SQL notebooks 06 and 08
define read from the notebooks, the one-COPY reload with notebook 06's star schema build (one row per
record_id even when a batch is loaded twice), the BI questions against pandas, the warehouse teardown,
and the published figures on the full file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from helpers import bi_report, bulk_load, config, dataset, notebook_sql, resources, warehouse
from helpers import redshift_data as rd
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
    result = rd.frame(columns, records)
    assert result.dtypes.astype(str).tolist() == ["Int64", "float64", "Int64", "float64", "boolean",
                                                   "datetime64[us]", "string"]
    assert result.iloc[0].tolist()[:5] == [1, 12.5, 7, 0.5, True]
    assert result.iloc[1].isna().all()


def test_the_notebooks_sql_is_read_from_the_notebooks():
    """06 defines its DDL and star schema build in its cells, 08 one SQL statement per question; the
    helpers run exactly those (nothing of it lives in a helper)."""
    built = notebook_sql.named("06")
    assert {"COURSE_DDL", "RAW_DDL", "STAR_DDL", "STAR_BUILD"} <= set(built)
    assert "customerid  INTEGER      NOT NULL" in built["COURSE_DDL"]
    assert [s.split("(")[0].split()[-1] for s in built["STAR_DDL"]] == [
        "public.dim_date", "public.dim_customer", "public.dim_product", "public.fact_sales_line", "public.load_source"]
    assert built["STAR_BUILD"][0] == "DELETE FROM fact_sales_line" and "ROW_NUMBER()" in built["STAR_BUILD"][4]
    questions = bi_report.questions()
    assert len(questions) == 15 and list(questions)[:2] == ["revenue_totals", "revenue_by_month"]
    assert all(sql.lstrip().upper().startswith(("SELECT", "WITH")) for sql in questions.values())
    assert not any("{" in sql for sql in questions.values()), "the notebook's SQL is literal, not a template"


def test_bulk_csv_is_the_landing_tables_columns_in_order():
    import gzip

    body, rows = bulk_load.bulk_csv(SAMPLE, nrows=5)
    lines = gzip.decompress(body).decode().splitlines()
    assert rows == 5 and len(lines) == 6
    assert lines[0] == "record_id," + ",".join(dataset.COLUMNS)
    assert bulk_load.source_id(SAMPLE, 5).endswith(":5") and bulk_load.source_id(SAMPLE, None).endswith(":all")


# -------------------------------------------------------------------------------------------------
# On the session's local cloud: a cluster, the staging bucket and notebook 06's tables


@pytest.fixture(scope="module")
def wh() -> Iterator[rd.Warehouse]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "_current", None)
        config.configure(prefix="whtest")
        names = resources.names()
        redshift, s3 = config.client("redshift"), config.client("s3")
        redshift.create_cluster(ClusterIdentifier=names.warehouse_cluster, ClusterType="single-node",
                                NodeType="ra3.xlplus", DBName="dev", MasterUsername="admin",
                                MasterUserPassword="Test-only-Passw0rd")
        s3.create_bucket(Bucket=names.staging_bucket)
        found = rd.warehouse(names)
        built = notebook_sql.named("06")
        rd.execute_batch(found, [built["COURSE_DDL"], built["RAW_DDL"], *built["STAR_DDL"]])
        yield found
        removed = warehouse.teardown(names)
        assert removed == {"delivery_streams": [], "warehouse": [names.warehouse_cluster]}


@pytest.mark.localcloud
def test_sql_errors_say_what_and_where(wh: rd.Warehouse):
    with pytest.raises(rd.WarehouseSqlError) as failure:
        rd.query(wh, "SELECT * FROM no_such_table")
    assert failure.value.status == "FAILED" and "no_such_table" in failure.value.error
    assert "--- SQL ---\nSELECT * FROM no_such_table" in str(failure.value)
    with pytest.raises(rd.WarehouseSqlError) as batch:
        rd.execute_batch(wh, ["SELECT 1", "SELECT nope FROM nowhere"])
    assert batch.value.sql == "SELECT nope FROM nowhere"
    assert rd.query(wh, "SELECT :n AS n", parameters={"n": "it's"})["n"].tolist() == ["it's"]


@pytest.mark.localcloud
def test_a_batch_loaded_twice_still_gives_one_fact_per_record_id(wh: rd.Warehouse):
    """Firehose on AWS may COPY a batch twice: notebook 06's star schema build keeps one row per record_id."""
    names = resources.names()
    assert bulk_load.load_file(wh, SAMPLE, nrows=400, names=names) == 400
    key = bulk_load.staging_key(SAMPLE, 400)
    rd.execute(wh, bulk_load.copy_csv(wh, f"s3://{names.staging_bucket}/{key}"))  # the same file again
    assert rd.scalar(wh, "SELECT COUNT(*) FROM raw_sales") == 800
    rd.execute_batch(wh, notebook_sql.named("06")["STAR_BUILD"])
    assert rd.table_counts(wh, ["fact_sales_line"])["fact_sales_line"] == 400
    expected = dataset.revenue_by_month(dataset.load(SAMPLE, nrows=400))
    monthly = rd.query(wh, bi_report.questions()["revenue_by_month"])
    pd.testing.assert_frame_equal(monthly.astype({"rows": "int64", "month": str}), expected, check_dtype=False)


@pytest.mark.localcloud
def test_bulk_load_and_every_bi_question_on_the_sample(wh: rd.Warehouse):
    rows = bulk_load.load_file(wh, SAMPLE)
    assert bulk_load.loaded_source(wh) == (bulk_load.source_id(SAMPLE, None), rows)
    results, seconds = bi_report.run_questions(wh)
    assert set(results) == set(bi_report.questions()) == set(seconds) and all(len(f) for f in results.values())
    figures = dataset.profile(dataset.load(SAMPLE))
    totals = results["revenue_totals"].iloc[0]
    assert (int(totals["lines"]), float(totals["revenue_all"]), float(totals["revenue_excl_cancellations"])) == (
        figures["rows"], figures["revenue_all"], figures["revenue_excl_cancellations"])
    assert results["top_invoices"]["invoice_no"].iloc[0] == "581483"  # the year's largest invoice is in the sample
    assert results["sales_by_weekday"]["day_name"].tolist() == ["Sunday", "Monday", "Tuesday", "Wednesday",
                                                                "Thursday", "Friday"]  # no trade on Saturdays
    assert results["repeat_rate"]["customers"].iloc[0] == results["customer_rfm"].shape[0]


@pytest.mark.localcloud
@pytest.mark.realdata
def test_published_figures_from_the_warehouse_on_the_full_file(wh: rd.Warehouse):
    if not REAL_FILE.is_file():
        pytest.skip(f"full data file not found at {REAL_FILE} (set RETAIL_REAL_DATA); {dataset.REAL_FILE_HINT}")
    started = time.perf_counter()
    bulk_load.load_file(wh, REAL_FILE)
    load_s = time.perf_counter() - started
    results, seconds = bi_report.run_questions(wh)
    totals = results["revenue_totals"].iloc[0]
    assert int(totals["lines"]) == 541_909
    assert (float(totals["revenue_all"]), float(totals["revenue_excl_cancellations"])) == (9_747_747.93, 10_644_560.42)
    expected = dataset.revenue_by_month(dataset.load(REAL_FILE))
    monthly = results["revenue_by_month"].astype({"rows": "int64", "month": str})
    pd.testing.assert_frame_equal(monthly, expected, check_dtype=False)
    print(f"full file: bulk load {load_s:.1f} s, {len(results)} dashboard questions {sum(seconds.values()):.2f} s")
