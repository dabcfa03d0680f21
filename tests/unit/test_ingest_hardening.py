"""No client input breaks the ingestion API: malformed requests against the API notebook 02 builds
(run headless under the prefix `hardening`), on both routes, get a 4xx with a message or a per-row
rejection with a reason, never a 5xx, and the stream grows by exactly the rows the API accepted.
Hypothesis property tests post the same generated row to both routes (same decision, same reason, the
same record on the stream) and generated batches (the stream gets exactly the rows the answer accepted)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any, Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import apis, config, workbook

pytestmark = pytest.mark.localcloud

GOOD = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
        "Quantity": 6, "InvoiceDate": "12/1/2010 8:26", "UnitPrice": 2.55, "CustomerID": "17850",
        "Country": "United Kingdom"}
MB = 1024 * 1024


class Api:
    """The two routes of notebook 02's API and a count of the records on its stream."""

    def __init__(self, built: dict[str, Any]):
        base = apis.invoke_url(built["ingest_api_id"], built["stage"])
        self.urls = {"batch": base + "/transactions", "row": base + "/transaction"}
        self.stream = built["stream"]
        self.kinesis = config.client("kinesis")
        self.http = requests.Session()

    def post(self, route: str, body: bytes | str, content_type: str = "application/json") -> tuple[int, Any]:
        data = body.encode("utf-8") if isinstance(body, str) else body
        answer = self.http.post(self.urls[route], data=data, headers={"Content-Type": content_type}, timeout=120)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text

    def mark(self) -> dict[str, str]:
        """A LATEST iterator of each shard: what is put after this call, read with since()."""
        return {shard["ShardId"]: self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard["ShardId"],
                                                                  ShardIteratorType="LATEST")["ShardIterator"]
                for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]}

    def since(self, mark: dict[str, str]) -> list[dict[str, Any]]:
        """The records put on the stream after mark(), decoded, shard by shard in order."""
        found = []
        for iterator in mark.values():
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                found += [json.loads(record["Data"]) for record in page["Records"]]
                iterator = page.get("NextShardIterator") if page["Records"] else None
        return found

    def records(self) -> int:
        """Every record on the stream, read from the start of each shard."""
        total = 0
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard["ShardId"],
                                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                total += len(page["Records"])
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return total


@pytest.fixture(scope="module")
def api(endpoint: str) -> Iterator[Api]:
    config.configure(target="local", endpoint_url=endpoint, region="us-east-1", prefix="hardening")
    try:
        yield Api(workbook.require("02"))
    finally:
        config._current = None


def accepted_of(route: str, status: int, body: Any) -> int:
    """Rows the API says it put on the stream (the one-row route answers 400 when it took none)."""
    if status == 200:
        assert body["failed"] == 0, body
        return body["accepted"]
    return 0


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def row_text(**fields: Any) -> str:
    return json.dumps(GOOD | fields, ensure_ascii=False)


def raw_row(field: str, literal: str) -> str:
    """A row with one field written as a raw JSON literal (NaN, 1e400, 10^40 ...)."""
    return row_text(**{field: "@@"}).replace('"@@"', literal)


# (name, body, the status both routes must answer, or None for "200 with that row rejected")
MALFORMED: list[tuple[str, bytes | str, int | None]] = [
    ("empty body", "", 400),
    ("empty list", "[]", 400),
    ("null", "null", 400),
    ("number", "42", 400),
    ("string", '"x"', 400),
    ("true", "true", 400),
    ("empty object", "{}", 400),
    ("list of empty objects", "[{}, {}]", None),
    ("truncated JSON", '{"InvoiceNo": "536365", "Stock', 400),
    ("trailing garbage", row_text() + "}", 400),
    ("single quotes", "{'InvoiceNo': '536365'}", 400),
    ("nested 100,000 deep", deep(100_000), 400),
    ("nested 100,000 deep in a field", raw_row("Description", deep(100_000)), 400),
    ("nested 200 deep in a field", raw_row("Description", deep(200)), None),
    ("list of lists", "[[1, 2], [3]]", None),
    ("100,000 empty rows", "[" + ",".join(["{}"] * 100_000) + "]", 400),
    ("10,000 rows of nothing but a bad Quantity", json.dumps([{"Quantity": "x" * 300}] * 10_000), None),
    ("not UTF-8 (latin-1 É)", row_text(Description="CAFÉ").encode("iso-8859-1"), 400),
    ("lone continuation byte", b'{"InvoiceNo": "536365\x80"}', 400),
    ("UTF-16 body", row_text().encode("utf-16"), 400),
    ("NUL bytes", b"\x00" * 64, 400),
    ("UnitPrice 1e400", raw_row("UnitPrice", "1e400"), None),
    ("UnitPrice -1e400", raw_row("UnitPrice", "-1e400"), None),
    ("UnitPrice NaN", raw_row("UnitPrice", "NaN"), None),
    ("UnitPrice Infinity", raw_row("UnitPrice", "Infinity"), None),
    ("UnitPrice 10^40", raw_row("UnitPrice", str(10 ** 40)), None),
    ("UnitPrice 1e-200", raw_row("UnitPrice", "1e-200"), None),
    ("UnitPrice 10^7 + 1", raw_row("UnitPrice", str(10 ** 7 + 1)), None),
    ("UnitPrice 39 significant digits as text", raw_row("UnitPrice", '"1.' + "1" * 38 + '"'), None),
    ("UnitPrice text", raw_row("UnitPrice", '"cheap"'), None),
    ("UnitPrice object", raw_row("UnitPrice", '{"a": 1}'), None),
    ("Quantity 10^40", raw_row("Quantity", str(10 ** 40)), None),
    ("Quantity 1e30", raw_row("Quantity", "1e30"), None),
    ("Quantity -10^7 - 1", raw_row("Quantity", str(-10 ** 7 - 1)), None),
    ("Quantity 2.5", raw_row("Quantity", "2.5"), None),
    ("Quantity NaN", raw_row("Quantity", "NaN"), None),
    ("Quantity -Infinity", raw_row("Quantity", "-Infinity"), None),
    ("Quantity true", raw_row("Quantity", "true"), None),
    ("Quantity 5000 digits", raw_row("Quantity", "9" * 5000), 400),
    ("InvoiceDate 10^30", raw_row("InvoiceDate", str(10 ** 30)), None),
    ("InvoiceDate month 13", row_text(InvoiceDate="13/1/2010 8:26"), None),
    ("InvoiceDate list", raw_row("InvoiceDate", "[1]"), None),
    ("InvoiceNo 5 digits", row_text(InvoiceNo="53636"), None),
    ("InvoiceNo object", raw_row("InvoiceNo", "{}"), None),
    ("CustomerID letters", row_text(CustomerID="17850x"), None),
    ("CustomerID 30 digits", row_text(CustomerID="1" * 30), None),
    ("Country missing", json.dumps({k: v for k, v in GOOD.items() if k != "Country"}), None),
    ("every field missing but one", json.dumps({"InvoiceNo": "536365"}), None),
    ("record_id 10,000 characters", row_text(record_id="r" * 10_000), None),
    ("Description 10 MB", row_text(Description="A" * (10 * MB)), 413),
    ("Description 1.5 MB", row_text(Description="A" * (3 * MB // 2)), None),
    ("Description 1,001 characters", row_text(Description="A" * 1001), None),
    ("Description with U+FFFD", row_text(Description="CAF\ufffd"), None),
    ("a 6.5 MB row", row_text(StockCode="S" * (13 * MB // 2)), 413),
    ("an 8.4 MB body of good rows", json.dumps([GOOD] * (int(8.4 * MB) // len(json.dumps(GOOD)))), 413),
    ("an 11 MB body", "[" + " " * (11 * MB) + "]", 413),
]


@pytest.mark.parametrize("name, body, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_4xx_or_a_rejection_and_only_accepted_rows_reach_the_stream(
        api: Api, name: str, body: bytes | str, expected: int | None):
    before = api.records()
    answers = {route: api.post(route, body) for route in ("batch", "row")}
    for route, (status, answer) in answers.items():
        assert status < 500, f"{name} on the {route} route: {status} {str(answer)[:300]}"
        assert isinstance(answer, dict) and answer, f"{name} on {route}: no JSON answer ({str(answer)[:200]})"
        if expected is not None:
            assert status == expected, f"{name} on {route}: {status} {str(answer)[:300]}"
            assert answer.get("message"), f"{name} on {route}: a 4xx says why ({answer})"
    if expected is None:  # the rows are refused one by one, with the same reasons on both routes
        status, batch = answers["batch"]
        assert status == 200 and batch["accepted"] == 0 and batch["rejected"], (name, batch)
        status, row = answers["row"]
        assert status == 400 and row["message"].startswith("[BadRequest] no row accepted"), (name, row)
        for rejected in batch["rejected"]:
            assert f"row {rejected['index']}: {rejected['reason']}" in row["message"] or \
                len(batch["rejected"]) > 10, (name, rejected, row)
    accepted = sum(accepted_of(route, *answer) for route, answer in answers.items())
    assert api.records() == before + accepted == before, f"{name}: the stream grew"


def test_a_good_row_is_accepted_on_both_routes_next_to_a_bad_one(api: Api):
    before = api.records()
    batch = api.post("batch", json.dumps([GOOD, GOOD | {"Quantity": 10 ** 40}]))
    row = api.post("row", json.dumps(GOOD))
    assert batch[0] == 200 and batch[1]["accepted"] == 1
    assert batch[1]["rejected"] == [{"index": 1, "reason": "Quantity 100000000000...(41 digits) is outside "
                                                           "-10,000,000..10,000,000"}]
    assert row == (200, {"accepted": 1, "rejected": [], "failed": 0})
    assert api.records() == before + 2


# --------------------------------------------------------------------------------------------------
# Property: both routes decide every row the same way


def json_numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(min_value=-10 ** 45, max_value=10 ** 45),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.decimals(allow_nan=False, allow_infinity=False).map(str))


def field_values() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), json_numbers(), st.text(max_size=30),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))


@st.composite
def rows(draw: Any) -> dict[str, Any]:
    """A row that is good except for a few fields replaced by anything JSON can carry."""
    row = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=3, unique=True)):
        if draw(st.booleans()):
            row[name] = draw(field_values())
        else:
            row.pop(name)
    return row


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(row=rows())
def test_both_routes_accept_and_refuse_the_same_rows(api: Api, row: dict[str, Any]):
    body = json.dumps(row, allow_nan=True)
    mark = api.mark()
    batch_status, batch = api.post("batch", body)
    row_status, one = api.post("row", body)
    assert batch_status == 200, batch
    assert row_status in (200, 400), one
    if batch["accepted"]:
        assert (row_status, one) == (200, batch), (row, one)
    else:
        reason = batch["rejected"][0]["reason"]
        assert row_status == 400 and one["message"] == f"[BadRequest] no row accepted: row 0: {' '.join(reason.split())}", \
            (row, batch, one)
    added = api.since(mark)  # the row once per route, as the same record, or nothing
    assert len(added) == 2 * batch["accepted"] and all(record == added[0] for record in added), (row, added)
    price = row.get("UnitPrice")
    assert not batch["accepted"] or not (isinstance(price, float) and not math.isfinite(price))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(batch=st.lists(rows(), min_size=1, max_size=6))
def test_the_stream_gets_exactly_the_accepted_rows_of_a_batch(api: Api, batch: list[dict[str, Any]]):
    """Each row carries its own record_id: the records the request added are those of the rows the
    answer accepted, each once, and none of a rejected row."""
    nonce = uuid.uuid4().hex[:12]
    tagged = [row | {"record_id": f"prop-{nonce}-{index}"} for index, row in enumerate(batch)]
    mark = api.mark()
    status, answer = api.post("batch", json.dumps(tagged, allow_nan=True))
    assert status == 200 and answer["failed"] == 0, answer
    rejected = {refusal["index"] for refusal in answer["rejected"]}
    assert answer["accepted"] + len(rejected) == len(tagged) and rejected <= set(range(len(tagged))), answer
    added = sorted(record["record_id"] for record in api.since(mark))
    assert added == sorted(row["record_id"] for index, row in enumerate(tagged) if index not in rejected), \
        (added, answer)


@pytest.mark.parametrize("levels", [500, 950, 990, 1000, 1500, 5000])
def test_nesting_around_the_parsers_limit_is_never_a_5xx(api: Api, levels: int):
    before = api.records()
    for body in (deep(levels), raw_row("Description", deep(levels))):
        for route in ("batch", "row"):
            status, answer = api.post(route, body)
            assert 400 <= status < 500 or (status == 200 and answer["accepted"] == 0), (levels, route, status, answer)
    assert api.records() == before


def test_the_client_sizes_batches_so_the_api_never_answers_413(api: Api):
    """1,000 rows of 900 non-ASCII characters: 6.3 MB in the Lambda event as one batch (413), so the
    client cuts them by bytes and every row is accepted."""
    from helpers import client

    records = [{k: str(v) for k, v in GOOD.items()} | {"Description": "É" * 900, "record_id": f"big#{i}"}
               for i in range(1000)]
    assert sum(client.event_bytes(r) for r in records) > 6 * MB
    before = api.records()
    assert api.post("batch", json.dumps(records))[0] == 413  # as one request: over Lambda's limit
    summary = client.send(api.urls["batch"], records, batch_size=1000, concurrency=2, progress=False)
    assert (summary.accepted, summary.failed, summary.rejected, summary.errors) == (1000, 0, [], [])
    assert summary.batches == 2
    assert api.records() == before + 1000
