"""CloudWatch alarm latency on a local cloud of its own: from PutMetricData of a breaching datapoint to
the alarm's SNS message arriving on an SQS queue, with the default evaluation tick (10 s) and a 10 s
period. Each sample waits a random part of a tick first (a datapoint arrives at any moment of the
clock); median and max of 5, against the target of one period + 2 s.
Run: `python -m benchmarks --only alarms` (or `python -m benchmarks.alarms`).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from typing import Any

SAMPLES = 5
PERIOD_S = 10
TARGET_S = PERIOD_S + 2
TIMEOUT_S = 60.0


def _wait_state(cw: Any, name: str, wanted: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"alarm {name} never reached {wanted}")
        time.sleep(0.1)


def _sample(cw: Any, sqs: Any, queue_url: str, topic: str, index: int, pause: float) -> float:
    name = f"bench-latency-{index}"
    cw.put_metric_alarm(AlarmName=name, Namespace="Bench", MetricName=name, Statistic="Maximum", Period=PERIOD_S,
                        EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold",
                        TreatMissingData="notBreaching", AlarmActions=[topic])
    _wait_state(cw, name, "OK")  # evaluated right after creation
    time.sleep(pause)
    started = time.perf_counter()
    cw.put_metric_data(Namespace="Bench", MetricData=[{"MetricName": name, "Value": 9}])
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1,
                                           MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(json.loads(message["Body"])["Message"])
            if body["AlarmName"] == name and body["NewStateValue"] == "ALARM":
                return time.perf_counter() - started
    raise TimeoutError(f"no ALARM message for {name}")


def run() -> dict[str, Any]:
    import boto3

    from localcloud import lifecycle

    randomness = random.Random(15)
    with lifecycle.running(tempfile.mkdtemp(prefix="bench-alarms-"), {"RETAIL_CLOUDWATCH_TICK_S": "10"}) as url:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        cw, sns, sqs = (session.client(s, endpoint_url=url) for s in ("cloudwatch", "sns", "sqs"))
        topic = sns.create_topic(Name="bench-alarms")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="bench-alarms")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        samples = [_sample(cw, sqs, queue_url, topic, i, randomness.uniform(0, 10)) for i in range(SAMPLES)]
    median = statistics.median(samples)
    return {"tick_s": 10, "period_s": PERIOD_S, "samples_s": [round(s, 2) for s in samples],
            "median_s": round(median, 2), "max_s": round(max(samples), 2), "target_s": TARGET_S,
            "met_target": max(samples) <= TARGET_S}


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
