"""The plug-in surface of the local cloud: executors perform what moto only stores.

moto's server is the AWS API and the state. An executor adds behaviour on top of that state (run a
Lambda, poll a stream, serve an API Gateway stage, answer an API moto lacks). Each one:
- `start(cloud)` once the server is bound, `stop()` at shutdown (both must be quick and idempotent);
- `route(request)` may claim an incoming HTTP request before moto sees it, returning a WSGI app.
Executors read moto's backends in-process (`cloud.backend(...)`) rather than copying state.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from werkzeug.wrappers import Request

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Modules that define `make_executor()`; each later executor adds its module here.
EXECUTOR_MODULES: tuple[str, ...] = ("helpers.localcloud.iam_simulator",)


@dataclass(frozen=True)
class CloudContext:
    """What an executor knows about the local cloud it runs in."""

    endpoint: str
    port: int
    state_dir: Path

    @staticmethod
    def backend(service: str, account_id: str = "123456789012", region: str = "us-east-1") -> Any:
        """moto's in-process backend for a service (global services use region 'global' / 'aws')."""
        from moto.backends import get_backend

        return get_backend(service)[account_id][region]  # type: ignore[call-overload]


class Executor(Protocol):
    name: str

    def start(self, cloud: CloudContext) -> None: ...

    def stop(self) -> None: ...

    def route(self, request: Request) -> WSGIApp | None: ...


def load_executors(modules: Iterable[str] = EXECUTOR_MODULES) -> list[Executor]:
    """Instantiate every registered executor (each module exposes `make_executor()`)."""
    return [importlib.import_module(name).make_executor() for name in modules]
