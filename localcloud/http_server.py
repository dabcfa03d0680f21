"""HTTP/1.1 persistent connections for the local cloud's werkzeug server.

werkzeug's dev server answers every request with `Connection: close`, because http.server cannot tell
where a request body ends once the app left some of it unread. Every boto3 call of the Lambda workers
and clients then opened a TCP connection and the server started a thread for it (~8% of the server's
CPU, and a connect in each call). This handler keeps a connection open only when it knows the framing
of both directions:

- the request is HTTP/1.1, the client did not ask for `close`, and its body is delimited by a valid
  Content-Length (or absent). The app reads the body through `RequestBody`, which cannot read past it,
  and what the app left is drained before the next request line. Chunked or otherwise unclear bodies,
  HTTP/1.0 and `Connection: close` keep werkzeug's behaviour (answer, then close);
- the response is framed by one Content-Length or by werkzeug's own chunked encoding, the app sent no
  Connection header of its own, and the status is below 500 (werkzeug's error page for a failed app
  goes out with `Connection: close`). Body bytes beyond what the headers announce (a HEAD answered with
  a body) are dropped, and a body shorter or longer than its Content-Length (an app failing half-way)
  closes the connection after it.

werkzeug 3.1 sends its hard-coded `Connection: close` as the last header of every WSGI response; it is
rewritten to `keep-alive` when all of the above holds. Connections idle for IDLE_TIMEOUT_S are closed,
and handler threads are daemons (werkzeug's ThreadedWSGIServer), so open connections never hold up a
shutdown.
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from localcloud import trace
from localcloud.motoapi import MotoRequestHandler
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as werkzeug_make_server

IDLE_TIMEOUT_S = 90.0  # a connection without a request for this long is closed (its thread ends)
MAX_DRAIN_BYTES = 16 * 1024 * 1024  # an unread body larger than this closes the connection instead
NO_BODY_STATUSES = frozenset({204, 304})
COALESCE_BYTES = 256 * 1024  # a body up to this size goes out in the same send as its headers


class RequestBody:
    """`wsgi.input` of one request: at most Content-Length bytes of the connection, so the app can never
    read into the next request, and `drain` knows exactly what is left of this one."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(wanted)
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: max(self.remaining, 0)]
        if not len(view):
            return 0
        count = self._stream.readinto(view) or 0
        self.remaining -= count
        return count

    def readline(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        line = self._stream.readline(wanted)
        self.remaining -= len(line)
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def drain(self, limit: int = MAX_DRAIN_BYTES) -> bool:
        """Read and drop what the app left of the body; False when the connection cannot be reused
        (too much left, or the client went away before sending it all)."""
        if self.remaining > limit:
            return False
        try:
            while self.remaining > 0:
                if not self.read(65536):
                    return False
        except OSError:  # includes a timeout
            return False
        return True


class BodyWriter:
    """The connection's writer while a response body goes out: counts the bytes and never sends more than
    the headers announced (none for HEAD, 204 and 304; Content-Length), so the connection stays in step
    with the client whatever the app writes; a body of the wrong size then closes the connection.

    The header block (`head`) goes out with the first body bytes, in one send: each send lets go of the
    GIL, and a thread that wants it back waits while another runs Python (up to the switch interval), so
    headers and body sent apart held the client's answer back by that much whenever the server was busy."""

    def __init__(self, raw: Any, limit: int | None, head: bytes = b"") -> None:
        self.raw = raw
        self.limit = limit
        self.written = 0
        self.head = head
        self.finished = 0.0  # time.perf_counter() of the last send

    def write(self, data: bytes) -> int:
        size = len(data)
        if self.limit is not None:
            allowed = self.limit - self.written
            if size > allowed:
                data = data[: max(allowed, 0)]
        self.written += size
        if data:
            if self.head and len(data) <= COALESCE_BYTES:
                data, self.head = self.head + data, b""
            self._send_head()
            self.raw.write(data)
            self.finished = time.perf_counter()
        return size

    def _send_head(self) -> None:
        if self.head:
            head, self.head = self.head, b""
            self.raw.write(head)
            self.finished = time.perf_counter()

    def flush(self) -> None:
        self._send_head()  # a response without body bytes: its headers alone
        self.raw.flush()


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler (headers with underscores survive) with HTTP/1.1 persistent connections."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # applied to the socket by StreamRequestHandler.setup
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls

    # Per response, set by run_wsgi and the header hooks; `_may_keep` False outside a keep-alive request.
    _may_keep = False
    _status = 0
    _connection: list[str]
    _lengths: list[str]
    _encodings: list[str]
    _exact_body: int | None = None  # the Content-Length the body must match, else the connection closes
    _writer: BodyWriter | None = None

    def run_wsgi(self) -> None:
        start, begun, cpu = time.time(), time.perf_counter(), time.thread_time()
        self._writer = None
        try:
            self._run_wsgi()
        finally:
            name = self.headers.get("X-Amz-Target") or f"{self.command} {self.path.split('?', 1)[0][:80]}"
            answered = self._writer.finished if self._writer is not None and self._writer.finished else time.perf_counter()
            trace.record("http", name, start, answered - begun, status=self._status,
                         cpu_ms=round(1000 * (time.thread_time() - cpu), 3))

    def _run_wsgi(self) -> None:
        body = self._request_body()
        if body is None:
            self.close_connection = True
            super().run_wsgi()  # werkzeug as is: Connection: close, and it drains whatever is left
            return
        keep = self._client_keeps_alive()
        if not keep:
            self.close_connection = True
        raw_rfile, raw_wfile = self.rfile, self.wfile
        self.rfile = body  # werkzeug's environ["wsgi.input"] and its own drain read through it
        self._may_keep, self._status, self._connection, self._lengths, self._encodings = keep, 0, [], [], []
        self._exact_body, self._writer = None, None
        try:
            super().run_wsgi()
        finally:
            self.rfile, self.wfile = raw_rfile, raw_wfile
            self._may_keep = False
        if self.close_connection:
            return
        writer = self._writer
        if writer is None or (self._exact_body is not None and writer.written != self._exact_body):
            self.close_connection = True  # no headers sent (dropped connection), or the app failed half-way
        elif not body.drain():
            self.close_connection = True

    def _request_body(self) -> RequestBody | None:
        """The body as Content-Length delimits it (none: empty), None when that is not how it is framed."""
        if self.headers.get_all("Transfer-Encoding"):
            return None
        lengths = self.headers.get_all("Content-Length", [])
        if not lengths:
            return RequestBody(self.rfile, 0)
        if len(lengths) != 1 or not lengths[0].strip().isdigit():
            return None
        return RequestBody(self.rfile, int(lengths[0]))

    def _client_keeps_alive(self) -> bool:
        """HTTP/1.1 without `Connection: close` (HTTP/1.0 clients always get `close`)."""
        if self.close_connection or self.request_version != "HTTP/1.1":
            return False
        tokens = ",".join(self.headers.get_all("Connection", [])).lower().split(",")
        return "close" not in (token.strip() for token in tokens)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if self._may_keep:
            name = keyword.lower()
            if name == "connection":
                self._connection.append(value)  # decided in end_headers
                return
            if name == "content-length":
                self._lengths.append(value)
            elif name == "transfer-encoding":
                self._encodings.append(value)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        if not self._may_keep or self._writer is not None:
            super().end_headers()
            return
        keep, limit, self._exact_body = self._response_framing()
        super().send_header("Connection", "keep-alive" if keep else "close")
        self._headers_buffer.append(b"\r\n")  # what end_headers adds, then sent with the body (BodyWriter)
        head, self._headers_buffer = b"".join(self._headers_buffer), []
        self._writer = BodyWriter(self.wfile, limit if keep else None, head)
        self.wfile = self._writer

    def _response_framing(self) -> tuple[bool, int | None, int | None]:
        """Whether another request may follow this response; the most body bytes it may carry (None:
        chunked); the exact body size it promised (Content-Length), which a failing app may not meet."""
        if self._connection != ["close"] or self._status >= 500 or self._status < 200:
            return False, None, None  # an app's own Connection header (besides werkzeug's), or an error
        if self.command == "HEAD" or self._status in NO_BODY_STATUSES:
            return not self._encodings, 0, None  # a body written anyway is dropped, not sent
        if self._encodings:  # werkzeug's chunked encoding; it closes itself when the app fails mid-way
            return self._encodings == ["chunked"] and not self._lengths, None, None
        if len(self._lengths) == 1 and self._lengths[0].strip().isdigit():
            return True, int(self._lengths[0]), int(self._lengths[0])
        return False, None, None

    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        self.close_connection = True
        super().connection_dropped(error, environ)

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):  # an idle connection reached IDLE_TIMEOUT_S: routine
            return
        super().log_error(format, *args)


def make_server(host: str, port: int, app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
                ) -> BaseWSGIServer:
    """werkzeug's threaded server (daemon threads) with the keep-alive handler."""
    return werkzeug_make_server(host, port, app, threaded=True, request_handler=KeepAliveRequestHandler)

