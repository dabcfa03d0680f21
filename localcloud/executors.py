"""The plug-in surface of the local cloud: executors perform what moto only stores.

moto's server is the AWS API and the state. An executor adds behaviour on top of that state (run a
Lambda, poll a stream, serve an API Gateway stage, answer an API moto lacks). Each one:
- `start(cloud)` once the server is bound, `stop()` at shutdown (both must be quick and idempotent);
- `route(request)` may claim an incoming HTTP request before moto sees it, returning a WSGI app.
Executors read moto's backends in-process (`cloud.backend(...)`) rather than copying state.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Protocol

from werkzeug.wrappers import Request

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Modules that define `make_executor()`, started in this order (and stopped in reverse). The Lambda
# runtime ("lambda-runtime", implementing `Invoker`) comes early: the others run functions through it.
# Persistence comes first so moto's state is restored before anyone reads it, and saved after all stop.
EXECUTOR_MODULES: tuple[str, ...] = (
    "localcloud.persistence.snapshots",
    "localcloud.awslambda.runtime",
    "localcloud.iam.simulator",
    "localcloud.event_sources.pollers",
    "localcloud.notifications.executor",
    "localcloud.scheduler.rules",
    "localcloud.apigateway.server",
    "localcloud.apigatewayv2.server",
    "localcloud.comprehend.executor",
    "localcloud.warehouse.executor",
    "localcloud.firehose.executor",
    "localcloud.cloudwatch.executor",
    "localcloud.glue.executor",
    "localcloud.athena.executor",
    "localcloud.dynamodb_import.executor",  # DynamoDB ImportTable / DescribeImport / ListImports from S3
    "localcloud.unsupported.executor",  # last: refuses what no executor above performs
)
# Short names for RETAIL_LOCALCLOUD_EXECUTORS (one executor in isolation, for debugging).
EXECUTOR_NAMES: dict[str, str] = {module.split(".")[1]: module for module in EXECUTOR_MODULES}
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

InvocationType = Literal["RequestResponse", "Event", "DryRun"]


@dataclass(frozen=True)
class InvokeResult:
    """What an invocation returned, in the words of the Lambda Invoke API."""

    status_code: int  # 200 RequestResponse, 202 Event, 204 DryRun
    payload: bytes  # the handler's JSON result, or AWS's error object {"errorMessage", "errorType", ...}
    function_error: str | None = None  # None, or "Unhandled" when the function failed
    log_result: str | None = None  # base64 of the last 4 KB of the log when LogType=Tail
    executed_version: str = "$LATEST"
    request_id: str = ""


class LambdaInvokeError(Exception):
    """The invocation was refused before the function ran (AWS's error code and HTTP status)."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class JSONPayload(bytes):
    """Invoke payload bytes the local cloud serialised itself (`JSONPayload.dumps(event)`): valid JSON by
    construction, so `invoke` does not parse them again just to validate them (a 1,000-record Kinesis batch
    is ~500 KB). External payloads (the Invoke API, templates, user input) stay plain bytes and are checked."""

    __slots__ = ()

    @classmethod
    def dumps(cls, value: Any) -> "JSONPayload":
        return cls(json.dumps(value).encode())


class Invoker(Protocol):
    """What other executors use to run a function (the Lambda runtime implements it)."""

    def invoke(
        self,
        function: str,  # name, partial or full ARN (a qualifier may be embedded: name:alias)
        payload: bytes,
        *,
        qualifier: str | None = None,
        invocation_type: InvocationType = "RequestResponse",
        log_type: Literal["None", "Tail"] = "None",
        client_context: str | None = None,
        account_id: str = DEFAULT_ACCOUNT,
        region: str = DEFAULT_REGION,
    ) -> InvokeResult: ...


@dataclass(frozen=True)
class CloudContext:
    """What an executor knows about the local cloud it runs in, and how it finds the others."""

    endpoint: str
    port: int
    state_dir: Path
    executors: dict[str, Any] = field(default_factory=dict, compare=False)  # name -> started executor

    def executor(self, name: str) -> Any:
        """Another executor by name (e.g. "lambda-runtime"); KeyError if it is not loaded."""
        return self.executors[name]

    def invoker(self) -> Invoker:
        return self.executors["lambda-runtime"]

    @staticmethod
    def backend(service: str, account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> Any:
        """moto's in-process backend for a service (global services use region 'global' / 'aws')."""
        from localcloud.motoapi import get_backend

        return get_backend(service)[account_id][region]  # type: ignore[call-overload]


class Executor(Protocol):
    name: str

    def start(self, cloud: CloudContext) -> None: ...

    def stop(self) -> None: ...

    def route(self, request: Request) -> WSGIApp | None: ...


def load_executors(modules: Iterable[str] | None = None) -> list[Executor]:
    """Instantiate the registered executors (each module exposes `make_executor()`).

    RETAIL_LOCALCLOUD_EXECUTORS="iam,awslambda" starts only those (for debugging one
    executor in isolation); by default all of them run.
    """
    if modules is None:
        only = os.environ.get("RETAIL_LOCALCLOUD_EXECUTORS")
        modules = EXECUTOR_MODULES if only is None else tuple(
            EXECUTOR_NAMES[name.strip()] for name in only.split(",") if name.strip()
        )
    return [importlib.import_module(name).make_executor() for name in modules]
