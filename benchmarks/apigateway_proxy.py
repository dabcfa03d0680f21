"""A Lambda proxy REST API (AWS_PROXY on GET /bench) on a local cloud of its own, under load.

Threads, each with its own keep-alive http.client connection to 127.0.0.1, send GET requests to
`/restapis/{api}/bench/_user_request_/bench` until REQUESTS are done or TIME_LIMIT_S has passed;
the result is requests/s over the whole run and p50/p99 latency of the successful requests.
Run: `python -m benchmarks --only apigateway` (or `python -m benchmarks.apigateway_proxy`).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from typing import Any

REQUESTS = int(os.environ.get("BENCH_APIGW_REQUESTS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_APIGW_CONCURRENCY", "8"))
TIME_LIMIT_S = float(os.environ.get("BENCH_APIGW_TIME_LIMIT_S", "60"))
WARMUP = 20

HANDLER = '''
import json


def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"path": event["path"], "q": event["queryStringParameters"]})}
'''


def _bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return buffer.getvalue()


def _deploy_api(endpoint: str) -> str:
    """The function and the proxy API, created with plain boto3 calls; returns the request path."""
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    iam, awslambda, apigw = (session.client(name, endpoint_url=endpoint) for name in ("iam", "lambda", "apigateway"))
    role = iam.create_role(RoleName="bench-apigw", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function = awslambda.create_function(FunctionName="bench-proxy", Runtime="python3.11", Role=role,
                                         Handler="app.handler", Code={"ZipFile": _bundle()})["FunctionArn"]
    awslambda.get_waiter("function_active_v2").wait(FunctionName="bench-proxy")
    api = apigw.create_rest_api(name="bench")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    resource = apigw.create_resource(restApiId=api, parentId=root, pathPart="bench")["id"]
    apigw.put_method(restApiId=api, resourceId=resource, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=resource, httpMethod="GET", type="AWS_PROXY",
                          integrationHttpMethod="POST",
                          uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{function}/invocations")
    apigw.create_deployment(restApiId=api, stageName="bench")
    return f"/restapis/{api}/bench/_user_request_/bench?x=1"


class _Load:
    """Shared counters of the load generator."""

    def __init__(self, total: int, deadline: float):
        self.remaining, self.deadline = total, deadline
        self.latencies: list[float] = []
        self.errors = 0
        self.lock = threading.Lock()

    def claim(self) -> bool:
        with self.lock:
            if self.remaining <= 0 or time.monotonic() > self.deadline:
                return False
            self.remaining -= 1
            return True

    def record(self, seconds: float, ok: bool) -> None:
        with self.lock:
            if ok:
                self.latencies.append(seconds)
            else:
                self.errors += 1


def _worker(port: int, path: str, load: _Load) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while load.claim():
            started = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                load.record(time.perf_counter() - started, response.status == 200)
            except (OSError, http.client.HTTPException):
                load.record(time.perf_counter() - started, False)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    finally:
        connection.close()


def _drive(port: int, path: str, total: int, concurrency: int, time_limit: float) -> tuple[_Load, float]:
    load = _Load(total, time.monotonic() + time_limit)
    threads = [threading.Thread(target=_worker, args=(port, path, load), daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + 60)
    return load, time.perf_counter() - started


def run() -> dict[str, Any]:
    from localcloud import lifecycle

    os.environ["RETAIL_LOCALCLOUD_HOME"] = tempfile.mkdtemp(prefix="bench-apigw-")
    port = lifecycle.free_port()
    endpoint = lifecycle.up(port)
    try:
        path = _deploy_api(endpoint)
        warm, _ = _drive(port, path, WARMUP, 1, 60)
        if warm.errors:
            return {"error": f"{warm.errors} of {WARMUP} warm-up requests failed; see {lifecycle.logfile(port)}"}
        load, elapsed = _drive(port, path, REQUESTS, CONCURRENCY, TIME_LIMIT_S)
    finally:
        lifecycle.down(port)
    ordered = sorted(load.latencies)
    done = len(ordered)
    return {
        "requests": done + load.errors, "errors": load.errors, "concurrency": CONCURRENCY,
        "seconds": round(elapsed, 2), "requests_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(1000 * statistics.median(ordered), 2) if ordered else None,
        "p99_ms": round(1000 * ordered[min(done - 1, int(0.99 * done))], 2) if ordered else None,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
