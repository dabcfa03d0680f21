"""Where each stream mapping resumes: the last processed sequence number per shard, on disk, with the
open tumbling window of each shard (its state covers exactly the records up to that position)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.wal import fsync_directory, policy

log = logging.getLogger("localcloud.event_sources")


class CheckpointStore:
    """Per-mapping, per-shard last processed sequence number, persisted so restarts resume.

    After a crash a consumer re-delivers rather than skips (at-least-once, never a gap): a position is
    written atomically (a new file renamed over the old, fsync'ed under RETAIL_LOCALCLOUD_JOURNAL=fsync,
    so a power cut leaves the old position or the new one, never an unreadable file that would restart
    the mapping at LATEST), and `get` waits until the journal's replay has put back the records the
    position points into (a mapping comparing it with a half-replayed stream would resume too early).

    A shard's open tumbling window (start, size, the state the function returned) is written in the same
    file as its position, in one atomic write: after a crash the window resumes with the state of exactly
    the records before the position, and the records after it are delivered again (at least once)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.Lock()
        self.positions: dict[str, int] = {}
        self.windows: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                stored = json.loads(path.read_text())
                self.positions = {k: int(v) for k, v in stored.get("shards", {}).items()}
                self.windows = dict(stored.get("windows", {}))
            except (ValueError, OSError, AttributeError):
                log.warning("unreadable checkpoint %s: starting over", path)

    def get(self, shard_id: str) -> int | None:
        REPLAY_DONE.wait()
        return self.positions.get(shard_id)

    def window(self, shard_id: str) -> dict[str, Any] | None:
        """The shard's open tumbling window as last saved (None: none open)."""
        REPLAY_DONE.wait()
        return self.windows.get(shard_id)

    def set(self, shard_id: str, seq: int) -> None:
        with self.lock:
            self.positions[shard_id] = seq
            self._write()

    def set_window(self, shard_id: str, window: dict[str, Any] | None, seq: int | None = None) -> None:
        """Save a shard's open window (None: closed), and with it the position its state covers."""
        with self.lock:
            if seq is not None:
                self.positions[shard_id] = seq
            if window is None:
                self.windows.pop(shard_id, None)
            else:
                self.windows[shard_id] = window
            self._write()

    def _write(self) -> None:
        """The whole file, atomically (called with the lock held)."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{threading.get_ident()}.tmp")
            durable = policy() == "fsync"
            with temporary.open("w") as stream:
                stream.write(json.dumps({"shards": self.positions, "windows": self.windows}))
                if durable:
                    stream.flush()
                    os.fsync(stream.fileno())
            temporary.replace(self.path)
            if durable:
                fsync_directory(self.path.parent)
