"""Embedded Metric Format in the local cloud: documents parsed as the specification says, then a real
Powertools Metrics function deployed with plain boto3 whose log lines become CloudWatch metrics, and
PutLogEvents with AWS's EMF header."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import aws_lambda_powertools
import boto3
import pytest

from localcloud import lifecycle
from localcloud.cloudwatch import emf

STAMP = 1796580000000  # ms


def doc(**members: Any) -> dict[str, Any]:
    base = {"_aws": {"Timestamp": STAMP, "CloudWatchMetrics": [{
        "Namespace": "Retail", "Dimensions": [["service"], ["service", "channel"]],
        "Metrics": [{"Name": "Orders", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}]}]},
        "service": "orders", "channel": "web", "Orders": 3, "Latency": [12.5, 40, 7], "requestId": "r-1"}
    return base | members


def test_each_metric_once_per_dimension_set_at_the_documents_timestamp():
    [(namespace, data)] = emf.metric_data(doc())
    assert namespace == "Retail" and len(data) == 4
    moment = datetime(2026, 12, 6, 18, 0, tzinfo=timezone.utc).replace(tzinfo=None)  # moto's naive UTC
    assert data[0] == {"MetricName": "Orders", "Dimensions": [{"Name": "service", "Value": "orders"}],
                       "Timestamp": moment, "Values": [3.0], "Unit": "Count"}
    assert data[1]["Dimensions"] == [{"Name": "service", "Value": "orders"}, {"Name": "channel", "Value": "web"}]
    assert data[2]["MetricName"] == "Latency" and data[2]["Values"] == [12.5, 40.0, 7.0]
    assert data[2]["Unit"] == "Milliseconds"


def test_no_dimension_set_publishes_without_dimensions():
    document = doc()
    document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = [[]]
    [(_, data)] = emf.metric_data(document)
    assert [d["Dimensions"] for d in data] == [[], []]


@pytest.mark.parametrize("change", [
    {"Orders": "3"},  # a value that is not a number
    {"Orders": [1] * 101},  # more than 100 values
    {"service": 7},  # a dimension that is not a string
    {"_aws": {"CloudWatchMetrics": []}},  # no Timestamp
    {"_aws": {"Timestamp": STAMP, "CloudWatchMetrics": [{"Namespace": "", "Dimensions": [], "Metrics": []}]}},
])
def test_invalid_documents_publish_nothing(change: dict[str, Any]):
    with pytest.raises(emf.EMFError):
        emf.metric_data(doc(**change))


def test_only_whole_json_objects_with_aws_metadata_are_documents():
    lines = [json.dumps(doc()), "START RequestId: 1", "INFO {\"_aws\": 1} not json", '{"level": "INFO"}',
             '  ' + json.dumps(doc()) + '\n']
    assert len(list(emf.documents(lines))) == 2


def test_powertools_output_is_understood():
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="Retail", service="checkout")
    metrics.add_dimension(name="channel", value="web")
    metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=2)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=30)
    [(namespace, data)] = emf.metric_data(metrics.serialize_metric_set())
    assert namespace == "Retail"
    by_name = {d["MetricName"]: d for d in data}
    assert by_name["Orders"]["Values"] == [1.0, 2.0] and by_name["Latency"]["Unit"] == "Milliseconds"
    assert sorted(d["Name"] for d in by_name["Orders"]["Dimensions"]) == ["channel", "service"]


# --------------------------------------------------------------------------------------------------
# Through a real local cloud: a Powertools function's log lines become metrics


HANDLER = """
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

metrics = Metrics(namespace="RetailEMF", service="checkout")

@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    metrics.add_dimension(name="channel", value=event["channel"])
    for amount in event["amounts"]:
        metrics.add_metric(name="OrderValue", unit=MetricUnit.Count, value=amount)
    return {"orders": len(event["amounts"])}
"""


def powertools_layer() -> bytes:
    """Powertools and what it imports that AWS's runtime lacks, under python/ as a layer puts them."""
    site = Path(aws_lambda_powertools.__file__).parents[1]
    import typing_extensions

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted((site / "aws_lambda_powertools").rglob("*.py")):
            archive.write(file, f"python/{file.relative_to(site)}")
        archive.write(typing_extensions.__file__, "python/typing_extensions.py")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "awslambda,cloudwatch", "RETAIL_CLOUDWATCH_TICK_S": "3600"}
    with lifecycle.running(tmp_path_factory.mktemp("emf"), env) as url:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        yield lambda service: session.client(service, endpoint_url=url)


def statistics(aws: Any, namespace: str, name: str, dimensions: list[dict[str, str]]) -> dict[str, float]:
    now = datetime.now(timezone.utc)
    points = aws("cloudwatch").get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=dimensions, StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1), Period=3600, Statistics=["Sum", "SampleCount", "Maximum"])["Datapoints"]
    return {key: sum(p[key] for p in points) for key in ("Sum", "SampleCount")} if points else {}


def test_a_powertools_function_publishes_its_metrics(aws: Any):
    layer = aws("lambda").publish_layer_version(LayerName="powertools", Content={"ZipFile": powertools_layer()},
                                                CompatibleRuntimes=["python3.11"])["LayerVersionArn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "lambda.amazonaws.com"}}]})
    role = aws("iam").create_role(RoleName="emf", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", HANDLER)
    aws("lambda").create_function(FunctionName="checkout", Runtime="python3.11", Role=role, Handler="app.handler",
                                  Code={"ZipFile": code.getvalue()}, Layers=[layer], Timeout=30)
    for amounts in ([10, 20], [5]):
        result = aws("lambda").invoke(FunctionName="checkout", Payload=json.dumps({"channel": "web", "amounts": amounts}))
        assert "FunctionError" not in result, result["Payload"].read()
    dims = [{"Name": "channel", "Value": "web"}, {"Name": "service", "Value": "checkout"}]
    assert statistics(aws, "RetailEMF", "OrderValue", dims) == {"Sum": 35.0, "SampleCount": 3.0}
    cold = statistics(aws, "RetailEMF", "ColdStart", [{"Name": "function_name", "Value": "checkout"},
                                                      {"Name": "service", "Value": "checkout"}])
    assert cold == {"Sum": 1.0, "SampleCount": 1.0}
    listed = aws("cloudwatch").list_metrics(Namespace="RetailEMF", MetricName="OrderValue")["Metrics"]
    assert [sorted(d["Name"] for d in m["Dimensions"]) for m in listed] == [["channel", "service"]]


def test_put_log_events_with_the_emf_header_only(aws: Any):
    logs = aws("logs")
    logs.create_log_group(logGroupName="app")
    logs.create_log_stream(logGroupName="app", logStreamName="s")
    now_ms = int(time.time() * 1000)
    document = doc(**{"_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [
        {"Namespace": "Header", "Dimensions": [["service"]], "Metrics": [{"Name": "Orders"}]}]}})
    event = [{"timestamp": now_ms, "message": json.dumps(document)}]
    logs.put_log_events(logGroupName="app", logStreamName="s", logEvents=event)  # a plain log line
    dims = [{"Name": "service", "Value": "orders"}]
    assert statistics(aws, "Header", "Orders", dims) == {}

    def with_header(request: Any, **_: Any) -> None:
        request.headers["x-amzn-logs-format"] = "json/emf"

    emf_logs = aws("logs")
    emf_logs.meta.events.register("before-sign.cloudwatch-logs.PutLogEvents", with_header)
    emf_logs.put_log_events(logGroupName="app", logStreamName="s", logEvents=event)
    assert statistics(aws, "Header", "Orders", dims) == {"Sum": 3.0, "SampleCount": 1.0}
