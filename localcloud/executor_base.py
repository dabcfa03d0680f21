"""What the executors share: a supervising thread's lifecycle and the small WSGI answers they give.

Several executors (firehose, scheduler, event sources) run one background thread that looks at moto's
state every few milliseconds; each used to copy the same idempotent start/stop and the same JSON answer
app. `ThreadedExecutor` is that lifecycle once; `respond` / `json_response` are the answers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import uuid
from http import HTTPStatus
from typing import Any, Callable, Iterable

from localcloud.executors import DEFAULT_REGION, CloudContext, WSGIApp

log = logging.getLogger("localcloud")

JOIN_TIMEOUT_S = 5.0
_SIGNING_NAME = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")


def read_body(environ: dict[str, Any]) -> bytes:
    """The request body, with an identical stream put back for whoever serves the request."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > 0:
        chunks, remaining = [], length
        while remaining > 0:
            chunk = stream.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        body = b"".join(chunks)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return body


JSON_BODY = "localcloud.json_body"  # the environ key of a body already decoded: (body, document)


def json_body(environ: dict[str, Any] | None, body: bytes | str) -> Any:
    """The JSON document of a request's body, decoded once per request: IAM reads a JSON-protocol call's
    parameters, then moto parses the same body (a bulk load's BatchWriteItem of invoice documents is a few
    hundred KB: decoding it twice was a tenth of the local cloud's CPU). Kept in the request's environ
    with the body it came from, so a changed body is decoded afresh. ValueError when it is not JSON.
    Readers must not change the document (IAM reads it before moto does)."""
    cached = environ.get(JSON_BODY) if environ is not None else None
    if cached is not None and (cached[0] is body or cached[0] == body):
        return cached[1]
    document = json.loads(body)
    if environ is not None:
        environ[JSON_BODY] = (body, document)
    return document


_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/")


def caller(environ: dict[str, Any]) -> tuple[str, str]:
    """(account, region) of a signed request, the way moto decides them."""
    from localcloud.motoapi import get_account_id_from

    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region = match.group(2) if match else DEFAULT_REGION
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"], region
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"], region
    return get_account_id_from(match.group(1) if match else "AKIAEXAMPLE"), region


def signing_name(environ: dict[str, Any]) -> str | None:
    """The service a SigV4 request was signed for (None for an unsigned request)."""
    match = _SIGNING_NAME.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


def respond(status: int, body: bytes, content_type: str, *, request_id: bool = False,
            headers: Iterable[tuple[str, str]] = ()) -> WSGIApp:
    """A WSGI app answering `body` with `status` (AWS's `x-amzn-RequestId` header when asked)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    extra = [*headers, *((("x-amzn-RequestId", str(uuid.uuid4())),) if request_id else ())]

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(f"{status} {reason}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra])
        return [body]

    return app


def json_response(status: int, body: Any, content_type: str = "application/json", *,
                  request_id: bool = False) -> WSGIApp:
    """`body` as JSON (admin routes use application/json; AWS JSON-protocol APIs pass their own type)."""
    return respond(status, json.dumps(body).encode(), content_type, request_id=request_id)


class ThreadedExecutor:
    """An executor whose work is a supervising thread: `supervise_once()` every `interval_s` until stop.

    `start(cloud)` and `stop()` are idempotent and quick; `on_start()` runs before the thread starts
    (patch moto there) and `on_stop()` after it has ended (undo the patches, stop workers). An exception
    in one round is logged and the next round runs: a bad record or a backend race must not end the
    thread. `wait_first` waits one interval before the first round (a clock that ticks, not a poller)."""

    name: str = "executor"
    interval_s: float = 0.1
    wait_first: bool = False

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # the contract -------------------------------------------------------------------------------
    def start(self, cloud: CloudContext) -> None:
        if self.thread is not None:
            return
        self.cloud = cloud
        self.stopping.clear()
        self.on_start()
        self.thread = threading.Thread(target=self._supervise, daemon=True, name=self.thread_name())
        self.thread.start()

    def stop(self) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join(timeout=JOIN_TIMEOUT_S)
        self.thread = None
        self.on_stop()

    def route(self, request: Any) -> WSGIApp | None:
        return None

    # what a subclass provides ---------------------------------------------------------------------
    def on_start(self) -> None:
        """Before the thread starts (the cloud is set)."""

    def on_stop(self) -> None:
        """After the thread has ended."""

    def supervise_once(self) -> None:
        raise NotImplementedError

    def thread_name(self) -> str:
        return self.name

    # the loop ------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        if self.wait_first and self.stopping.wait(self.interval_s):
            return
        while not self.stopping.is_set():
            try:
                self.supervise_once()
            except Exception:
                log.exception("%s supervisor", self.name)
            self.stopping.wait(self.interval_s)
