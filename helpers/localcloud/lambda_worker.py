"""One warm Lambda execution environment: imports the handler from the deployed bundle and runs
invocations sent by the Lambda runtime executor.

Run by file path (`python lambda_worker.py CONTROL_IN CONTROL_OUT`), never imported, so that handler
code cannot import `helpers` (like on AWS). The control channel is two inherited pipe fds carrying
length-prefixed JSON; stdout/stderr belong to the handler and end up in CloudWatch Logs. After each
invocation a sentinel line is written to stdout so the runtime knows where that invocation's output ends.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import struct
import sys
import time
import traceback
from typing import Any

SENTINEL = "\x00LOCALCLOUD-END "


def read_message(fd: int) -> dict[str, Any] | None:
    header = _read_exact(fd, 4)
    if header is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", header)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_message(fd: int, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    data = memoryview(struct.pack(">I", len(body)) + body)
    while data:  # a pipe write larger than its buffer may be partial (a signal, a ptrace attach)
        data = data[os.write(fd, data):]


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


def error_object(error: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    frames = traceback.extract_tb(error.__traceback__)[1:]  # from the handler's frame on, as AWS shows it
    return {
        "errorMessage": message if message is not None else str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": "",
        "stackTrace": [line for line in traceback.format_list(frames)],
    }


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


def run(request: dict[str, Any], handler: Any) -> dict[str, Any]:
    event = json.loads(request["payload"]) if request["payload"] else {}
    try:
        result = handler(event, LambdaContext(request))
    except Exception as error:  # noqa: BLE001 - reported to the caller as FunctionError
        sys.stdout.flush()
        lines = traceback.format_exception(error)
        print(f"[ERROR] {type(error).__name__}: {error}\n" + "".join([lines[0], *lines[2:]]), file=sys.stderr)
        return {"error": error_object(error)}
    try:
        return {"result": json.dumps(result)}
    except (TypeError, ValueError) as error:
        message = f"Unable to marshal response: {error}"
        return {"error": error_object(error, "Runtime.MarshalError", message) | {"stackTrace": []}}


def main() -> None:
    control_in, control_out = int(sys.argv[1]), int(sys.argv[2])
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
        request = read_message(control_in)
        if request is None:
            return
        if init_error is not None:
            print(json.dumps(init_error | {"requestId": request["request_id"]}), file=sys.stderr)
            response = {"error": init_error}
        else:
            response = run(request, handler)
        if "error" in response:
            response["error"]["requestId"] = request["request_id"]
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, f"{SENTINEL}{request['request_id']}\n".encode())
        response["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        write_message(control_out, response)


if __name__ == "__main__":
    main()
