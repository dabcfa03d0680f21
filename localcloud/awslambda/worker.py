"""One warm Lambda execution environment: imports the handler from the deployed bundle and runs
invocations sent by the Lambda runtime executor.

Run by file path (`python worker.py CONTROL_IN CONTROL_OUT SERVER_PID PATHS`), never imported, so that
handler code cannot import `helpers` (like on AWS). It never outlives the server: on Linux the kernel
kills it when the server dies (PR_SET_PDEATHSIG), and everywhere it exits once the server's end of the
control pipe closes, even mid-invocation. Stack traces name files as AWS does (`/var/task/app.py`,
`/opt/python/...`): PATHS maps the local folders (extracted bundle, layers, runtime) to AWS's. The control channel is two inherited pipe fds carrying
messages framed as two big-endian 4-byte lengths, a small JSON header and the raw payload bytes (the
event in, the JSON result out), so a large event is never escaped into a JSON string and parsed twice.
stdout/stderr belong to the handler and end up in CloudWatch Logs. After each invocation a sentinel line
is written to stdout so the runtime knows where that invocation's output ends.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import select
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

SENTINEL = "\x00LOCALCLOUD-END "
FRAME = struct.Struct(">II")  # header length, payload length


def read_message(fd: int) -> tuple[dict[str, Any], bytes] | None:
    """The next (header, payload) from the pipe; None when the other side closed it. Two reads (the
    lengths, then header and payload together): in the server each read lets go of the GIL, and getting
    it back can wait for another thread's turn."""
    lengths = _read_exact(fd, FRAME.size)
    if lengths is None:
        return None
    header_size, payload_size = FRAME.unpack(lengths)
    rest = _read_exact(fd, header_size + payload_size)
    if rest is None:
        return None
    return json.loads(rest[:header_size]), rest[header_size:]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


COALESCE_BYTES = 64 * 1024  # a payload up to this size goes in the same write as its header


def write_message(fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    """Header as JSON, payload as raw bytes: one write when the payload is small (each write lets go of
    the GIL), two when it is large (then it is not copied)."""
    body = json.dumps(header).encode()
    if len(payload) <= COALESCE_BYTES:
        _write_all(fd, FRAME.pack(len(body), len(payload)) + body + payload)
        return
    _write_all(fd, FRAME.pack(len(body), len(payload)) + body)
    _write_all(fd, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a pipe write larger than its buffer may be partial (a signal, a ptrace attach)
        view = view[os.write(fd, view):]


class Identity:
    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class LambdaContext:
    """The context object AWS's Python runtime passes (same attribute names)."""

    def __init__(self, request: dict[str, Any]):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = request["invoked_function_arn"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.aws_request_id = request["request_id"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = Identity()
        self.client_context = _client_context(request.get("client_context"))
        self._deadline_ms = request["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


class ClientContext:
    def __init__(self, data: dict[str, Any]):
        self.client = data.get("client")
        self.custom = data.get("custom")
        self.env = data.get("env")


def _client_context(encoded: str | None) -> ClientContext | None:
    if not encoded:
        return None
    import base64

    try:
        return ClientContext(json.loads(base64.b64decode(encoded)))
    except ValueError:
        return None


# Local folder -> the path AWS's runtime shows for it, longest first (set by main from argv).
AWS_PATHS: list[tuple[str, str]] = []


def aws_path(filename: str) -> str:
    """A file of the bundle, a layer or the runtime as AWS names it (`/var/task/app.py`)."""
    for local, remote in AWS_PATHS:
        if filename == local or filename.startswith(local.rstrip(os.sep) + os.sep):
            return remote + filename[len(local.rstrip(os.sep)):]
    return filename


def _aws_frames(error: BaseException, skip: int) -> traceback.StackSummary:
    frames = traceback.extract_tb(error.__traceback__)[skip:]
    for frame in frames:
        frame.filename = aws_path(frame.filename)
    return frames


def error_object(error: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    frames = _aws_frames(error, 1)  # from the handler's frame on, as AWS shows it
    return {
        "errorMessage": message if message is not None else str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": "",
        "stackTrace": [line for line in traceback.format_list(frames)],
    }


def log_lines(error: BaseException) -> str:
    """The `[ERROR]` entry AWS's runtime logs for an unhandled exception (handler frames on)."""
    frames = traceback.format_list(_aws_frames(error, 1))
    return f"[ERROR] {type(error).__name__}: {error}\nTraceback (most recent call last):\n" + "".join(frames)


def load_handler() -> tuple[Any, dict[str, Any] | None]:
    """Import the handler module the way AWS's bootstrap does; an init error is kept for each invoke."""
    spec = os.environ["_HANDLER"]
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as error:  # noqa: BLE001 - any import failure is the function's error
        message = f"Unable to import module '{module_name}': {error}"
        return None, error_object(error, "Runtime.ImportModuleError", message) | {"stackTrace": []}
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, {"errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
                      "errorType": "Runtime.HandlerNotFound", "requestId": "", "stackTrace": []}
    return handler, None


def run(request: dict[str, Any], payload: bytes, handler: Any) -> tuple[dict[str, Any], bytes]:
    """One invocation: (header, result bytes); the result is the JSON of the handler's return value, as on AWS."""
    event = json.loads(payload) if payload else {}
    try:
        result = handler(event, LambdaContext(request))
    except Exception as error:  # noqa: BLE001 - reported to the caller as FunctionError
        sys.stdout.flush()
        print(log_lines(error), file=sys.stderr)
        return {"error": error_object(error)}, b""
    try:
        return {}, json.dumps(result).encode()
    except (TypeError, ValueError) as error:
        message = f"Unable to marshal response: {error}"
        return {"error": error_object(error, "Runtime.MarshalError", message) | {"stackTrace": []}}, b""


def die_with_server(control_in: int, server_pid: int) -> None:
    """Exit when the server does, however it dies: the kernel's parent-death signal (Linux), then the
    control pipe's hang-up (the server's end closes when it exits), watched from a thread so that a
    handler still running does not keep this process alive."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != server_pid:  # the server died before the signal was armed
        os._exit(1)

    def watch() -> None:
        poller = select.poll()
        poller.register(control_in, 0)  # hang-up and errors are always reported
        while True:
            for _fd, event in poller.poll():
                if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    os._exit(1)

    if hasattr(select, "poll"):
        threading.Thread(target=watch, name="server-watch", daemon=True).start()


def main() -> None:
    control_in, control_out = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        die_with_server(control_in, int(sys.argv[3]))
    if len(sys.argv) > 4:
        AWS_PATHS[:] = sorted(json.loads(sys.argv[4]).items(), key=lambda item: -len(item[0]))
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    # /var/task first, as on AWS; this file's directory is dropped: handler code must not see helpers/.
    sys.path[:] = [task_root, *(entry for entry in sys.path[1:] if entry != task_root)]
    os.chdir(task_root)
    started = time.perf_counter()
    handler, init_error = load_handler()
    sys.stdout.flush()
    sys.stderr.flush()
    write_message(control_out, {"ready": True, "init_ms": 1000 * (time.perf_counter() - started)})
    while True:
        message = read_message(control_in)
        if message is None:
            return
        request, payload = message
        result = b""
        begun, cpu = time.perf_counter(), time.process_time()
        if init_error is not None:
            print(json.dumps(init_error | {"requestId": request["request_id"]}), file=sys.stderr)
            response: dict[str, Any] = {"error": init_error}
        else:
            response, result = run(request, payload, handler)
        if "error" in response:
            response["error"]["requestId"] = request["request_id"]
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, f"{SENTINEL}{request['request_id']}\n".encode())
        response["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        response["handler_ms"] = round(1000 * (time.perf_counter() - begun), 3)  # for the runtime's trace
        response["handler_cpu_ms"] = round(1000 * (time.process_time() - cpu), 3)
        write_message(control_out, response, result)


if __name__ == "__main__":
    main()
