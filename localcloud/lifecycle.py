"""Start, find and stop the local cloud: one background process per port, like an AWS account.

The process is started in its own session (process group), so `down` stops it together with every
worker it started. A pidfile and a log file live in the state folder of its port; a file lock makes
concurrent `up` calls (two notebooks, parallel tests) start it once. After a crash (even `kill -9`)
`up` starts cleanly on the same port: the stale pidfile is replaced, any process left of the dead
server's group is stopped, and the new server replays the journal before it answers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


PROJECT_ROOT = Path(__file__).resolve().parents[1]  # holds the localcloud package
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4566
HEALTH_PATH = "/_localcloud/health"
SERVICE_ID = "retail-pipelines-localcloud"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class LocalCloudError(RuntimeError):
    """The local cloud could not be started, found or stopped; the message says what to do."""


class PortInUseError(LocalCloudError):
    """Another program (not a local cloud) holds the port."""


@dataclass(frozen=True)
class Health:
    """What a running local cloud says about itself."""

    endpoint: str
    pid: int
    started_at: float
    executors: tuple[str, ...]
    state_dir: str
    status: str = "running"  # or "replaying the journal" (after a crash), answering nothing else yet


def endpoint_for(port: int, host: str = DEFAULT_HOST) -> str:
    return f"http://{host}:{port}"


def state_root() -> Path:
    """Where pidfiles, logs and executor state live (override with RETAIL_LOCALCLOUD_HOME)."""
    configured = os.environ.get("RETAIL_LOCALCLOUD_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "retail-pipelines" / "localcloud"


def state_dir(port: int) -> Path:
    return state_root() / str(port)


def pidfile(port: int) -> Path:
    return state_dir(port) / "server.pid"


def logfile(port: int) -> Path:
    return state_dir(port) / "server.log"


def health(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, timeout: float = 2.0) -> Health | None:
    """The local cloud's self-description on `port`, or None when nothing of ours answers there."""
    try:
        with urllib.request.urlopen(endpoint_for(port, host) + HEALTH_PATH, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if body.get("service") != SERVICE_ID:
        return None
    return Health(
        endpoint=endpoint_for(port, host),
        pid=int(body["pid"]),
        started_at=float(body["started_at"]),
        executors=tuple(body.get("executors", ())),
        state_dir=str(body.get("state_dir", "")),
        status=str(body.get("status", "running")),
    )


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """True when nothing listens on host:port (so the server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now (for tests and benchmarks that need their own local cloud)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _port_lock(port: int) -> Iterator[None]:
    directory = state_dir(port)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_pid(port: int) -> int | None:
    try:
        return int(pidfile(port).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _log_tail(port: int, lines: int = 15) -> str:
    try:
        text = logfile(port).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


def up(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, timeout: float = START_TIMEOUT_S) -> str:
    """Start the local cloud on `port` unless it already runs there; return its endpoint URL.

    Idempotent. Raises PortInUseError when another program holds the port, LocalCloudError when the
    process dies or does not become healthy in time (with the tail of its log).
    """
    with _port_lock(port):
        running = health(port, host)
        if running is not None:
            return running.endpoint
        if not port_is_free(port, host):
            raise PortInUseError(
                f"port {port} on {host} is taken by another program, not a local cloud of this workbook. "
                f"Stop that program, or start the local cloud elsewhere: python -m localcloud up --port N "
                f"(and set AWS_ENDPOINT_URL={endpoint_for(port, host).rsplit(':', 1)[0]}:N)."
            )
        stale = _read_pid(port)
        if stale is not None and _alive(stale):
            _terminate_group(stale)  # ours, but not answering: replace it
        elif stale is not None:
            for orphan in orphans(stale):  # the server crashed; what it started must not run on
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan, signal.SIGKILL)
        directory = state_dir(port)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(logfile(port), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "localcloud.server", "--host", host, "--port", str(port),
                 "--state-dir", str(directory)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(PROJECT_ROOT),
                env={**os.environ, "PYTHONPATH": _pythonpath()},
                start_new_session=True,
            )
        pidfile(port).write_text(f"{process.pid}\n")
        while time.monotonic() - started < timeout:
            exit_code = process.poll()
            if exit_code is not None:
                pidfile(port).unlink(missing_ok=True)
                raise LocalCloudError(
                    f"the local cloud exited with code {exit_code} while starting on port {port}. "
                    f"Log ({logfile(port)}):\n{_log_tail(port)}"
                )
            running = health(port, host, timeout=1.0)
            if running is not None and running.status == "running":
                return running.endpoint
            if running is not None:  # replaying its journal: as long as that takes, it is starting
                started = time.monotonic()
            time.sleep(0.1)
        _terminate_group(process.pid)
        pidfile(port).unlink(missing_ok=True)
        raise LocalCloudError(
            f"the local cloud did not answer on port {port} within {timeout:.0f} s. Log ({logfile(port)}):\n"
            f"{_log_tail(port)}"
        )


OWNER_ENV = "RETAIL_LOCALCLOUD_OWNER_PID"  # a private cloud (running) stops when this process is gone


@contextlib.contextmanager
def running(home: Path | str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A private local cloud on a free port with its own state folder, stopped on exit (tests, benchmarks).

    `home` and `env` stay in this process's environment while it runs, so the server inherits them
    and `down` finds its pidfile. The server also stops by itself if this process dies without reaching
    `down` (killed by a signal): it watches this process's pid (RETAIL_LOCALCLOUD_OWNER_PID).
    """
    overrides = {"RETAIL_LOCALCLOUD_HOME": str(home), OWNER_ENV: str(os.getpid()), **(env or {})}
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    port = free_port()
    try:
        yield up(port)
    finally:
        try:
            down(port, wipe=True)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def down(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, wipe: bool = False) -> bool:
    """Stop the local cloud on `port` and every process it started. True if something was stopped.

    Its state (moto's snapshot, checkpoints, extracted code) is kept for the next `up` unless `wipe`.
    """
    with _port_lock(port):
        running = health(port, host)
        pid = running.pid if running is not None else _read_pid(port)
        stopped = False
        if pid is not None and _alive(pid):
            _terminate_group(pid)
            stopped = True
        pidfile(port).unlink(missing_ok=True)
        if wipe:
            for entry in state_dir(port).iterdir() if state_dir(port).exists() else ():
                if entry.name not in ("lock", "server.log"):
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return stopped


def status(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> Health | None:
    return health(port, host)


def _terminate_group(pid: int) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL whatever is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            _reap(pid)
            if not _group_alive(pid):
                return
            time.sleep(0.05)


def orphans(server_pid: int) -> list[int]:
    """Live processes of this project left in a dead server's process group (its Lambda workers and
    snapshot children: they die with the server, so this finds none unless that failed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else ():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().split(") ", 1)[1].split()
            if int(fields[2]) != server_pid or fields[0] == "Z":
                continue
            if b"localcloud" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies excluded where /proc tells)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().split(") ", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _pythonpath() -> str:
    """Make `helpers` importable in the server even when it is not installed (e.g. a bare checkout)."""
    existing = os.environ.get("PYTHONPATH")
    return str(PROJECT_ROOT) + (os.pathsep + existing if existing else "")
