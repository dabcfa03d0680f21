"""One stream mapping's poller: a worker thread per shard, checkpointed after each delivered batch (and,
within a tumbling window, after each invocation, with the window's state)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from localcloud.event_sources.checkpoints import CheckpointStore
from localcloud.event_sources.destinations import send_to_destination
from localcloud.event_sources.mapping import POLL_INTERVAL_S, MappingConfig, RecordFilter, SourceRecord
from localcloud.event_sources.stream_delivery import StreamDelivery, TumblingWindow, lanes
from localcloud.executors import Invoker

log = logging.getLogger("localcloud.event_sources")


class StreamPoller:
    """One mapping over a stream: a worker thread per shard."""

    def __init__(self, config: MappingConfig, invoker: Invoker, source: Any, checkpoints: CheckpointStore,
                 destination: Callable[[str, dict[str, Any], str, str], None] = send_to_destination):
        self.config, self.invoker, self.source, self.checkpoints = config, invoker, source, checkpoints
        self.destination = destination
        self.stopping = threading.Event()
        self.workers: dict[str, threading.Thread] = {}
        self.windows: dict[str, TumblingWindow | None] = {}  # open tumbling window per shard

    def refresh(self, config: MappingConfig) -> None:
        self.config = config
        self.source.config = config
        for shard_id in self.source.shard_ids():
            if shard_id not in self.workers:
                worker = threading.Thread(target=self._run_shard, args=(shard_id,), daemon=True,
                                          name=f"esm-{config.uuid[:8]}-{shard_id}")
                self.workers[shard_id] = worker
                worker.start()

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers.values():
            worker.join(timeout=5)

    def _on_failure(self, record: dict[str, Any]) -> None:
        if self.config.on_failure_arn:
            self.destination(self.config.on_failure_arn, record, self.config.account_id, self.config.region)

    def _run_shard(self, shard_id: str) -> None:
        position = self.checkpoints.get(shard_id)
        if position is None:
            position = self.source.initial_position(shard_id)
            self.checkpoints.set(shard_id, position)  # LATEST / AT_TIMESTAMP survive a restart
        elif position > (last := self.source.last_position(shard_id)):
            # The stream came back from a snapshot older than the checkpoint (the local cloud crashed):
            # new records will reuse those sequence numbers, so resume at the restored end, not beyond.
            log.warning("mapping %s, shard %s: checkpoint %s is past the stream's end %s; resuming there",
                        self.config.uuid, shard_id, position, last)
            position = last
            self.checkpoints.set(shard_id, position)
        saved = self.checkpoints.window(shard_id)
        if saved is not None:  # the window open at the last stop or crash goes on with its state
            self.windows[shard_id] = TumblingWindow.restored(saved)
        pool = ThreadPoolExecutor(max_workers=max(self.config.parallelization, 1))
        try:
            while not self.stopping.is_set():
                try:
                    position = self._poll_once(shard_id, position, pool)
                except Exception:  # a bad record or a vanished stream must not kill the worker
                    log.exception("event source mapping %s, shard %s", self.config.uuid, shard_id)
                    self.stopping.wait(0.5)
        finally:
            pool.shutdown(wait=False)

    def _poll_once(self, shard_id: str, position: int, pool: ThreadPoolExecutor) -> int:
        config = self.config
        if not config.enabled:
            self.stopping.wait(POLL_INTERVAL_S * 5)
            return position
        limit = config.batch_size * max(config.parallelization, 1)
        records = self._gather(shard_id, position, limit, config)
        if not records:
            self._close_expired_window(shard_id, config)
            self.stopping.wait(POLL_INTERVAL_S)
            return position
        matching = RecordFilter(config.filters)
        selected = [r for r in records if matching.matches(r)] if config.filters else records
        if selected and config.tumbling_window_s > 0:
            self._deliver_windowed(shard_id, selected, config)
        elif selected:
            delivery = StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping)
            list(pool.map(delivery.deliver, lanes(selected, config.parallelization)))
        if self.stopping.is_set():
            return position  # interrupted: resume from the last checkpoint (at-least-once)
        position = records[-1].seq
        window = self.windows.get(shard_id)
        if window is not None:
            if self.checkpoints.positions.get(shard_id) != position:  # else its last invocation saved both
                self.checkpoints.set_window(shard_id, window.saved(), position)
        else:
            self.checkpoints.set(shard_id, position)
        return position

    def _deliver_windowed(self, shard_id: str, records: list[SourceRecord], config: MappingConfig) -> None:
        """Records are grouped by the window their arrival falls in; a window closes with a final
        invocation when records of a later window arrive or its end has passed."""
        groups: dict[float, list[SourceRecord]] = {}
        for record in records:
            groups.setdefault(TumblingWindow.containing(record.arrival, config.tumbling_window_s).start, []).append(record)
        for start, group in groups.items():
            window = self.windows.get(shard_id)
            if window is not None and window.start != start:
                self._close_window(shard_id, config)
                window = None
            if window is None:
                window = self.windows[shard_id] = TumblingWindow(start, config.tumbling_window_s)
            StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping, window=window,
                           progress=lambda seq, w=window: self.checkpoints.set_window(shard_id, w.saved(), seq)
                           ).deliver(group)

    def _close_window(self, shard_id: str, config: MappingConfig) -> None:
        window = self.windows.pop(shard_id, None)
        if window is not None:
            StreamDelivery(config, self.invoker, shard_id, self._on_failure, self.stopping, window=window).close_window()
            if not self.stopping.is_set():  # ended (a stop mid-way leaves it saved: its final invoke comes again)
                self.checkpoints.set_window(shard_id, None)

    def _close_expired_window(self, shard_id: str, config: MappingConfig) -> None:
        window = self.windows.get(shard_id)
        if window is not None and time.time() >= window.end:
            self._close_window(shard_id, config)

    def _gather(self, shard_id: str, position: int, limit: int, config: MappingConfig) -> list[SourceRecord]:
        """MaximumBatchingWindowInSeconds: wait for a full batch up to the window."""
        records = self.source.read(shard_id, position, limit)
        if not records or len(records) >= limit or config.batching_window_s <= 0:
            return records
        deadline = time.monotonic() + config.batching_window_s
        while len(records) < limit and time.monotonic() < deadline and not self.stopping.is_set():
            self.stopping.wait(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))
            records += self.source.read(shard_id, records[-1].seq, limit - len(records))
        return records
