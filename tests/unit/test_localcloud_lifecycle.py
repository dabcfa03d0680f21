"""The local cloud's lifecycle contract: up (idempotent, health-checked, loopback only), status, down
(nothing left behind), and a clear message when the port is taken. Each test uses its own port, not
the session's cloud."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from localcloud import lifecycle

CLI = [sys.executable, "-m", "localcloud"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def process_exists(pid: int) -> bool:
    return lifecycle._alive(pid)


@pytest.fixture
def port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RETAIL_LOCALCLOUD_HOME", str(tmp_path / "home"))
    chosen = lifecycle.free_port()
    yield chosen
    lifecycle.down(chosen)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port`, read from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_up_status_down_through_the_cli(port: int):
    started = cli("up", "--port", str(port))
    assert started.returncode == 0, started.stderr
    endpoint = started.stdout.strip().splitlines()[-1]
    assert endpoint == f"http://127.0.0.1:{port}", "the endpoint URL is the last line"
    health = lifecycle.health(port)
    assert health is not None and process_exists(health.pid)
    assert Path(lifecycle.pidfile(port)).read_text().strip() == str(health.pid)
    assert lifecycle.logfile(port).exists()
    assert listening_addresses(port) == {"127.0.0.1"}, "binds loopback only"

    status = cli("status", "--port", str(port))
    assert status.returncode == 0 and status.stdout.strip().splitlines()[-1] == endpoint

    again = cli("up", "--port", str(port))
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == endpoint
    assert "already running" in again.stderr
    assert lifecycle.health(port).pid == health.pid, "a second up is a no-op"

    stopped = cli("down", "--port", str(port))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    deadline = time.monotonic() + 5
    while process_exists(health.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_exists(health.pid), "down leaves no process behind"
    assert lifecycle.port_is_free(port)
    assert not lifecycle.pidfile(port).exists()
    assert cli("status", "--port", str(port)).returncode == 1
    assert "was not running" in cli("down", "--port", str(port)).stdout


def test_boto3_and_the_aws_cli_work_against_it(port: int):
    endpoint = lifecycle.up(port)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="raw/a.json", Body=b'{"a": 1}\n')
    assert s3.get_object(Bucket="lake", Key="raw/a.json")["Body"].read() == b'{"a": 1}\n'
    kinesis = session.client("kinesis", endpoint_url=endpoint)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.1})
    assert kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k")["ShardId"] == "shardId-000000000000"

    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    assert aws is not None, "the aws CLI is not installed (requirements.txt installs it into .venv)"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    listed = subprocess.run([aws, "s3", "ls", "s3://lake/raw/"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "a.json" in listed.stdout


def test_a_port_taken_by_another_program_gives_a_clear_message(port: int):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        with pytest.raises(lifecycle.PortInUseError, match=f"port {port} .* taken by another program"):
            lifecycle.up(port)
        result = cli("up", "--port", str(port))
        assert result.returncode == 2
        assert "taken by another program" in result.stderr and "--port" in result.stderr
    finally:
        squatter.close()


def test_a_killed_cloud_is_replaced_on_the_next_up(port: int):
    lifecycle.up(port)
    first = lifecycle.health(port).pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lifecycle.health(port, timeout=0.2) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    lifecycle.up(port)
    second = lifecycle.health(port).pid
    assert second != first and process_exists(second)


def test_concurrent_ups_start_one_process(port: int):
    endpoints: list[str] = []
    threads = [threading.Thread(target=lambda: endpoints.append(lifecycle.up(port))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(endpoints)) == 1 and len(endpoints) == 4
    assert Path(lifecycle.pidfile(port)).read_text().strip() == str(lifecycle.health(port).pid)


def test_down_stops_the_whole_process_group():
    group = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    time.sleep(0.2)
    assert lifecycle._group_alive(group.pid)
    lifecycle._terminate_group(group.pid)
    group.wait(timeout=5)
    assert not lifecycle._group_alive(group.pid), "children of the local cloud die with it"


def test_a_server_that_dies_while_starting_reports_its_log(port: int, monkeypatch: pytest.MonkeyPatch):
    # Lose the race for the port after the pre-check: the server itself must fail and say why.
    monkeypatch.setattr(lifecycle, "port_is_free", lambda *_: True)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        with pytest.raises(lifecycle.LocalCloudError, match=r"exited with code 3(.|\n)*cannot bind"):
            lifecycle.up(port, timeout=60)
    finally:
        squatter.close()
    assert not lifecycle.pidfile(port).exists()


def test_the_server_collects_young_objects_and_freezes_the_survivors():
    """The GC policy: automatic collection off while it runs, cyclic garbage still collected, what
    survives frozen (moto's state is then never walked again), and everything as before once stopped."""
    import gc

    from localcloud.server import keep_state_out_of_gc

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector can free it

    stop = threading.Event()
    policy = threading.Thread(target=keep_state_out_of_gc, args=(stop, 0.05, 3600.0))
    try:
        policy.start()
        time.sleep(0.2)
        assert not gc.isenabled()
        survivor = [Node() for _ in range(1000)]
        garbage = Node()
        collected = gc.get_stats()[0]["collected"]
        del garbage
        deadline = time.monotonic() + 5
        while gc.get_stats()[0]["collected"] == collected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gc.get_stats()[0]["collected"] > collected  # the garbage cycle went in a young round
        assert gc.get_freeze_count() >= len(survivor)
    finally:
        stop.set()
        policy.join(5)
        gc.unfreeze()
    assert gc.isenabled()


def test_a_heavy_young_round_is_frozen_without_walking_it():
    import gc
    import weakref

    from localcloud.server import keep_state_out_of_gc

    class Node:
        def __init__(self) -> None:
            self.me = self

    stop = threading.Event()
    ready = threading.Event()
    gc.callbacks.append(lambda phase, info: ready.set() if phase == "stop" else None)
    policy = threading.Thread(target=keep_state_out_of_gc, args=(stop, 0.05, 3600.0), kwargs={"young_limit": 500})
    try:
        policy.start()
        assert ready.wait(5)  # the policy runs: light rounds collect
        frozen = gc.get_freeze_count()
        state = [Node() for _ in range(5000)]  # a burst of new state, and one cycle among it
        garbage = Node()
        alive = weakref.ref(garbage)
        del garbage
        deadline = time.monotonic() + 5
        while gc.get_freeze_count() < frozen + len(state) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a few more (light) rounds
        assert gc.get_freeze_count() >= frozen + len(state) and alive() is not None  # frozen, not walked
    finally:
        gc.callbacks.pop()
        stop.set()
        policy.join(5)
        gc.unfreeze()
    gc.collect()
    assert alive() is None  # the full collection frees it


def test_the_full_collection_waits_for_an_idle_moment():
    import gc

    from localcloud import server

    busy = threading.Event()
    busy.set()
    collected: list[int] = []
    gc.callbacks.append(lambda phase, info: collected.append(info["generation"]) if phase == "stop" else None)
    stop = threading.Event()
    policy = threading.Thread(target=server.keep_state_out_of_gc, args=(stop, 0.05, 0.0),
                              kwargs={"idle_for": lambda: 0.0 if busy.is_set() else 3600.0})
    try:
        policy.start()
        time.sleep(0.3)
        assert 2 not in collected  # due at every round, but requests keep coming
        busy.clear()
        deadline = time.monotonic() + 5
        while 2 not in collected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 2 in collected
    finally:
        gc.callbacks.pop()
        stop.set()
        policy.join(5)
        gc.unfreeze()
    assert gc.isenabled()


def test_a_private_cloud_stops_when_its_owner_is_killed(tmp_path: Path):
    """A benchmark or test session killed by a signal never reaches `down`: the cloud it started with
    `lifecycle.running` notices its owner is gone and stops, instead of running for good."""
    script = ("import sys, time\nfrom localcloud import lifecycle\n"
              "with lifecycle.running(sys.argv[1], {'RETAIL_LOCALCLOUD_EXECUTORS': 'persistence'}) as endpoint:\n"
              "    print(endpoint, flush=True)\n    time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(lifecycle.__file__).parents[1])
    try:
        endpoint = owner.stdout.readline().strip()
        port = int(endpoint.rsplit(":", 1)[1])
        health = lifecycle.health(port)
        assert health is not None
        owner.kill()  # SIGKILL: no finally, no down
        owner.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(health.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the local cloud (pid {health.pid}) outlived its owner")
    finally:
        if owner.poll() is None:
            owner.kill()
