"""The local Lambda runtime: runs deployed function bundles the way AWS Lambda does.

moto stores functions but runs nothing without Docker. This executor answers `Invoke` (and the legacy
`InvokeAsync`) itself and implements `Invoker` for the other executors:
- the code is the *deployed* zip (plus its layers), extracted under the state folder, never the source;
- each function version and configuration gets warm worker processes (`lambda_worker.py`), so module
  globals survive between invocations and an update starts fresh ones;
- a worker sees what AWS's Python runtime gives: `/var/task`-first import path, the runtime's boto3 but
  not the project's other packages, AWS's environment variables, plus `AWS_ENDPOINT_URL` so unmodified
  boto3 clients reach the local cloud;
- RequestResponse / Event / DryRun, AWS's error shapes, timeouts, crashes, reserved concurrency;
- async invokes with retries, maximum event age and on-success / on-failure destinations; an `Event`
  invoke is answered 202 once the event is on disk, and events queued at a crash run after the restart
  (at least once, never lost; persistence/durable_queue.py);
- workers never outlive the server (started from one long-lived thread so the kernel's parent-death
  signal is tied to the process, plus the control pipe's hang-up), and their stack traces name files as
  AWS does (`/var/task/...`);
- START / END / REPORT and the function's output in CloudWatch Logs (`/aws/lambda/<name>`).
"""

from __future__ import annotations

import base64
import concurrent.futures
import importlib.util
import itertools
import json
import logging
import os
import queue
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from localcloud import motoapi, trace
from localcloud.awslambda import worker as lambda_worker
from localcloud.iam.enforcement.credentials import execution_role_env
from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.durable_queue import DurableQueue
from localcloud.persistence.wal import policy as journal_policy
from localcloud.executors import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    CloudContext,
    InvokeResult,
    JSONPayload,
    LambdaInvokeError,
    WSGIApp,
)

log = logging.getLogger("localcloud.lambda")

WORKER = Path(lambda_worker.__file__)
# What AWS's Python runtime provides besides the standard library (everything else must be packaged).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6 MB request and response
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB since October 2025 (256 KB before)
INIT_TIMEOUT_S = 10.0  # AWS's init phase limit
LOG_TAIL_BYTES = 4096
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
INVOKE_ASYNC_PATH = re.compile(r"^/2014-11-13/functions/(?P<function>[^/]+)/invoke-async/?$")
CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/[^/]+/(?P<region>[^/]+)/")


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# How long an unused worker stays warm, how many workers a function without reserved concurrency may
# have (a laptop is not a fleet: beyond it, callers wait for a free worker instead of a 429), and the
# delays before the two async retries (AWS waits about 1 and 2 minutes; tests want seconds).
IDLE_TIMEOUT_S = _env_float("RETAIL_LAMBDA_IDLE_TIMEOUT_S", 600)
MAX_WORKERS_PER_FUNCTION = int(os.environ.get("RETAIL_LAMBDA_MAX_WORKERS", "8"))
ASYNC_RETRY_DELAYS_S = tuple(float(v) for v in os.environ.get("RETAIL_LAMBDA_ASYNC_RETRY_DELAYS_S", "1,2").split(","))
ASYNC_THREADS = int(os.environ.get("RETAIL_LAMBDA_ASYNC_THREADS", "4"))


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------
# What runs: one function version with its configuration


@dataclass(frozen=True)
class FunctionSpec:
    """Everything that decides how a function version runs; workers are keyed by it."""

    account: str
    region: str
    name: str
    version: str
    arn: str  # unqualified
    handler: str
    runtime: str
    code_sha: str
    timeout: int
    memory: int
    environment: tuple[tuple[str, str], ...]
    layers: tuple[str, ...]
    reserved_concurrency: int | None = field(compare=False)

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.version}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


def _spec(fn: Any) -> FunctionSpec:
    reserved = fn.reserved_concurrency
    return FunctionSpec(
        account=fn.account_id, region=fn.region, name=fn.function_name, version=str(fn.version),
        arn=fn.function_arn.split(":function:")[0] + f":function:{fn.function_name}",
        handler=fn.handler or "", runtime=fn.run_time or "python3.11", code_sha=fn.code_sha_256,
        timeout=int(fn.timeout), memory=int(fn.memory_size),
        environment=tuple(sorted((fn.environment_vars or {}).items())),
        layers=tuple(layer["Arn"] for layer in fn.layers),
        reserved_concurrency=None if reserved in (None, "") else int(reserved),
    )


def split_function(function: str, qualifier: str | None, account: str, region: str) -> tuple[str, str | None, str, str]:
    """(name, qualifier, account, region) from a name, `name:qualifier`, partial or full ARN."""
    function = unquote(function)
    if function.startswith("arn:"):
        parts = function.split(":")  # arn:aws:lambda:region:account:function:name[:qualifier]
        if len(parts) < 7 or parts[5] != "function":
            raise LambdaInvokeError("ValidationException", f"1 validation error detected: Value '{function}' at 'functionName' failed to satisfy constraint", 400)
        region, account, name = parts[3] or region, parts[4] or account, parts[6]
        return name, parts[7] if len(parts) > 7 else qualifier, account, region
    parts = function.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # account:function:name[:qualifier]
        return parts[2], parts[3] if len(parts) > 3 else qualifier, parts[0], region
    if len(parts) == 2:
        return parts[0], parts[1], account, region
    return function, qualifier, account, region


# --------------------------------------------------------------------------------------------------
# Code on disk: the deployed zip, its layers and the runtime's own packages


class CodeStore:
    """Extracts deployed zips once per content hash (code and layers) under the state folder."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def code_dir(self, fn: Any, spec: FunctionSpec) -> Path:
        return self._extract("code", spec.code_sha, lambda: fn.code_bytes)

    def layer_dirs(self, spec: FunctionSpec) -> list[Path]:
        from localcloud.motoapi import lambda_backends

        backend = lambda_backends[spec.account][spec.region]
        dirs = []
        for arn in spec.layers:
            layer = backend.layers_versions_by_arn(arn)
            if layer is None:
                raise LambdaInvokeError("ResourceNotFoundException", f"Layer version {arn} does not exist.", 404)
            dirs.append(self._extract("layers", layer.code_sha_256, lambda layer=layer: layer.code_bytes))
        return dirs

    def runtime_site(self) -> Path:
        """A folder holding only what AWS's Python runtime provides (links into this environment)."""
        target = self.root / "runtime-site"
        with self._lock:
            if not target.exists():
                staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".runtime-"))
                for name in RUNTIME_PACKAGES:
                    spec = importlib.util.find_spec(name)
                    if spec is None or spec.origin is None:
                        continue
                    source = Path(spec.origin)
                    source = source.parent if source.name == "__init__.py" else source
                    (staging / source.name).symlink_to(source)
                staging.rename(target)
        return target

    def _extract(self, kind: str, sha: str, read: Any) -> Path:
        target = self.root / kind / sha.replace("/", "_").replace("+", "-").rstrip("=")
        with self._lock:
            if target.exists():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
            data = read()
            if data:
                with zipfile.ZipFile(_bytes_io(data)) as bundle:
                    bundle.extractall(staging)
            staging.rename(target)
            return target


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


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
            lines.append(f"{_now_iso()} {request_id} {message}")
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


def aws_paths(task_root: Path, python_path: list[Path]) -> dict[str, str]:
    """Local folder -> where AWS's Python runtime has it: the bundle in /var/task, layers in /opt, the
    runtime's packages and the standard library under /var/lang."""
    import sysconfig

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = {str(task_root): "/var/task", str(python_path[-1]): f"/var/lang/lib/{version}/site-packages",
             sysconfig.get_paths()["stdlib"]: f"/var/lang/lib/{version}"}
    for folder in python_path[1:-1]:  # layer/python and layer/python/lib/pythonX.Y/site-packages
        layer = folder.parent if folder.name == "python" else folder.parents[3]
        paths.setdefault(str(layer), "/opt")
    return paths


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


# --------------------------------------------------------------------------------------------------
# Async invocations


@dataclass
class AsyncEvent:
    spec_arn: str
    qualifier: str | None
    payload: bytes
    request_id: str
    account: str
    region: str
    received: float = field(default_factory=time.time)
    attempts: int = 0


# --------------------------------------------------------------------------------------------------
# The executor


class LambdaRuntime:
    """Executor "lambda-runtime": answers Invoke over HTTP and implements `Invoker`."""

    name = "lambda-runtime"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self.code: CodeStore | None = None
        self.concurrency = Concurrency()
        self._pools: dict[FunctionSpec, Pool] = {}
        self._current: dict[tuple[str, str, str, str], FunctionSpec] = {}  # function version -> live spec
        self._lock = threading.Lock()
        self._async: queue.Queue[AsyncEvent | None] = queue.Queue()
        self._events: DurableQueue | None = None  # the async events on disk (None: journal off)
        self._retries: list[threading.Timer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._undo_invoke: Callable[[], None] | None = None

    # lifecycle -----------------------------------------------------------------------------------
    def start(self, cloud: CloudContext) -> None:
        self.cloud = cloud
        root = cloud.state_dir / "lambda"
        root.mkdir(parents=True, exist_ok=True)
        self.code = CodeStore(root)
        self.code.runtime_site()
        self._stopping.clear()
        self._restore_events(root / "async-events")
        self._threads = [threading.Thread(target=self._async_loop, name=f"lambda-async-{i}", daemon=True)
                         for i in range(ASYNC_THREADS)]
        self._threads.append(threading.Thread(target=self._reap_idle, name="lambda-reaper", daemon=True))
        for thread in self._threads:
            thread.start()
        self._patch_moto()

    def stop(self) -> None:
        self._stopping.set()
        for timer in self._retries:
            timer.cancel()
        for _ in range(ASYNC_THREADS):
            self._async.put(None)
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            for worker in pool.idle:
                worker.kill()
        self._unpatch_moto()
        if self._events is not None:  # what is still queued runs after the next start
            self._events.close()
            self._events = None

    def _restore_events(self, folder: Path) -> None:
        """Open the durable async queue and queue again what a stop or a crash left pending."""
        mode = journal_policy()
        if mode == "off":
            return
        self._events = DurableQueue(folder, mode)
        for header, payload in self._events.pending():
            self._async.put(AsyncEvent(header["arn"], header["qualifier"], payload, header["id"], header["account"],
                                       header["region"], received=header["received"]))
        if self._events.pending():
            log.info("%d async invocations queued before the last stop run again", len(self._events.pending()))

    def _patch_moto(self) -> None:
        """moto's own callers of `LambdaFunction.invoke` (e.g. log subscriptions) run through us too."""
        runtime = self

        def running(original: Any) -> Any:
            def invoke(fn: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
                payload = body.encode() if isinstance(body, str) else (body or b"")
                kind = request_headers.get("x-amz-invocation-type", "RequestResponse")
                result = runtime.invoke(fn.function_arn, payload, invocation_type=kind,
                                        account_id=fn.account_id, region=fn.region)
                if result.function_error:
                    response_headers["x-amz-function-error"] = result.function_error
                return result.payload
            return invoke

        self._undo_invoke = motoapi.replace("lambda.function.invoke", running)

    def _unpatch_moto(self) -> None:
        if self._undo_invoke is not None:
            self._undo_invoke()
            self._undo_invoke = None

    # HTTP ----------------------------------------------------------------------------------------
    def route(self, request: Request) -> WSGIApp | None:
        if request.method != "POST":
            return None
        match = INVOKE_PATH.match(request.path) or INVOKE_ASYNC_PATH.match(request.path)
        if match is None:
            return None
        return lambda environ, start_response: self._serve(Request(environ), match)(environ, start_response)

    def _serve(self, request: Request, match: re.Match[str]) -> Response:
        account, region = _caller(request)
        legacy_async = match.re is INVOKE_ASYNC_PATH
        kind = "Event" if legacy_async else request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        try:
            if kind not in ("RequestResponse", "Event", "DryRun"):
                raise LambdaInvokeError("InvalidParameterValueException", f"Unsupported invocation type: {kind}", 400)
            result = self.invoke(
                match["function"], request.get_data(), qualifier=request.args.get("Qualifier"),
                invocation_type=kind, log_type=request.headers.get("X-Amz-Log-Type", "None"),  # type: ignore[arg-type]
                client_context=request.headers.get("X-Amz-Client-Context"), account_id=account, region=region,
            )
        except LambdaInvokeError as error:
            return _error_response(error)
        except Exception as error:  # a bug here must answer like AWS's 500, not an HTML page
            log.exception("invoke of %s failed", match["function"])
            return _error_response(LambdaInvokeError("ServiceException", f"{type(error).__name__}: {error}", 500))
        if result.status_code == 202 and self._events is not None:
            self._events.wait_durable(self._events.log.next_lsn - 1)  # acknowledged means stored
        headers = {"x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": result.executed_version}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if result.log_result:
            headers["X-Amz-Log-Result"] = result.log_result
        if legacy_async:
            return Response(json.dumps({"Status": 202}), status=202, headers=headers, content_type="application/json")
        return Response(result.payload, status=result.status_code, headers=headers, content_type="application/json")

    # Invoker -------------------------------------------------------------------------------------
    def invoke(self, function: str, payload: bytes, *, qualifier: str | None = None,
               invocation_type: str = "RequestResponse", log_type: str = "None",
               client_context: str | None = None, account_id: str = DEFAULT_ACCOUNT,
               region: str = DEFAULT_REGION) -> InvokeResult:
        name, qualifier, account_id, region = split_function(function, qualifier, account_id, region)
        fn = self._function(name, qualifier, account_id, region)
        spec = _spec(fn)
        request_id = str(uuid.uuid4())
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            raise LambdaInvokeError("RequestTooLargeException",
                                    f"Request must be smaller than {limit} bytes for the InvokeFunction operation", 413)
        if not isinstance(payload, JSONPayload):
            _check_json(payload)
        if invocation_type == "DryRun":
            return InvokeResult(204, b"", executed_version=spec.version, request_id=request_id)
        if invocation_type == "Event":
            if spec.reserved_concurrency == 0:
                raise LambdaInvokeError("TooManyRequestsException", "Rate Exceeded.", 429)
            event = AsyncEvent(spec.arn, qualifier, payload, request_id, account_id, region)
            if self._events is not None:
                self._events.add(request_id, {"arn": spec.arn, "qualifier": qualifier, "account": account_id,
                                              "region": region, "received": event.received}, bytes(payload))
            self._async.put(event)
            return InvokeResult(202, b"", executed_version=spec.version, request_id=request_id)
        outcome = self._run(fn, spec, payload, request_id, client_context, wait=False)
        tail = None
        if log_type == "Tail":
            tail = base64.b64encode("\n".join(outcome.log_lines).encode()[-LOG_TAIL_BYTES:]).decode()
        return InvokeResult(200, outcome.payload, outcome.function_error, tail, spec.version, request_id)

    def _function(self, name: str, qualifier: str | None, account: str, region: str) -> Any:
        from localcloud.motoapi import lambda_backends
        from localcloud.motoapi import JsonRESTError

        try:
            fn = lambda_backends[account][region].get_function(name, qualifier)
        except JsonRESTError as error:
            arn = f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")
            raise LambdaInvokeError("ResourceNotFoundException", f"Function not found: {arn}", 404) from error
        if fn is None:
            raise LambdaInvokeError("ResourceNotFoundException", f"Function not found: {name}", 404)
        if getattr(fn, "package_type", "Zip") != "Zip":
            raise LambdaInvokeError("InvalidParameterValueException", "Container image functions are not supported locally.", 400)
        return fn

    def _run(self, fn: Any, spec: FunctionSpec, payload: bytes, request_id: str, client_context: str | None,
             wait: bool) -> Outcome:
        asked = time.perf_counter()
        with self.concurrency.slot(spec, wait=wait):
            with trace.span("lambda", "acquire", function=spec.name, request=request_id) as traced:
                traced["slot_ms"] = round(1000 * (time.perf_counter() - asked), 3)
                worker = self._acquire(fn, spec)
                traced["cold"] = worker.init_lines is not None
            if worker.init_failure is not None:
                outcome = worker.init_failure(request_id)
            else:
                arn = spec.arn if spec.version == "$LATEST" else spec.qualified_arn
                with trace.span("lambda", "run", function=spec.name, request=request_id, pid=worker.process.pid):
                    outcome = worker.invoke(request_id, payload, arn, client_context)
            with trace.span("lambda", "logs", function=spec.name, request=request_id):
                self._log(worker, request_id, outcome)
            self._release(worker)
        return outcome

    @staticmethod
    def _log(worker: Worker, request_id: str, outcome: Outcome) -> None:
        """The invocation's CloudWatch lines, as AWS writes them (init output before the first START)."""
        spec = worker.spec
        report = (f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms\t"
                  f"Billed Duration: {max(1, int(outcome.duration_ms + 0.999))} ms\tMemory Size: {spec.memory} MB\t"
                  f"Max Memory Used: {worker.max_rss_mb} MB")
        init_lines: list[str] = []
        if worker.init_lines is not None:
            init_lines, worker.init_lines = worker.init_lines, None
            report += f"\tInit Duration: {worker.init_ms:.2f} ms"
        if outcome.status:
            report += f"\tStatus: {outcome.status}"
        outcome.log_lines = [*init_lines, f"START RequestId: {request_id} Version: {spec.version}",
                             *outcome.log_lines, f"END RequestId: {request_id}", report]
        worker.logs.write(outcome.log_lines)

    def _acquire(self, fn: Any, spec: FunctionSpec) -> Worker:
        """A warm worker of this exact spec, or a new one (older specs of the function are retired)."""
        version_key = (spec.account, spec.region, spec.name, spec.version)
        with self._lock:
            previous = self._current.get(version_key)
            if previous is not None and previous != spec:
                self._retire(previous)
            self._current[version_key] = spec
            pool = self._pools.setdefault(spec, Pool(spec))
            while pool.idle:
                worker = pool.idle.pop()
                if worker.alive:
                    return worker
        assert self.code is not None and self.cloud is not None
        task_root = self.code.code_dir(fn, spec)
        layers = self.code.layer_dirs(spec)
        site = f"python{sys.version_info.major}.{sys.version_info.minor}"
        python_path = [task_root, *itertools.chain.from_iterable(
            (layer / "python" / "lib" / site / "site-packages", layer / "python") for layer in layers),
            self.code.runtime_site()]
        worker = Worker(spec, task_root, python_path, self.cloud.endpoint)
        worker.wait_ready()
        return worker

    def _release(self, worker: Worker) -> None:
        with self._lock:
            pool = self._pools.get(worker.spec)
            if worker.alive and pool is not None and not pool.retired:
                pool.idle.append(worker)
                return
        worker.kill()

    def _retire(self, spec: FunctionSpec) -> None:
        pool = self._pools.pop(spec, None)
        if pool is not None:
            pool.retired = True
            for worker in pool.idle:
                worker.kill()
            pool.idle.clear()

    def _reap_idle(self) -> None:
        while not self._stopping.wait(timeout=min(30.0, IDLE_TIMEOUT_S)):
            cutoff = time.monotonic() - IDLE_TIMEOUT_S
            with self._lock:
                stale = [w for pool in self._pools.values() for w in pool.idle if w.last_used < cutoff]
                for pool in self._pools.values():
                    pool.idle = [w for w in pool.idle if w not in stale]
            for worker in stale:
                worker.kill()

    def workers(self) -> dict[str, list[int]]:
        """Pids of idle warm workers per function version (for tests and the admin view)."""
        with self._lock:
            return {pool.spec.qualified_arn: [w.process.pid for w in pool.idle] for pool in self._pools.values()}

    # async ---------------------------------------------------------------------------------------
    def _async_loop(self) -> None:
        REPLAY_DONE.wait()  # an event queued before a crash may be for a function the journal brings back
        while True:
            event = self._async.get()
            if event is None or self._stopping.is_set():
                return
            finished = True
            try:
                finished = self._run_async(event)
            except Exception:  # one broken event must not stop the async workers
                log.exception("async invocation %s failed", event.request_id)
            if finished and self._events is not None:
                self._events.done(event.request_id)

    def _run_async(self, event: AsyncEvent) -> bool:
        """One attempt; False while the event is not finished (a retry is due, or the runtime stops:
        the durable queue runs it again after the next start)."""
        try:
            fn = self._function(event.spec_arn.split(":")[-1], event.qualifier, event.account, event.region)
        except LambdaInvokeError:
            log.warning("async event %s: function %s is gone", event.request_id, event.spec_arn)
            return True
        spec = _spec(fn)
        config = _event_invoke_config(fn)
        max_age = config.get("MaximumEventAgeInSeconds", 21600)
        if time.time() - event.received > max_age:
            self._destination(fn, spec, event, config, None, "EventAgeExceeded")
            return True
        event.attempts += 1
        outcome = self._run(fn, spec, event.payload, event.request_id, None, wait=True)
        if outcome.function_error is None:
            self._destination(fn, spec, event, config, outcome, "Success")
            return True
        if self._stopping.is_set() and self._events is not None:
            return False
        retries = config.get("MaximumRetryAttempts", 2)
        if event.attempts <= retries and not self._stopping.is_set():
            delay = ASYNC_RETRY_DELAYS_S[min(event.attempts - 1, len(ASYNC_RETRY_DELAYS_S) - 1)]
            timer = threading.Timer(delay, self._async.put, args=(event,))
            timer.daemon = True
            self._retries = [t for t in self._retries if t.is_alive()] + [timer]
            timer.start()
            return False
        self._destination(fn, spec, event, config, outcome, "RetriesExhausted")
        return True

    def _destination(self, fn: Any, spec: FunctionSpec, event: AsyncEvent, config: dict[str, Any],
                     outcome: Outcome | None, condition: str) -> None:
        side = "OnSuccess" if condition == "Success" else "OnFailure"
        target = config.get("DestinationConfig", {}).get(side, {}).get("Destination")
        if not target:
            if condition != "Success":
                log.warning("async event %s of %s dropped after %s (no OnFailure destination)",
                            event.request_id, spec.name, condition)
            return
        record: dict[str, Any] = {
            "version": "1.0", "timestamp": _now_iso(),
            "requestContext": {"requestId": event.request_id, "functionArn": spec.qualified_arn,
                               "condition": condition, "approximateInvokeCount": event.attempts},
            "requestPayload": _json_or_text(event.payload),
        }
        if outcome is not None:
            record["responseContext"] = {"statusCode": 200, "executedVersion": spec.version}
            if outcome.function_error:
                record["responseContext"]["functionError"] = outcome.function_error
            record["responsePayload"] = _json_or_text(outcome.payload)
        send_to_destination(target, record, condition, spec, self)


def send_to_destination(arn: str, record: dict[str, Any], condition: str, spec: FunctionSpec, runtime: LambdaRuntime) -> None:
    """An async invocation record to SQS, SNS, another function or an EventBridge bus."""
    from localcloud.event_sources import pollers as event_sources

    service = arn.split(":")[2]
    if service in ("sqs", "sns"):
        event_sources.send_to_destination(arn, record, spec.account, spec.region)
    elif service == "lambda":
        runtime.invoke(arn, JSONPayload.dumps(record), invocation_type="Event", account_id=spec.account,
                       region=spec.region)
    elif service == "events":
        from localcloud.motoapi import events_backends

        detail = "Success" if condition == "Success" else "Failure"
        events_backends[spec.account][spec.region].put_events([{
            "Source": "lambda", "DetailType": f"Lambda Function Invocation Result - {detail}",
            "Detail": json.dumps(record), "Resources": [spec.qualified_arn], "EventBusName": arn,
        }])
    else:
        log.warning("unsupported destination %s", arn)


def _error_response(error: LambdaInvokeError) -> Response:
    kind = "Service" if error.status >= 500 else "User"
    return Response(json.dumps({"Type": kind, "message": error.message}), status=error.status,
                    headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())},
                    content_type="application/json")


def _event_invoke_config(fn: Any) -> dict[str, Any]:
    configs = getattr(fn, "event_invoke_config", None) or []
    return dict(configs[-1].config) if configs else {}


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return payload.decode("utf-8", "replace")


def _check_json(payload: bytes) -> None:
    if not payload:
        return
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise LambdaInvokeError("InvalidRequestContentException",
                                f"Could not parse request body into json: Could not parse payload into json: {error}",
                                400) from None


def _caller(request: Request) -> tuple[str, str]:
    """(account, region) of the signed request, as moto derives them."""
    match = CREDENTIAL.search(request.headers.get("Authorization", ""))
    if match is None:
        return DEFAULT_ACCOUNT, DEFAULT_REGION
    from localcloud.motoapi import get_account_id_from

    return get_account_id_from(match["key"]), match["region"]


def make_executor() -> LambdaRuntime:
    return LambdaRuntime()
