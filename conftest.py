"""Root pytest configuration: one local cloud for the test session, started only if a test needs it.

At configure time nothing starts: a free port and a private state folder are chosen and the endpoint and
fake credentials exported, so every boto3 client, papermill/nbval kernel and `helpers.cloud` call points at
the session's cloud, never at a developer's own cloud or a real account. The cloud itself starts the first
time something needs it:
- before the first test marked `localcloud`, the first notebook cell under nbval, or the first test under
  tests/notebooks/ (they run notebooks, whose kernels inherit AWS_ENDPOINT_URL);
- when a test asks for the `endpoint` or `aws` fixture (through `session_cloud`);
- when a helper calls `helpers.cloud.ensure_running()`, on the same port;
- on the first boto3 request to its endpoint from a test that said none of this (helpers' clients read
  AWS_ENDPOINT_URL): the request waits for the start instead of being refused.
It stops when the session ends, whoever started it. `pytest tests/unit/test_dataset.py` starts none.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

NOTEBOOK_TESTS = Path(__file__).resolve().parent / "tests" / "notebooks"

_session_port: int | None = None
_session_endpoint: str | None = None
_session_url = ""  # the endpoint exported at configure, before anything runs
_starting = threading.Lock()


def pytest_configure(config: pytest.Config) -> None:
    global _session_port, _session_url
    _start_on_first_request()
    if hasattr(config, "workerinput"):  # an xdist worker: the controller already did this
        _session_url = os.environ.get("AWS_ENDPOINT_URL", "")
        return
    os.environ.setdefault("RETAIL_LOCALCLOUD_HOME", tempfile.mkdtemp(prefix="retail-localcloud-"))
    # The local cloud compares its fast JSON path with moto's own code on every request (a test fails on
    # any difference); benchmarks and users run the fast path alone.
    os.environ.setdefault("RETAIL_LOCALCLOUD_FASTPATH", "check")
    for name in ("RETAIL_TARGET", "RETAIL_ALLOW_AWS_CREATE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "RETAIL_DATA"):
        os.environ.pop(name, None)
    from localcloud import lifecycle

    _session_port = lifecycle.free_port()
    _session_url = lifecycle.endpoint_for(_session_port)
    os.environ.update(
        AWS_ENDPOINT_URL=_session_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )


def start_session_cloud() -> str:
    """The session's local cloud, started on its port the first time (idempotent, as `up` is)."""
    global _session_endpoint
    with _starting:
        if _session_endpoint is None:
            from urllib.parse import urlsplit

            from localcloud import lifecycle

            port = _session_port or urlsplit(os.environ["AWS_ENDPOINT_URL"]).port  # an xdist worker
            _session_endpoint = lifecycle.up(port=port)
        return _session_endpoint


def _start_on_first_request() -> None:
    """botocore's HTTP sender starts the session's cloud before the first request that goes to it."""
    from botocore.httpsession import URLLib3Session

    send = URLLib3Session.send

    def send_once_started(self: URLLib3Session, request: Any) -> Any:
        url = str(request.url)
        if _session_endpoint is None and _session_url and (url == _session_url or url.startswith(_session_url + "/")):
            start_session_cloud()
        return send(self, request)

    URLLib3Session.send = send_once_started  # type: ignore[method-assign]


def needs_session_cloud(item: pytest.Item) -> bool:
    """Marked `localcloud`, a notebook cell (nbval), or a test that runs notebooks."""
    if item.get_closest_marker("localcloud") is not None:
        return True
    path = Path(str(item.path)).resolve()
    return path.suffix == ".ipynb" or NOTEBOOK_TESTS in path.parents


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the item's collectors set up: nbval starts a notebook's kernel there."""
    if needs_session_cloud(item):
        start_session_cloud()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_port is not None:
        from localcloud import lifecycle

        if _session_endpoint is not None or lifecycle.health(_session_port) is not None:
            lifecycle.down(port=_session_port)  # whoever started it (a notebook's kernel may have)


@pytest.fixture(scope="session")
def session_cloud() -> str:
    """Starts the session's local cloud (once) and gives its endpoint."""
    return start_session_cloud()


@pytest.fixture(scope="session")
def endpoint(session_cloud: str) -> str:
    """The session's local cloud endpoint (a test module may override it with a private cloud)."""
    return session_cloud


@pytest.fixture(scope="module")
def aws(endpoint: str) -> Callable[[str], Any]:
    """`aws("s3")`: a boto3 client for the `endpoint` in scope, with fake credentials."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client
