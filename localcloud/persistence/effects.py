"""Executors' own state changes, journaled like requests ("effects").

An executor that changes moto's state outside a request (an alarm's transition and the SNS message it
sends, a Firehose buffer written to S3) lost that change in a crash: the journal held requests only, and
the next snapshot may be 30 s away. `Effects.perform` sends such a change through the journal as a
request to the executor's own route (`/_localcloud/effects/<name>`): applied under the apply lock (so a
snapshot sees it whole or not at all), journaled, and durable before `perform` returns. After a crash
the journal replays it through the same route, in its place among the requests. The handler must be a
function of the effect's content and of the state it meets (moto's random draws are replayed; the clock
is not: an effect carries the times it needs). Requests from outside never reach a handler.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import sys
from typing import Any, Callable, Sequence

from localcloud.executor_base import json_response, read_body
from localcloud.executors import CloudContext, WSGIApp
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence import journal as journal_module

log = logging.getLogger("localcloud.persistence")

PREFIX = "/_localcloud/effects/"
IN_PROCESS = "localcloud.effect"  # environ key of a `perform` call (not a str: never journaled)
LENGTH = struct.Struct(">I")
Handler = Callable[[dict[str, Any], list[bytes]], dict[str, Any]]


class EffectFailed(RuntimeError):
    """The handler refused or failed the effect: nothing of it is to be assumed done."""


def pack(content: dict[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """JSON content and binary blobs (objects' bodies) in one request body."""
    header = json.dumps({**content, "blobs": [len(blob) for blob in blobs]}, separators=(",", ":")).encode()
    return LENGTH.pack(len(header)) + header + b"".join(blobs)


def unpack(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    (size,) = LENGTH.unpack_from(body)
    content = json.loads(body[LENGTH.size:LENGTH.size + size])
    offset, blobs = LENGTH.size + size, []
    for length in content.pop("blobs", []):
        blobs.append(body[offset:offset + length])
        offset += length
    return content, blobs


class Effects:
    """One executor's effects: `claim` in its `route`, `perform` where it changes state."""

    def __init__(self, name: str, handler: Handler):
        self.name, self.path, self.handler = name, PREFIX + name, handler

    def claim(self, request: Any) -> WSGIApp | None:
        """The executor's route for its effects: journaled when performed, replayed after a crash."""
        if request.path != self.path:
            return None
        if REPLAY_DONE.is_set() and not request.environ.get(IN_PROCESS):
            return json_response(403, {"message": f"{self.path} is applied by the local cloud itself"})
        return journal_module.journaled(self._serve)

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        content, blobs = unpack(read_body(environ))
        try:
            result = self.handler(content, blobs)
        except Exception as error:  # answered as a failure: the journal keeps the order, replay fails alike
            log.warning("%s effect %s failed: %s", self.name, content.get("kind", ""), error)
            return json_response(500, {"error": f"{type(error).__name__}: {error}"})(environ, start_response)
        return json_response(200, result)(environ, start_response)

    def perform(self, cloud: CloudContext, content: dict[str, Any], blobs: Sequence[bytes] = ()) -> dict[str, Any]:
        """Apply an effect durably (journal on) or at once (journal off); the handler's answer.
        Not from inside a journaled request or the replay (both hold the apply lock: it would wait forever)."""
        if getattr(journal_module._TAPE, "record", None) is not None or getattr(journal_module._TAPE, "play", None) is not None:
            raise RuntimeError(f"{self.name}: an effect cannot be performed inside a journaled request")
        REPLAY_DONE.wait()
        body = pack(content, blobs)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": self.path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(cloud.port), "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "application/octet-stream",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, IN_PROCESS: True}
        answer: dict[str, str] = {}

        def start_response(status: str, _headers: Any, _exc_info: Any = None) -> Callable[[bytes], None]:
            answer["status"] = status
            return lambda _data: None

        persistence = cloud.executors.get("persistence")
        journal = getattr(persistence, "journal", None)
        if journal is None:
            chunks = list(self._serve(environ, start_response))
        else:
            from werkzeug.wrappers import Request

            persistence.route(Request(environ, shallow=True))  # the state changed: a snapshot is due
            chunks = journal.serve(self._serve, environ, body, start_response)
        result = json.loads(b"".join(chunks) or b"{}")
        if int(answer["status"].split(" ", 1)[0]) >= 400:
            raise EffectFailed(result.get("error") or result.get("message") or answer["status"])
        return dict(result)
