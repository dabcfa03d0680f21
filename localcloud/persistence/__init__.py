"""State that survives a restart or a crash: snapshots (snapshots.py) plus a write-ahead journal
(journal.py over wal.py) of every state-changing request since the last snapshot."""

from __future__ import annotations

import threading

# Set while no journal replay is pending. The server clears it before the executors start and sets it
# once the journal is replayed: a consumer's checkpoint is only compared with the streams it points into
# once they hold every acknowledged record again (event_sources.checkpoints waits on it).
REPLAY_DONE = threading.Event()
REPLAY_DONE.set()
