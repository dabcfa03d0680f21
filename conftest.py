"""Root pytest configuration: one local cloud for the whole test session.

It starts before any test or notebook runs (pytest_configure), on its own free port and state folder
so a developer's own local cloud is never touched, and its endpoint and fake credentials are exported
so every papermill/nbval kernel inherits them. It stops when the session ends.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import pytest

_session_port: int | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _session_port
    if hasattr(config, "workerinput"):  # an xdist worker: the controller already did this
        return
    os.environ.setdefault("RETAIL_LOCALCLOUD_HOME", tempfile.mkdtemp(prefix="retail-localcloud-"))
    # The local cloud compares its fast JSON path with moto's own code on every request (a test fails on
    # any difference); benchmarks and users run the fast path alone.
    os.environ.setdefault("RETAIL_LOCALCLOUD_FASTPATH", "check")
    for name in ("RETAIL_TARGET", "RETAIL_ALLOW_AWS_CREATE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "RETAIL_DATA"):
        os.environ.pop(name, None)
    from localcloud import lifecycle

    _session_port = lifecycle.free_port()
    endpoint = lifecycle.up(port=_session_port)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_port is not None:
        from localcloud import lifecycle

        lifecycle.down(port=_session_port)


@pytest.fixture(scope="session")
def endpoint() -> str:
    """The session's local cloud endpoint (a test module may override it with a private cloud)."""
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.fixture(scope="module")
def aws(endpoint: str) -> Callable[[str], Any]:
    """`aws("s3")`: a boto3 client for the `endpoint` in scope, with fake credentials."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client
