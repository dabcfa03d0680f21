"""State that survives a restart: moto's backends are snapshotted to the state folder and restored.

moto keeps everything in memory, so a restarted local cloud would come back empty and event source
mappings would have nothing to resume. This executor (started first, stopped last) restores the last
snapshot before the others start, snapshots on a clean stop, and every 30 s while requests change
state (RETAIL_LOCALCLOUD_SNAPSHOT_S; 0: on stop only), so a crash loses at most the last interval (the
mappings' checkpoints are saved on their own, so a resumed mapping re-delivers rather than skips:
at-least-once, like AWS).
`python -m localcloud down --wipe` (or `reset`) deletes the snapshot.
"""

from __future__ import annotations

import collections
import copyreg
import io
import logging
import os
import pickle
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request

from localcloud.executors import CloudContext, WSGIApp

log = logging.getLogger("localcloud.persistence")

SNAPSHOT_FILE = "moto-state.pickle"
# The services the workbook uses (a service never called has no state to keep).
SERVICES = ("iam", "sts", "s3", "kinesis", "dynamodb", "dynamodbstreams", "sqs", "sns", "lambda", "logs",
            "events", "apigateway", "apigatewayv2", "firehose", "redshift", "glue", "cloudwatch", "scheduler", "ssm", "athena")
# Seconds between snapshots while requests change state; 0 snapshots only on a clean stop. A periodic
# snapshot is pickled by a forked child (as Redis's BGSAVE): the child sees the state as it was at the
# fork, consistent and unchanging, while the server goes on answering (pickling the full file's table
# in the server held the GIL for seconds: every request stalled). The interval still stretches to 20x
# the last snapshot's cost, and a snapshot waits for a quiet moment (no state-changing request for
# QUIET_S, at most MAX_DEFER_INTERVALS intervals), because the child's copy-on-write pages cost memory
# while requests change the state.
INTERVAL_S = float(os.environ.get("RETAIL_LOCALCLOUD_SNAPSHOT_S", "30"))
QUIET_S = min(1.0, INTERVAL_S / 2)
MAX_DEFER_INTERVALS = 10
# Positions of the event source mappings (state_dir/event_sources), restored with the state they point
# into. Firehose's are not: its warehouse (DuckDB files) is not rolled back, so re-reading would COPY twice.
CHECKPOINT_FOLDERS = ("event_sources",)
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Query", "Scan", "Receive", "BatchGet", "Simulate")


def _defaultdict(mapping: collections.defaultdict) -> tuple[Any, tuple[Any, dict[Any, Any]]]:
    """moto builds some with `lambda: {}`: rebuild those with the equivalent plain type."""
    factory = mapping.default_factory
    if factory is not None and getattr(factory, "__name__", "") == "<lambda>":
        factory = type(factory())
    return collections.defaultdict, (factory, dict(mapping))


def _weak_values(mapping: weakref.WeakValueDictionary) -> tuple[Any, tuple[dict[Any, Any]]]:
    return weakref.WeakValueDictionary, (dict(mapping.items()),)


def _pickler(stream: io.BufferedWriter) -> pickle.Pickler:
    """A pickler that recreates locks fresh and keeps weak-value maps (moto holds a few of each)."""
    pickler = pickle.Pickler(stream, protocol=pickle.HIGHEST_PROTOCOL)
    table = copyreg.dispatch_table.copy()
    table[type(threading.Lock())] = lambda lock: (threading.Lock, ())
    table[type(threading.RLock())] = lambda lock: (threading.RLock, ())
    table[threading.Condition] = lambda condition: (threading.Condition, ())
    table[threading.Event] = lambda event: (threading.Event, ())
    table[weakref.WeakValueDictionary] = _weak_values
    table[collections.defaultdict] = _defaultdict
    pickler.dispatch_table = table  # type: ignore[attr-defined]
    return pickler


def _backends() -> dict[str, Any]:
    from localcloud.motoapi import get_backend

    return {service: get_backend(service) for service in SERVICES}  # type: ignore[call-overload]


def _checkpoints(state_dir: Path) -> dict[str, bytes]:
    """The event source mappings' positions in moto's streams, by relative path."""
    return {str(file.relative_to(state_dir)): file.read_bytes()
            for folder in CHECKPOINT_FOLDERS for file in sorted((state_dir / folder).rglob("*.json"))}


def save(path: Path) -> float:
    """Write every used service's state, and the checkpoints that go with it, atomically; seconds taken.

    The checkpoints are read *before* the state: restored together, a consumer may re-deliver what it
    handled after the snapshot (at-least-once), but never believes it handled records it did not."""
    started = time.perf_counter()
    checkpoints = _checkpoints(path.parent)
    state = {service: dict(backend) for service, backend in _backends().items() if len(backend)}
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as stream:
        _pickler(stream).dump({"services": state, "checkpoints": checkpoints})
    temporary.replace(path)
    return time.perf_counter() - started


def save_in_child(path: Path) -> float:
    """`save` in a forked child, waited for in this thread only; seconds taken. Falls back to `save`
    where there is no fork."""
    if not hasattr(os, "fork"):
        return save(path)
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: pickle, write, leave without running the parent's cleanup
        code = 1
        try:
            save(path)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()  # into the server's log
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"snapshot child exited with status {status}")
    return time.perf_counter() - started


def load(path: Path) -> list[str]:
    """Put a snapshot's state back into moto's backends, and its checkpoints back in their files (newer
    ones would point past what the restored streams were known to hold); returns the services restored."""
    if not path.exists():
        return []
    with path.open("rb") as stream:
        snapshot = pickle.load(stream)
    backends = _backends()
    for service, accounts in snapshot["services"].items():
        backends[service].clear()
        backends[service].update(accounts)
    for folder in CHECKPOINT_FOLDERS:
        for stale in (path.parent / folder).rglob("*.json"):
            stale.unlink()
    for relative, content in snapshot["checkpoints"].items():
        target = path.parent / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(snapshot["services"])


class Persistence:
    """Executor "persistence": restore at start, snapshot while dirty and at stop."""

    name = "persistence"

    def __init__(self) -> None:
        self.path: Path | None = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cost_s = 0.0
        self._last_change = 0.0  # time.monotonic() of the last state-changing request

    def start(self, cloud: CloudContext) -> None:
        self.path = cloud.state_dir / SNAPSHOT_FILE
        try:
            restored = load(self.path)
            if restored:
                log.info("restored %s from %s", ", ".join(restored), self.path)
        except Exception:  # a snapshot from another moto version must not keep the cloud down
            log.exception("cannot restore %s: starting empty (the file is kept as .broken)", self.path)
            self.path.replace(self.path.with_suffix(".broken"))
        self._stopping.clear()
        if INTERVAL_S > 0:
            self._thread = threading.Thread(target=self._snapshots, name="persistence", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._snapshot()

    def route(self, request: Request) -> WSGIApp | None:
        """Never claims a request; notes that one may have changed state."""
        target = request.headers.get("X-Amz-Target", "")
        if request.method == "GET" or request.path.startswith("/_localcloud/health"):
            return None
        if target and target.split(".")[-1].startswith(READ_ONLY_PREFIXES):
            return None
        self._last_change = time.monotonic()
        self._dirty.set()
        return None

    def _snapshots(self) -> None:
        while not self._stopping.wait(max(INTERVAL_S, 20 * self._last_cost_s)):
            if not self._dirty.is_set():
                continue
            deadline = time.monotonic() + MAX_DEFER_INTERVALS * INTERVAL_S
            while time.monotonic() - self._last_change < QUIET_S and time.monotonic() < deadline:
                if self._stopping.wait(QUIET_S):
                    return
            self._snapshot(in_child=True)

    def _snapshot(self, in_child: bool = False) -> None:
        if self.path is None:
            return
        self._dirty.clear()
        started = time.perf_counter()
        try:
            if in_child:  # the child's copy cannot change under it: one attempt
                save_in_child(self.path)
                return
            for _ in range(3):  # a request changing a dict mid-pickle (in this process): try again
                try:
                    save(self.path)
                    return
                except RuntimeError:
                    time.sleep(0.1)
            self._dirty.set()
        except Exception:
            log.exception("snapshot failed")
            self._dirty.set()
        finally:
            self._last_cost_s = time.perf_counter() - started


def make_executor() -> Persistence:
    return Persistence()
