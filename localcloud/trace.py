"""Where the local cloud's time went: a bounded timeline of spans, for latency tails.

A slow API request is slow because of its own steps (an authorizer's invoke, a wait for a worker, the
function's DynamoDB call) or because the whole process stopped (a garbage collection, a snapshot's fork,
a thread that held the GIL). Both kinds are recorded here as spans (wall-clock start, duration, kind,
name, details) in a ring of CAPACITY entries, about a microsecond each, so it stays on: a benchmark or a
person reads the spans of a time window with `GET /_localcloud/trace?since=EPOCH&until=EPOCH` (JSON).

A span started in a thread that serves a traced request carries that request's id (`bind`), so the
steps of one API Gateway request can be told apart from the others'.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

TRACE_PATH = "/_localcloud/trace"
CAPACITY = 200_000

_spans: collections.deque[tuple[float, float, str, str, dict[str, Any]]] = collections.deque(maxlen=CAPACITY)
_local = threading.local()


def record(kind: str, name: str, start: float, seconds: float, **details: Any) -> None:
    """One span: `start` is time.time() when it began, `seconds` how long it lasted."""
    trace_id = getattr(_local, "trace_id", None)
    if trace_id is not None and "trace" not in details:
        details["trace"] = trace_id
    _spans.append((start, seconds, kind, name, details))  # deque.append is atomic under the GIL


@contextlib.contextmanager
def span(kind: str, name: str, **details: Any) -> Iterator[dict[str, Any]]:
    """Time the block as one span; the yielded dict takes details learned inside it."""
    start, begun = time.time(), time.perf_counter()
    try:
        yield details
    finally:
        record(kind, name, start, time.perf_counter() - begun, **details)


@contextlib.contextmanager
def bind(trace_id: str) -> Iterator[None]:
    """Spans recorded by this thread inside the block carry `trace_id`."""
    previous = getattr(_local, "trace_id", None)
    _local.trace_id = trace_id
    try:
        yield
    finally:
        _local.trace_id = previous


_open: dict[int, tuple[float, float, str, str, dict[str, Any]]] = {}


def begin(kind: str, name: str, **details: Any) -> int:
    """A span still going on (a snapshot child pickling for seconds): listed by `spans` until `end`."""
    token = id(details)
    _open[token] = (time.time(), time.perf_counter(), kind, name, details)
    return token


def end(token: int) -> None:
    start, begun, kind, name, details = _open.pop(token)
    record(kind, name, start, time.perf_counter() - begun, **details)


def spans(since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
    """The spans that overlap [since, until], oldest first (those still open end now, `open: true`)."""
    now = time.perf_counter()
    going = [(start, now - begun, kind, name, {**details, "open": True})
             for start, begun, kind, name, details in list(_open.values())]
    found = []
    for start, seconds, kind, name, details in list(_spans) + going:
        if start <= until and start + seconds >= since:
            found.append({"start": round(start, 6), "ms": round(1000 * seconds, 3), "kind": kind, "name": name,
                          **details})
    return found


def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """`GET /_localcloud/trace?since=&until=` (epoch seconds): the spans of that window as JSON."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    since = float(query.get("since", ["0"])[0])
    until = float(query.get("until", ["inf"])[0])
    body = json.dumps({"capacity": CAPACITY, "spans": spans(since, until)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# --------------------------------------------------------------------------------------------------
# Process-wide pauses


_gc_started: list[float] = [0.0, 0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[:] = [time.time(), time.perf_counter()]
    elif _gc_started[1]:
        record("gc", f"gen{info.get('generation')}", _gc_started[0], time.perf_counter() - _gc_started[1],
               collected=info.get("collected"))
        _gc_started[1] = 0.0


def watch_gc() -> None:
    """Every garbage collection becomes a span "gc" (the GIL is held throughout: every thread waits)."""
    import gc

    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


STALL_PERIOD_S = 0.005
STALL_LATE_S = 0.005


def watch_stalls(stop: threading.Event, period_s: float = STALL_PERIOD_S, late_s: float = STALL_LATE_S) -> None:
    """Sleep `period_s` again and again; a wake-up more than `late_s` late is a span "stall": for that
    long no thread of this process could run Python when it was due (the GIL held by a long call, the
    process not scheduled on a busy machine, a fork copying page tables)."""
    while True:
        asked = time.perf_counter()
        if stop.wait(period_s):
            return
        late = time.perf_counter() - asked - period_s
        if late > late_s:
            record("stall", "late wake-up", time.time() - late, late)
