"""State that survives a restart: moto's backends are snapshotted to the state folder and restored.

moto keeps everything in memory, so a restarted local cloud would come back empty and event source
mappings would have nothing to resume. This executor (started first, stopped last) restores the last
snapshot before the others start, snapshots on a clean stop, and every 30 s while requests change
state (RETAIL_LOCALCLOUD_SNAPSHOT_S; 0: on stop only). Between snapshots the write-ahead journal
(journal.py) holds every acknowledged write: the snapshot records the journal position (LSN) it
includes, the server replays the records after it at start, and a snapshot drops the journal segments
it holds. With RETAIL_LOCALCLOUD_JOURNAL=off a crash loses what came after the last snapshot (the
mappings' checkpoints then come back with the snapshot, so a resumed mapping re-delivers rather than
skips: at-least-once, like AWS).
`python -m localcloud down --wipe` (or `reset`) deletes the snapshot and the journal.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import io
import logging
import os
import pickle
import shutil
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud import trace
from localcloud.executors import CloudContext, WSGIApp
from localcloud.persistence.journal import Journal, open_journal
from localcloud.persistence.wal import fsync_directory, policy

log = logging.getLogger("localcloud.persistence")

SNAPSHOT_FILE = "moto-state.pickle"
JOURNAL_FOLDER = "journal"
# The services the workbook uses (a service never called has no state to keep).
SERVICES = ("iam", "sts", "s3", "kinesis", "dynamodb", "dynamodbstreams", "sqs", "sns", "lambda", "logs",
            "events", "apigateway", "apigatewayv2", "firehose", "redshift", "glue", "cloudwatch", "scheduler", "ssm", "athena")
# Seconds between snapshots while requests change state; 0 snapshots only on a clean stop. A periodic
# snapshot is pickled by a forked child (as Redis's BGSAVE): the child sees the state as it was at the
# fork, consistent and unchanging, while the server goes on answering (pickling the full file's table
# in the server held the GIL for seconds: every request stalled). The interval still stretches to 20x
# the last snapshot's cost, and a snapshot waits for a quiet moment (no request at all for QUIET_S, at
# most MAX_DEFER_INTERVALS intervals): the child's copy-on-write pages cost memory while requests change
# the state, and the fork stops every thread while it copies the page tables (46-64 ms at the full file's
# 2.5 GB), which a read served meanwhile waits out too; the child then runs at idle priority
# (`run_in_background`) and only in the gaps between requests (`wait_paced`).
INTERVAL_S = float(os.environ.get("RETAIL_LOCALCLOUD_SNAPSHOT_S", "30"))
QUIET_S = min(1.0, INTERVAL_S / 2)
MAX_DEFER_INTERVALS = 10
# While a child pickles, it is stopped whenever a request came in the last BUSY_S (every PACE_S it is
# looked at), for MAX_DEFER_INTERVALS intervals at most in all (see `wait_paced`).
BUSY_S = 0.25
PACE_S = 0.02
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


def _backends(loaded_only: bool = False) -> dict[str, Any]:
    """moto's backends of SERVICES; `loaded_only`: of those this process has imported (a service never
    called has no state, and importing one in a snapshot child took seconds: apigateway alone parses
    grammars at import, and a stop waited for it)."""
    from localcloud.motoapi import get_backend

    modules = {"lambda": "awslambda"}
    return {service: get_backend(service) for service in SERVICES  # type: ignore[call-overload]
            if not loaded_only or f"moto.{modules.get(service, service)}.models" in sys.modules}


def _checkpoints(state_dir: Path) -> dict[str, bytes]:
    """The event source mappings' positions in moto's streams, by relative path."""
    return {str(file.relative_to(state_dir)): file.read_bytes()
            for folder in CHECKPOINT_FOLDERS for file in sorted((state_dir / folder).rglob("*.json"))}


def save(path: Path, lsn: int = 0, durable: bool = False) -> float:
    """Write every used service's state, and the checkpoints that go with it, atomically; seconds taken.
    `lsn` is the last journal record the state includes; `durable` fsyncs the file and its folder.

    The checkpoints are read *before* the state: restored together, a consumer may re-deliver what it
    handled after the snapshot (at-least-once), but never believes it handled records it did not."""
    started = time.perf_counter()
    checkpoints = _checkpoints(path.parent)
    state = {service: dict(backend) for service, backend in _backends(loaded_only=True).items() if len(backend)}
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as stream:
        _pickler(stream).dump({"services": state, "checkpoints": checkpoints, "lsn": lsn})
        if durable:
            stream.flush()
            os.fsync(stream.fileno())
    temporary.replace(path)
    if durable:
        fsync_directory(path.parent)
    return time.perf_counter() - started


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the thread that forked it dies (a helper never outlives
    the server, even one killed with SIGKILL); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


def run_in_background() -> None:
    """This process runs only on CPU time nobody else wants (Linux's SCHED_IDLE, else the lowest nice).

    A periodic snapshot of the full file's state pickles for tens of seconds, and is not urgent (the
    journal holds every write meanwhile): it must not take a core from the server and its Lambda workers.
    Idle priority alone was not enough (it still shares caches and memory bandwidth, see `wait_paced`)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)


def wait_paced(pid: int, busy: Callable[[], bool] | None = None, pause_limit_s: float = 0.0) -> int:
    """The child's exit status; meanwhile it is stopped (SIGSTOP) while `busy()` says requests are being
    served and continued (SIGCONT) once they are not, until it has been stopped `pause_limit_s` in all
    (then it runs to its end). Each pause is a span "snapshot paused" of the trace.

    Even at idle priority a child pickling the full file's state slowed the query API at 50 requests/s
    from p50 8.9 / p99 75 ms to p50 15.1 / p99 263 ms (it shares the cores' caches and memory bandwidth,
    and every page the server writes meanwhile is copied): it runs in the gaps between requests instead."""
    if busy is None:
        return os.waitpid(pid, 0)[1]
    stopped_at, wall, stopped_for = 0.0, 0.0, 0.0
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            now = time.monotonic()
            hold = busy() and stopped_for + (now - stopped_at if stopped_at else 0.0) < pause_limit_s
            if hold and not stopped_at:
                os.kill(pid, signal.SIGSTOP)
                stopped_at, wall = now, time.time()
            elif not hold and stopped_at:
                os.kill(pid, signal.SIGCONT)
                stopped_for += now - stopped_at
                trace.record("snapshot", "paused", wall, now - stopped_at, child=pid)
                stopped_at = 0.0
            time.sleep(PACE_S)
    finally:
        if stopped_at:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def save_in_child(path: Path, durable: bool = False,
                  frozen: contextlib.AbstractContextManager[int] | None = None,
                  forked: Any = None, busy: Callable[[], bool] | None = None,
                  pause_limit_s: float = 0.0) -> float:
    """`save` in a forked child, waited for in this thread only; seconds taken. Falls back to `save`
    where there is no fork. `frozen` (the journal held still, see `Persistence._frozen`) is entered
    across the fork only and gives the LSN the child's state includes; `forked(pid)` learns the child
    (a stop kills it rather than race it: both would write the snapshot); `busy` and `pause_limit_s`
    pace it (`wait_paced`)."""
    frozen = frozen if frozen is not None else contextlib.nullcontext(0)
    if not hasattr(os, "fork"):
        with frozen as lsn:
            return save(path, lsn, durable)
    started, wall = time.perf_counter(), time.time()
    parent = os.getpid()
    with frozen as lsn:
        forking, fork_wall = time.perf_counter(), time.time()
        pid = os.fork()
        forked_at = time.perf_counter()
    if pid != 0:  # the parent: the fork copied the page tables with the GIL held, every thread waited
        trace.record("snapshot", "freeze", wall, forking - started, child=pid)  # writes wait (apply lock, rotation)
        trace.record("snapshot", "fork", fork_wall, forked_at - forking, child=pid)
    if pid == 0:  # the child: pickle, write, leave without running the parent's cleanup
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the server's handler: `down` ends it
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            die_with_parent()
            if os.getppid() != parent:
                os._exit(1)  # the server died before the line above: nothing to save it for
            run_in_background()
            save(path, lsn, durable)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()  # into the server's log
        finally:
            os._exit(code)
    if forked is not None:
        forked(pid)
    pickling = trace.begin("snapshot", "child", child=pid)
    try:
        status = wait_paced(pid, busy, pause_limit_s)
    finally:
        trace.end(pickling)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"snapshot child exited with status {status}")
    return time.perf_counter() - started


def load(path: Path, restore_checkpoints: bool = True) -> tuple[list[str], int]:
    """Put a snapshot's state back into moto's backends, and (`restore_checkpoints`) its checkpoints back
    in their files (newer ones would point past what the restored streams were known to hold; with the
    journal replayed they do not, and are kept); returns the services restored and the snapshot's LSN."""
    if not path.exists():
        return [], 0
    with path.open("rb") as stream:
        snapshot = pickle.load(stream)
    backends = _backends()
    for service, accounts in snapshot["services"].items():
        backends[service].clear()
        backends[service].update(accounts)
    if not restore_checkpoints:
        return sorted(snapshot["services"]), int(snapshot.get("lsn", 0))
    for folder in CHECKPOINT_FOLDERS:
        for stale in (path.parent / folder).rglob("*.json"):
            stale.unlink()
    for relative, content in snapshot["checkpoints"].items():
        target = path.parent / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(snapshot["services"]), int(snapshot.get("lsn", 0))


class Persistence:
    """Executor "persistence": restore at start, open the journal, snapshot while dirty and at stop."""

    name = "persistence"

    def __init__(self) -> None:
        self.path: Path | None = None
        self.journal: Journal | None = None
        self.snapshot_lsn = 0  # the journal records the restored snapshot includes
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cost_s = 0.0
        self._last_request = 0.0  # time.monotonic() of the last request of any kind
        self._child: int | None = None  # pid of a periodic snapshot's child while it runs

    def start(self, cloud: CloudContext) -> None:
        self.path = cloud.state_dir / SNAPSHOT_FILE
        journal_folder = cloud.state_dir / JOURNAL_FOLDER
        mode = policy()
        try:
            restored, self.snapshot_lsn = load(self.path, restore_checkpoints=mode == "off")
            if restored:
                log.info("restored %s from %s (journal position %d)", ", ".join(restored), self.path,
                         self.snapshot_lsn)
        except Exception:  # a snapshot from another moto version must not keep the cloud down
            log.exception("cannot restore %s: starting empty (the file and the journal are kept as .broken)",
                          self.path)
            self.path.replace(self.path.with_suffix(".broken"))
            if journal_folder.exists():  # its records continue a state that is gone
                shutil.rmtree(journal_folder.with_name("journal.broken"), ignore_errors=True)
                journal_folder.rename(journal_folder.with_name("journal.broken"))
            self.snapshot_lsn = 0
        if mode == "off" and journal_folder.exists():
            log.warning("RETAIL_LOCALCLOUD_JOURNAL=off: the journal in %s is not replayed", journal_folder)
        self.journal = open_journal(journal_folder, self.snapshot_lsn)
        self._stopping.clear()
        if INTERVAL_S > 0:
            self._thread = threading.Thread(target=self._snapshots, name="persistence", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        child = self._child
        if child is not None:  # a periodic snapshot still pickling: the final one below supersedes it
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._snapshot()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def route(self, request: Request) -> WSGIApp | None:
        """Never claims a request; notes that one came, and whether it may have changed state."""
        self._last_request = time.monotonic()
        target = request.headers.get("X-Amz-Target", "")
        if request.method == "GET" or request.path.startswith("/_localcloud/health"):
            return None
        if target and target.split(".")[-1].startswith(READ_ONLY_PREFIXES):
            return None
        self._dirty.set()
        return None

    def _snapshots(self) -> None:
        while not self._stopping.wait(max(INTERVAL_S, 20 * self._last_cost_s)):
            if not self._dirty.is_set():
                continue
            deadline = time.monotonic() + MAX_DEFER_INTERVALS * INTERVAL_S
            while time.monotonic() - self._last_request < QUIET_S and time.monotonic() < deadline:
                if self._stopping.wait(QUIET_S):
                    return
            self._snapshot(in_child=True)

    def _snapshot(self, in_child: bool = False) -> None:
        """Save the state with the journal position it includes; then drop the journal segments it holds."""
        if self.path is None:
            return
        self._dirty.clear()
        started = time.perf_counter()
        journal, durable = self.journal, policy() == "fsync"
        try:
            if in_child:  # the child's copy cannot change under it: one attempt
                frozen = self._frozen(journal)
                try:
                    save_in_child(self.path, durable, frozen, forked=lambda pid: setattr(self, "_child", pid),
                                  busy=lambda: time.monotonic() - self._last_request < BUSY_S,
                                  pause_limit_s=MAX_DEFER_INTERVALS * INTERVAL_S)
                finally:
                    self._child = None
                self._forget(journal, frozen.lsn)
                return
            for _ in range(3):  # a request changing a dict mid-pickle (in this process): try again
                try:
                    frozen = self._frozen(journal)
                    with frozen as lsn:
                        save(self.path, lsn, durable)
                    self._forget(journal, lsn)
                    return
                except RuntimeError:
                    time.sleep(0.1)
            self._dirty.set()
        except Exception:
            if self._stopping.is_set():  # a periodic snapshot cut short by the stop, which saves anew
                log.info("periodic snapshot cut short by the stop")
            else:
                log.exception("snapshot failed")
            self._dirty.set()
        finally:
            self._last_cost_s = time.perf_counter() - started

    @staticmethod
    def _frozen(journal: Journal | None) -> "_Frozen":
        return _Frozen(journal)

    @staticmethod
    def _forget(journal: Journal | None, lsn: int) -> None:
        if journal is not None:
            journal.log.sync()  # the rotation is on disk before older segments go
            journal.log.drop_through(lsn)


class _Frozen:
    """While entered, no journaled request is applied (the apply lock is held), and the LSN it gives is
    the last one the state includes; later records go to a new journal segment."""

    def __init__(self, journal: Journal | None):
        self.journal, self.lsn = journal, 0

    def __enter__(self) -> int:
        if self.journal is not None:
            self.journal.apply_lock.acquire()
            self.lsn = self.journal.log.rotate()
        return self.lsn

    def __exit__(self, *_exc: Any) -> None:
        if self.journal is not None:
            self.journal.apply_lock.release()


def make_executor() -> Persistence:
    return Persistence()
