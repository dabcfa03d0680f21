"""The local cloud's trace (localcloud/trace.py): spans of one API Gateway request's steps carry its id,
process-wide pauses (garbage collection, a snapshot's fork and child) are there too, and the window
asked for is what `/_localcloud/trace` answers."""

from __future__ import annotations

import gc
import http.client
import io
import json
import os
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from localcloud import lifecycle, trace
from localcloud.persistence import snapshots


def test_a_span_times_its_block_and_carries_the_bound_request() -> None:
    started = time.time()
    with trace.bind("req-1"):
        with trace.span("unit", "outer", extra=1) as details:
            time.sleep(0.02)
            details["learned"] = "inside"
    with trace.span("unit", "unbound"):
        pass
    found = [s for s in trace.spans(started) if s["kind"] == "unit"]
    outer = next(s for s in found if s["name"] == "outer")
    assert 15 <= outer["ms"] < 1000 and outer["start"] >= started - 0.001
    assert (outer["trace"], outer["extra"], outer["learned"]) == ("req-1", 1, "inside")
    assert "trace" not in next(s for s in found if s["name"] == "unbound")


def test_spans_outside_the_window_are_left_out_and_open_ones_are_listed_until_they_end() -> None:
    trace.record("unit", "old", time.time() - 100, 0.5)
    since = time.time()
    token = trace.begin("unit", "long")
    time.sleep(0.01)
    names = {s["name"]: s for s in trace.spans(since) if s["kind"] == "unit"}
    assert "old" not in names and names["long"]["open"] is True and names["long"]["ms"] >= 5
    trace.end(token)
    ended = next(s for s in trace.spans(since) if s["kind"] == "unit" and s["name"] == "long")
    assert "open" not in ended


def test_garbage_collections_become_spans() -> None:
    trace.watch_gc()
    since = time.time()
    gc.collect(0)
    assert any(s["kind"] == "gc" and s["name"] == "gen0" for s in trace.spans(since))


def test_a_late_wake_up_is_a_stall() -> None:
    stop = threading.Event()
    watcher = threading.Thread(target=trace.watch_stalls, args=(stop, 0.002, 0.005), daemon=True)
    since = time.time()
    watcher.start()
    time.sleep(0.05)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.05)  # this thread keeps the GIL 50 ms at a time: the watcher wakes late
    try:
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:
            sum(range(10_000))
    finally:
        sys.setswitchinterval(interval)
    stop.set()
    watcher.join(2)
    assert [s for s in trace.spans(since) if s["kind"] == "stall" and s["ms"] >= 5]


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_a_snapshot_child_runs_at_idle_priority() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        snapshots.run_in_background()
        os.write(write, str(os.sched_getscheduler(0)).encode())
        os._exit(0)
    os.close(write)
    policy = int(os.read(read, 16))
    os.waitpid(pid, 0)
    os.close(read)
    assert policy == os.SCHED_IDLE


@pytest.mark.skipif(not hasattr(os, "fork"), reason="snapshots fork")
def test_a_periodic_snapshot_shows_its_freeze_its_fork_and_its_child(tmp_path: Path) -> None:
    since = time.time()
    snapshots.save_in_child(tmp_path / snapshots.SNAPSHOT_FILE)
    spans = {s["name"]: s for s in trace.spans(since) if s["kind"] == "snapshot"}
    assert set(spans) == {"freeze", "fork", "child"}
    assert spans["child"]["child"] == spans["fork"]["child"] == spans["freeze"]["child"]
    freeze, fork, child = spans["freeze"], spans["fork"], spans["child"]
    slack = 0.002  # the spans' starts are wall-clock times, their lengths perf_counter: allow for rounding
    assert freeze["start"] <= fork["start"] + slack  # the journal is held still before the fork
    assert fork["start"] + fork["ms"] / 1000 <= child["start"] + slack  # the child is waited for after it
    assert child["ms"] > 0


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc").is_dir(), reason="snapshots fork; reads /proc")
def test_a_pickling_child_is_stopped_while_requests_come_and_continued_in_the_gaps() -> None:
    busy = threading.Event()
    busy.set()
    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)  # "pickling": only the time it is let run counts
        os._exit(0)
    since = time.time()
    waiter = threading.Thread(target=lambda: snapshots.wait_paced(pid, busy.is_set, 60.0))
    waiter.start()
    time.sleep(0.2)
    assert _state(pid) == "T"  # stopped while busy
    time.sleep(0.8)
    assert waiter.is_alive() and _state(pid) == "T"  # still held: its 0.5 s have not run
    busy.clear()
    waiter.join(5)
    assert not waiter.is_alive()
    paused = [s for s in trace.spans(since) if s["kind"] == "snapshot" and s["name"] == "paused"]
    assert len(paused) == 1 and paused[0]["ms"] >= 900


@pytest.mark.skipif(not hasattr(os, "fork"), reason="snapshots fork")
def test_a_child_held_up_to_its_limit_then_runs_to_its_end() -> None:
    pid = os.fork()
    if pid == 0:
        time.sleep(0.1)
        os._exit(7)
    started = time.monotonic()
    status = snapshots.wait_paced(pid, lambda: True, 0.3)  # always busy: held 0.3 s, then let go
    assert os.waitstatus_to_exitcode(status) == 7 and 0.3 <= time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------------
# Inside a local cloud


AUTHORIZER = '''
def handler(event, context):
    return {"principalId": "me", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]},
        "context": {"who": "me"}}
'''

PROXY = '''
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"]["who"])}
'''


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud")) as url:
        yield url


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _function(endpoint: str, name: str, source: str, role: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    awslambda = _client(endpoint, "lambda")
    arn = awslambda.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                                    Code={"ZipFile": buffer.getvalue()})["FunctionArn"]
    awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
    awslambda.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction",
                             Principal="apigateway.amazonaws.com")
    return arn


def _uri(arn: str) -> str:
    return f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"


def _get(endpoint: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", int(endpoint.rsplit(":", 1)[1]), timeout=60)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.getheader("x-amzn-RequestId"), answer.read()
    finally:
        connection.close()


def test_an_api_requests_steps_are_traced_under_its_request_id(endpoint: str) -> None:
    role = _client(endpoint, "iam").create_role(RoleName="traced", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    authorizer_arn = _function(endpoint, "traced-authorizer", AUTHORIZER, role)
    proxy_arn = _function(endpoint, "traced-proxy", PROXY, role)
    apigw = _client(endpoint, "apigateway")
    api = apigw.create_rest_api(name="traced")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    resource = apigw.create_resource(restApiId=api, parentId=root, pathPart="who")["id"]
    authorizer = apigw.create_authorizer(restApiId=api, name="token", type="TOKEN", authorizerUri=_uri(authorizer_arn),
                                         identitySource="method.request.header.Authorization")["id"]
    apigw.put_method(restApiId=api, resourceId=resource, httpMethod="GET", authorizationType="CUSTOM",
                     authorizerId=authorizer)
    apigw.put_integration(restApiId=api, resourceId=resource, httpMethod="GET", type="AWS_PROXY",
                          integrationHttpMethod="POST", uri=_uri(proxy_arn))
    apigw.create_deployment(restApiId=api, stageName="v1")

    since = time.time()
    status, request_id, body = _get(endpoint, f"/restapis/{api}/v1/_user_request_/who", {"Authorization": "t1"})
    assert (status, json.loads(body)) == (200, "me")
    again, second_id, _ = _get(endpoint, f"/restapis/{api}/v1/_user_request_/who", {"Authorization": "t1"})
    assert again == 200
    answer = json.loads(_get(endpoint, f"{trace.TRACE_PATH}?since={since}&until={time.time() + 1}")[2])
    spans = answer["spans"]
    mine = [(s["kind"], s["name"], s.get("function")) for s in spans if s.get("trace") == request_id]
    assert ("apigateway", "request", None) in mine and ("apigateway", "integration", None) in mine
    assert ("apigateway", "authorizer-invoke", None) in mine  # the first call with this token ran it
    for step in ("acquire", "run", "output", "logs"):
        assert ("lambda", step, "traced-authorizer") in mine and ("lambda", step, "traced-proxy") in mine
    cached = [(s["kind"], s["name"]) for s in spans if s.get("trace") == second_id]
    assert ("apigateway", "authorization") in cached
    assert ("apigateway", "authorizer-invoke") not in cached  # the authorizer's answer was cached (TTL 300 s)
    run = next(s for s in spans if s.get("trace") == request_id and s["name"] == "output"
               and s["function"] == "traced-proxy")
    assert run["handler_ms"] is not None and run["handler_cpu_ms"] is not None
    assert any(s["kind"] == "http" and s["name"].startswith("GET /restapis/") and "cpu_ms" in s for s in spans)
    assert sum(1 for s in spans if s["kind"] == "apigateway" and s["name"] == "request") == 2
    assert all(since - 1 <= s["start"] + s["ms"] / 1000 for s in spans)


def test_the_trace_is_not_behind_iam_and_answers_an_empty_window(endpoint: str) -> None:
    status, _, body = _get(endpoint, f"{trace.TRACE_PATH}?since=0&until=1")
    assert status == 200 and json.loads(body)["spans"] == []
