"""An append-only log with group commit: the durable half of the journal and of the Lambda async queue.

A record is durable once `wait(lsn)` returns: written to the file (policy "flush": survives the process,
not the machine) and fsync'ed (policy "fsync": survives both). One flusher thread writes whatever was
appended meanwhile and fsyncs once for all of it, so N concurrent writers pay one fsync, not N.
Records are framed `length, crc32, lsn, payload`; a torn tail (the process died mid-write) is cut at
the last whole record when the log is opened. Segments (`<prefix>-<first lsn>.log`) let a snapshot
drop what it already holds without rewriting anything.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator

log = logging.getLogger("localcloud.persistence")

FRAME = struct.Struct(">IIQ")  # payload length, crc32 of lsn + payload, lsn
POLICIES = ("fsync", "flush", "off")


class JournalError(RuntimeError):
    """The log cannot make a write durable (disk full, file gone): the request must fail, not succeed."""


def policy() -> str:
    """RETAIL_LOCALCLOUD_JOURNAL: fsync (default), flush or off; anything else refuses to start."""
    value = os.environ.get("RETAIL_LOCALCLOUD_JOURNAL", "fsync").strip().lower() or "fsync"
    if value not in POLICIES:
        raise JournalError(f"RETAIL_LOCALCLOUD_JOURNAL={value!r}: expected one of {', '.join(POLICIES)}")
    return value


def fsync_directory(folder: Path) -> None:
    """A created, renamed or deleted file is durable once its folder is (POSIX)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Rotation:
    """A marker in the pending queue: records after it go to a new segment starting at `first`."""

    __slots__ = ("first",)

    def __init__(self, first: int):
        self.first = first


class GroupCommitLog:
    """Segments `<folder>/<prefix>-<first lsn>.log`; `append` is cheap, `wait` blocks until durable."""

    def __init__(self, folder: Path, prefix: str, mode: str = "fsync", start_after: int = 0):
        if mode not in ("fsync", "flush"):
            raise ValueError(f"a log needs fsync or flush, not {mode}")
        self.folder, self.prefix, self.mode = folder, prefix, mode
        folder.mkdir(parents=True, exist_ok=True)
        last = self._recover()
        self.next_lsn = max(last, start_after) + 1
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._pending: list[bytes | _Rotation] = []
        self._pending_last = self.next_lsn - 1
        self.durable_lsn = self.next_lsn - 1
        self._error: BaseException | None = None
        self._closing = False
        self._busy = False  # the flusher holds a batch it has not finished writing
        segments = self.segments()
        first = segments[-1][0] if segments else self.next_lsn
        self._fd = os.open(self._path(first), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if not segments:
            fsync_directory(folder)
        self._thread = threading.Thread(target=self._flush_loop, name=f"{prefix}-flusher", daemon=True)
        self._thread.start()

    # files -----------------------------------------------------------------------------------------
    def _path(self, first: int) -> Path:
        return self.folder / f"{self.prefix}-{first:020d}.log"

    def segments(self) -> list[tuple[int, Path]]:
        """(first lsn, path) of every segment, oldest first."""
        found = []
        for path in self.folder.glob(f"{self.prefix}-*.log"):
            number = path.stem[len(self.prefix) + 1:]
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def _recover(self) -> int:
        """The last whole record's lsn; a torn tail of the newest segment is cut off."""
        last = 0
        for _first, path in self.segments():
            good = 0
            for lsn, _payload, end in _read(path):
                last, good = lsn, end
            if good < path.stat().st_size:
                log.warning("%s: dropping a torn tail of %d bytes (a write the process died in, never "
                            "acknowledged)", path, path.stat().st_size - good)
                with path.open("r+b") as stream:
                    stream.truncate(good)
                    os.fsync(stream.fileno())
        return last

    def records(self, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every whole record with lsn > `after`, in order."""
        for _first, path in self.segments():
            for lsn, payload, _end in _read(path):
                if lsn > after:
                    yield lsn, payload

    # writing ---------------------------------------------------------------------------------------
    def append(self, payload: bytes) -> int:
        """Queue one record; its lsn (callers holding one lock across apply and append get apply order)."""
        with self._lock:
            if self._error is not None:
                raise JournalError(f"{self.prefix}: cannot write: {self._error}")
            lsn = self.next_lsn
            self.next_lsn += 1
            body = struct.pack(">Q", lsn) + payload
            self._pending.append(FRAME.pack(len(payload), zlib.crc32(body), lsn) + payload)
            self._pending_last = lsn
            self._work.notify()
            return lsn

    def rotate(self) -> int:
        """Start a new segment with the next record; returns the last lsn of the older segments."""
        with self._lock:
            self._pending.append(_Rotation(self.next_lsn))
            self._work.notify()
            return self.next_lsn - 1

    def wait(self, lsn: int, timeout: float | None = None) -> None:
        """Block until record `lsn` (and all before it) is durable; JournalError if it cannot be."""
        with self._lock:
            while self.durable_lsn < lsn and self._error is None:
                if not self._done.wait(timeout) and timeout is not None:
                    raise JournalError(f"{self.prefix}: record {lsn} not durable after {timeout} s")
            if self.durable_lsn < lsn:
                raise JournalError(f"{self.prefix}: cannot write: {self._error}")

    def sync(self) -> int:
        """Make everything appended or rotated so far durable; the last lsn."""
        with self._lock:
            while (self._pending or self._busy) and self._error is None:
                self._done.wait()
            if self._error is not None:
                raise JournalError(f"{self.prefix}: cannot write: {self._error}")
            return self.next_lsn - 1

    def drop_through(self, lsn: int) -> int:
        """Delete the segments whose records are all <= `lsn` (a snapshot holds them); how many."""
        segments = self.segments()
        dropped = 0
        for (first, path), (next_first, _) in zip(segments, segments[1:]):
            if next_first - 1 <= lsn:
                path.unlink(missing_ok=True)
                dropped += 1
        if dropped:
            fsync_directory(self.folder)
        return dropped

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._work.notify()
        self._thread.join(timeout=10)
        os.close(self._fd)

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._work.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                last = self._pending_last
                self._busy = True
            try:
                self._write(batch)
            except BaseException as error:  # noqa: BLE001 - every waiter must hear of it
                log.exception("%s: write failed", self.prefix)
                with self._lock:
                    self._error = error
                    self._done.notify_all()
                return
            with self._lock:
                self.durable_lsn = last
                self._busy = False
                self._done.notify_all()

    def _write(self, batch: list[bytes | _Rotation]) -> None:
        chunk: list[bytes] = []
        for item in batch:
            if isinstance(item, _Rotation):
                self._write_all(b"".join(chunk))
                chunk = []
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = os.open(self._path(item.first), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                fsync_directory(self.folder)
            else:
                chunk.append(item)
        self._write_all(b"".join(chunk))
        if self.mode == "fsync":
            os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]


def _read(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """(lsn, payload, offset after it) of each whole record, read one at a time (a journal can be large);
    stops at the first torn or corrupt one."""
    offset = 0
    with path.open("rb") as stream:
        while True:
            frame = stream.read(FRAME.size)
            if len(frame) < FRAME.size:
                return
            length, crc, lsn = FRAME.unpack(frame)
            payload = stream.read(length)
            if len(payload) < length or zlib.crc32(struct.pack(">Q", lsn) + payload) != crc:
                return
            offset += FRAME.size + length
            yield lsn, payload, offset
