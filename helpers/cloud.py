"""The workbook's connection to its local cloud (the `localcloud` package): start it when the settings
point at it, and point this process at it. Every call is a no-op when the target is a real AWS account.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from helpers import config
from localcloud import DEFAULT_HOST, DEFAULT_PORT, Health, LocalCloudError, down, endpoint_for, health, up


def _configured_address() -> tuple[str, int]:
    """Host and port of the local cloud the settings point at (AWS_ENDPOINT_URL or the default)."""
    parts = urlsplit(config.settings().endpoint_url or endpoint_for(DEFAULT_PORT))
    return parts.hostname or DEFAULT_HOST, parts.port or DEFAULT_PORT


def current() -> Health | None:
    """What the local cloud the settings point at says about itself (None when it is not running)."""
    host, port = _configured_address()
    return health(port, host)


def is_running() -> bool:
    return current() is not None


def reset() -> bool:
    """Stop the local cloud and forget its state: the next start is an empty AWS account."""
    host, port = _configured_address()
    return down(port, host, wipe=True)


def stop() -> bool:
    """Stop the local cloud the settings point at (and its workers). True if one was running."""
    host, port = _configured_address()
    return down(port, host)


def ensure_running() -> str | None:
    """Make sure the local cloud of the current settings answers, and point this process at it.

    Returns its endpoint (None on target=aws). Exports AWS_ENDPOINT_URL and fake credentials so any
    boto3 client or subprocess started from here reaches the local cloud and nothing real.
    """
    settings = config.settings()
    if not settings.is_local:
        return None
    host, port = _configured_address()
    if host in ("127.0.0.1", "localhost"):
        endpoint = up(port=port, host="127.0.0.1")
    elif health(port, host) is not None:
        endpoint = endpoint_for(port, host)
    else:
        raise LocalCloudError(f"no local cloud answers at {settings.endpoint_url}")
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=config.LOCAL_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=config.LOCAL_CREDENTIALS["aws_secret_access_key"],
        AWS_DEFAULT_REGION=settings.region,
        AWS_REGION=settings.region,
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    return endpoint
