"""Where each stream mapping resumes: the last processed sequence number per shard, on disk."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

log = logging.getLogger("localcloud.event_sources")


class CheckpointStore:
    """Per-mapping, per-shard last processed sequence number, persisted so restarts resume."""

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
        return self.positions.get(shard_id)

    def set(self, shard_id: str, seq: int) -> None:
        with self.lock:
            self.positions[shard_id] = seq
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(f".{threading.get_ident()}.tmp")
                temporary.write_text(json.dumps({"shards": self.positions}))
                temporary.replace(self.path)
