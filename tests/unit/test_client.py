"""The ingestion client against a tiny local HTTP API (http.server in a thread) that records every
body it is sent and answers 429/500/dropped connections on demand. No cloud needed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import client, dataset
from helpers.paths import PROJECT_ROOT

FAST = client.RetryPolicy(retries=3, base=0.001, cap=0.01)
Answer = tuple[int, dict[str, str], bytes | None]  # body None: drop the connection without answering


class FakeApi:
    """Records posted bodies; answers scripted responses first, then `respond(body)`, else validates:
    a row whose Quantity is negative is rejected (to test that rejections are kept)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[Answer] = []
        self.respond: Callable[[Any], Answer | None] = lambda body: None
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, raw: bytes, headers: dict[str, str]) -> Answer:
        with self.lock:
            self.headers.append(headers)
            if self.script:
                return self.script.pop(0)
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, b'{"message": "malformed body"}'
        scripted = self.respond(body)
        if scripted is not None:
            return scripted
        with self.lock:
            self.bodies.append(body)
        items = body if isinstance(body, list) else [body]
        rejected = [{"index": i, "reason": f"Quantity {item['Quantity']} is negative"}
                    for i, item in enumerate(items) if item["Quantity"].startswith("-")]
        reply = {"accepted": len(items) - len(rejected), "rejected": rejected, "failed": 0}
        return 200, {}, json.dumps(reply).encode()

    def rows(self) -> list[dict[str, str]]:
        return [row for body in self.bodies for row in (body if isinstance(body, list) else [body])]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's sessions expect

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, body = fake.answer(raw, {k.lower(): v for k, v in self.headers.items()})
            if body is None:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1/transactions"
    yield fake
    server.shutdown()
    server.server_close()


def ids(rows: list[dict[str, str]]) -> list[str]:
    return [row["record_id"] for row in rows]


def test_batches_are_json_lists_of_published_columns_with_record_ids(api: FakeApi):
    summary = client.send(api.url, nrows=1234, batch_size=500, concurrency=1, progress=False)
    assert [len(body) for body in api.bodies] == [500, 500, 234]
    expected = dataset.load(nrows=1234)
    assert ids(api.rows()) == expected["record_id"].tolist()
    first = api.rows()[0]
    assert list(first) == [*dataset.COLUMNS, "record_id"]
    assert all(isinstance(value, str) for value in first.values())  # the file's text, exactly
    assert (summary.sent, summary.batches, summary.failed, summary.requests) == (1234, 3, 0, 3)
    assert summary.accepted + len(summary.rejected) == 1234 and summary.ok
    assert api.headers[0]["content-type"] == "application/json" and "x-api-key" not in api.headers[0]


def test_concurrency_sends_every_row_exactly_once(api: FakeApi):
    summary = client.send(api.url, batch_size=50, concurrency=8, progress=False)
    expected = client.read_rows()
    assert Counter(ids(api.rows())) == Counter(ids(expected.records))
    assert len(set(ids(api.rows()))) == len(expected) == summary.sent
    assert summary.batches == -(-len(expected) // 50) and summary.ok


def test_retries_429_and_5xx_honouring_retry_after(api: FakeApi):
    api.script = [(429, {"Retry-After": "0.3"}, b'{"message": "Too Many Requests"}'),
                  (500, {}, b'{"message": "Internal server error"}'),
                  (0, {}, None)]  # a dropped connection
    started = time.perf_counter()
    summary = client.send(api.url, nrows=20, batch_size=20, concurrency=1, retry=FAST, progress=False)
    assert time.perf_counter() - started >= 0.3
    assert (summary.requests, summary.retries, summary.failed) == (4, 3, 0)
    assert ids(api.rows()) == ids(client.read_rows(nrows=20).records)


def test_gives_up_after_the_retries_and_counts_the_rows_failed(api: FakeApi):
    api.respond = lambda body: (503, {}, b'{"message": "Service Unavailable"}')
    summary = client.send(api.url, nrows=30, batch_size=10, concurrency=2, retry=FAST, progress=False)
    assert (summary.sent, summary.accepted, summary.failed, summary.requests) == (30, 0, 30, 12)
    assert not summary.ok and "HTTP 503" in summary.errors[0]
    assert "failed 30" in str(summary)


def test_malformed_body_answer_is_a_failure_not_retried(api: FakeApi):
    api.respond = lambda body: (400, {}, b'{"message": "malformed"}')
    summary = client.send(api.url, nrows=5, batch_size=5, retry=FAST, progress=False)
    assert (summary.failed, summary.requests, summary.retries) == (5, 1, 0)


def test_rejected_rows_are_counted_and_kept_with_reasons(api: FakeApi):
    frame = dataset.load()
    negative = frame[frame["Quantity"] < 0]
    assert len(negative) > 0
    summary = client.send(api.url, batch_size=300, progress=False)
    assert len(summary.rejected) == len(negative)
    assert summary.accepted == summary.sent - len(negative) and summary.ok
    assert [r.record_id for r in summary.rejected] == negative["record_id"].tolist()  # in file order
    assert [r.position for r in summary.rejected] == negative.index.tolist()
    table = summary.rejected_frame()
    assert table["reason"].str.contains("is negative").all() and table["Quantity"].str.startswith("-").all()
    assert f"rejected {len(negative):,}" in str(summary)
    assert summary.to_frame().loc[0, "rejected"] == len(negative)


def test_resume_from_checkpoint_skips_batches_already_accepted(api: FakeApi, tmp_path: Path):
    checkpoint = tmp_path / "send.json"
    rows = client.read_rows(nrows=100)
    poisoned = rows.records[25]["record_id"]  # in batch 2 of 10-row batches
    api.respond = lambda body: (500, {}, b"{}") if poisoned in ids(body) else None
    first = client.send(api.url, rows, batch_size=10, concurrency=3, retry=FAST,
                        checkpoint=checkpoint, progress=False)
    assert (first.failed, first.accepted + len(first.rejected)) == (10, 90)
    saved = json.loads(checkpoint.read_text())
    assert saved["done_through"] == 1 and saved["done"] == list(range(3, 10))

    api.respond, api.bodies = (lambda body: None), []
    second = client.send(api.url, rows, batch_size=10, retry=FAST, checkpoint=checkpoint, progress=False)
    assert ids(api.rows()) == ids(rows.records[20:30])
    assert (second.sent, second.skipped, second.failed) == (10, 90, 0)
    assert json.loads(checkpoint.read_text())["done_through"] == 9

    api.bodies = []
    third = client.send(api.url, rows, batch_size=10, checkpoint=checkpoint, progress=False)
    assert (third.sent, third.skipped, api.bodies) == (0, 100, [])
    with pytest.raises(ValueError, match="other rows or another batch size"):
        client.send(api.url, rows, batch_size=20, checkpoint=checkpoint, progress=False)


def test_replay_paces_batches_by_invoice_date(api: FakeApi):
    rows = client.read_rows(start="2011-11-01", end="2011-11-08")
    assert len(rows) > 20
    span = (rows.times.max() - rows.times.min()).total_seconds()
    speedup = span / 0.6  # the whole week in ~0.6 s
    started = time.perf_counter()
    summary = client.send(api.url, rows, batch_size=5, concurrency=2, speedup=speedup, progress=False)
    elapsed = time.perf_counter() - started
    last_batch = client.batches(client.in_time_order(rows), 5)[-1].time
    expected = (last_batch - rows.times.min()).total_seconds() / speedup
    assert expected * 0.95 <= elapsed < expected + 2.0
    posted = [row["InvoiceDate"] for row in api.rows()]
    stamps = [datetime.strptime(text, dataset.DATE_FORMAT) for text in posted]
    assert summary.sent == len(rows) == len(stamps)
    # Batches are released in data order: the first posted batch holds the earliest rows.
    assert min(stamps) == rows.times.min().to_pydatetime()


def test_rate_limit_caps_rows_per_second(api: FakeApi):
    started = time.perf_counter()
    summary = client.send(api.url, nrows=600, batch_size=50, concurrency=4, rate=1000, progress=False)
    elapsed = time.perf_counter() - started
    assert 0.5 <= elapsed < 3.0  # (600 - one 50-row burst) / 1000 rows/s = 0.55 s
    assert summary.sent == 600


def test_token_bucket_long_run_rate():
    bucket = client.TokenBucket(rate=2000, capacity=10)
    started = time.perf_counter()
    for _ in range(50):
        bucket.acquire(20)  # 1000 rows at 2000/s, bursting only 10
    assert 0.45 <= time.perf_counter() - started < 1.5


def test_per_row_mode_posts_each_row_as_an_object(api: FakeApi):
    summary = client.send(api.url, nrows=7, per_row=True, batch_size=500, concurrency=8, progress=False)
    assert all(isinstance(body, dict) for body in api.bodies) and len(api.bodies) == 7
    assert ids(api.bodies) == ids(client.read_rows(nrows=7).records)
    assert (summary.batches, summary.requests, summary.sent) == (7, 7, 7)


def test_date_range_selection(api: FakeApi):
    summary = client.send(api.url, start="2011-11-01", end="2011-11-08", progress=False)
    expected = dataset.load(start="2011-11-01", end="2011-11-08")
    assert sorted(ids(api.rows())) == sorted(expected["record_id"])
    stamps = [datetime.strptime(row["InvoiceDate"], dataset.DATE_FORMAT) for row in api.rows()]
    assert min(stamps) >= datetime(2011, 11, 1) and max(stamps) < datetime(2011, 11, 8)
    assert summary.sent == len(expected)


def test_api_key_header(api: FakeApi):
    client.send(api.url, nrows=3, api_key="secret-key", progress=False)
    assert api.headers[0]["x-api-key"] == "secret-key"


def test_retry_after_reads_seconds_and_http_dates():
    assert client.retry_after_seconds("2") == 2.0
    assert client.retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= client.retry_after_seconds(later) <= 31


def test_cli_exit_codes(api: FakeApi, capsys: pytest.CaptureFixture[str]):
    assert client._main(["send", api.url, "--nrows", "10", "--no-progress", "--api-key", "k"]) == 0
    assert "sent 10 rows" in capsys.readouterr().out and api.headers[-1]["x-api-key"] == "k"
    api.respond = lambda body: (500, {}, b"{}")
    assert client._main(["send", api.url, "--nrows", "10", "--no-progress", "--retries", "0"]) == 1
    assert "failed 10" in capsys.readouterr().out


def test_cli_runs_as_a_module(api: FakeApi, tmp_path: Path):
    out = tmp_path / "rejected.csv"
    done = subprocess.run(
        [sys.executable, "-m", "helpers.client", "send", api.url, "--start", "2011-11-01", "--end", "2011-12-01",
         "--batch-size", "40", "--concurrency", "2", "--no-progress", "--rejected-out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "accepted" in done.stdout
    if "rejected 0 " not in done.stdout:
        assert out.exists()


def test_batches_are_cut_by_bytes_so_no_request_exceeds_the_lambda_event_limit():
    """Rows of 1.5 MB (quotes and non-ASCII inflate them once more inside the proxy event) among small
    ones: batches stay under MAX_BATCH_BYTES of escaped body, keep the order and lose no row."""
    small = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "CAFÉ CRÈME", "Quantity": "6",
             "InvoiceDate": "12/1/2010 8:26", "UnitPrice": "2.55", "CustomerID": "17850",
             "Country": "United Kingdom", "record_id": "x#1"}
    big = small | {"Description": '"É"' * (100 * 1024)}  # 300 KB of text, about 1.5 MB in the event
    records = [small, big, small, big, big, small, big] + [small] * 20
    rows = client.rows_from_records(records)
    cut = client.batches(rows, 500)
    assert [r for b in cut for r in b.records] == rows.records and [b.first for b in cut][0] == 0
    for batch in cut:
        escaped = json.dumps(json.dumps(batch.records, separators=(",", ":")))  # the event's body field
        assert len(escaped) <= client.MAX_BATCH_BYTES, (batch.index, len(escaped))
        assert sum(client.event_bytes(r) for r in batch.records) >= len(escaped) - 3  # quotes and brackets
    assert len(cut) == 2 and max(len(b.records) for b in cut) <= 500  # 4 rows of 1.5 MB: 3 fit in 5 MB
    assert [len(b.records) for b in client.batches(client.rows_from_records([small] * 1200), 500)] == [500, 500, 200]
    alone = client.batches(client.rows_from_records([small | {"Description": "x" * 100}]), 10, max_bytes=10)
    assert len(alone) == 1 and len(alone[0].records) == 1  # a row over the limit goes alone
