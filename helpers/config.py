"""Where the workbook's AWS calls go, and the one boto3 client factory everything uses.

`target="local"` (the default) points every client at the local cloud with throwaway credentials,
so nothing can reach or bill a real account. `target="aws"` uses boto3's standard credential chain
and refuses to create anything until `allow_aws_create=True` is set on purpose.

Settings come from environment variables (so papermill kernels and subprocesses inherit them) and can
be overridden per notebook with `configure(...)` from its parameters cell.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import boto3
from botocore.config import Config as BotoConfig

Target = Literal["local", "aws"]
TARGETS: tuple[str, ...] = ("local", "aws")
DEFAULT_REGION = "us-east-1"
DEFAULT_PREFIX = "retail"
DEFAULT_LOCAL_ENDPOINT = "http://127.0.0.1:4566"
# moto's fixed account id; real AWS answers its own through STS.
LOCAL_ACCOUNT_ID = "123456789012"
# Local credentials are fake on purpose: they cannot authenticate anywhere real.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_TRUE = {"1", "true", "yes", "on"}


class ConfigError(ValueError):
    """A setting that cannot work (unknown target, malformed prefix...)."""


class AwsCreateNotAllowed(PermissionError):
    """Raised before the workbook would create a (possibly billable) resource in a real account."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one notebook run."""

    target: Target = "local"
    region: str = DEFAULT_REGION
    prefix: str = DEFAULT_PREFIX
    endpoint_url: str | None = DEFAULT_LOCAL_ENDPOINT
    allow_aws_create: bool = False

    @property
    def is_local(self) -> bool:
        return self.target == "local"


def _validate(settings: Settings) -> Settings:
    if settings.target not in TARGETS:
        raise ConfigError(f"target must be one of {TARGETS}, not {settings.target!r}")
    prefix = settings.prefix
    if not prefix or not prefix.replace("-", "").isalnum() or not prefix[0].isalpha() or len(prefix) > 20:
        raise ConfigError(
            f"prefix {prefix!r} must start with a letter, use letters, digits and '-', and be at most 20 characters "
            "(it becomes part of bucket, stream and role names)"
        )
    if settings.target == "aws":
        settings = dataclasses.replace(settings, endpoint_url=None)
    return settings


def from_environment(environ: dict[str, str] | None = None) -> Settings:
    """Settings from `RETAIL_TARGET`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `RETAIL_PREFIX`,
    `AWS_ENDPOINT_URL` (local only) and `RETAIL_ALLOW_AWS_CREATE`."""
    env = os.environ if environ is None else environ
    target = env.get("RETAIL_TARGET", "local").strip().lower()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return _validate(
        Settings(
            target=target,  # type: ignore[arg-type]
            region=region,
            prefix=env.get("RETAIL_PREFIX", DEFAULT_PREFIX),
            endpoint_url=env.get("AWS_ENDPOINT_URL") or DEFAULT_LOCAL_ENDPOINT,
            allow_aws_create=env.get("RETAIL_ALLOW_AWS_CREATE", "").strip().lower() in _TRUE,
        )
    )


_current: Settings | None = None


def settings() -> Settings:
    """The settings in force: those given to `configure`, else the environment's."""
    return _current if _current is not None else from_environment()


def configure(**overrides: Any) -> Settings:
    """Override settings for this process (a notebook's parameters cell calls this).

    `None` values are ignored, so papermill parameters left at `None` keep the environment's value.
    """
    global _current
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(given) - {field.name for field in dataclasses.fields(Settings)}
    if unknown:
        raise ConfigError(f"unknown setting(s): {sorted(unknown)}")
    _current = _validate(dataclasses.replace(from_environment(), **given))
    _cached_session.cache_clear()
    _cached_client.cache_clear()
    return _current


def session() -> boto3.Session:
    """The boto3 session for the current settings (fake credentials when local)."""
    return _cached_session(settings())


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client for `service`, pointed at the local cloud or at AWS per the settings."""
    if kwargs:
        return _make_client(settings(), service, **kwargs)
    return _cached_client(settings(), service)


def account_id() -> str:
    """The account the workbook builds in (moto's fixed id locally, STS's answer on AWS)."""
    current = settings()
    if current.is_local:
        return LOCAL_ACCOUNT_ID
    return client("sts").get_caller_identity()["Account"]


def require_create_allowed(what: str) -> None:
    """Stop before creating `what` in a real account unless the user said yes on purpose."""
    current = settings()
    if current.target == "aws" and not current.allow_aws_create:
        raise AwsCreateNotAllowed(
            f"Refusing to create {what} in your AWS account (region {current.region}): resources there can cost "
            "money. Set the notebook parameter allow_aws_create=True (or RETAIL_ALLOW_AWS_CREATE=1) to proceed, "
            "and run notebooks/99_teardown afterwards."
        )


@lru_cache(maxsize=4)
def _cached_session(current: Settings) -> boto3.Session:
    if current.is_local:
        return boto3.Session(region_name=current.region, **LOCAL_CREDENTIALS)
    return boto3.Session(region_name=current.region)


@lru_cache(maxsize=64)
def _cached_client(current: Settings, service: str) -> Any:
    return _make_client(current, service)


def _make_client(current: Settings, service: str, **kwargs: Any) -> Any:
    # On a real account, an AWS_ENDPOINT_URL left in the environment for the local cloud must not win.
    boto_config = BotoConfig(retries={"mode": "standard", "max_attempts": 5},
                             ignore_configured_endpoint_urls=not current.is_local)
    options: dict[str, Any] = {"config": boto_config}
    if current.is_local:
        options["endpoint_url"] = current.endpoint_url
    options.update(kwargs)
    return _cached_session(current).client(service, **options)
