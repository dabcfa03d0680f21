"""The query API's latency at a paced 50 requests/s on a full serving table, on a local cloud of its own.

1. deploy: the query API as notebook 05 builds it (`workbook.require("05")`, prefix `benchquery`: the
   authorizer and query functions, the TOKEN authorizer cached 300 s per token, the serving table);
2. fill: the serving table gets the invoice documents of the real file (RETAIL_REAL_DATA; 25,900 on the
   full file; `--rows N` for the first N rows, data/sample.csv when the file is absent), built by the
   functions' record contract (`retail_records`: `contract.prepare`, `documents.line_of`, `fold_invoice`,
   the items the stream and batch paths write) and written with BatchWriteItem from THREADS threads;
   then the first periodic snapshot after that bulk load is waited for (`--no-settle`: not), so the load
   meets the steady state (a snapshot taken under the load is a cost of its own, told apart in 4.);
3. query: `paced_queries`, the measurement pipeline_e2e runs too: after WARM_UP requests (the first two,
   cold, reported on their own) a paced RATE requests/s for SECONDS s, half GET /invoices/{n} (the
   invoice's customer's token, an admin token for guest invoices), half GET
   /customers/{id}/invoices?limit=20 (that customer's token), over 300 invoices and 300 customers:
   p50/p90/p99/max, statuses, the achieved rate;
4. the server during the slow requests: the local cloud's trace (`/_localcloud/trace`: per stage request
   its authorizer and integration invokes, each invoke's wait for a worker and its run, the function's
   DynamoDB calls, and server-wide pauses: garbage collection, snapshot forks) for the requests above
   the p90, and the server's pauses over the whole window; CPU and run-queue wait per request of the
   server, its workers and the client, and the machine's CPU pressure (a shared machine's other work).

Run: `python -m benchmarks --only query` or `.venv/bin/python -m benchmarks.query_api [--rows N]
[--seconds S] [--rate R] [--no-settle] [--out F] [--spans F] [--env NAME=VALUE]`.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from helpers.paths import LAMBDAS_DIR, PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"))
SAMPLE_FILE = PROJECT_ROOT / "data" / "sample.csv"
PREFIX = "benchquery"
RATE, SECONDS = 50.0, 20.0
GRACE_S = 15.0  # after the last scheduled request, how long answers are waited for
WARM_UP = 40
SAMPLED = 300  # invoices and customers the requests go over
THREADS = 4  # BatchWriteItem callers filling the table
SETTLE_TIMEOUT_S = 300.0  # how long the snapshot after the bulk load is waited for


def _log(message: str) -> None:
    print(f"[query {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def latency_summary(samples: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max in ms of durations in seconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p90_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.90 * len(ordered)))], 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "max_ms": round(1000 * ordered[-1], 1), "n": len(ordered)}


def lambda_module(folder: str, module: str = "app") -> Any:
    """A module of a function's source folder, loaded by path once (the folders are not packages)."""
    name = f"bench_{folder}_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LAMBDAS_DIR / folder / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # dataclasses look their module up there
        try:
            spec.loader.exec_module(loaded)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


# --------------------------------------------------------------------------------------------------
# The paced load (pipeline_e2e measures with it too)


def query_plan(api: Any, by_invoice: Mapping[str, str], rate: float, seconds: float,
               secret: str) -> list[tuple[str, str, str]]:
    """(kind, url, Authorization) of every request: invoices and customers' lists in turn, each with
    the token of the customer it belongs to (an admin's for a guest invoice)."""
    mint = lambda_module("customer_authorizer").mint_token
    chooser = random.Random(42)
    invoices = chooser.sample(sorted(by_invoice), min(SAMPLED, len(by_invoice)))
    known = sorted({customer for customer in by_invoice.values() if customer})
    customers = chooser.sample(known, min(SAMPLED, len(known)))
    admin = mint("admin", secret)
    plan: list[tuple[str, str, str]] = []
    for i in range(int(rate * seconds)):
        if i % 2 == 0:
            invoice = invoices[(i // 2) % len(invoices)]
            customer = by_invoice[invoice]
            plan.append(("invoice", api.url_for(f"invoices/{invoice}"), mint(customer, secret) if customer else admin))
        else:
            customer = customers[(i // 2) % len(customers)]
            plan.append(("customer", api.url_for(f"customers/{customer}/invoices?limit=20"), mint(customer, secret)))
    return plan


def waiting_for_cpu(server_pid: int) -> dict[str, float]:
    """Seconds the threads of the local cloud, of its Lambda workers, of its other children (a snapshot
    being pickled, at idle priority: it waits by design) and of this process spent runnable but not
    running, so far (Linux schedstat: time on a run queue): what a busy machine took from them. Threads
    that ended are not counted."""

    def waited(pid: int) -> float:
        total = 0
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return 0.0
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return total / 1e9

    def is_worker(pid: int) -> bool:
        try:
            return b"worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    children = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return {"server": waited(server_pid), "lambda_workers": sum(waited(pid) for pid in children if is_worker(pid)),
            "other_children": sum(waited(pid) for pid in children if not is_worker(pid)),
            "client": waited(os.getpid())}


def cpu_pressure() -> float | None:
    """Linux's CPU pressure counter (microseconds during which some task waited for a CPU), or None."""
    try:
        return float(Path("/proc/pressure/cpu").read_text().split("total=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


class KeepAliveGet:
    """GET with an Authorization header over one kept-alive connection per thread (http.client: the
    client's own cost per request is a fraction of `requests`', so it adds less to what is measured).
    Answers (status, the x-amzn-RequestId header); status 0 when the connection failed."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._local = threading.local()

    def __call__(self, url: str, token: str) -> tuple[int, str | None]:
        import http.client

        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in range(2):  # a connection the server closed meanwhile is opened again once
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout_s)
                self._local.connection = connection
            try:
                connection.request("GET", target, headers={"Authorization": token})
                answer = connection.getresponse()
                answer.read()
                return answer.status, answer.getheader("x-amzn-RequestId")
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
        return 0, None


def paced_queries(api: Any, by_invoice: Mapping[str, str], rate: float, seconds: float, secret: str,
                  warm_up: int = WARM_UP, server_pid: int | None = None) -> dict[str, Any]:
    """The plan's first `warm_up` requests (not measured: cold starts), then every request at its due
    time from a pool of 16 threads; latency from send to answer, and how late each was sent. With the
    local cloud's `server_pid`, also the CPU its process, its Lambda workers and this one used per request."""
    from benchmarks.pipeline_e2e import cpu_seconds

    plan = query_plan(api, by_invoice, rate, seconds, secret)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    get = KeepAliveGet(GRACE_S)

    def call(kind: str, url: str, token: str, due: float) -> None:
        sent_at, begun = time.time(), time.perf_counter()
        status, request_id = get(url, token)
        ended = time.perf_counter()
        with lock:
            results.append({"kind": kind, "status": status, "s": ended - begun, "lag_s": begun - due,
                            "ended": ended, "sent_at": sent_at, "request_id": request_id})

    first = []
    for _kind, url, token in plan[:2]:
        begun = time.perf_counter()
        KeepAliveGet(60)(url, token)
        first.append(time.perf_counter() - begun)
    with ThreadPoolExecutor(8) as warming:
        list(warming.map(lambda item: get(item[1], item[2]), plan[2:warm_up]))

    _log(f"{len(plan)} requests at {rate:g}/s")
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    waits_before, pressure_before, started_at = waiting_for_cpu(server_pid) if server_pid else None, cpu_pressure(), time.perf_counter()
    pool = ThreadPoolExecutor(16)
    start = time.perf_counter() + 0.1
    window = [time.time() + 0.1, 0.0]
    futures = []
    for index, (kind, url, token) in enumerate(plan):
        due = start + index / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        futures.append(pool.submit(call, kind, url, token, due))
    wait(futures, timeout=GRACE_S)  # a backlog the API cannot serve is reported, not waited out
    pool.shutdown(wait=False, cancel_futures=True)
    window[1] = time.time()
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    waits_after, pressure_after, elapsed = waiting_for_cpu(server_pid) if server_pid else None, cpu_pressure(), time.perf_counter() - started_at
    with lock:
        answered = list(results)
    statuses: dict[str, int] = {}
    for result in answered:
        statuses[str(result["status"])] = statuses.get(str(result["status"]), 0) + 1
    ok = [r for r in answered if r["status"] == 200]
    return {
        "requests": len(plan), "answered": len(answered), "rate_per_s": rate, "seconds": seconds,
        "cold_first_requests_ms": [round(1000 * f, 1) for f in first], "warm_up_requests": warm_up,
        "achieved_rate_per_s": round(len(answered) / (max(r["ended"] for r in answered) - start), 1) if answered else None,
        "statuses": statuses,
        "all": latency_summary([r["s"] for r in ok]),
        "invoice": latency_summary([r["s"] for r in ok if r["kind"] == "invoice"]),
        "customer_invoices": latency_summary([r["s"] for r in ok if r["kind"] == "customer"]),
        "start_lag": latency_summary([max(r["lag_s"], 0.0) for r in answered]),
        "cpu_ms_per_request": {name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(len(answered), 1), 2)
                               for name in cpu_after} if cpu_before and cpu_after else None,
        # Waiting for a CPU while runnable, per request: the machine's share of the latency.
        "run_queue_wait_ms_per_request": {name: round(1000 * (waits_after[name] - waits_before[name]) / max(len(answered), 1), 2)
                                          for name in waits_after} if waits_before and waits_after else None,
        # Share of the window during which some task of the machine waited for a CPU (Linux PSI).
        "machine_cpu_pressure_pct": round((pressure_after - pressure_before) / 1e6 / elapsed * 100, 1)
        if pressure_before is not None and pressure_after is not None else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "_answered": answered, "_window": window,
    }


# --------------------------------------------------------------------------------------------------
# The server during the slow requests (the local cloud's /_localcloud/trace)


def server_spans(endpoint: str, since: float, until: float) -> list[dict[str, Any]]:
    """The local cloud's trace of [since, until] (none from a local cloud without one)."""
    import requests

    answer = requests.get(f"{endpoint}/_localcloud/trace", params={"since": since, "until": until}, timeout=60)
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return answer.json()["spans"]


def _overlap(span: dict[str, Any], start: float, end: float) -> float:
    """Seconds of `span` inside [start, end]."""
    return max(0.0, min(end, span["start"] + span["ms"] / 1000) - max(start, span["start"]))


def breakdown(request: dict[str, Any], spans: list[dict[str, Any]], by_trace: dict[str, list[dict[str, Any]]]
              ) -> dict[str, Any]:
    """One answered request in the server's words: its own steps (spans carrying its id), the function's
    DynamoDB calls during the query function's run, and what stopped the whole process meanwhile."""
    start, end = request["sent_at"], request["sent_at"] + request["s"]
    own = by_trace.get(request.get("request_id") or "", [])
    step = {(span["kind"], span["name"], span.get("function")): span for span in own}
    total = step.get(("apigateway", "request", None))
    row: dict[str, Any] = {"client_ms": round(1000 * request["s"], 1), "kind": request["kind"],
                           "server_ms": total["ms"] if total else None,
                           "server_cpu_ms": total.get("cpu_ms") if total else None}
    for name in ("authorization", "authorizer-invoke", "integration"):
        if ("apigateway", name, None) in step:
            row[f"{name}_ms"] = step[("apigateway", name, None)]["ms"]
    for span in own:
        if span["kind"] != "lambda":
            continue
        who = "authorizer" if "authorizer" in span["function"] else "query"
        if span["name"] == "acquire":
            row[f"{who}_slot_ms"], row[f"{who}_cold"] = span["slot_ms"], span["cold"]
            row[f"{who}_acquire_ms"] = span["ms"]
        elif span["name"] == "run":
            row[f"{who}_run_ms"] = span["ms"]
            if who == "query":
                calls = [s for s in spans if s["kind"] == "http" and s["name"].startswith("DynamoDB")
                         and span["start"] <= s["start"] <= span["start"] + span["ms"] / 1000]
                if calls:  # another worker's call may start within this run too: the first is likeliest
                    row["dynamodb_ms"], row["dynamodb_cpu_ms"] = calls[0]["ms"], calls[0].get("cpu_ms")
        elif span["name"] == "output":
            row[f"{who}_handler_ms"] = span.get("handler_ms")
            row[f"{who}_handler_cpu_ms"] = span.get("handler_cpu_ms")
            row[f"{who}_output_ms"] = span["ms"]
        elif span["name"] == "logs":
            row[f"{who}_logs_ms"] = span["ms"]
    for kind in ("gc", "stall", "snapshot"):
        hit = [s for s in spans if s["kind"] == kind and _overlap(s, start, end) > 0]
        if hit:
            row[f"{kind}_ms"] = round(1000 * sum(_overlap(s, start, end) for s in hit), 1)
            row[f"{kind}_spans"] = sorted({s["name"] for s in hit})
    row["concurrent_requests"] = sum(1 for s in spans if s["kind"] == "apigateway" and s["name"] == "request"
                                     and _overlap(s, start, end) > 0) - (1 if total else 0)
    return row


def explain(answered: list[dict[str, Any]], spans: list[dict[str, Any]], slowest: int = 10) -> dict[str, Any]:
    """The slowest requests' breakdowns, the medians of each step for the requests above the p90 and for
    the others, and the process-wide pauses over the whole window."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if "trace" in span:
            by_trace.setdefault(span["trace"], []).append(span)
    ok = sorted((r for r in answered if r["status"] == 200), key=lambda r: r["s"])
    if not ok:
        return {}
    p90 = ok[int(0.9 * (len(ok) - 1))]["s"]
    rows = [breakdown(r, spans, by_trace) for r in ok]

    def medians(group: list[dict[str, Any]]) -> dict[str, Any]:
        keys = sorted({k for row in group for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        found = {k: round(statistics.median(row.get(k) or 0 for row in group), 2) for k in keys}
        found["authorizer_invoked"] = sum(1 for row in group if "authorizer-invoke_ms" in row)
        for kind in ("gc", "stall", "snapshot"):
            found[f"with_{kind}"] = sum(1 for row in group if f"{kind}_ms" in row)
        return {"n": len(group), **found}

    pauses = {}
    for kind in ("gc", "stall", "snapshot"):
        for name in sorted({s["name"] for s in spans if s["kind"] == kind}):
            durations = [s["ms"] for s in spans if s["kind"] == kind and s["name"] == name]
            pauses[f"{kind} {name}"] = {"count": len(durations), "total_ms": round(sum(durations), 1),
                                        "max_ms": round(max(durations), 1)}
    children = [s for s in spans if s["kind"] == "snapshot" and s["name"] == "child"]
    during = [r for r in ok if any(_overlap(c, r["sent_at"], r["sent_at"] + r["s"]) > 0 for c in children)]
    return {"above_p90": medians([row for row, r in zip(rows, ok) if r["s"] > p90]),
            "up_to_p90": medians([row for row, r in zip(rows, ok) if r["s"] <= p90]),
            "slowest": rows[-slowest:][::-1], "server_pauses": pauses,
            "while_a_snapshot_child_ran": latency_summary([r["s"] for r in during]),
            "while_none_ran": latency_summary([r["s"] for r in ok if r not in during])}


# --------------------------------------------------------------------------------------------------
# The serving table, filled with the batch path's documents


def invoice_documents(path: Path, rows: int | None = None) -> list[dict[str, Any]]:
    """The serving table's invoice documents (DynamoDB JSON) of the file's first `rows` rows (None: all),
    built by the functions' record contract (`retail_records`: the rows' canonical records and ids, each
    invoice's document folded from its lines) exactly as the stream and batch paths write them."""
    from retail_records import contract, documents

    with path.open(newline="", encoding="ISO-8859-1") as stream:
        reader = csv.reader(stream)
        header = [name.lstrip("\ufeff") for name in next(reader)]
        raw = [dict(zip(header, values)) for values, _ in zip(reader, range(rows or 10**9)) if values]
    accepted, _refused = contract.prepare(raw)
    by_invoice: dict[str, list[Any]] = {}
    for good in accepted:
        record = good.record
        try:
            line = documents.line_of(record, record["record_id"], record["Quantity"],
                                     contract.stream_number(record["UnitPrice"]))
        except contract.BadRow:
            continue
        by_invoice.setdefault(line.invoice, []).append(line)
    built = []
    for invoice, lines in by_invoice.items():
        document, _overflow = documents.fold_invoice(invoice, None, lines)
        if document is not None:
            built.append(document)
    return built


def fill_table(table: str, items: list[dict[str, Any]], threads: int = THREADS) -> float:
    """BatchWriteItem of every item, 25 a call from `threads` threads (unprocessed items retried); seconds."""
    from helpers import config

    dynamodb = config.client("dynamodb")
    chunks = [items[i:i + 25] for i in range(0, len(items), 25)]

    def write(chunk: list[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in chunk]
        for attempt in range(8):
            requests = dynamodb.batch_write_item(RequestItems={table: requests}).get(
                "UnprocessedItems", {}).get(table, [])
            if not requests:
                return
            time.sleep(0.05 * 2 ** attempt)
        raise RuntimeError(f"{len(requests)} documents not written after 8 attempts")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, chunks))
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------------
# Entry point


def _deploy() -> dict[str, Any]:
    """The query API as notebook 05 builds it (and 00, 02-04 before it), with its token secret."""
    from helpers import apis, config, resources, workbook

    built = workbook.require("05")
    n = resources.names()
    secret = config.client("ssm").get_parameter(Name=n.auth_secret_parameter, WithDecryption=True)["Parameter"]["Value"]
    api = apis.RestApi(built["query_api_id"], n.query_api, "v1", apis.invoke_url(built["query_api_id"], "v1"))
    return {"table": n.table, "api": api, "secret": secret}


def wait_for_snapshot(state_dir: Path, server_pid: int, since: float, timeout_s: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until the local cloud has saved a snapshot written after `since` and no snapshot child runs
    (the first periodic snapshot after a bulk load comes within its interval, 30 s, and pickles for tens
    of seconds); seconds waited. The load then meets the steady state: a snapshot taken under load is
    measured on its own (see the README)."""
    started = time.monotonic()
    snapshot = state_dir / "moto-state.pickle"

    def pickling() -> bool:
        for task in Path(f"/proc/{server_pid}/task").iterdir():
            try:
                for pid in (task / "children").read_text().split():
                    if b"worker.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return True
            except OSError:
                continue
        return False

    while time.monotonic() - started < timeout_s:
        saved = snapshot.exists() and snapshot.stat().st_mtime > since
        if saved and not pickling():
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def run(rows: int | None = None, rate: float = RATE, seconds: float = SECONDS,
        env: dict[str, str] | None = None, spans_out: Path | None = None, settle: bool = True) -> dict[str, Any]:
    from helpers import config
    from localcloud import lifecycle

    source = REAL_FILE if REAL_FILE.exists() else SAMPLE_FILE
    saved = {name: os.environ.get(name) for name in ("RETAIL_TARGET", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                     "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RETAIL_PREFIX")}
    os.environ.pop("RETAIL_TARGET", None)
    result: dict[str, Any] = {"file": str(source), "rows": rows, "load_avg_start": os.getloadavg()}
    try:
        with lifecycle.running(Path(tempfile.mkdtemp(prefix="bench-query-")), env=env) as endpoint:
            os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                              AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
            config.configure(target="local", endpoint_url=endpoint, region="us-east-1", prefix=PREFIX)
            started = time.perf_counter()
            deployed = _deploy()
            result["deploy_s"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            items = invoice_documents(source, rows)
            result["documents_built_s"] = round(time.perf_counter() - started, 1)
            _log(f"{len(items):,} invoice documents from {source.name}; writing them")
            result["documents"] = len(items)
            result["fill_s"] = round(fill_table(deployed["table"], items), 1)
            by_invoice = {item["InvoiceNo"]["S"]: item.get("CustomerID", {}).get("S", "") for item in items}
            del items
            server = lifecycle.health(urlsplit(endpoint).port)
            _log(f"local cloud pid {server.pid if server else None}")
            filled = time.time()
            if settle and server is not None:
                result["waited_for_the_snapshot_s"] = wait_for_snapshot(
                    lifecycle.state_dir(urlsplit(endpoint).port), server.pid, filled)
            measured = paced_queries(deployed["api"], by_invoice, rate, seconds, deployed["secret"],
                                     server_pid=server.pid if server else None)
            answered, (since, until) = measured.pop("_answered"), measured.pop("_window")
            result["query"] = measured
            spans = server_spans(endpoint, since - 1, until + 1)
            result["server"] = explain(answered, spans)
            result["server"]["snapshots_since_filled"] = [
                {k: v for k, v in span.items() if k in ("name", "ms", "open")} | {"at_s": round(span["start"] - since, 1)}
                for span in server_spans(endpoint, filled, until + 1) if span["kind"] == "snapshot"]
            if spans_out is not None:
                spans_out.write_text(json.dumps({"requests": answered, "spans": spans}) + "\n")
    finally:
        config._current = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    result["load_avg_end"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query_api", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="only the file's first N rows (default: all)")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long the paced load lasts")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    parser.add_argument("--spans", type=Path, help="write every request and the server's spans of the window here")
    parser.add_argument("--no-settle", action="store_true",
                        help="start the load right after the bulk load, with its snapshot still to come")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the local cloud (e.g. RETAIL_LOCALCLOUD_STALL_MS=5)")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    result = run(rows=args.rows, rate=args.rate, seconds=args.seconds, env=env, spans_out=args.spans,
                 settle=not args.no_settle)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
