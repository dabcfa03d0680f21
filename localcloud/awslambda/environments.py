"""Warm execution environments: one `worker.py` process per concurrent invocation of a function version.

A `Worker` runs the deployed code in its own process with AWS's environment (the execution role's
session, `/var/task`-first imports), serves one invocation at a time over a pipe, and turns timeouts,
crashes and oversized answers into AWS's errors. Workers are started from one long-lived thread
(`Spawner`) so Linux's parent-death signal ties them to the server, not to a request's thread. `Pool`
keeps a spec's idle workers; `Concurrency` caps in-flight invocations (reserved concurrency: 429s).
Each worker writes START/END/REPORT and its output to CloudWatch Logs (`LogWriter`).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from localcloud import trace
from localcloud.awslambda import worker as lambda_worker
from localcloud.awslambda.functions import FunctionSpec, aws_paths
from localcloud.executors import LambdaInvokeError
from localcloud.iam.enforcement.credentials import execution_role_env

log = logging.getLogger("localcloud.lambda")

WORKER = Path(lambda_worker.__file__)
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6 MB request and response
INIT_TIMEOUT_S = 10.0  # AWS's init phase limit


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# How long an unused worker stays warm, and how many workers a function without reserved concurrency may
# have (a laptop is not a fleet: beyond it, callers wait for a free worker instead of a 429).
IDLE_TIMEOUT_S = _env_float("RETAIL_LAMBDA_IDLE_TIMEOUT_S", 600)
MAX_WORKERS_PER_FUNCTION = int(os.environ.get("RETAIL_LAMBDA_MAX_WORKERS", "8"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------
# CloudWatch Logs, written into moto's logs backend


class LogWriter:
    """START/END/REPORT and the function's output into `/aws/lambda/<name>`, one stream per worker."""

    _lock = threading.Lock()  # moto's logs backend is not thread-safe

    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        self.stream = f"{day}/[{spec.version}]{uuid.uuid4().hex}"
        self._created = False

    def write(self, lines: list[str]) -> None:
        from localcloud.motoapi import logs_backends

        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines if line]
        if not events:
            return
        with self._lock:
            backend = logs_backends[self.spec.account][self.spec.region]
            try:
                if not self._created:
                    if self.spec.log_group not in backend.groups:
                        backend.create_log_group(self.spec.log_group, tags={})
                    if self.stream not in backend.groups[self.spec.log_group].streams:
                        backend.create_log_stream(self.spec.log_group, self.stream)
                    self._created = True
                backend.put_log_events(self.spec.log_group, self.stream, events)
            except Exception:  # logs must never fail an invocation (e.g. the group was just deleted)
                log.exception("cannot write logs of %s", self.spec.name)
                self._created = False


# --------------------------------------------------------------------------------------------------
# A worker: one warm execution environment


@dataclass
class Outcome:
    payload: bytes
    function_error: str | None
    log_lines: list[str]
    duration_ms: float
    status: str | None = None  # "timeout" / "error" in the REPORT line, as AWS writes it
    alive: bool = True


class WorkerCrashed(Exception):
    pass


class Worker:
    """A `lambda_worker.py` process running one function version; serves one invocation at a time."""

    def __init__(self, spec: FunctionSpec, task_root: Path, python_path: list[Path], endpoint: str):
        self.spec = spec
        self.logs = LogWriter(spec)
        self.init_ms = 0.0
        self.init_lines: list[str] | None = None  # output of the init phase, until the first REPORT
        self.init_failure: Any = None  # set when the init phase crashed: every invoke answers ExitError
        self.max_rss_mb = 0
        self.last_used = time.monotonic()
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        env = self._environment(task_root, python_path, endpoint)
        paths = json.dumps(aws_paths(task_root, python_path))
        self.process = SPAWNER.popen(
            [sys.executable, "-S", "-u", str(WORKER), str(to_worker_r), str(from_worker_w), str(os.getpid()), paths],
            pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env, cwd=task_root,
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._output: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_output, name=f"lambda-out-{spec.name}", daemon=True).start()

    def _environment(self, task_root: Path, python_path: list[Path], endpoint: str) -> dict[str, str]:
        spec = self.spec
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONIOENCODING": "utf-8",
            "LAMBDA_TASK_ROOT": str(task_root), "LAMBDA_RUNTIME_DIR": str(python_path[-1]),
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.logs.stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": spec.region, "AWS_DEFAULT_REGION": spec.region,
            # A session of the execution role, as on AWS: its policies decide what the function may call.
            **execution_role_env(spec.account, spec.region, spec.name),
            # A developer's ~/.aws files must not leak into the function, as they would not on AWS.
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_ENDPOINT_URL": endpoint,
            "PYTHONPATH": os.pathsep.join(str(p) for p in python_path),
        }
        env.update(dict(spec.environment))
        return env

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._output.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._output.put(None)

    def _drain_output(self, until: str | None, wait_s: float) -> list[str]:
        """Output lines up to the sentinel of `until` (or whatever arrived within `wait_s`)."""
        lines, deadline = [], time.monotonic() + wait_s
        while True:
            try:
                line = self._output.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return lines
            if line is None:
                return lines
            if line.startswith(lambda_worker.SENTINEL):
                if until is None or line.endswith(until):
                    return lines
                continue
            lines.append(line)

    def _receive(self, timeout_s: float) -> tuple[dict[str, Any], bytes] | None:
        """The worker's next control message (header, payload); None on timeout; WorkerCrashed when it exited."""
        ready, _, _ = select.select([self._from_worker], [], [], max(0.0, timeout_s))
        if not ready:
            return None
        message = lambda_worker.read_message(self._from_worker)
        if message is None:
            raise WorkerCrashed()
        return message

    def wait_ready(self) -> None:
        """Wait for the init phase; its output is logged before the first START."""
        started = time.perf_counter()
        try:
            message = self._receive(INIT_TIMEOUT_S)
        except WorkerCrashed:
            message = None
        self.init_ms = 1000 * (time.perf_counter() - started)
        if message is None:  # the module exited or hung while being imported
            self.kill()
            self.init_lines = self._drain_output(None, 0.5)
            self.init_failure = self._crashed
            return
        self.init_ms = message[0].get("init_ms", self.init_ms)
        self.init_lines = self._drain_output(None, 0.05)

    def invoke(self, request_id: str, payload: bytes, arn: str, client_context: str | None) -> Outcome:
        spec = self.spec
        started = time.perf_counter()
        deadline_ms = time.time() * 1000 + spec.timeout * 1000
        self.last_used = time.monotonic()
        try:
            lambda_worker.write_message(self._to_worker, {
                "request_id": request_id, "invoked_function_arn": arn, "deadline_ms": deadline_ms,
                "client_context": client_context,
            }, payload)
            answer = self._receive(spec.timeout)
        except (WorkerCrashed, BrokenPipeError):
            return self._crashed(request_id, started)
        duration_ms = 1000 * (time.perf_counter() - started)
        if answer is None:
            self.kill()
            lines = self._drain_output(request_id, 1.0)
            message = f"Task timed out after {spec.timeout:.2f} seconds"
            lines.append(f"{now_iso()} {request_id} {message}")
            error = {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {request_id} Error: {message}"}
            return Outcome(json.dumps(error).encode(), "Unhandled", lines, duration_ms, "timeout", alive=False)
        answered = time.time()
        lines = self._drain_output(request_id, 2.0)
        response, result = answer
        trace.record("lambda", "output", answered, time.time() - answered, function=spec.name, request=request_id,
                     handler_ms=response.get("handler_ms"), handler_cpu_ms=response.get("handler_cpu_ms"),
                     answer_ms=round(duration_ms, 3))
        self.max_rss_mb = int(response.get("max_rss_kb", 0)) // 1024
        if "error" in response:
            return Outcome(json.dumps(response["error"]).encode(), "Unhandled", lines, duration_ms)
        if len(result) > SYNC_PAYLOAD_LIMIT:
            error = {"errorMessage": f"Response payload size ({len(result)} bytes) exceeded maximum allowed payload size ({SYNC_PAYLOAD_LIMIT} bytes).",
                     "errorType": "Function.ResponseSizeTooLarge"}
            return Outcome(json.dumps(error).encode(), "Unhandled", lines, duration_ms)
        return Outcome(result, None, lines, duration_ms)

    def _crashed(self, request_id: str, started: float | None = None) -> Outcome:
        started = time.perf_counter() if started is None else started
        code = self.process.wait(timeout=5)
        lines = self._drain_output(request_id, 1.0)
        reason = f"exit status {code}" if code >= 0 else f"signal: {_signal_name(-code)}"
        message = f"RequestId: {request_id} Error: Runtime exited with error: {reason}"
        lines.append(message)
        error = {"errorType": "Runtime.ExitError", "errorMessage": message}
        return Outcome(json.dumps(error).encode(), "Unhandled", lines, 1000 * (time.perf_counter() - started),
                       "error\tError Type: Runtime.ExitError", alive=False)

    @property
    def alive(self) -> bool:
        return self.init_failure is None and self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("worker %s of %s did not exit", self.process.pid, self.spec.name)
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_worker = self._from_worker = -1


class Spawner:
    """Starts worker processes from one thread that lives as long as the server. Linux's parent-death
    signal fires when the *thread* that started a process ends, and request threads end with their
    connection: a worker started from one would die with it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[concurrent.futures.Future[Any], tuple[Any, ...], dict[str, Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="lambda-spawner", daemon=True)
                self._thread.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, args, kwargs))
        return future.result()

    def _loop(self) -> None:
        while True:
            future, args, kwargs = self._jobs.get()
            try:
                future.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - the caller raises it
                future.set_exception(error)


SPAWNER = Spawner()


def _signal_name(number: int) -> str:
    import signal

    try:
        return {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGTERM: "terminated",
                signal.SIGABRT: "aborted"}.get(signal.Signals(number), signal.Signals(number).name.lower())
    except ValueError:
        return str(number)


# --------------------------------------------------------------------------------------------------
# Pools and concurrency


class Pool:
    """Idle warm workers of one FunctionSpec."""

    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        self.idle: list[Worker] = []
        self.retired = False


class Concurrency:
    """In-flight invocations per function: reserved concurrency gives 429s, the local cap waits."""

    def __init__(self) -> None:
        self._in_flight: dict[tuple[str, str, str], int] = {}
        self._changed = threading.Condition()

    @contextmanager
    def slot(self, spec: FunctionSpec, wait: bool) -> Iterator[None]:
        key = (spec.account, spec.region, spec.name)
        with self._changed:
            while True:
                current = self._in_flight.get(key, 0)
                if spec.reserved_concurrency is not None and current >= spec.reserved_concurrency:
                    if not wait:
                        raise LambdaInvokeError("TooManyRequestsException", "Rate Exceeded.", 429)
                elif current < MAX_WORKERS_PER_FUNCTION:
                    break
                self._changed.wait(timeout=1.0)
            self._in_flight[key] = current + 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight[key] -= 1
                self._changed.notify_all()


