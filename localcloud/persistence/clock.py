"""The time moto reads while a journaled request is applied: recorded with the request, read again on replay.

A request replayed after a crash ran at the replay's time: a Kinesis record came back with a new arrival
time (and could fall in a later tumbling window), an S3 object with a new LastModified, a table with a new
CreationDateTime. On AWS these do not change. So while a request is applied (`recording`) every clock read
of moto's (motoapi/clock.py routes them to `read`) is kept as microseconds since the epoch with its kind,
and the replay (`playing`) answers the same reads with the same values, in the same order. Reads of other
threads, or outside a journaled request, are the live clock. A replay that reads differently (another kind
of read, more reads than were recorded, or fewer) is reported as diverged; from that read on it is live.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

# kinds of read (moto's helpers and direct calls, see motoapi/clock.py): one letter each in the journal
UTCNOW, NOW, TIME = "u", "n", "t"

_local = threading.local()  # .tape: the Recording or Playback of this thread's journaled request


class Recording:
    """Clock reads of one request as it is applied: `kinds` (one letter a read) and `values` (us)."""

    __slots__ = ("kinds", "values")

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.values: list[int] = []

    def read(self, kind: str) -> int:
        value = time.time_ns() // 1000
        self.kinds.append(kind)
        self.values.append(value)
        return value

    def encoded(self) -> list[Any]:
        """The journal's form: [kinds, first value, differences...] (successive reads are microseconds
        apart: a PutRecords of 500 records costs a few bytes a read); [""] when nothing was read."""
        values = self.values
        return ["".join(self.kinds), *values[:1], *[b - a for a, b in zip(values, values[1:])]]


class Playback:
    """The recorded reads of one request, answered in order; `problem` says how the replay diverged.
    A record journaled before clock reads were recorded (`encoded` None) reads the live clock."""

    __slots__ = ("kinds", "values", "at", "problem", "recorded")

    def __init__(self, encoded: list[Any] | None):
        self.recorded = encoded is not None
        self.kinds: str = encoded[0] if encoded else ""
        self.values: list[int] = []
        if encoded:
            total = 0
            for step in encoded[1:]:
                total += step
                self.values.append(total)
        if len(self.values) != len(self.kinds):
            raise ValueError(f"a clock record with {len(self.kinds)} kinds and {len(self.values)} values")
        self.at = 0
        self.problem: str | None = None

    def read(self, kind: str) -> int:
        at = self.at
        if self.problem is None and self.recorded:
            if at < len(self.kinds) and self.kinds[at] == kind:
                self.at = at + 1
                return self.values[at]
            self.problem = (f"clock read {at + 1} is {kind!r} where the journal has "
                            f"{self.kinds[at]!r}" if at < len(self.kinds) else
                            f"clock read {at + 1} ({kind!r}) is past the {len(self.kinds)} the journal holds")
        return time.time_ns() // 1000

    def finish(self) -> str | None:
        """How this replay diverged from the recorded reads (None: it read exactly those)."""
        if self.problem is None and self.recorded and self.at < len(self.kinds):
            self.problem = f"clock: {self.at} of the {len(self.kinds)} recorded reads were read"
        return self.problem


def read(kind: str) -> int:
    """Microseconds since the epoch: this thread's recorded or replayed value, else the live clock."""
    tape = getattr(_local, "tape", None)
    if tape is None:
        return time.time_ns() // 1000
    return tape.read(kind)


def utcnow() -> datetime:
    """Now as an aware UTC datetime, for an executor's own timestamps (a deployment's createdDate, a
    crawler's LastUpdated): inside a journaled request the recorded value, so a replay stores the same."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=read(UTCNOW))


def active() -> Recording | Playback | None:
    return getattr(_local, "tape", None)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Record this thread's clock reads (a journaled request being applied)."""
    tape = Recording()
    _local.tape = tape
    try:
        yield tape
    finally:
        _local.tape = None


@contextlib.contextmanager
def playing(encoded: list[Any] | None) -> Iterator[Playback]:
    """Answer this thread's clock reads from a journal record's; `finish()` afterwards tells a divergence."""
    tape = Playback(encoded)
    _local.tape = tape
    try:
        yield tape
    finally:
        _local.tape = None
