"""The retail file's reader and quality rules, on small byte-exact fixtures, the committed sample and
(when present) the full published file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from helpers import dataset
from helpers.dataset import DEFAULT_QUARANTINE, Quality
from helpers.paths import DATA_DIR, PROJECT_ROOT

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# (raw line, expected quality, a piece of the expected reason); line numbers are 1-based positions here.
ROWS: list[tuple[str, Quality, str]] = [
    ("536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
     Quality.VALID_SALE, "known customer"),
    ("536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
     Quality.EXACT_DUPLICATE, "exact copy #2 of line 1"),
    ("536370,POST,POSTAGE,3,12/1/2010 8:45,18,12583,France", Quality.NON_PRODUCT, "StockCode 'POST'"),
    ('536544,90214D,"LETTER ""D"" BLING KEY RING",1,12/1/2010 14:32,0.85,,United Kingdom',
     Quality.MISSING_CUSTOMER, "guest sale"),
    ("C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527,United Kingdom", Quality.CANCELLATION, "cancellation"),
    ("A563186,B,Adjust bad debt,1,8/12/2011 14:51,-11062.06,,United Kingdom", Quality.ADJUSTMENT, "bad-debt"),
    ("537425,84968F,check,-20,12/6/2010 15:35,0,,United Kingdom", Quality.ADJUSTMENT,
     "stock write-off: Quantity -20 outside a cancellation, at zero price"),
    ("537197,22841,ROUND CAKE TIN VINTAGE GREEN,1,12/5/2010 14:02,0,12647,Germany", Quality.ADJUSTMENT,
     "zero-price line"),
    ("536414,22139,,56,12/1/2010 11:52,0,,United Kingdom", Quality.MISSING_DESCRIPTION, "Description is empty"),
    ("539492,gift_0001_40,Dotcomgiftshop Gift Voucher £40.00,1,1/20/2011 10:14,34.04,,United Kingdom",
     Quality.NON_PRODUCT, "Gift Voucher £40.00"),
    ("540001,22139,NA,1,1/5/2011 9:00,1.25,12347,Iceland", Quality.VALID_SALE, "known customer"),
    # injected bad values (the real file has none)
    ("540002,22139,RETROSPOT TEA SET,abc,1/5/2011 9:00,4.95,12347,Iceland", Quality.BAD_VALUE,
     "Quantity 'abc' is not an integer"),
    ('540003,22139,RETROSPOT TEA SET,2,1/5/2011 9:00,"1,5",12347,Iceland', Quality.BAD_VALUE,
     "UnitPrice '1,5' is not a number"),
    ("540004,22139,RETROSPOT TEA SET,2,13/45/2011 8:26,4.95,12347,Iceland", Quality.BAD_VALUE,
     "InvoiceDate '13/45/2011 8:26' is not a date"),
    ("540005,22139,RETROSPOT TEA SET,0,1/5/2011 9:00,4.95,12347,Iceland", Quality.BAD_VALUE, "Quantity '0' is zero"),
    ("C540006,22139,RETROSPOT TEA SET,3,1/5/2011 9:00,4.95,12347,Iceland", Quality.BAD_VALUE,
     "Quantity '3' is positive on a C cancellation"),
    ("X123,22139,RETROSPOT TEA SET,1,1/5/2011 9:00,4.95,12347,Iceland", Quality.BAD_VALUE, "InvoiceNo 'X123'"),
    ("540007,22139,RETROSPOT TEA SET,1,1/5/2011 9:00,-4.95,12347,Iceland", Quality.BAD_VALUE,
     "UnitPrice '-4.95' is negative"),
    ("540008,22139,RETROSPOT TEA SET,1,1/5/2011 9:00,4.95,17850.0,Iceland", Quality.BAD_VALUE,
     "CustomerID '17850.0' is not digits"),
    ("540009,,RETROSPOT TEA SET,1,1/5/2011 9:00,4.95,12347,", Quality.BAD_VALUE,
     "StockCode is empty; Country is empty"),
    # a bad row that is also a duplicate and has no description: bad_value wins, both problems named
    ("540010,22139,,xyz,2/1/2011 9:00,1e,,United Kingdom", Quality.BAD_VALUE,
     "Quantity 'xyz' is not an integer; UnitPrice '1e' is not a number"),
    ("540010,22139,,xyz,2/1/2011 9:00,1e,,United Kingdom", Quality.BAD_VALUE, "Quantity 'xyz'"),
]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    """Write lines as the published file does: ISO-8859-1, CRLF, a final CRLF."""
    path.write_bytes("".join(f"{line}\r\n" for line in [header, *lines]).encode("ISO-8859-1"))
    return path


@pytest.fixture
def fixture_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "fixture.csv", [line for line, _, _ in ROWS])


@pytest.fixture
def loaded(fixture_csv: Path) -> pd.DataFrame:
    return dataset.load(fixture_csv)


def test_the_fixture_is_byte_exact(fixture_csv: Path):
    data = fixture_csv.read_bytes()
    assert b"\xa3" in data and "£".encode("utf-8") not in data
    assert data.count(b"\n") == data.count(b"\r\n") == len(ROWS) + 1


@pytest.mark.parametrize("number", range(1, len(ROWS) + 1))
def test_each_row_gets_its_class_and_reason(loaded: pd.DataFrame, number: int):
    _, quality, reason = ROWS[number - 1]
    row = loaded.loc[loaded["line"] == number].iloc[0]
    assert row["quality"] == quality, row["reason"]
    assert reason in row["reason"]


def test_read_raw_keeps_the_published_text(fixture_csv: Path):
    raw = dataset.read_raw(fixture_csv)
    assert list(raw.columns) == [*dataset.COLUMNS, "line"]
    assert raw["line"].tolist() == list(range(1, len(ROWS) + 1))
    first = raw.iloc[0]
    assert (first["Quantity"], first["UnitPrice"], first["CustomerID"]) == ("6", "2.55", "17850")
    assert raw.loc[3, "CustomerID"] == "" and raw.loc[3, "Description"] == 'LETTER "D" BLING KEY RING'
    assert raw.loc[10, "Description"] == "NA", "NA-like text must stay text"
    assert raw.loc[9, "Description"] == "Dotcomgiftshop Gift Voucher £40.00"
    assert dataset.read_raw(fixture_csv, nrows=3)["line"].tolist() == [1, 2, 3]


def test_parse_types_and_customer_ids(fixture_csv: Path):
    parsed = dataset.parse(dataset.read_raw(fixture_csv))
    assert len(parsed) == len(ROWS)
    assert str(parsed["Quantity"].dtype) == "Int64" and parsed["UnitPrice"].dtype == "float64"
    assert parsed["InvoiceDate"].dtype == "datetime64[ns]"
    assert isinstance(parsed["CustomerID"].dtype, pd.StringDtype) and parsed["CustomerID"].dtype.na_value is pd.NA
    assert parsed.loc[0, "CustomerID"] == "17850"
    assert parsed["CustomerID"].dropna().map(type).eq(str).all()
    assert parsed.loc[3, "CustomerID"] is pd.NA and parsed.loc[8, "Description"] is pd.NA
    assert parsed.loc[0, "InvoiceDate"] == pd.Timestamp("2010-12-01 08:26")
    assert parsed.loc[11, "Quantity"] is pd.NA and "abc" in parsed.loc[11, "parse_error"]
    assert pd.isna(parsed.loc[12, "UnitPrice"]) and pd.isna(parsed.loc[13, "InvoiceDate"])
    assert parsed["parse_error"].notna().sum() == 5  # abc, 1,5, 13/45, and the two xyz rows


def test_flags_are_independent(loaded: pd.DataFrame):
    by_line = loaded.set_index("line")
    assert by_line.loc[5, "is_cancellation"] and by_line.loc[5, "non_product_code"]  # C + D (discount)
    assert by_line.loc[6, ["is_adjustment_invoice", "missing_customer", "non_product_code"]].all()
    assert by_line.loc[9, ["missing_description", "missing_customer"]].all()
    assert by_line.loc[22, ["bad_value", "exact_duplicate", "missing_description"]].all()
    assert by_line["exact_duplicate"].sum() == 2 and by_line["bad_value"].sum() == 11
    assert not by_line.loc[1, list(dataset.FLAGS)].any()


def test_split_keeps_every_row(loaded: pd.DataFrame):
    result = dataset.split(loaded)
    assert len(result.stored) + len(result.quarantined) == result.rows_read == len(ROWS)
    assert set(result.quarantined["quality"]) == {q.value for q in DEFAULT_QUARANTINE}
    assert {"quality", "reason"} <= set(result.quarantined.columns)
    assert not result.stored["quality"].isin(DEFAULT_QUARANTINE).any()
    only_bad = dataset.split(loaded, quarantine={Quality.BAD_VALUE})
    assert len(only_bad.quarantined) == 11
    with pytest.raises(ValueError, match="rows lost"):
        dataset.Split(result.stored.iloc[1:], result.quarantined, result.rows_read).check()


def test_record_ids_are_stable_under_nrows_and_date_range(fixture_csv: Path):
    full = dataset.load(fixture_csv)
    ids = dict(zip(full["line"], full["record_id"]))
    head = dataset.load(fixture_csv, nrows=5)
    assert head["record_id"].tolist() == [ids[line] for line in head["line"]]
    january = dataset.load(fixture_csv, start="2011-01-01", end=pd.Timestamp("2011-02-01"))
    assert len(january) > 3 and january["InvoiceDate"].between("2011-01-01", "2011-01-31 23:59").all()
    assert january["record_id"].tolist() == [ids[line] for line in january["line"]]
    assert january.index.tolist() == list(range(len(january)))
    assert full["record_id"].is_unique
    # the same rows in another file give the same ids, wherever they sit
    other = dataset.load(write_csv(fixture_csv.with_name("other.csv"), [ROWS[4][0], ROWS[0][0], ROWS[1][0]]))
    assert other["record_id"].tolist() == [ids[5], ids[1], ids[2]]


def test_duplicate_copies_get_distinct_ids(loaded: pd.DataFrame):
    first, second = loaded.loc[loaded["line"].isin([1, 2]), "record_id"]
    assert first != second and first.split("#")[0] == second.split("#")[0]
    assert (first.split("#")[1], second.split("#")[1]) == ("1", "2")


def test_unparseable_dates_leave_only_with_a_date_range(loaded: pd.DataFrame, fixture_csv: Path):
    assert 14 in loaded["line"].tolist()
    in_range = dataset.load(fixture_csv, start="2000-01-01")
    assert 14 not in in_range["line"].tolist() and len(in_range) == len(ROWS) - 1


def test_header_mismatch_is_refused(tmp_path: Path):
    path = write_csv(tmp_path / "renamed.csv", [ROWS[0][0]], header=HEADER.replace("CustomerID", "CustomerId"))
    with pytest.raises(ValueError, match="published header"):
        dataset.read_raw(path)


def test_missing_file_tells_how_to_get_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="(?i)kaggle.*carrie1/ecommerce-data"):
        dataset.load(tmp_path / "nope.csv")


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("RETAIL_DATA", raising=False)
    assert dataset.default_path() == DATA_DIR / "sample.csv"
    monkeypatch.setenv("RETAIL_DATA", "data/full/data.csv")
    assert dataset.default_path() == PROJECT_ROOT / "data" / "full" / "data.csv"
    monkeypatch.setenv("RETAIL_DATA", str(tmp_path / "x.csv"))
    assert dataset.default_path() == tmp_path / "x.csv"


def test_profile_and_months_on_the_fixture(loaded: pd.DataFrame):
    figures = dataset.profile(loaded)
    assert figures["rows"] == len(ROWS) and sum(figures["by_quality"].values()) == len(ROWS)
    assert figures["by_quality"]["bad_value"] == 11 and figures["exact_duplicates"] == 2
    assert figures["cancellation_rows"] == 2 and figures["cancellation_invoices"] == 2
    assert figures["revenue_all"] == round(loaded["Quantity"].astype(float).mul(loaded["UnitPrice"]).sum(), 2)
    months = dataset.revenue_by_month(loaded)
    assert list(months.columns) == ["month", "revenue_all", "revenue_excl_cancellations", "rows"]
    assert months["month"].tolist() == ["2010-12", "2011-01", "2011-02", "2011-08"]
    assert months["rows"].sum() == len(ROWS) - 1  # the unparseable date has no month


# --- the committed sample -------------------------------------------------------------------------

SAMPLE = DATA_DIR / "sample.csv"


def test_sample_has_the_real_file_format():
    data = SAMPLE.read_bytes()
    assert data.startswith(HEADER.encode("ascii") + b"\r\n")
    assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
    assert b"\xa3" in data, "a £ description, as byte 0xA3"
    data.decode("ISO-8859-1")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


def test_sample_shows_every_class_but_bad_value(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RETAIL_DATA", raising=False)
    sample = dataset.load()
    assert 3000 <= len(sample) <= 5000
    counts = dataset.profile(sample)["by_quality"]
    assert counts.pop("bad_value") == 0
    assert all(count > 0 for count in counts.values()), counts
    assert all(sample[flag].any() for flag in dataset.FLAGS if flag != "bad_value")
    assert sample["InvoiceDate"].dt.strftime("%Y-%m").nunique() == 13


# --- the full published file (only where it is present) -----------------------------------------

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA") or PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv")


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    if not REAL_FILE.is_file():
        pytest.skip(f"full data file not found at {REAL_FILE} (set RETAIL_REAL_DATA); {dataset.REAL_FILE_HINT}")
    return dataset.load(REAL_FILE)


@pytest.mark.realdata
def test_real_file_published_figures(real: pd.DataFrame):
    figures = dataset.profile(real)
    expected = {
        "rows": 541_909, "missing_customer": 135_080, "missing_description": 1_454, "cancellation_rows": 9_288,
        "cancellation_invoices": 3_836, "adjustment_invoice_rows": 3, "negative_quantity": 10_624,
        "non_positive_price": 2_517, "exact_duplicates": 5_268, "invoices": 25_900, "customers": 4_372,
        "stock_codes": 4_070, "countries": 38, "revenue_all": 9_747_747.93,
        "revenue_excl_cancellations": 10_644_560.42,
    }
    assert {key: figures[key] for key in expected} == expected
    assert sum(figures["by_quality"].values()) == 541_909 and figures["by_quality"]["bad_value"] == 0
    assert real["non_product_code"].sum() == 2_995
    assert real["CustomerID"].dropna().str.fullmatch(r"\d{5}").all()


@pytest.mark.realdata
def test_real_file_monthly_table(real: pd.DataFrame):
    months = dataset.revenue_by_month(real).set_index("month")
    assert len(months) == 13
    assert months.loc["2010-12"].tolist() == [748_957.02, 823_746.14, 42_481]
    assert months.loc["2011-11"].tolist() == [1_461_756.25, 1_509_496.33, 84_711]


@pytest.mark.realdata
def test_real_file_date_range_keeps_record_ids(real: pd.DataFrame):
    august = dataset.load(REAL_FILE, start="2011-08-01", end="2011-09-01")
    assert len(august) == 35_284
    expected = real.set_index("line").loc[august["line"], "record_id"]
    assert august["record_id"].tolist() == expected.tolist()


# --------------------------------------------------------------------------------------------------
# Encoding and oversize fields


def _compare(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)


def test_a_utf8_reexport_of_the_sample_loads_to_the_same_rows(tmp_path: Path):
    published = DATA_DIR / "sample.csv"
    text = published.read_bytes().decode("ISO-8859-1")
    assert not text.isascii(), "the sample must hold non-ASCII text (£, É...) for this test to mean anything"
    utf8 = tmp_path / "utf8.csv"
    utf8.write_bytes(text.encode("utf-8"))
    bom = tmp_path / "utf8-bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert dataset.detect_encoding(published) == "ISO-8859-1"
    assert dataset.detect_encoding(utf8) == "utf-8" and dataset.detect_encoding(bom) == "utf-8-sig"
    expected = dataset.load(published)
    _compare(dataset.load(utf8), expected)
    _compare(dataset.load(bom), expected)
    assert not expected["Description"].dropna().str.contains("Ã").any()


def test_a_file_neither_utf8_nor_latin1_is_refused_naming_the_offset(tmp_path: Path):
    good = write_csv(tmp_path / "ok.csv", [ROWS[0][0]])
    head = len(good.read_bytes()) - 2
    cp1252 = tmp_path / "cp1252.csv"
    cp1252.write_bytes(good.read_bytes()[:head] + "\u20ac\r\n".encode("cp1252"))  # the euro sign: 0x80
    with pytest.raises(ValueError, match=f"byte 0x80 at offset {head:,}"):
        dataset.load(cp1252)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(good.read_bytes().decode("ISO-8859-1").encode("utf-16"))
    with pytest.raises(ValueError, match="neither UTF-8 nor ISO-8859-1"):
        dataset.load(utf16)


def test_an_oversize_field_is_quarantined_and_every_row_accounted_for(tmp_path: Path):
    lines = [ROWS[0][0],
             f"536366,22633,{'A' * (10 * 1024 * 1024)},6,12/1/2010 8:28,1.85,17850,United Kingdom",
             f"536367,{'9' * 1001},HAND WARMER,6,12/1/2010 8:28,1.85,17850,United Kingdom",
             "536368,22633,HAND WARMER," + "1" * 2000 + ",12/1/2010 8:28,1.85,17850,United Kingdom"]
    df = dataset.load(write_csv(tmp_path / "big.csv", lines))
    assert df["quality"].tolist() == ["valid_sale", "bad_value", "bad_value", "bad_value"]
    assert df["reason"][1] == "Description is longer than 1,000 characters"
    assert df["reason"][2] == "StockCode is longer than 1,000 characters"
    assert df["reason"][3].startswith("Quantity '1111111111111111111111111111111111111111... (2000 characters)' "
                                      "is not an integer") and len(df["reason"][3]) < 200
    parts = dataset.split(df)
    assert len(parts.stored) == 1 and len(parts.quarantined) == 3 and parts.rows_read == 4


@pytest.mark.realdata
def test_real_file_utf8_reexport_loads_to_the_same_classified_rows(real: pd.DataFrame, tmp_path: Path):
    utf8 = tmp_path / "data-utf8.csv"
    utf8.write_bytes(REAL_FILE.read_bytes().decode("ISO-8859-1").encode("utf-8"))
    again = dataset.load(utf8)
    assert len(again) == 541_909
    _compare(again, real)
