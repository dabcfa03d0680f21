"""The local cloud process: a WSGI dispatcher in front of moto's server, plus the executors.

Run by `python -m localcloud up` (never by hand): it binds 127.0.0.1 only, answers
`/_localcloud/health`, lets each executor claim requests first and hands the rest to moto. A request
that may change moto's state goes through the write-ahead journal (persistence/journal.py): applied
and journaled in one order, answered once durable; at start the journal is replayed before serving.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from localcloud import trace
from localcloud.executors import CloudContext, Executor, load_executors
from localcloud.iam import enforcement as iam_enforcement
from localcloud.lifecycle import HEALTH_PATH, OWNER_ENV, SERVICE_ID, endpoint_for
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.journal import (JOURNALED, READ_ONLY_METHODS, Journal, JournalError, ReplayReport,
                                           is_mutating)
from localcloud.persistence.wal import policy

log = logging.getLogger("localcloud")


class LocalCloudApp:
    """Routes a request to the health endpoint, to the first executor that claims it, or to moto."""

    def __init__(self, moto_app: Callable[..., Iterable[bytes]], executors: list[Executor], context: CloudContext):
        self.moto_app = moto_app
        self.executors = executors
        self.context = context
        self.started_at = time.time()
        self.last_request_at = time.monotonic()
        self.journal: Journal | None = None  # set once replayed: from then on every write goes through it
        self.replay_report = ReplayReport()
        self.replay_error: str | None = None  # the journal could not be replayed: every request is refused

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.last_request_at = time.monotonic()
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return self._health(start_response)
        if environ.get("PATH_INFO") == trace.TRACE_PATH:
            return trace.serve(environ, start_response)
        REPLAY_DONE.wait()  # a request during the replay waits for the state it would see
        if self.replay_error is not None:
            return _unavailable(start_response, RuntimeError(f"the journal could not be replayed: {self.replay_error}"))
        return self.dispatch(environ, start_response)

    def dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """IAM, then the first executor that claims the request, then moto (the journal's replay enters here)."""
        refused = iam_enforcement.check(environ)  # IAM: authenticated and authorized before anything runs
        if refused is not None:
            return refused(environ, start_response)
        if self.executors:
            from werkzeug.wrappers import Request

            request = Request(environ, shallow=True)
            for executor in self.executors:
                claimed = executor.route(request)
                if claimed is not None:
                    if getattr(claimed, JOURNALED, False):  # an executor's own state change (opt-in)
                        return self._through_journal(claimed, environ, start_response)
                    return claimed(environ, start_response)
        return self._through_journal(self.moto_app, environ, start_response)

    def _through_journal(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any],
                         start_response: Callable[..., Any]) -> Iterable[bytes]:
        """A request that may change state is applied and journaled in one order, and answered once
        durable; any other goes straight to `app`."""
        journal = self.journal
        if journal is None or environ.get("REQUEST_METHOD") in READ_ONLY_METHODS:
            return app(environ, start_response)
        from werkzeug.wsgi import get_input_stream

        body = get_input_stream(environ).read()
        if is_mutating(environ, body):
            try:
                return journal.serve(app, environ, body, start_response)
            except JournalError as error:  # not durable: not acknowledged
                log.error("journal: %s", error)
                return _unavailable(start_response, error)
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
            return journal.serve_receive(app, environ, body, start_response)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        environ.pop("wsgi.input_terminated", None)
        return app(environ, start_response)

    def replay(self) -> None:
        """Replay the journal after the restored snapshot, then journal every write from here on."""
        persistence = self.context.executors.get("persistence")
        journal = getattr(persistence, "journal", None)
        if journal is None:
            return
        with journal.apply_lock:  # through the whole dispatcher: an executor's journaled route gets its own again
            self.replay_report = journal.replay(self.dispatch, persistence.snapshot_lsn)
        if self.replay_report.replayed:
            log.info("journal: replayed %d requests in %.2f s", self.replay_report.replayed,
                     self.replay_report.seconds)
        self.journal = journal

    def _health(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = json.dumps(
            {
                "service": SERVICE_ID,
                "status": "running" if REPLAY_DONE.is_set() else "replaying the journal",
                "pid": os.getpid(),
                "endpoint": self.context.endpoint,
                "started_at": self.started_at,
                "executors": [executor.name for executor in self.executors],
                "state_dir": str(self.context.state_dir),
                "journal": {"policy": policy() if getattr(self.context.executors.get("persistence"), "journal", None)
                            else "off",
                            **self.replay_report.as_dict()},
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _unavailable(start_response: Callable[..., Any], error: Exception) -> Iterable[bytes]:
    body = json.dumps({"__type": "ServiceUnavailableException",
                       "message": f"The write could not be made durable: {error}"}).encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/x-amz-json-1.1"),
                                               ("Content-Length", str(len(body))),
                                               ("x-amzn-ErrorType", "ServiceUnavailableException")])
    return [body]


def build_app(host: str, port: int, state_dir: Path) -> LocalCloudApp:
    """moto's dispatcher wrapped by ours; executors are created but not started."""
    os.environ.setdefault("MOTO_PORT", str(port))  # moto builds queue URLs etc. from it
    from localcloud.motoapi import DomainDispatcherApplication, create_backend_app

    from localcloud.motoapi import patches as moto_patches

    moto_patches.apply()
    moto_app = DomainDispatcherApplication(create_backend_app)
    executors = load_executors()
    context = CloudContext(endpoint=endpoint_for(port, host), port=port, state_dir=state_dir,
                           executors={executor.name: executor for executor in executors})
    return LocalCloudApp(moto_app, executors, context)


# RETAIL_LOCALCLOUD_STALL_MS: a thread checks every N ms that it is woken on time and traces the stalls
# (trace.watch_stalls); 0, the default, for none.
STALL_WATCH_S = float(os.environ.get("RETAIL_LOCALCLOUD_STALL_MS", "0")) / 1000
# A young round every 0.1 s: the same work as one a second, in pauses a tenth as long (a round holds the
# GIL: at 50 API requests/s one a second walked ~1,100 objects and stopped every request for 2-7 ms).
GC_YOUNG_EVERY_S = 0.1
GC_FULL_EVERY_S = 600.0
GC_YOUNG_LIMIT = 2_000  # young objects a round collects at most (about 2 ms); more are frozen as they are
GC_FULL_WHEN_IDLE_S = 5.0  # a full collection of the full file's state takes seconds: not mid-request


def keep_state_out_of_gc(stop: threading.Event, young_every_s: float = GC_YOUNG_EVERY_S,
                         full_every_s: float = GC_FULL_EVERY_S,
                         idle_for: Callable[[], float] = lambda: float("inf"),
                         young_limit: int = GC_YOUNG_LIMIT) -> None:
    """Collect each object once while it is young, then move it out of the cyclic garbage collector;
    under a heavy write load, move it out without collecting it.

    moto's state (the full file's serving table is millions of objects) lives long, and Python's own
    schedule walked it again and again: the oldest generation's collections were a third of a
    BatchWriteItem's time at 75,000 items, and 15% of the server's time with the state frozen every
    5 s. Here automatic collection is off; every `young_every_s` the objects made since the last round
    are collected (cyclic garbage of requests goes there) and the survivors frozen. Frozen objects are
    still freed by reference counting; cycles among them wait for the full collection (unfreeze,
    collect, freeze again), due every `full_every_s` and done once no request came for
    GC_FULL_WHEN_IDLE_S (`idle_for()` seconds), since it stops everything for seconds on a big state.

    A young round costs about a microsecond per surviving object, and while the full file streams in
    the survivors are the new state itself (hundreds of thousands a second): the young rounds were a
    tenth of the server's CPU, to find a few hundred cyclic objects (exceptions' tracebacks, mostly).
    So a round with more than `young_limit` young objects only freezes them; their rare cycles wait
    for the full collection like the older ones. Each collection is a span "gc" of the trace, each
    round frozen unwalked one "gc frozen unwalked" (localcloud/trace.py)."""
    gc.disable()
    last_full = time.monotonic()
    try:
        while not stop.wait(young_every_s):
            young = gc.get_count()[0]
            if time.monotonic() - last_full >= full_every_s and idle_for() >= GC_FULL_WHEN_IDLE_S:
                gc.unfreeze()
                gc.collect()
                last_full = time.monotonic()
            elif young <= young_limit:
                gc.collect(0)
            else:
                trace.record("gc", "frozen unwalked", time.time(), 0.0, young=young)
            gc.freeze()
    finally:
        gc.enable()


def stop_when_gone(pid: int, stop: Callable[[], None], every_s: float = 1.0) -> None:
    """Call `stop` once process `pid` no longer exists: a test session or benchmark killed by a signal
    (no `finally` runs) would otherwise leave its private local cloud running for good."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("owner process %d is gone: stopping", pid)
            stop()
            return
        except PermissionError:  # alive, another user's
            continue


def serve(host: str, port: int, state_dir: Path) -> int:
    from localcloud.http_server import make_server  # werkzeug's threaded server, keeping connections open

    app = build_app(host, port, state_dir)
    try:
        server = make_server(host, port, app)
    except (OSError, SystemExit) as error:
        print(f"localcloud: cannot bind {host}:{port}: {error}", file=sys.stderr, flush=True)
        return 3
    REPLAY_DONE.clear()  # requests and consumers' checkpoints wait for the journal's records
    try:
        for executor in app.executors:
            executor.start(app.context)
    except BaseException:
        REPLAY_DONE.set()
        raise

    def replay() -> None:
        """While the server already answers health checks (a long journal must not time `up` out)."""
        try:
            app.replay()  # the executors' hooks are in place: what a replayed write triggers happens again
        except Exception as error:  # loud: nothing is served on a state missing acknowledged writes
            log.exception("journal replay failed")
            app.replay_error = f"{type(error).__name__}: {error}"
        finally:
            REPLAY_DONE.set()

    threading.Thread(target=replay, name="journal-replay", daemon=True).start()
    stop_gc_policy = threading.Event()
    threading.Thread(target=keep_state_out_of_gc, args=(stop_gc_policy,), name="gc-policy", daemon=True,
                     kwargs={"idle_for": lambda: time.monotonic() - app.last_request_at}).start()
    trace.watch_gc()
    if STALL_WATCH_S > 0:
        threading.Thread(target=trace.watch_stalls, args=(stop_gc_policy, STALL_WATCH_S, STALL_WATCH_S),
                         name="stall-watch", daemon=True).start()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    owner = int(os.environ.get(OWNER_ENV) or 0)
    if owner:
        threading.Thread(target=stop_when_gone, args=(owner, server.shutdown), name="owner-watch", daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGUSR2"):  # `kill -USR2 <pid>`: every thread's stack into the log (a hang)
        import faulthandler

        faulthandler.register(signal.SIGUSR2, all_threads=True)
    signal.signal(signal.SIGINT, request_stop)
    print(f"localcloud: serving {app.context.endpoint} (pid {os.getpid()}, state {state_dir})", flush=True)
    try:
        server.serve_forever()
    finally:
        stop_gc_policy.set()
        for executor in reversed(app.executors):
            try:
                executor.stop()
            except Exception:  # one executor failing to stop must not keep the others running
                log.exception("executor %s failed to stop", executor.name)
        server.server_close()
    print("localcloud: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the local cloud binds loopback only: it has no authentication")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    return serve(args.host, args.port, args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
