"""The executors' shared base, in-process: idempotent start/stop around one supervising thread that
survives a failing round, hooks in order, and the WSGI answers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from localcloud.executor_base import ThreadedExecutor, json_response, respond
from localcloud.executors import CloudContext


class Counting(ThreadedExecutor):
    name = "counting"
    interval_s = 0.005

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.events: list[str] = []
        self.rounds = 0
        self.fail_first = fail_first
        self.ran = threading.Event()

    def on_start(self) -> None:
        self.events.append("start" if self.thread is None else "thread already running")

    def on_stop(self) -> None:
        self.events.append("stop" if self.thread is None else "thread still set")

    def supervise_once(self) -> None:
        self.rounds += 1
        if self.fail_first and self.rounds == 1:
            raise RuntimeError("a bad record")
        if self.rounds >= 3:
            self.ran.set()


def context(tmp_path: Path) -> CloudContext:
    return CloudContext(endpoint="http://127.0.0.1:1", port=1, state_dir=tmp_path)


def test_start_and_stop_are_idempotent_and_hooks_run_once(tmp_path: Path):
    executor = Counting()
    executor.stop()  # before start: nothing to do
    executor.start(context(tmp_path))
    first = executor.thread
    executor.start(context(tmp_path))
    assert executor.thread is first and first is not None and first.name == "counting"
    assert executor.ran.wait(5)
    executor.stop()
    executor.stop()
    assert executor.events == ["start", "stop"]
    assert executor.thread is None and not first.is_alive()


def test_a_failing_round_is_logged_and_the_next_one_runs(tmp_path: Path, caplog: Any):
    executor = Counting(fail_first=True)
    executor.start(context(tmp_path))
    try:
        assert executor.ran.wait(5), "the thread died with the first round"
    finally:
        executor.stop()
    assert "counting supervisor" in caplog.text and "a bad record" in caplog.text


def test_wait_first_delays_the_first_round_and_stop_interrupts_it(tmp_path: Path):
    executor = Counting()
    executor.wait_first, executor.interval_s = True, 30.0
    executor.start(context(tmp_path))
    executor.stop()  # returns at once: the wait is on the stopping event
    assert executor.rounds == 0


def call(app: Any) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))
    body = b"".join(app({}, start_response))
    return seen["status"], seen["headers"], body


def test_answers_carry_status_reason_length_and_type():
    status, headers, body = call(json_response(404, {"message": "no such stream"}))
    assert status == "404 Not Found" and json.loads(body) == {"message": "no such stream"}
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(body))
    status, headers, body = call(respond(501, b"<x/>", "text/xml", request_id=True, headers=[("x-a", "b")]))
    assert status == "501 Not Implemented" and headers["x-a"] == "b" and len(headers["x-amzn-RequestId"]) == 36
