"""The local Lambda runtime: runs deployed function bundles the way AWS Lambda does.

moto stores functions but runs nothing without Docker. This executor answers `Invoke` (and the legacy
`InvokeAsync`) itself and implements `Invoker` for the other executors:
- the code is the *deployed* zip (plus its layers), extracted under the state folder, never the source
  (functions.py);
- each function version and configuration gets warm worker processes (workers.py), so module
  globals survive between invocations and an update starts fresh ones;
- a worker sees what AWS's Python runtime gives: `/var/task`-first import path, the runtime's boto3 but
  not the project's other packages, AWS's environment variables, plus `AWS_ENDPOINT_URL` so unmodified
  boto3 clients reach the local cloud;
- RequestResponse / Event / DryRun, AWS's error shapes, timeouts, crashes, reserved concurrency;
- async invokes with retries, maximum event age and on-success / on-failure destinations
  (async_invoke.py); an `Event` invoke is answered 202 once the event is on disk, and events queued at a
  crash run after the restart (at least once, never lost; persistence/durable_queue.py);
- workers never outlive the server (started from one long-lived thread so the kernel's parent-death
  signal is tied to the process, plus the control pipe's hang-up), and their stack traces name files as
  AWS does (`/var/task/...`);
- START / END / REPORT and the function's output in CloudWatch Logs (`/aws/lambda/<name>`).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import sys
import threading
import time
import uuid
from typing import Any, Callable

from werkzeug.wrappers import Request, Response

from localcloud import motoapi, trace
from localcloud.awslambda.async_invoke import AsyncInvocations
from localcloud.awslambda.functions import CodeStore, FunctionSpec, spec_of, split_function
from localcloud.awslambda.environments import (
    IDLE_TIMEOUT_S,
    SYNC_PAYLOAD_LIMIT,
    Concurrency,
    Outcome,
    Pool,
    Worker,
)
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

ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB since October 2025 (256 KB before)
LOG_TAIL_BYTES = 4096
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
INVOKE_ASYNC_PATH = re.compile(r"^/2014-11-13/functions/(?P<function>[^/]+)/invoke-async/?$")
CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/[^/]+/(?P<region>[^/]+)/")


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
        self.events = AsyncInvocations(self)
        self._reaper: threading.Thread | None = None
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
        self.events.start(root / "async-events")
        self._reaper = threading.Thread(target=self._reap_idle, name="lambda-reaper", daemon=True)
        self._reaper.start()
        self._patch_moto()

    def stop(self) -> None:
        self._stopping.set()
        self.events.stop()
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            for worker in pool.idle:
                worker.kill()
        self._unpatch_moto()

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
        if result.status_code == 202:
            self.events.wait_durable()  # acknowledged means stored
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
        fn = self.function(name, qualifier, account_id, region)
        spec = spec_of(fn)
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
            self.events.add(spec, qualifier, payload, request_id, account_id, region)
            return InvokeResult(202, b"", executed_version=spec.version, request_id=request_id)
        outcome = self.run(fn, spec, payload, request_id, client_context, wait=False)
        tail = None
        if log_type == "Tail":
            tail = base64.b64encode("\n".join(outcome.log_lines).encode()[-LOG_TAIL_BYTES:]).decode()
        return InvokeResult(200, outcome.payload, outcome.function_error, tail, spec.version, request_id)

    def function(self, name: str, qualifier: str | None, account: str, region: str) -> Any:
        """moto's function version, or AWS's ResourceNotFoundException."""
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

    def run(self, fn: Any, spec: FunctionSpec, payload: bytes, request_id: str, client_context: str | None,
            wait: bool) -> Outcome:
        """One invocation on a warm (or new) worker, its logs written; waits for a slot when `wait`."""
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


def _error_response(error: LambdaInvokeError) -> Response:
    kind = "Service" if error.status >= 500 else "User"
    return Response(json.dumps({"Type": kind, "message": error.message}), status=error.status,
                    headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())},
                    content_type="application/json")


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
