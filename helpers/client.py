"""The course's client, done properly: posts the transactions file to the ingestion HTTP API.

The course sends one POST per row in a plain loop. Here rows go in batches (a JSON list per POST) from
a few threads, optionally replayed in "real time" by InvoiceDate at a speed-up, under a rate limit,
with retries (429/5xx/connection errors, exponential backoff + jitter, Retry-After honoured) and a
checkpoint file so a rerun resumes where the last one stopped. Every record carries the dataset's
stable `record_id`, so a resent batch is idempotent end to end.

The API answers each POST with 200 {"accepted": n, "rejected": [{"index": i, "reason": "..."}],
"failed": n}; rejected rows are kept in the summary with their reasons, never dropped silently.

    python -m helpers.client send URL [--nrows N] [--start DATE --end DATE] [--batch-size 500] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import requests

from helpers import bulk_files, dataset

DEFAULT_BATCH_SIZE = 500
# A batch's body reaches the function as a JSON string inside the proxy event, which Lambda refuses
# over 6 MB (API Gateway then answers 413): batches are cut at 5 MB of that escaped text, leaving 1 MB
# for the event's headers and context. (API Gateway's own limit, 10 MB of body, is never the first.)
MAX_BATCH_BYTES = 5 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RECORD_FIELDS: tuple[str, ...] = (*dataset.COLUMNS, "record_id")
CHECKPOINT_VERSION = 1

Record = dict[str, str]


# -------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Rows:
    """The rows to send, in sending order: JSON-ready records and the InvoiceDate of each (NaT if none)."""

    records: list[Record]
    times: pd.Series  # datetime64, aligned with records (0..n-1)

    def __len__(self) -> int:
        return len(self.records)


def read_rows(path: Path | str | None = None, *, nrows: int | None = None,
              start: dataset.TimeLike | None = None, end: dataset.TimeLike | None = None) -> Rows:
    """Select rows with `dataset.load` (all, first N or an InvoiceDate range) and return them as
    published: the 8 columns' exact text plus `record_id`. The text, not the parsed values, is sent so
    the API validates (and may reject) what the file really says and can recompute the id."""
    selected = dataset.load(path, nrows=nrows, start=start, end=end)
    last_line = int(selected["line"].max()) if len(selected) else 0
    raw = dataset.read_raw(path, nrows=last_line or 1).set_index("line")
    text = raw.loc[selected["line"].to_numpy(), list(dataset.COLUMNS)].reset_index(drop=True)
    text["record_id"] = selected["record_id"].to_numpy()
    return Rows(records=text.to_dict("records"), times=selected["InvoiceDate"].reset_index(drop=True))


def rows_from_records(records: Sequence[Record]) -> Rows:
    """Rows from records already in memory (e.g. a notebook's slice); times parsed from InvoiceDate."""
    times = pd.to_datetime(pd.Series([r.get("InvoiceDate", "") for r in records], dtype=object),
                           format=dataset.DATE_FORMAT, errors="coerce")
    return Rows(records=[dict(r) for r in records], times=times.astype("datetime64[ns]"))


def in_time_order(rows: Rows) -> Rows:
    """Stable sort by InvoiceDate (rows without a date last), for a real-time replay."""
    order = rows.times.reset_index(drop=True).sort_values(kind="stable", na_position="last").index
    return Rows(records=[rows.records[i] for i in order], times=rows.times.iloc[order].reset_index(drop=True))


@dataclass(frozen=True)
class Batch:
    index: int
    first: int  # position of its first row
    records: list[Record]
    time: pd.Timestamp | None  # the first row's InvoiceDate: when a replay sends it


def event_bytes(record: Record) -> int:
    """What a record adds to the Lambda event: its JSON (non-ASCII as \\uXXXX), each quote and
    backslash escaped once more inside the event's `body` string, and a comma."""
    text = json.dumps(record, separators=(",", ":"))
    return len(text) + text.count('"') + text.count("\\") + 1


def batches(rows: Rows, size: int, max_bytes: int = MAX_BATCH_BYTES) -> list[Batch]:
    """Consecutive batches of at most `size` rows and `max_bytes` of event (`event_bytes`); a row
    larger than that alone goes alone (the API then refuses it, and the summary says so)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    out: list[Batch] = []
    first, used = 0, 0
    for position, record in enumerate(rows.records):
        cost = event_bytes(record)
        if position > first and (position - first >= size or used + cost > max_bytes):
            out.append(_batch(rows, len(out), first, position))
            first, used = position, 0
        used += cost
    if first < len(rows):
        out.append(_batch(rows, len(out), first, len(rows)))
    return out


def _batch(rows: Rows, index: int, first: int, end: int) -> Batch:
    stamp = rows.times.iloc[first]
    return Batch(index, first, rows.records[first:end], None if pd.isna(stamp) else pd.Timestamp(stamp))


# -------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Rejection:
    """A row the API refused as invalid, with its reason (kept so nothing disappears silently)."""

    record_id: str
    reason: str
    record: Record
    position: int = 0  # the row's place in sending order (file order unless replayed by date)


@dataclass
class SendSummary:
    """What one `send` did. `sent` counts rows posted (once each, retries not counted); `skipped` rows
    were already accepted according to the checkpoint."""

    sent: int = 0
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed: int = 0
    batches: int = 0
    seconds: float = 0.0
    skipped: int = 0
    requests: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)  # why batches failed (first few)

    @property
    def rows_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every row posted got a final answer (accepted or rejected with a reason)."""
        return self.failed == 0

    def counts(self) -> dict[str, int | float]:
        return {"sent": self.sent, "accepted": self.accepted, "rejected": len(self.rejected),
                "failed": self.failed, "skipped": self.skipped, "batches": self.batches,
                "requests": self.requests, "retries": self.retries, "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_per_s, 1)}

    def to_frame(self) -> pd.DataFrame:
        """One row of counts (for a notebook table)."""
        return pd.DataFrame([self.counts()])

    def rejected_frame(self) -> pd.DataFrame:
        """The rejected rows with their reasons."""
        return pd.DataFrame([{"position": r.position, "record_id": r.record_id, "reason": r.reason, **r.record}
                             for r in self.rejected],
                            columns=["position", "record_id", "reason", *dataset.COLUMNS])

    def __str__(self) -> str:
        c = self.counts()
        lines = [
            f"sent {c['sent']:,} rows in {c['batches']:,} batches ({c['requests']:,} requests, "
            f"{c['retries']:,} retries) in {c['seconds']:.2f} s = {c['rows_per_s']:,.0f} rows/s",
            f"  accepted {c['accepted']:,}   rejected {c['rejected']:,}   failed {c['failed']:,}"
            + (f"   skipped (checkpoint) {c['skipped']:,}" if self.skipped else ""),
        ]
        reasons = pd.Series([r.reason for r in self.rejected], dtype=object).value_counts()
        lines += [f"  rejected x{count:,}: {reason}" for reason, count in reasons.head(5).items()]
        lines += [f"  error: {error}" for error in self.errors[:5]]
        return "\n".join(lines)


@dataclass
class _Outcome:
    """The final answer for one batch."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed: int = 0
    requests: int = 0
    error: str | None = None


# -------------------------------------------------------------------------------------------------
# Pacing


class TokenBucket:
    """Rows-per-second limit shared by all threads; bursts at most `capacity` rows."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate, self.capacity, self._clock = rate, max(capacity, 1.0), clock
        self._tokens, self._at = self.capacity, clock()
        self._lock = threading.Lock()

    def acquire(self, n: int) -> float:
        """Take `n` tokens, sleeping until they are there (a batch larger than the bucket goes into
        debt, so the long-run rate holds). Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


class Replay:
    """Sends batches when their InvoiceDate comes round, `speedup` times faster than the data's clock."""

    def __init__(self, speedup: float, first: pd.Timestamp | None):
        if speedup <= 0:
            raise ValueError(f"speedup must be positive, not {speedup}")
        self.speedup, self.first, self.started = speedup, first, time.monotonic()

    def wait_for(self, stamp: pd.Timestamp | None) -> float:
        """Sleep until `stamp` is due; a batch without a date (or earlier) goes at once."""
        if stamp is None or self.first is None:
            return 0.0
        due = self.started + (stamp - self.first).total_seconds() / self.speedup
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)


# -------------------------------------------------------------------------------------------------
# Checkpoint


class Checkpoint:
    """Which batches the API fully answered, saved after each one (atomically) so a rerun skips them.

    `done_through` is the last batch index up to which every batch is done; `done` lists later ones
    already done out of order (concurrency). The fingerprint ties it to the same rows and batch size:
    a checkpoint of another selection is refused rather than silently skipping the wrong rows."""

    def __init__(self, path: Path | str | None, fingerprint: str):
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.done: set[int] = set()
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"checkpoint {self.path} was written for other rows or another batch size "
                    f"(fingerprint {saved.get('fingerprint')!r}, now {fingerprint!r}); delete it to start over"
                )
            self.done = set(range(saved["done_through"] + 1)) | set(saved.get("done", []))

    def done_through(self) -> int:
        last = -1
        while last + 1 in self.done:
            last += 1
        return last

    def mark(self, index: int) -> None:
        with self._lock:
            self.done.add(index)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        through = self.done_through()
        state = {"version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint, "done_through": through,
                 "done": sorted(i for i in self.done if i > through),
                 "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)


def fingerprint(rows: Rows, batch_size: int, per_row: bool) -> str:
    digest = hashlib.sha1(f"{batch_size}|{per_row}|{len(rows)}|".encode())
    for record in rows.records:
        digest.update(record["record_id"].encode() + b"\n")
    return digest.hexdigest()[:16]


# -------------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt k waits uniform(0, min(cap, base * 2**k)), or the
    server's Retry-After when it sends one."""

    retries: int = 5
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class Poster:
    """POSTs JSON bodies to one URL with one keep-alive `requests.Session` per worker thread."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 retry: RetryPolicy = RetryPolicy()):
        self.url, self.timeout, self.retry = url, timeout, retry
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["x-api-key"] = api_key
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.retries = 0

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self.headers)
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def post(self, records: list[Record], body: Any) -> _Outcome:
        """Send until a final answer (200, or a non-retryable status) or the retries run out."""
        data = json.dumps(body, separators=(",", ":")).encode()
        outcome = _Outcome()
        for attempt in range(self.retry.retries + 1):
            outcome.requests += 1
            retry_after, problem = None, None
            try:
                response = self._session().post(self.url, data=data, timeout=self.timeout)
            except requests.RequestException as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    answer = _read_answer(response, records)
                    if answer.failed == 0 or attempt == self.retry.retries:
                        answer.requests = outcome.requests
                        if answer.failed:
                            answer.error = f"API reported {answer.failed} rows failed after {attempt} retries"
                        return answer
                    # Rows failed on the server side (e.g. the stream throttled): resend the batch;
                    # the record ids make the rows already stored idempotent.
                    problem = f"API reported {answer.failed} rows failed"
                elif response.status_code in RETRY_STATUSES:
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                else:  # 400 malformed body, 403 bad key...: retrying cannot help
                    outcome.failed, outcome.error = len(records), f"HTTP {response.status_code}: {response.text[:200]}"
                    return outcome
            if attempt < self.retry.retries:
                with self._lock:
                    self.retries += 1
                time.sleep(self.retry.delay(attempt, retry_after))
        outcome.failed = len(records)
        outcome.error = f"gave up after {self.retry.retries} retries: {problem}"
        return outcome


def _read_answer(response: requests.Response, records: list[Record]) -> _Outcome:
    """Parse {"accepted", "rejected", "failed"}; rejected indexes point into the posted list."""
    try:
        answer = response.json()
        rejected = [
            Rejection(records[int(item["index"])]["record_id"], str(item.get("reason", "")),
                      records[int(item["index"])], int(item["index"]))
            for item in answer.get("rejected", [])
        ]
        return _Outcome(accepted=int(answer.get("accepted", 0)), rejected=rejected, failed=int(answer.get("failed", 0)))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        return _Outcome(failed=len(records), error=f"unreadable answer ({error}): {response.text[:200]}")


# -------------------------------------------------------------------------------------------------
# Sending


def _progress_bar(total: int, disable: bool) -> Any:
    """tqdm's notebook widget in Jupyter when ipywidgets is there (tqdm.auto would warn without it),
    else the text bar."""
    if not disable and "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as bar
        except ImportError:
            from tqdm.std import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar(total=total, unit="rows", unit_scale=True, smoothing=0.1, disable=disable, dynamic_ncols=True)


def send(url: str, rows: Rows | Sequence[Record] | None = None, *, data: Path | str | None = None,
         nrows: int | None = None, start: dataset.TimeLike | None = None, end: dataset.TimeLike | None = None,
         batch_size: int = DEFAULT_BATCH_SIZE, concurrency: int = 4, speedup: float | None = None,
         rate: float | None = None, checkpoint: Path | str | None = None, per_row: bool = False,
         api_key: str | None = None, retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0,
         progress: bool = True) -> SendSummary:
    """Post rows to the ingestion API and say what became of every one.

    Rows are `rows` if given, else read from `data` (default: RETAIL_DATA or the sample) with
    `nrows` / `start`-`end`. `speedup` replays by InvoiceDate (3600 = one hour of data per second);
    `rate` caps rows/s; `checkpoint` makes a rerun skip batches already answered. `per_row=True` is
    the course's way for comparison: one POST per row (the row as a JSON object), sequential.
    """
    if rows is None:
        rows = read_rows(data, nrows=nrows, start=start, end=end)
    elif not isinstance(rows, Rows):
        rows = rows_from_records(rows)
    if speedup:
        rows = in_time_order(rows)
    if per_row:
        batch_size, concurrency = 1, 1
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    work = batches(rows, batch_size)
    state = Checkpoint(checkpoint, fingerprint(rows, batch_size, per_row))
    todo = [batch for batch in work if batch.index not in state.done]
    summary = SendSummary(skipped=sum(len(b.records) for b in work if b.index in state.done))

    poster = Poster(url, api_key=api_key, timeout=timeout, retry=retry)
    bucket = TokenBucket(rate, capacity=batch_size) if rate else None
    replay = Replay(speedup, todo[0].time if todo else None) if speedup else None
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency)  # pacing must not pile batches up in a queue
    started = time.perf_counter()

    with _progress_bar(len(rows), disable=not progress) as bar, ThreadPoolExecutor(concurrency) as pool:
        bar.update(summary.skipped)

        def finish(batch: Batch, future: Future[_Outcome]) -> None:
            try:
                outcome = future.result()
            except Exception as error:  # noqa: BLE001 - a bug must not lose the count of a batch
                outcome = _Outcome(failed=len(batch.records), error=f"{type(error).__name__}: {error}")
            with lock:
                summary.sent += len(batch.records)
                summary.batches += 1
                summary.requests += outcome.requests
                summary.accepted += outcome.accepted
                summary.rejected.extend(dataclasses.replace(r, position=batch.first + r.position)
                                        for r in outcome.rejected)
                summary.failed += outcome.failed
                if outcome.error and len(summary.errors) < 20:
                    summary.errors.append(f"batch {batch.index}: {outcome.error}")
            try:
                if outcome.failed == 0:
                    state.mark(batch.index)
                bar.update(len(batch.records))
            finally:
                slots.release()

        try:
            for batch in todo:
                if replay:
                    replay.wait_for(batch.time)
                if bucket:
                    bucket.acquire(len(batch.records))
                slots.acquire()
                body: Any = batch.records[0] if per_row else batch.records
                future = pool.submit(poster.post, batch.records, body)
                future.add_done_callback(lambda f, b=batch: finish(b, f))
        finally:
            pool.shutdown(wait=True)
            poster.close()
    summary.seconds = time.perf_counter() - started
    summary.retries = poster.retries
    summary.rejected.sort(key=lambda r: r.position)
    return summary


# -------------------------------------------------------------------------------------------------
# CLI


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("send", help="post the transactions file to the ingestion API")
    command.add_argument("url", help="the ingestion API's URL (e.g. .../v1/transactions)")
    command.add_argument("--data", type=Path, help="CSV file (default: RETAIL_DATA or data/sample.csv)")
    command.add_argument("--nrows", type=int, help="only the first N data rows")
    command.add_argument("--start", help="first InvoiceDate (inclusive), e.g. 2011-11-01")
    command.add_argument("--end", help="last InvoiceDate (exclusive)")
    command.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per POST (default 500)")
    command.add_argument("--concurrency", type=int, default=4, help="parallel requests (default 4)")
    command.add_argument("--speedup", type=float, help="replay by InvoiceDate, N times faster (3600: an hour per second)")
    command.add_argument("--rate", type=float, help="at most this many rows per second")
    command.add_argument("--checkpoint", type=Path, help="resume file: a rerun skips batches already answered")
    command.add_argument("--per-row", action="store_true", help="the course's way: one POST per row, sequential")
    command.add_argument("--api-key", default=os.environ.get("RETAIL_API_KEY"), help="x-api-key header (or RETAIL_API_KEY)")
    command.add_argument("--retries", type=int, default=RetryPolicy.retries, help="retries per batch (default 5)")
    command.add_argument("--rejected-out", type=Path, help="write rejected rows with reasons to this CSV")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    bulk_files.add_command(commands)  # the batch path: cut the file and upload it to incoming/
    args = parser.parse_args(None if argv is None else list(argv))
    if args.command == "upload":
        return bulk_files.run_command(args)

    try:
        summary = send(
            args.url, data=args.data, nrows=args.nrows, start=args.start, end=args.end, batch_size=args.batch_size,
            concurrency=args.concurrency, speedup=args.speedup, rate=args.rate, checkpoint=args.checkpoint,
            per_row=args.per_row, api_key=args.api_key, retry=RetryPolicy(retries=args.retries),
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary)
    if args.rejected_out and summary.rejected:
        summary.rejected_frame().to_csv(args.rejected_out, index=False)
        print(f"rejected rows written to {args.rejected_out}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(_main())
