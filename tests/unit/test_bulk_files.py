"""The batch path's client side: the file cut by day or by rows, uploaded under incoming/, with the
published header, encoding and text, every row in exactly one file and the dataset's record_ids."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from helpers import bulk_files, client, dataset

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample.csv"


def rows_of(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(dataset.ENCODING), newline="")))


def test_by_day_one_file_per_day_with_the_published_header_and_text():
    raw = dataset.read_raw(SAMPLE)
    parts = bulk_files.cut(SAMPLE, by="day")
    days = pd.to_datetime(raw["InvoiceDate"], format=dataset.DATE_FORMAT).dt.strftime("%Y-%m-%d")
    assert [p.name for p in parts] == [f"{day}.csv" for day in sorted(days.unique())]
    assert sum(p.rows for p in parts) == len(raw)
    seen: list[tuple[str, ...]] = []
    for part in parts:
        header, *body = rows_of(part.body)
        assert tuple(header) == dataset.COLUMNS and len(body) == part.rows
        assert {row[4].split()[0] for row in body} == {pd.Timestamp(part.name[:-4]).strftime("%-m/%-d/%Y")}
        seen += [tuple(row) for row in body]
    # every row, text unchanged, exactly once
    assert Counter(seen) == Counter(map(tuple, raw[list(dataset.COLUMNS)].itertuples(index=False)))


def test_latin1_text_survives():
    frame = pd.DataFrame([["536365", "85123A", "CAFÉ, \"CRÈME\" POT", "6", "12/1/2010 8:26", "2.55", "", "EIRE"]],
                         columns=dataset.COLUMNS)
    body = bulk_files._csv(frame)
    assert body.decode(dataset.ENCODING).splitlines()[1] == '536365,85123A,"CAFÉ, ""CRÈME"" POT",6,12/1/2010 8:26,2.55,,EIRE'


def test_by_rows_never_splits_an_invoice_so_record_ids_match_the_dataset():
    raw = dataset.read_raw(SAMPLE)
    parts = bulk_files.cut(SAMPLE, by="rows", rows=500)
    assert len(parts) > 3 and all(p.name.startswith("part-") for p in parts)
    assert sum(p.rows for p in parts) == len(raw)
    invoices_per_file = [{row[0] for row in rows_of(p.body)[1:]} for p in parts]
    for left, right in zip(invoices_per_file, invoices_per_file[1:]):
        assert not left & right
    # ids counted per file equal the dataset's ids counted over the whole file
    expected = dataset.parse(raw)["record_id"].tolist()
    derived = []
    for part in parts:
        text = pd.read_csv(io.BytesIO(part.body), encoding=dataset.ENCODING, dtype=str, keep_default_na=False)
        derived += list(dataset._record_ids(text))
    assert derived == expected


def test_selection_and_errors():
    parts = bulk_files.cut(SAMPLE, by="day", start="2011-01-01", end="2011-02-01")
    assert parts and all(p.name.startswith("2011-01-") for p in parts)
    assert sum(p.rows for p in bulk_files.cut(SAMPLE, by="day", nrows=100)) == 100
    with pytest.raises(ValueError):
        bulk_files.cut(SAMPLE, by="week")
    with pytest.raises(ValueError):
        bulk_files.cut(SAMPLE, by="rows")


@pytest.mark.localcloud
def test_client_upload_command_puts_the_files_under_incoming(aws: Callable[[str], Any], capsys: Any):
    bucket = f"bf-lake-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(Bucket=bucket)
    assert client._main(["upload", bucket, "--by", "day", "--data", str(SAMPLE), "--nrows", "400"]) == 0
    listed = aws("s3").list_objects_v2(Bucket=bucket)["Contents"]
    expected = bulk_files.cut(SAMPLE, by="day", nrows=400)
    assert sorted(item["Key"] for item in listed) == [f"incoming/{p.name}" for p in expected]
    first = aws("s3").get_object(Bucket=bucket, Key=f"incoming/{expected[0].name}")["Body"].read()
    assert first == expected[0].body
    assert "uploaded" in capsys.readouterr().out
    assert client._main(["upload", bucket, "--rows", "150", "--data", str(SAMPLE), "--nrows", "400",
                         "--prefix", "cut/"]) == 0
    assert len(aws("s3").list_objects_v2(Bucket=bucket, Prefix="cut/")["Contents"]) >= 2
