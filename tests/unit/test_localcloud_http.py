"""The local cloud keeps HTTP/1.1 connections open (localcloud/http_server.py), and only when
that is safe: a body the app did not read is drained, a client's `close`, HTTP/1.0 and chunked requests
close, werkzeug's error paths close, idle connections time out and never hold up a shutdown.

The first tests run the handler on an ephemeral port with small WSGI apps (each misbehaving in one way);
the last ones run a whole local cloud and boto3."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import boto3
import pytest

from localcloud import http_server
from localcloud import lifecycle

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers with the request line it saw and what it read of the body (as the query asks)."""
    query = environ.get("QUERY_STRING", "")
    body = b""
    if query == "read=all":
        body = environ["wsgi.input"].read()  # no size: must stop at the body's end, not at EOF
    elif query.startswith("read="):
        body = environ["wsgi.input"].read(int(query[5:]))
    elif query == "lines":
        body = b"".join(environ["wsgi.input"])
    answer = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "read": len(body),
                         "body": body[:64].decode("latin-1")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]


@contextlib.contextmanager
def serving(app: WSGIApp = echo_app) -> Iterator[int]:
    """The keep-alive server on an ephemeral port, in a thread; shut down like serve() does."""
    server = http_server.make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def open_socket(connection: http.client.HTTPConnection) -> socket.socket:
    """The connection's socket after a complete exchange; http.client drops it when the server closes."""
    assert connection.sock is not None, "the server closed the connection"
    return connection.sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes; fails (socket.timeout) if it keeps the connection."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


# --------------------------------------------------------------------------------------------------
# The handler with small apps


def test_sequential_requests_share_one_connection():
    with serving() as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        response, _ = get(connection, "GET", "/one")
        sock = open_socket(connection)
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
        for n in range(5):
            response, body = get(connection, "POST", f"/again{n}", b"x" * 10)
            assert json.loads(body)["path"] == f"/again{n}"
            assert connection.sock is sock, "the client did not have to reconnect"
        connection.close()


@pytest.mark.parametrize("query", ["", "read=3", "read=all", "lines"])
def test_a_body_the_app_left_unread_is_drained_not_parsed_as_the_next_request(query: str):
    """The body holds a request line: were it not drained, the server would answer it next."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    body = smuggled * 20 + b"\n" + b"y" * 300_000  # larger than any socket buffer: read while answering
    with serving() as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        response, first = get(connection, "POST", f"/upload?{query}", body)
        assert response.status == 200
        read = json.loads(first)["read"]
        assert read == {"": 0, "read=3": 3, "read=all": len(body), "lines": len(body)}[query]
        sock = open_socket(connection)
        response, second = get(connection, "GET", "/next")
        assert json.loads(second)["path"] == "/next", "the next answer is for the next request"
        assert connection.sock is sock


def test_pipelined_requests_are_answered_in_order():
    first = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
    second = b"GET /second?read=all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serving() as port:
        answers = raw_exchange(port, first + second)
    assert answers.count(b"HTTP/1.1 200") == 2
    assert answers.index(b'"path": "/first"') < answers.index(b'"path": "/second", "read": 0')


def test_a_client_asking_for_close_gets_it():
    with serving() as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        response, _ = get(connection, "GET", "/a", headers={"Connection": "close"})
        assert response.getheader("Connection") == "close"
        answer = raw_exchange(port, b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer


def test_http_1_0_and_chunked_requests_close_the_connection():
    with serving() as port:
        old = raw_exchange(port, b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
        assert b'"path": "/old"' in old and b"Connection: close" in old
        chunked = raw_exchange(port, b"POST /chunked?read=all HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"5\r\nhello\r\n0\r\n\r\n")
        assert b'"read": 5' in chunked and b"Connection: close" in chunked


def test_an_invalid_content_length_closes_the_connection():
    with serving() as port:
        answer = raw_exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
    assert b"Connection: close" in answer


def test_an_app_failing_before_its_answer_closes_the_connection():
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with serving(failing) as port:
        answer = raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")  # no close asked: the server closes
    assert answer.startswith(b"HTTP/1.1 500") and b"Connection: close" in answer


def test_an_app_failing_half_way_through_its_body_closes_the_connection():
    def half(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "100")])
        yield b"x" * 40
        raise RuntimeError("boom")

    with serving(half) as port:  # kept open, the client would wait for the 60 missing bytes
        answer = raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"x" * 40


def test_a_streamed_answer_is_chunked_and_keeps_the_connection():
    def stream(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"part one, "
        yield b"part two"

    with serving(stream) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        response, body = get(connection, "GET", "/a")
        sock = open_socket(connection)
        assert body == b"part one, part two" and response.getheader("Transfer-Encoding") == "chunked"
        assert get(connection, "GET", "/b")[1] == b"part one, part two" and connection.sock is sock


def test_a_head_answered_with_a_body_does_not_leak_it_into_the_next_answer():
    def careless(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]  # even for HEAD

    with serving(careless) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        response, body = get(connection, "HEAD", "/head")
        assert body == b"" and response.getheader("Content-Length") == "5"
        sock = open_socket(connection)
        assert get(connection, "GET", "/next")[1] == b"/next" and connection.sock is sock


def test_a_connection_header_from_the_app_is_respected():
    def closing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "2"), ("Connection", "close")])
        return [b"ok"]

    with serving(closing) as port:
        answer = raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"keep-alive" not in answer


def test_a_small_answer_goes_out_in_one_send_with_its_headers(monkeypatch: pytest.MonkeyPatch):
    """Each send lets go of the GIL; getting it back waits for the other threads' turn, so headers and
    body sent apart held a busy server's answers back (the query API's latency tail)."""
    import socketserver

    sends: list[bytes] = []
    original = socketserver._SocketWriter.write

    def counted(self: Any, data: bytes) -> int:
        sends.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", counted)

    def sized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        size = int(environ["QUERY_STRING"] or 0)
        start_response("200 OK" if size else "204 No Content", [("Content-Length", str(size))] if size else [])
        return [b"x" * size] if size else []

    large = http_server.COALESCE_BYTES + 1
    with serving(sized) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for size, expected_sends in ((100, 1), (0, 1), (large, 2), (100, 1)):
            sends.clear()
            response, body = get(connection, "GET", f"/x?{size}")
            assert (response.status, len(body)) == (200 if size else 204, size)
            assert len(sends) == expected_sends, (size, [len(s) for s in sends])
            assert sends[0].startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in sends[0]
        open_socket(connection)  # still the same connection
        connection.close()


def test_an_idle_connection_times_out_quietly(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(http_server.KeepAliveRequestHandler, "timeout", 0.3)
    with serving() as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200") and b"keep-alive" in answer
        assert 0.2 < time.monotonic() - started < 3, "closed by the idle timeout"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an idle timeout is not an error"


def test_an_idle_connection_does_not_hold_up_shutdown():
    server = http_server.make_server("127.0.0.1", 0, echo_app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    assert get(connection, "GET", "/x")[0].status == 200  # its handler thread now waits for a next request
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    connection.close()


# --------------------------------------------------------------------------------------------------
# A whole local cloud


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud")) as url:
        yield url


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class NewConnections(logging.Handler):
    """Counts the connections urllib3 opens (first ones and reconnects after the server closed)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Starting new HTTP connection" in message or "Resetting dropped connection" in message:
            self.messages.append(message)


@pytest.fixture
def new_connections() -> Iterator[NewConnections]:
    counter = NewConnections()
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.DEBUG)
    pool_log.addHandler(counter)
    try:
        yield counter
    finally:
        pool_log.removeHandler(counter)
        pool_log.setLevel(level)


def test_the_local_cloud_keeps_a_connection_for_sequential_requests(endpoint: str):
    connection = http.client.HTTPConnection("127.0.0.1", port_of(endpoint), timeout=10)
    response, body = get(connection, "GET", lifecycle.HEALTH_PATH)
    sock = open_socket(connection)
    assert response.getheader("Connection") == "keep-alive" and json.loads(body)["service"] == lifecycle.SERVICE_ID
    response, body = get(connection, "GET", lifecycle.HEALTH_PATH)
    assert response.status == 200 and connection.sock is sock


def test_a_body_the_local_cloud_ignores_does_not_corrupt_the_next_request(endpoint: str):
    connection = http.client.HTTPConnection("127.0.0.1", port_of(endpoint), timeout=10)
    smuggled = b"HEAD /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 10
    response, _ = get(connection, "POST", lifecycle.HEALTH_PATH, smuggled + b"z" * 200_000)
    assert response.status == 200
    sock = open_socket(connection)
    response, body = get(connection, "GET", lifecycle.HEALTH_PATH)
    assert response.status == 200 and json.loads(body)["service"] == lifecycle.SERVICE_ID
    assert connection.sock is sock


def test_the_local_cloud_honours_a_clients_close(endpoint: str):
    answer = raw_exchange(port_of(endpoint), f"GET {lifecycle.HEALTH_PATH} HTTP/1.1\r\nHost: x\r\n"
                                             "Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer and b'"service"' in answer


def test_boto3_reuses_its_connections(endpoint: str, new_connections: NewConnections):
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    dynamodb.create_table(TableName="kept", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    for n in range(5):
        dynamodb.put_item(TableName="kept", Item={"k": {"S": f"key{n}"}, "v": {"N": str(n)}})
        assert dynamodb.get_item(TableName="kept", Key={"k": {"S": f"key{n}"}})["Item"]["v"] == {"N": str(n)}
    s3.create_bucket(Bucket="kept")
    for n in range(5):  # x-amz-meta-my_key: a header with an underscore, which moto's handler preserves
        s3.put_object(Bucket="kept", Key=f"k{n}", Body=b"a" * (n * 1000), Metadata={"my_key": f"value {n}"})
        head = s3.head_object(Bucket="kept", Key=f"k{n}")
        assert head["Metadata"] == {"my_key": f"value {n}"} and head["ContentLength"] == n * 1000
        assert s3.get_object(Bucket="kept", Key=f"k{n}")["Body"].read() == b"a" * (n * 1000)
    big = bytes(range(256)) * 12_000  # 3 MB: sent after "100 Continue", in many segments
    s3.put_object(Bucket="kept", Key="big", Body=big)
    assert s3.get_object(Bucket="kept", Key="big")["Body"].read() == big
    assert len(new_connections.messages) == 2, new_connections.messages  # one per client, no reconnects


def test_a_local_cloud_with_an_open_connection_stops_at_once(tmp_path: Path):
    with lifecycle.running(tmp_path, {"RETAIL_LOCALCLOUD_EXECUTORS": ""}) as url:
        port = port_of(url)
        pid = lifecycle.health(port).pid
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert get(connection, "GET", lifecycle.HEALTH_PATH)[0].status == 200
        started = time.monotonic()
    took = time.monotonic() - started
    assert not lifecycle._alive(pid)
    assert took < lifecycle.STOP_TIMEOUT_S / 2, f"{took:.1f} s: SIGTERM was not enough"
    connection.close()
