"""A restarted local cloud keeps its state, and an event source mapping resumes where it stopped:
nothing skipped (at-least-once), after a clean stop and after a crash (SIGKILL). The journal's parts
(wal.py's group commit, journal.py's request classes, durable_queue.py) are tested here in-process;
tests/unit/test_crash.py kills a loaded local cloud."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from localcloud import lifecycle
from localcloud.persistence import snapshots as persistence

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
HANDLER = '''
import base64, boto3, os
sqs = boto3.client("sqs")

def handler(event, context):
    for record in event["Records"]:
        sqs.send_message(QueueUrl=os.environ["SEEN"], MessageBody=base64.b64decode(record["kinesis"]["data"]).decode())
'''


@pytest.fixture()
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Any]]:
    monkeypatch.setenv("RETAIL_LOCALCLOUD_HOME", str(tmp_path))
    monkeypatch.setenv("RETAIL_LOCALCLOUD_SNAPSHOT_S", "0.5")
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        yield port, client
    finally:
        lifecycle.down(port, wipe=True)


def _bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return buffer.getvalue()


def _seen(client: Any, url: str, expected: set[str], timeout: float = 30.0) -> list[str]:
    """Every message body until all of `expected` arrived (or the timeout)."""
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while not expected <= set(bodies) and time.monotonic() < deadline:
        for message in client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(message["Body"])
            client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def _pipeline(client: Any) -> str:
    client("kinesis").create_stream(StreamName="orders", ShardCount=1)
    url = client("sqs").create_queue(QueueName="seen")["QueueUrl"]
    role = client("iam").create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    client("iam").put_role_policy(RoleName="r", PolicyName="consume", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Resource": "*", "Action": ["kinesis:GetRecords", "kinesis:GetShardIterator",
                                                            "kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
                                                            "kinesis:ListShards", "kinesis:ListStreams"]},
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
    client("lambda").create_function(FunctionName="consumer", Runtime="python3.11", Role=role, Handler="app.handler",
                                     Code={"ZipFile": _bundle()}, Environment={"Variables": {"SEEN": url}})
    stream_arn = client("kinesis").describe_stream(StreamName="orders")["StreamDescription"]["StreamARN"]
    client("lambda").create_event_source_mapping(FunctionName="consumer", EventSourceArn=stream_arn,
                                                 StartingPosition="TRIM_HORIZON", BatchSize=10)
    return url


def _put(client: Any, values: range) -> None:
    for value in values:
        client("kinesis").put_record(StreamName="orders", Data=str(value).encode(), PartitionKey="k")


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
def test_state_and_mappings_survive_a_restart_without_skipping_records(cloud: tuple[int, Any], crash: bool) -> None:
    port, client = cloud
    url = _pipeline(client)
    _put(client, range(0, 20))
    assert set(_seen(client, url, {str(v) for v in range(20)})) == {str(v) for v in range(20)}
    time.sleep(1.5)  # a snapshot interval passes (what a crash keeps)
    if crash:
        os.killpg(lifecycle.status(port).pid, signal.SIGKILL)
        time.sleep(0.5)
    else:
        lifecycle.down(port)
    lifecycle.up(port)

    assert client("lambda").get_function(FunctionName="consumer")["Configuration"]["Handler"] == "app.handler"
    [mapping] = client("lambda").list_event_source_mappings(FunctionName="consumer")["EventSourceMappings"]
    assert mapping["BatchSize"] == 10
    _put(client, range(20, 35))
    seen = _seen(client, url, {str(v) for v in range(20, 35)})
    assert {str(v) for v in range(20, 35)} <= set(seen)  # nothing skipped
    assert not set(seen) - {str(v) for v in range(0, 35)}
    if not crash:
        seen += _seen(client, url, {"never sent"}, timeout=2.0)  # whatever else arrives meanwhile
        assert sorted(seen, key=int) == [str(v) for v in range(20, 35)]  # a clean stop re-delivers nothing


def test_down_wipe_forgets_everything(cloud: tuple[int, Any]) -> None:
    port, client = cloud
    client("s3").create_bucket(Bucket="kept-or-not")
    lifecycle.down(port)
    lifecycle.up(port)
    assert [b["Name"] for b in client("s3").list_buckets()["Buckets"]] == ["kept-or-not"]
    lifecycle.down(port, wipe=True)
    lifecycle.up(port)
    assert client("s3").list_buckets()["Buckets"] == []


def test_an_unreadable_snapshot_is_set_aside_and_the_cloud_starts_empty(tmp_path: Path) -> None:
    class Cloud:
        state_dir = tmp_path

    (tmp_path / persistence.SNAPSHOT_FILE).write_bytes(b"not a pickle")
    executor = persistence.make_executor()
    executor.start(Cloud())  # type: ignore[arg-type]
    executor._stopping.set()
    assert (tmp_path / "moto-state.broken").read_bytes() == b"not a pickle"


def test_snapshots_are_taken_only_after_state_changing_requests() -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    executor = persistence.make_executor()

    def request(method: str, target: str = "") -> Request:
        headers = {"X-Amz-Target": target} if target else {}
        return Request(EnvironBuilder(method=method, path="/", headers=headers).get_environ())

    executor.route(request("POST", "Kinesis_20131202.DescribeStream"))
    executor.route(request("GET"))
    assert not executor._dirty.is_set()
    executor.route(request("POST", "Kinesis_20131202.PutRecord"))
    assert executor._dirty.is_set()


def test_checkpoints_are_restored_with_the_state_they_point_into(tmp_path: Path) -> None:
    """A checkpoint written after the last snapshot would point past what the restored lake or table
    holds: the snapshot's own checkpoints come back instead (re-delivery, never a gap)."""
    checkpoint = tmp_path / "event_sources" / "mapping.json"
    checkpoint.parent.mkdir()
    checkpoint.write_text('{"shards": {"shardId-000000000000": 20}}')
    persistence.save(tmp_path / persistence.SNAPSHOT_FILE)
    checkpoint.write_text('{"shards": {"shardId-000000000000": 35}}')  # progress the snapshot never saw
    (tmp_path / "event_sources" / "newer-mapping.json").write_text("{}")
    persistence.load(tmp_path / persistence.SNAPSHOT_FILE)
    assert checkpoint.read_text() == '{"shards": {"shardId-000000000000": 20}}'
    assert not (tmp_path / "event_sources" / "newer-mapping.json").exists()


def test_a_periodic_snapshot_is_pickled_by_a_child_while_the_server_goes_on(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sees the state as it was at the fork: what changes afterwards is not in the file, and
    this process never paused to pickle it."""
    import pickle

    from moto.kinesis.models import kinesis_backends

    backend = kinesis_backends["123456789012"]["us-east-1"]
    backend.create_stream("before-the-fork", shard_count=1)
    real_save, pid_file = persistence.save, tmp_path / "pickled-by"

    def save(path: Path, *args: Any) -> float:
        pid_file.write_text(str(os.getpid()))
        return real_save(path, *args)

    monkeypatch.setattr(persistence, "save", save)
    cost = persistence.save_in_child(tmp_path / persistence.SNAPSHOT_FILE)
    backend.create_stream("after-the-fork", shard_count=1)
    assert cost > 0 and int(pid_file.read_text()) != os.getpid()  # pickled by the child, not here
    with (tmp_path / persistence.SNAPSHOT_FILE).open("rb") as stream:
        streams = pickle.load(stream)["services"]["kinesis"]["123456789012"]["us-east-1"].streams
    assert "before-the-fork" in {s.stream_name for s in streams.values()}
    assert "after-the-fork" not in {s.stream_name for s in streams.values()}
    backend.delete_stream(stream_arn=None, stream_name="before-the-fork")
    backend.delete_stream(stream_arn=None, stream_name="after-the-fork")


def test_a_child_that_cannot_snapshot_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="snapshot child exited"):
        persistence.save_in_child(tmp_path / "missing-folder" / persistence.SNAPSHOT_FILE)


# --------------------------------------------------------------------------------------------------
# the write-ahead log, the journal's classification, the durable queue


def test_a_record_is_durable_once_waited_for_and_read_back_in_order(tmp_path: Path) -> None:
    from localcloud.persistence.wal import GroupCommitLog

    wal = GroupCommitLog(tmp_path, "journal", "fsync")
    lsns = [wal.append(f"record {i}".encode()) for i in range(5)]
    wal.wait(lsns[-1])
    assert wal.durable_lsn == lsns[-1] == 5
    wal.close()
    reopened = GroupCommitLog(tmp_path, "journal", "fsync")
    assert list(reopened.records(after=2)) == [(3, b"record 2"), (4, b"record 3"), (5, b"record 4")]
    assert reopened.append(b"next") == 6  # numbering goes on
    reopened.close()


def test_one_fsync_serves_every_writer_waiting_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from localcloud.persistence import wal as wal_module

    syncs = []
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        syncs.append(fd)
        time.sleep(0.02)  # a disk's fsync: writers pile up meanwhile
        real_fdatasync(fd)

    monkeypatch.setattr(wal_module.os, "fdatasync", slow_fdatasync)
    wal = wal_module.GroupCommitLog(tmp_path, "journal", "fsync")

    def writer(n: int) -> None:
        for i in range(20):
            wal.wait(wal.append(f"{n}-{i}".encode()))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wal.durable_lsn == 160
    assert len(syncs) < 160 / 3  # 8 writers: about one fsync per 8 records
    wal.close()


def test_a_torn_tail_is_cut_at_the_last_whole_record(tmp_path: Path) -> None:
    from localcloud.persistence.wal import GroupCommitLog

    wal = GroupCommitLog(tmp_path, "journal", "flush")
    wal.wait(wal.append(b"whole"))
    wal.wait(wal.append(b"also whole"))
    wal.close()
    [(_, segment)] = wal.segments()
    segment.write_bytes(segment.read_bytes() + b"\x00\x00\x00\x30garbage")  # died mid-write
    reopened = GroupCommitLog(tmp_path, "journal", "flush")
    assert [payload for _, payload in reopened.records()] == [b"whole", b"also whole"]
    assert reopened.append(b"after the crash") == 3
    reopened.sync()
    reopened.close()
    assert [lsn for lsn, _ in GroupCommitLog(tmp_path, "journal", "flush").records()] == [1, 2, 3]


def test_a_snapshot_drops_the_segments_it_holds(tmp_path: Path) -> None:
    from localcloud.persistence.wal import GroupCommitLog

    wal = GroupCommitLog(tmp_path, "journal", "fsync")
    for i in range(3):
        wal.append(b"before")
    boundary = wal.rotate()
    wal.append(b"after")
    wal.sync()
    assert boundary == 3 and len(wal.segments()) == 2
    assert wal.drop_through(boundary) == 1
    assert list(wal.records()) == [(4, b"after")]
    wal.close()
    assert GroupCommitLog(tmp_path, "journal", "fsync", start_after=10).next_lsn == 11  # a snapshot's lsn wins


def test_a_log_that_cannot_write_fails_its_writers_loudly(tmp_path: Path) -> None:
    from localcloud.persistence.wal import GroupCommitLog, JournalError

    wal = GroupCommitLog(tmp_path, "journal", "fsync")
    os.close(wal._fd)  # the file is gone from under it (a full disk behaves the same)
    with pytest.raises(JournalError, match="cannot write"):
        wal.wait(wal.append(b"lost"))
    with pytest.raises(JournalError):
        wal.append(b"refused")
    wal._fd = os.open(os.devnull, os.O_WRONLY)


def test_the_journal_policy_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from localcloud.persistence.wal import JournalError, policy

    monkeypatch.delenv("RETAIL_LOCALCLOUD_JOURNAL", raising=False)
    assert policy() == "fsync"
    monkeypatch.setenv("RETAIL_LOCALCLOUD_JOURNAL", "Flush")
    assert policy() == "flush"
    monkeypatch.setenv("RETAIL_LOCALCLOUD_JOURNAL", "sometimes")
    with pytest.raises(JournalError, match="fsync, flush, off"):
        policy()


@pytest.mark.parametrize("method, headers, query, body, mutating", [
    ("POST", {"X-Amz-Target": "Kinesis_20131202.PutRecords"}, "", b"{}", True),
    ("POST", {"X-Amz-Target": "DynamoDB_20120810.BatchWriteItem"}, "", b"{}", True),
    ("POST", {"X-Amz-Target": "DynamoDB_20120810.Query"}, "", b"{}", False),
    ("POST", {"X-Amz-Target": "DynamoDB_20120810.BatchGetItem"}, "", b"{}", False),
    ("POST", {"X-Amz-Target": "AmazonSQS.ReceiveMessage"}, "", b"{}", False),
    ("POST", {"X-Amz-Target": "Kinesis_20131202.GetRecords"}, "", b"{}", False),
    ("POST", {"Content-Type": "application/x-www-form-urlencoded"}, "", b"Action=CreateRole&RoleName=r", True),
    ("POST", {"Content-Type": "application/x-www-form-urlencoded"}, "", b"Action=GetRole&RoleName=r", False),
    ("POST", {}, "Action=ListQueues", b"", False),
    ("PUT", {}, "", b"object body", True),  # S3 PutObject, REST
    ("DELETE", {}, "", b"", True),
    ("POST", {}, "delete", b"<Delete/>", True),  # S3 DeleteObjects
    ("GET", {}, "", b"", False),
    ("HEAD", {}, "", b"", False),
])
def test_only_requests_that_may_change_state_are_journaled(method: str, headers: dict[str, str], query: str,
                                                           body: bytes, mutating: bool) -> None:
    from werkzeug.test import EnvironBuilder

    from localcloud.persistence.journal import is_mutating

    environ = EnvironBuilder(method=method, path="/", headers=headers, query_string=query, data=body).get_environ()
    assert is_mutating(environ, body) is mutating


def test_pending_async_events_come_back_after_a_restart_and_finished_ones_do_not(tmp_path: Path) -> None:
    from localcloud.persistence.durable_queue import DurableQueue

    events = DurableQueue(tmp_path, "fsync")
    events.wait_durable(events.add("a", {"arn": "fn"}, b'{"n": 1}'))
    events.wait_durable(events.add("b", {"arn": "fn"}, b'{"n": 2}'))
    events.done("a")
    events.log.sync()
    events.close()  # or a crash: the records are on disk either way
    again = DurableQueue(tmp_path, "fsync")
    assert again.pending() == [({"arn": "fn", "id": "b"}, b'{"n": 2}')]
    again.done("b")
    again.close()
    assert DurableQueue(tmp_path, "fsync").pending() == []


def test_an_idle_durable_queue_cuts_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localcloud.persistence import durable_queue

    monkeypatch.setattr(durable_queue, "COMPACT_AFTER", 10)
    events = durable_queue.DurableQueue(tmp_path, "flush")
    for i in range(12):
        events.add(str(i), {}, b"")
        events.done(str(i))
    events.log.sync()
    assert len(list(events.log.records())) < 24
    events.close()
    assert durable_queue.DurableQueue(tmp_path, "flush").pending() == []


def test_an_executor_opts_its_state_changing_route_into_the_journal_and_not_its_data_plane(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A control-plane call an executor answers itself is journaled and replayed through it; an invoke
    is not replayed (the function would run twice)."""
    monkeypatch.setenv("RETAIL_LOCALCLOUD_IAM", "off")  # unsigned in-process requests
    from types import SimpleNamespace

    from werkzeug.test import Client

    from localcloud.executors import CloudContext
    from localcloud.persistence.journal import Journal, journaled
    from localcloud.server import LocalCloudApp

    def cloud(state: list[bytes], journal: Journal) -> LocalCloudApp:
        def deploy(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            state.append(environ["wsgi.input"].read())
            start_response("201 Created", [("Content-Length", "0")])
            return [b""]

        def invoke(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            state.append(b"function ran")
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]

        class Stages:
            name = "stages"

            def route(self, request: Any) -> Any:
                return {"/deployments": journaled(deploy), "/invocations": invoke}.get(request.path)

        persistence = SimpleNamespace(name="persistence", journal=journal, snapshot_lsn=0, route=lambda request: None)
        executors = [persistence, Stages()]
        context = CloudContext("http://127.0.0.1:1", 1, tmp_path, {e.name: e for e in executors})
        return LocalCloudApp(lambda environ, start_response: [], executors, context)  # type: ignore[arg-type]

    before: list[bytes] = []
    journal = Journal(tmp_path / "journal", "fsync")
    app = cloud(before, journal)
    app.replay()  # nothing yet: from here on writes are journaled
    client = Client(app)
    assert client.post("/deployments", data=b"v1").status_code == 201
    assert client.post("/invocations", data=b"{}").status_code == 200
    assert before == [b"v1", b"function ran"]
    journal.log.sync()
    journal.close()

    after: list[bytes] = []
    restarted = cloud(after, Journal(tmp_path / "journal", "fsync"))
    restarted.replay()
    assert after == [b"v1"] and restarted.replay_report.replayed == 1
    restarted.journal.close()  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------------
# the clock moto reads, recorded with each journaled request and read again on replay


def test_clock_reads_are_recorded_compactly_and_answered_again_in_order() -> None:
    from localcloud.persistence import clock

    with clock.recording() as recorded:
        first = [clock.read(kind) for kind in "uunt"]
    assert clock.active() is None
    encoded = recorded.encoded()
    assert encoded[:2] == ["uunt", first[0]] and encoded[2:] == [b - a for a, b in zip(first, first[1:])]
    assert all(0 <= step < 1_000_000 for step in encoded[2:])  # differences of microseconds, not whole times
    time.sleep(0.01)
    with clock.playing(json.loads(json.dumps(encoded))) as played:  # as the journal stores it
        assert [clock.read(kind) for kind in "uunt"] == first
    assert played.finish() is None
    with clock.recording() as nothing:
        pass
    assert nothing.encoded() == [""]


@pytest.mark.parametrize("replayed, problem", [
    ("uu", "clock: 2 of the 3 recorded reads were read"),  # the replay read less than the request did
    ("uunu", "clock read 4 ('u') is past the 3 the journal holds"),  # more
    ("utn", "clock read 2 is 't' where the journal has 'u'"),  # another kind of read: another path through moto
])
def test_a_replay_that_reads_the_clock_differently_is_told_and_reads_the_live_clock(replayed: str,
                                                                                      problem: str) -> None:
    from localcloud.persistence import clock

    with clock.recording() as recorded:
        for kind in "uun":
            clock.read(kind)
    time.sleep(0.01)
    with clock.playing(recorded.encoded()) as played:
        values = [clock.read(kind) for kind in replayed]
    assert played.finish() == problem
    matching = next((at for at, kind in enumerate(replayed) if at >= 3 or kind != "uun"[at]), len(replayed))
    assert values[:matching] == recorded.values[:matching]
    assert all(value > recorded.values[-1] + 5_000 for value in values[matching:])  # live from there on


def test_other_threads_read_the_live_clock_while_a_request_records() -> None:
    import threading

    from localcloud.persistence import clock

    seen: list[object] = []
    with clock.recording() as recorded:
        clock.read("u")
        thread = threading.Thread(target=lambda: seen.append((clock.active(), clock.read("u"))))
        thread.start()
        thread.join()
    assert len(recorded.values) == 1 and seen[0][0] is None


def _timed_app(times: list[Any], extra_reads: int = 0, draws: int = 0) -> Any:
    """A request that keeps the times moto's helpers give it (what a model does in __init__), and draws
    `draws` of moto's random numbers."""
    import importlib

    from localcloud.motoapi import mock_random

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        kinesis, core = importlib.import_module("moto.kinesis.models"), importlib.import_module("moto.core.utils")
        times.append((kinesis.utcnow(), core.unix_time_millis(), *[mock_random.getrandbits(64) for _ in range(draws)]))
        for _ in range(extra_reads):
            core.utcnow()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    return app


def test_a_replayed_request_reads_the_times_it_read_when_acknowledged(tmp_path: Path) -> None:
    from localcloud.persistence.journal import Journal

    journal = Journal(tmp_path, "fsync")
    acknowledged: list[Any] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "Kinesis_20131202.PutRecords"}
    for _ in range(3):
        journal.serve(_timed_app(acknowledged), dict(environ), b"{}", lambda *a: None)
    journal.log.sync()
    journal.close()
    time.sleep(0.01)

    reopened = Journal(tmp_path, "fsync")
    replayed: list[Any] = []
    report = reopened.replay(_timed_app(replayed), after=0)
    assert replayed == acknowledged and report.replayed == 3 and report.as_dict()["diverged"] == 0
    live: list[Any] = []
    _timed_app(live)(environ, lambda *a: None)  # outside a journaled request: the live clock
    assert live[0] > acknowledged[-1]

    report = reopened.replay(_timed_app([], extra_reads=1), after=2)  # the replay takes another path
    assert report.as_dict()["diverged"] == 1 and report.as_dict()["mismatched"] == 0
    assert report.divergences == ["lsn 3 POST / PutRecords: clock read 3 ('u') is past the 2 the journal holds"]
    reopened.close()


def test_a_record_journaled_before_times_were_recorded_replays_on_the_live_clock(tmp_path: Path) -> None:
    from localcloud.persistence.journal import HEADER, Journal

    journal = Journal(tmp_path, "fsync")
    header = json.dumps({"env": {"REQUEST_METHOD": "POST", "PATH_INFO": "/"}, "status": 200, "draws": []}).encode()
    journal.log.wait(journal.log.append(HEADER.pack(len(header)) + header))
    started = time.time()
    replayed: list[Any] = []
    report = journal.replay(_timed_app(replayed), after=0)
    assert report.replayed == 1 and report.diverged == 0 and replayed[0][1] >= started * 1000 - 1
    journal.close()


@pytest.mark.parametrize("recorded, replayed", [(1, 2), (2, 1), (0, 1)])
def test_a_replay_that_draws_other_random_numbers_than_it_recorded_is_reported(
        tmp_path: Path, recorded: int, replayed: int) -> None:
    from localcloud.persistence.journal import Journal

    journal = Journal(tmp_path, "fsync")
    acknowledged: list[Any] = []
    journal.serve(_timed_app(acknowledged, draws=recorded), {"REQUEST_METHOD": "POST", "PATH_INFO": "/"}, b"",
                  lambda *a: None)
    again: list[Any] = []
    same = journal.replay(_timed_app(again, draws=recorded), after=0)
    assert again == acknowledged and same.diverged == 0  # ids and times as acknowledged
    other = journal.replay(_timed_app([], draws=replayed), after=0)
    assert other.divergences == ["lsn 1 POST / : random draws differ"]
    journal.close()
