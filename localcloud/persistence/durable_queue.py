"""A durable set of pending work items (the Lambda runtime's async invocations), on a group-commit log.

Lambda answers an `Event` invoke with 202 once the event is queued, and AWS keeps it until it ran
(retries and destinations included). Here `add` logs the item before the 202 leaves (`wait_durable`),
`done` logs its end, and at start `pending()` gives back every item added and not done: after a crash
an event runs at least once, never zero times. The log is cut back whenever nothing is pending.
"""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Any

from localcloud.persistence.wal import GroupCommitLog

COMPACT_AFTER = 10_000  # records logged since the last cut, before an idle queue cuts its log
HEADER = struct.Struct(">cI")  # kind (A added, D done), header length


class DurableQueue:
    """Pending items by id: `add(id, header, payload)`, `done(id)`, `pending()` after a restart."""

    def __init__(self, folder: Path, mode: str):
        self.log = GroupCommitLog(folder, "queue", mode)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._since_cut = 0
        for _lsn, record in self.log.records():
            kind, size = HEADER.unpack_from(record)
            header = json.loads(record[HEADER.size:HEADER.size + size])
            if kind == b"A":
                self._pending[header["id"]] = (header, record[HEADER.size + size:])
            else:
                self._pending.pop(header["id"], None)
        self._since_cut = len(self._pending)

    def pending(self) -> list[tuple[dict[str, Any], bytes]]:
        """Items added and not done (in the order they were added)."""
        with self._lock:
            return list(self._pending.values())

    def add(self, item_id: str, header: dict[str, Any], payload: bytes) -> int:
        """Log an item (not yet durable: `wait_durable` before acknowledging it); its lsn."""
        header = {**header, "id": item_id}
        with self._lock:
            lsn = self._append(b"A", header, payload)
            self._pending[item_id] = (header, payload)
            return lsn

    def wait_durable(self, lsn: int) -> None:
        self.log.wait(lsn)

    def done(self, item_id: str) -> None:
        """The item ran to its end (success, destination, or dropped): it is not redone after a crash."""
        boundary = None
        with self._lock:
            if self._pending.pop(item_id, None) is None:
                return
            self._append(b"D", {"id": item_id}, b"")
            if not self._pending and self._since_cut >= COMPACT_AFTER:
                boundary, self._since_cut = self.log.rotate(), 0
        if boundary is not None:  # nothing before the boundary is pending: those segments can go
            self.log.sync()
            self.log.drop_through(boundary)

    def close(self) -> None:
        self.log.close()

    def _append(self, kind: bytes, header: dict[str, Any], payload: bytes) -> int:
        encoded = json.dumps(header, separators=(",", ":")).encode()
        self._since_cut += 1
        return self.log.append(HEADER.pack(kind, len(encoded)) + encoded + payload)
