"""The committed sample is reproducible from the full file and made only of its original lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import dataset, sample
from helpers.dataset import Quality
from helpers.paths import DATA_DIR, PROJECT_ROOT

SAMPLE = DATA_DIR / "sample.csv"
REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA") or PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv")


@pytest.fixture(scope="module")
def remade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sample.SampleReport]:
    if not REAL_FILE.is_file():
        pytest.skip(f"full data file not found at {REAL_FILE} (set RETAIL_REAL_DATA); {dataset.REAL_FILE_HINT}")
    dest = tmp_path_factory.mktemp("sample") / "sample.csv"
    return dest, sample.make_sample(REAL_FILE, dest)


@pytest.mark.realdata
def test_make_sample_reproduces_the_committed_file(remade: tuple[Path, sample.SampleReport]):
    dest, report = remade
    assert dest.read_bytes() == SAMPLE.read_bytes(), "run `python -m helpers.sample` and commit data/sample.csv"
    assert 3000 <= report.rows <= 5000 and report.months == 13
    assert report.by_quality[Quality.BAD_VALUE] == 0
    assert all(count > 0 for quality, count in report.by_quality.items() if quality != Quality.BAD_VALUE)


@pytest.mark.realdata
def test_every_sample_line_is_a_line_of_the_real_file_in_order(remade: tuple[Path, sample.SampleReport]):
    dest, _ = remade
    real_lines = iter(REAL_FILE.read_bytes().splitlines(keepends=True))
    sample_lines = dest.read_bytes().splitlines(keepends=True)
    assert all(line in real_lines for line in sample_lines)  # `in` on an iterator: an ordered subsequence


@pytest.mark.realdata
def test_sample_keeps_the_real_record_ids(remade: tuple[Path, sample.SampleReport]):
    dest, _ = remade
    real_ids = set(dataset.load(REAL_FILE)["record_id"])
    assert set(dataset.load(dest)["record_id"]) <= real_ids


def test_committed_sample_holds_the_named_invoices_and_customers():
    df = dataset.load(SAMPLE)
    assert set(sample.FORCED_INVOICES) <= set(df["InvoiceNo"])
    invoices_of = df.groupby("CustomerID")["InvoiceNo"].nunique()
    assert invoices_of["12347"] == 7 and invoices_of["12346"] == 2
    assert df["Description"].str.contains("£", regex=False).any()
    assert set(sample.COUNTRIES) <= set(df["Country"])


def test_bucket_uses_the_invoice_digits_and_a_stable_hash():
    assert sample.in_bucket("C536379") == sample.in_bucket("536379")
    picked = [number for number in range(536365, 581588) if sample.in_bucket(str(number))]
    assert picked[:3] == [536485, 536496, 536514]  # a salted hash() would change between runs
    assert 0.5 < len(picked) / ((581588 - 536365) / sample.BUCKETS) < 1.5


def test_missing_source_tells_how_to_get_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="(?i)kaggle"):
        sample.make_sample(tmp_path / "absent.csv", tmp_path / "sample.csv")
    assert not (tmp_path / "sample.csv").exists()
