"""The local cloud: moto's server as the AWS API and state, plus executors that perform what moto
only stores. One background process per port, started by `python -m localcloud up`.

This package knows nothing of the workbook: `helpers.cloud` connects the notebooks to it.
"""

from __future__ import annotations

from localcloud.lifecycle import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Health,
    LocalCloudError,
    PortInUseError,
    down,
    endpoint_for,
    health,
    logfile,
    state_dir,
    status,
    up,
)

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "Health", "LocalCloudError", "PortInUseError", "down", "endpoint_for",
    "health", "logfile", "state_dir", "status", "up",
]
