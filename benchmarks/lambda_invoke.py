"""Lambda invoke latency through the local runtime, on a local cloud of its own.

- cold: create a function and invoke it once (worker spawn + import of boto3 + the call), median of 5;
- warm: p50/p99 of 300 RequestResponse invokes of a no-op handler through boto3 over HTTP;

Run: `python -m benchmarks --only lambda` (or `python -m benchmarks.lambda_invoke`).
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from typing import Any

HANDLER = "import boto3\n\ndef handler(event, context):\n    return {'ok': True}\n"


def _bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return buffer.getvalue()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2), "n": len(ordered)}


def run() -> dict[str, Any]:
    import boto3

    from localcloud import lifecycle

    with lifecycle.running(tempfile.mkdtemp(prefix="bench-lambda-")) as endpoint:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        lam, iam = session.client("lambda", endpoint_url=endpoint), session.client("iam", endpoint_url=endpoint)
        role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        colds = []
        for i in range(5):
            lam.create_function(FunctionName=f"cold-{i}", Runtime="python3.11", Role=role, Handler="app.handler",
                                Code={"ZipFile": _bundle()})
            started = time.perf_counter()
            lam.invoke(FunctionName=f"cold-{i}", Payload=b"{}")
            colds.append(time.perf_counter() - started)
        warm = []
        for _ in range(300):
            started = time.perf_counter()
            body = lam.invoke(FunctionName="cold-0", Payload=json.dumps({"n": 1}))["Payload"].read()
            warm.append(time.perf_counter() - started)
        assert json.loads(body) == {"ok": True}
    return {"cold_invoke_s": round(statistics.median(colds), 3), "warm_invoke": _percentiles(warm)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
