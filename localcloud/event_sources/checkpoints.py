"""Where each stream mapping resumes: the last processed sequence number per shard, on disk."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from localcloud.persistence import REPLAY_DONE
from localcloud.persistence.wal import fsync_directory, policy

log = logging.getLogger("localcloud.event_sources")


class CheckpointStore:
    """Per-mapping, per-shard last processed sequence number, persisted so restarts resume.

    After a crash a consumer re-delivers rather than skips (at-least-once, never a gap): a position is
    written atomically (a new file renamed over the old, fsync'ed under RETAIL_LOCALCLOUD_JOURNAL=fsync,
    so a power cut leaves the old position or the new one, never an unreadable file that would restart
    the mapping at LATEST), and `get` waits until the journal's replay has put back the records the
    position points into (a mapping comparing it with a half-replayed stream would resume too early)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.Lock()
        self.positions: dict[str, int] = {}
        if path is not None and path.exists():
            try:
                self.positions = {k: int(v) for k, v in json.loads(path.read_text()).get("shards", {}).items()}
            except (ValueError, OSError):
                log.warning("unreadable checkpoint %s: starting over", path)

    def get(self, shard_id: str) -> int | None:
        REPLAY_DONE.wait()
        return self.positions.get(shard_id)

    def set(self, shard_id: str, seq: int) -> None:
        with self.lock:
            self.positions[shard_id] = seq
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(f".{threading.get_ident()}.tmp")
                durable = policy() == "fsync"
                with temporary.open("w") as stream:
                    stream.write(json.dumps({"shards": self.positions}))
                    if durable:
                        stream.flush()
                        os.fsync(stream.fileno())
                temporary.replace(self.path)
                if durable:
                    fsync_directory(self.path.parent)
