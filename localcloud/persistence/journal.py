"""The write-ahead journal: a write the local cloud acknowledged is on disk before the answer leaves.

moto keeps its state in memory and the snapshots (snapshots.py) are periodic, so without this a crash
lost every write since the last one, acknowledged or not. Every state-changing request that moto
answers is applied and appended under one lock (`applying()`), so the journal's order is the order
the state saw (Kinesis sequence numbers, DynamoDB conditions and counters depend on it); the answer
waits outside the lock until its record is durable (`wait`), and one fsync serves every request
waiting meanwhile (group commit, wal.py). At start the records after the last snapshot's LSN are
replayed through moto in that order. The random numbers moto drew for a request (ids of REST APIs,
event source mappings, multipart uploads...) are recorded with it and drawn again on replay, so later
requests naming those ids still find them; so are the times moto read (clock.py: a Kinesis record's
arrival, an object's LastModified), so a replayed write keeps the times it was acknowledged with.
Read-only requests (Describe/Get/List/Query/Scan/Receive..., any GET/HEAD) are not journaled.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from localcloud import motoapi
from localcloud.persistence import clock
from localcloud.persistence.wal import GroupCommitLog, JournalError, policy

log = logging.getLogger("localcloud.persistence")

READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Query", "Scan", "Receive", "BatchGet", "Simulate", "Head",
                      "TestEventPattern")
READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")
HEADER = struct.Struct(">I")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
JOURNALED = "localcloud_journaled"  # attribute of an executor's claimed WSGI app: see `journaled`

__all__ = ["JOURNALED", "Journal", "JournalError", "ReplayReport", "Tape", "is_mutating", "journaled", "operation",
           "policy"]


def journaled(app: WSGIApp) -> WSGIApp:
    """Mark the WSGI app an executor's `route` returns for a request that changes state the executor keeps
    in moto's backends (a control-plane call moto lacks): the server journals it like moto's own writes
    and replays it through the executor's `route` after a crash. Data-plane routes (an invoke, a stage
    call) must not be marked: replaying them would run the function again, and what the function wrote
    is journaled already. The app runs under the journal's apply lock: it must not wait on other requests."""
    try:
        setattr(app, JOURNALED, True)
    except AttributeError:  # a bound method: wrap it
        def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            return app(environ, start_response)
        setattr(wrapper, JOURNALED, True)
        return wrapper
    return app


def operation(environ: dict[str, Any], body: bytes) -> str | None:
    """The AWS action of a request (X-Amz-Target, or Action= of the query protocol); None for REST."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    for text in (environ.get("QUERY_STRING", ""),
                 body.decode("latin-1") if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") else ""):
        action = urllib.parse.parse_qs(text).get("Action")
        if action:
            return action[0]
    return None


def is_mutating(environ: dict[str, Any], body: bytes = b"") -> bool:
    """Whether a request may change state (in doubt: yes, a journaled read only costs a record)."""
    if environ.get("REQUEST_METHOD", "GET") in READ_ONLY_METHODS:
        return False
    action = operation(environ, body)
    return action is None or not action.startswith(READ_ONLY_PREFIXES)


# --------------------------------------------------------------------------------------------------
# moto's random numbers, recorded with each request and drawn again on replay

_TAPE = threading.local()  # .record: list while applying; .play: deque while replaying


def _recorded(kind: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def draw(self: Any, *args: Any) -> Any:
            play = getattr(_TAPE, "play", None)
            if play is not None:
                entry = play.popleft() if play else None  # None: more draws than the request made
                if entry is not None and entry[0] == kind and list(entry[1:-1]) == list(args):
                    return entry[-1]
                _TAPE.diverged = True  # the request drew differently this time: moto's own draws from here
                _TAPE.play = None
            value = original(self, *args)
            record = getattr(_TAPE, "record", None)
            if record is not None:
                record.append([kind, *args, value])
            return value
        return draw
    return make


_installed: list[Callable[[], None]] = []


def _install_tape() -> None:
    if not _installed:
        from localcloud.motoapi import clock as moto_clock

        _installed.append(motoapi.replace("random.getrandbits", _recorded("b")))
        _installed.append(motoapi.replace("random.random", _recorded("f")))
        _installed.append(moto_clock.install(clock.read))


def _uninstall_tape() -> None:
    while _installed:
        _installed.pop()()


# --------------------------------------------------------------------------------------------------
# the journal


@dataclass
class Tape:
    """What moto drew and read while applying one request: its random draws and its clock reads."""

    draws: list[Any]
    clock: clock.Recording


@dataclass
class ReplayReport:
    """What a replay did; `mismatched` lists requests answered differently than before the crash,
    `divergences` those that drew other random numbers or read other clock values than they recorded."""

    replayed: int = 0
    seconds: float = 0.0
    mismatched: list[str] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> int:
        """Requests whose ids or times may differ from the ones acknowledged."""
        return len(self.divergences)

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "seconds": round(self.seconds, 3),
                "mismatched": len(self.mismatched), "diverged": self.diverged}


class Journal:
    """State-changing requests in apply order, durable before they are answered (see module doc)."""

    def __init__(self, folder: Path, mode: str, start_after: int = 0):
        self.mode = mode
        self.log = GroupCommitLog(folder, "journal", mode, start_after)
        self.apply_lock = threading.Lock()
        _install_tape()

    def close(self) -> None:
        self.log.close()
        _uninstall_tape()

    @property
    def last_lsn(self) -> int:
        return self.log.next_lsn - 1

    @contextlib.contextmanager
    def applying(self) -> Iterator[Tape]:
        """Hold the apply lock and record moto's random draws and clock reads of this thread."""
        draws: list[Any] = []
        with self.apply_lock, clock.recording() as times:
            _TAPE.record = draws
            try:
                yield Tape(draws, times)
            finally:
                _TAPE.record = None

    def append(self, environ: dict[str, Any], body: bytes, status: int, tape: Tape) -> int:
        """The request as moto saw it (call inside `applying()`); its lsn."""
        kept = {key: value for key, value in environ.items()
                if isinstance(value, str) and not key.startswith(("wsgi.", "werkzeug."))}
        header = json.dumps({"env": kept, "status": status, "draws": tape.draws, "clock": tape.clock.encoded()},
                            separators=(",", ":")).encode()
        return self.log.append(HEADER.pack(len(header)) + header + body)

    def wait(self, lsn: int) -> None:
        self.log.wait(lsn)

    def serve(self, app: WSGIApp, environ: dict[str, Any], body: bytes,
              start_response: Callable[..., Any]) -> list[bytes]:
        """Apply a state-changing request through `app`, journal it, answer once it is durable."""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, headers
            return answer.setdefault("written", []).append

        with self.applying() as tape:
            result = app(environ, capture)
            try:
                chunks = [*answer.get("written", []), *result]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            code = int(answer["status"].split(" ", 1)[0])
            lsn = self.append(environ, body, code, tape)
        if code < 400:  # an error answer promises nothing; its record still keeps the apply order
            self.wait(lsn)
        start_response(answer["status"], answer["headers"])
        return chunks

    def serve_receive(self, app: WSGIApp, environ: dict[str, Any], body: bytes,
                      start_response: Callable[..., Any]) -> list[bytes]:
        """SQS ReceiveMessage (JSON protocol): not journaled as a request (a long poll must not hold the
        apply lock), but the receipt handles it handed out are, so that a later DeleteMessage naming one
        finds its message again on replay (else a deleted message would come back after a crash)."""
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        environ.pop("wsgi.input_terminated", None)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, headers
            return answer.setdefault("written", []).append

        result = app(environ, capture)
        try:
            chunks = [*answer.get("written", []), *result]
        finally:
            getattr(result, "close", lambda: None)()
        if answer["status"].startswith("200"):
            try:
                messages = json.loads(b"".join(chunks) or b"{}").get("Messages", [])
                queue = json.loads(body or b"{}").get("QueueUrl", "")
            except (ValueError, AttributeError):
                messages, queue = [], ""
            receipts = [[m["MessageId"], m["ReceiptHandle"]] for m in messages if "ReceiptHandle" in m]
            if receipts and queue:
                header = json.dumps({"kind": "sqs-receipts", "queue": queue, "region": _region(environ),
                                     "receipts": receipts}).encode()
                self.log.append(HEADER.pack(len(header)) + header)  # ordered before any DeleteMessage of them
        start_response(answer["status"], answer["headers"])
        return chunks

    def replay(self, app: WSGIApp, after: int) -> ReplayReport:
        """Apply every record after lsn `after` through `app`, in order, with the draws and clock reads
        they made."""
        report = ReplayReport()
        started = time.perf_counter()
        for lsn, payload in self.log.records(after):
            (size,) = HEADER.unpack_from(payload)
            header = json.loads(payload[HEADER.size:HEADER.size + size])
            body = payload[HEADER.size + size:]
            if header.get("kind") == "sqs-receipts":
                _restore_receipts(header)
                continue
            environ = dict(header["env"])
            environ.update({"wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
                            "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": False,
                            "wsgi.run_once": False})
            answer: dict[str, Any] = {}

            def capture(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
                answer["status"] = status
                return lambda data: None

            _TAPE.play, _TAPE.diverged = collections.deque(header["draws"]), False
            times: clock.Playback | None = None
            try:
                with clock.playing(header.get("clock")) as times:
                    result = app(environ, capture)
                    for _ in result:
                        pass
                    getattr(result, "close", lambda: None)()
                code = int(answer.get("status", "500").split(" ", 1)[0])
            except Exception as error:  # noqa: BLE001 - one request must not stop the others
                log.exception("replay of journal record %d failed", lsn)
                code = 500
                answer["status"] = f"500 {type(error).__name__}"
            finally:
                left, _TAPE.play = _TAPE.play, None  # draws the replay did not make: it diverged too
            report.replayed += 1
            request = (f"lsn {lsn} {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')} "
                       f"{operation(environ, body) or ''}")
            differs = [text for text in ("random draws differ" if _TAPE.diverged or left else None,
                                         times.finish() if times is not None else "clock record unreadable") if text]
            if differs:
                report.divergences.append(f"{request}: {', '.join(differs)}")
            if (code < 400) != (header["status"] < 400):
                report.mismatched.append(f"{request}: {header['status']} before, {answer.get('status')} on replay")
        report.seconds = time.perf_counter() - started
        if report.mismatched:
            log.error("journal replay: %d of %d requests answered differently than before the crash "
                      "(their effect may be missing):\n%s", len(report.mismatched), report.replayed,
                      "\n".join(report.mismatched[:20]))
        if report.divergences:
            log.error("journal replay: %d of %d requests drew other random numbers or read other times than "
                      "when they were acknowledged (their ids or times may differ):\n%s", report.diverged,
                      report.replayed, "\n".join(report.divergences[:20]))
        return report


def _region(environ: dict[str, Any]) -> str:
    """The region of a SigV4-signed request (its credential scope)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    scope = authorization.split("Credential=", 1)[-1].split(",", 1)[0].split("/") if "Credential=" in authorization else []
    return scope[2] if len(scope) > 2 else "us-east-1"


def _restore_receipts(header: dict[str, Any]) -> None:
    """Give the messages of a replayed queue the receipt handles a ReceiveMessage handed out."""
    from localcloud.motoapi import sqs_backends

    url = header["queue"].rstrip("/")
    account, name = url.split("/")[-2:]
    queue = sqs_backends[account][header["region"]].queues.get(name)
    if queue is None:
        return
    handles = dict(header["receipts"])
    for message in list(queue._messages):
        handle = handles.get(message.id)
        if handle is not None:
            if message.receipt_handle:
                message._old_receipt_handles.append(message.receipt_handle)
            message.receipt_handle = handle


def open_journal(folder: Path, start_after: int) -> Journal | None:
    """The journal under `folder` per RETAIL_LOCALCLOUD_JOURNAL (None when off)."""
    mode = policy()
    if mode == "off":
        return None
    return Journal(folder, mode, start_after)


__all__ += ["open_journal"]
