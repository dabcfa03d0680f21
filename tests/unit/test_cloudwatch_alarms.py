"""CloudWatch alarms in the local cloud: the evaluation arithmetic against AWS's documented tables, then
alarms through a real server of its own with plain boto3 (SNS -> SQS actions, M of N, missing data,
composite alarms, SetAlarmState, history, refusals) and metric widget images."""

from __future__ import annotations

import json
import struct
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.cloudwatch import evaluation as ev
from localcloud.cloudwatch.executor import evaluate_now

UTC = timezone.utc
NOW = datetime(2026, 12, 6, 20, 0, 0, tzinfo=UTC)

# --------------------------------------------------------------------------------------------------
# The arithmetic (pure)


def verdict(row: str, treat: str, current: str, m: int, n: int = 3) -> str | None:
    """Evaluate AWS's notation ("0 - X - X": not breaching, missing, breaching; oldest first) against
    GreaterThanThreshold 5."""
    values = [{"0": 1.0, "X": 9.0, "-": None}[c] for c in row.split()]
    starts = [NOW - timedelta(seconds=60 * (len(values) - i)) for i in range(len(values))]
    return ev.evaluate(values, starts, comparison="GreaterThanThreshold", threshold=5, evaluation_periods=n,
                       datapoints_to_alarm=m, treat_missing=treat, current=current, statistic="Average",
                       period=60, now=NOW).state


KEEP = None  # the documented "retain current state"
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


# AWS's table for 3 evaluation periods and 3 datapoints to alarm (alarms-and-missing-data)
@pytest.mark.parametrize(("row", "expected"), [
    ("0 - X - X", ("OK", "OK", "OK", "OK")),
    ("0 - - - -", ("OK", "OK", "OK", "OK")),
    ("- - - - -", ("INSUFFICIENT_DATA", KEEP, "ALARM", "OK")),
    ("0 X X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    ("- - X - -", ("ALARM", KEEP, "ALARM", "OK")),
])
def test_three_out_of_three_as_documented(row: str, expected: tuple[Any, ...]):
    assert tuple(verdict(row, treat, "OK", 3) for treat in TREATMENTS) == expected


# ... and for 3 evaluation periods, 2 datapoints to alarm
@pytest.mark.parametrize(("row", "expected"), [
    ("0 - X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    ("0 0 X 0 X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    ("0 - X - -", ("OK", "OK", "ALARM", "OK")),
    ("- - - - 0", ("OK", "OK", "ALARM", "OK")),
    ("- - - X -", ("ALARM", KEEP, "ALARM", "OK")),
])
def test_two_out_of_three_as_documented(row: str, expected: tuple[Any, ...]):
    assert tuple(verdict(row, treat, "INSUFFICIENT_DATA", 2) for treat in TREATMENTS) == expected


def test_reason_and_reason_data_are_written_as_aws_writes_them():
    values = [None, None, 20000.0, 20000.0, 20000.0]
    starts = [NOW - timedelta(seconds=60 * (5 - i)) for i in range(5)]
    result = ev.evaluate(values, starts, comparison="GreaterThanThreshold", threshold=0, evaluation_periods=3,
                         datapoints_to_alarm=1, treat_missing=None, current="OK", statistic="Average", period=60,
                         now=NOW)
    assert result.state == "ALARM"
    assert result.reason == ("Threshold Crossed: 3 out of the last 3 datapoints [20000.0 (06/12/26 19:59:00), "
                             "20000.0 (06/12/26 19:58:00), 20000.0 (06/12/26 19:57:00)] were greater than the "
                             "threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition).")
    data = result.reason_data
    assert data["version"] == "1.0" and data["period"] == 60 and data["threshold"] == 0.0
    assert data["queryDate"] == "2026-12-06T20:00:00.000+0000" and data["startDate"] == "2026-12-06T19:55:00.000+0000"
    assert data["recentDatapoints"] == [20000.0] * 3
    assert data["evaluatedDatapoints"][0] == {"timestamp": "2026-12-06T19:59:00.000+0000", "sampleCount": 1.0,
                                              "value": 20000.0}
    empty = ev.evaluate([None] * 3, starts[:3], comparison="GreaterThanThreshold", threshold=0, evaluation_periods=1,
                        datapoints_to_alarm=None, treat_missing="missing", current="OK", statistic="Sum", period=60,
                        now=NOW)
    assert empty.state == "INSUFFICIENT_DATA" and empty.reason == "Insufficient Data: 3 datapoints were unknown."
    assert [d["timestamp"] for d in empty.reason_data["evaluatedDatapoints"]] == [  # newest first, as AWS lists them
        "2026-12-06T19:57:00.000+0000", "2026-12-06T19:56:00.000+0000", "2026-12-06T19:55:00.000+0000"]


def test_statistics_of_a_period_with_values_and_statistic_sets():
    bucket = ev.Bucket(values=[1.0, 2.0, 3.0, 4.0, 10.0], sets=[(20.0, 5.0, 15.0, 2.0)])
    assert bucket.statistic("SampleCount") == 7 and bucket.statistic("Sum") == 40.0
    assert bucket.statistic("Average") == pytest.approx(40 / 7)
    assert bucket.statistic("Minimum") == 1.0 and bucket.statistic("Maximum") == 15.0
    assert bucket.statistic("p50") == 3.0 and bucket.statistic("p90") == 10.0  # nearest rank on raw values
    assert ev.Bucket(sets=[(1.0, 1.0, 1.0, 1.0)]).statistic("p99") is None
    with pytest.raises(ev.AlarmDefinitionError):
        ev.check_statistic(None, "tm99")


def test_buckets_slide_over_the_evaluation_range():
    end = NOW
    points = [(NOW - timedelta(seconds=5), 1.0), (NOW - timedelta(seconds=15), 2.0),
              (NOW - timedelta(seconds=16), (6.0, 1.0, 5.0, 2.0)), (NOW, 99.0), (NOW - timedelta(seconds=31), 7.0)]
    found = ev.buckets(points, end, 10, 3)
    assert found[0] is None and found[2].values == [1.0]  # NOW itself is past the end; 31 s ago is before the range
    assert found[1].values == [2.0] and found[1].sets == [(6.0, 1.0, 5.0, 2.0)]


def test_composite_rules():
    tree = ev.parse_rule('ALARM("cpu high") AND (OK(mem) OR NOT INSUFFICIENT_DATA(arn:aws:cloudwatch:us-east-1:1:alarm:disk))')
    assert ev.rule_children(tree) == ["cpu high", "mem", "arn:aws:cloudwatch:us-east-1:1:alarm:disk"]
    states = {"cpu high": "ALARM", "mem": "ALARM", "arn:aws:cloudwatch:us-east-1:1:alarm:disk": "OK"}
    assert ev.rule_holds(tree, states.get)
    states["arn:aws:cloudwatch:us-east-1:1:alarm:disk"] = "INSUFFICIENT_DATA"
    assert not ev.rule_holds(tree, states.get)
    assert ev.rule_holds(ev.parse_rule("TRUE OR FALSE"), states.get)
    for bad in ["ALARM(a) AND", "AT_LEAST(2, ALARM, (a, b))", "ALARM(a))"]:
        with pytest.raises(ev.AlarmDefinitionError):
            ev.parse_rule(bad)


# --------------------------------------------------------------------------------------------------
# Through a real local cloud


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # a long tick: the tests evaluate through the admin route, so every state change is theirs
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "cloudwatch", "RETAIL_CLOUDWATCH_TICK_S": "3600"}
    with lifecycle.running(tmp_path_factory.mktemp("cloudwatch"), env) as url:
        yield url


@pytest.fixture(scope="module")
def aws(endpoint: str) -> Any:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    return lambda service: session.client(service, endpoint_url=endpoint)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def topic_with_queues(aws: Any) -> tuple[str, str, str]:
    """An SNS topic with two SQS subscribers: one enveloped (the default), one RawMessageDelivery."""
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=unique("alarms"))["TopicArn"]
    urls = []
    for raw in (False, True):
        url = sqs.create_queue(QueueName=unique("alarm-q"))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"} if raw else {})
        urls.append(url)
    return topic, urls[0], urls[1]


def drain(aws: Any, url: str) -> list[str]:
    sqs, bodies = aws("sqs"), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def state(aws: Any, name: str) -> dict[str, Any]:
    found = aws("cloudwatch").describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    return (found["MetricAlarms"] + found["CompositeAlarms"])[0]


def put(aws: Any, namespace: str, metric: str, value: float, seconds_ago: float = 0, **extra: Any) -> None:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    aws("cloudwatch").put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Value": value, "Timestamp": moment, **extra}])


def test_alarm_goes_to_alarm_and_back_to_ok_with_one_sns_message_each(aws: Any, endpoint: str):
    cw = aws("cloudwatch")
    topic, enveloped, raw = topic_with_queues(aws)
    name, namespace = unique("orders-errors"), unique("Retail")
    dims = [{"Name": "service", "Value": "orders"}]
    cw.put_metric_alarm(AlarmName=name, AlarmDescription="orders failing", Namespace=namespace, MetricName="Errors",
                        Dimensions=dims, Statistic="Minimum", Period=10, EvaluationPeriods=1, Threshold=5,
                        ComparisonOperator="GreaterThanThreshold", AlarmActions=[topic], OKActions=[topic],
                        Unit="Count")
    created = state(aws, name)
    assert created["StateValue"] == "INSUFFICIENT_DATA"
    assert created["StateReason"] == "Unchecked: Initial alarm creation"
    evaluate_now(endpoint)
    assert state(aws, name)["StateValue"] == "INSUFFICIENT_DATA" and drain(aws, enveloped) == []

    put(aws, namespace, "Errors", 9, Dimensions=dims, Unit="Count")
    put(aws, namespace, "Errors", 1, Dimensions=[{"Name": "service", "Value": "other"}], Unit="Count")  # not ours
    evaluate_now(endpoint)
    alarmed = state(aws, name)
    assert alarmed["StateValue"] == "ALARM"
    assert alarmed["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [9.0 (")
    assert alarmed["StateReason"].endswith("was greater than the threshold (5.0) "
                                           "(minimum 1 datapoint for INSUFFICIENT_DATA -> ALARM transition).")
    assert json.loads(alarmed["StateReasonData"])["recentDatapoints"] == [9.0]
    [envelope] = drain(aws, enveloped)
    [body] = drain(aws, raw)
    envelope = json.loads(envelope)
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic
    assert envelope["Subject"] == f'ALARM: "{name}" in US East (N. Virginia)'
    assert envelope["Message"] == body
    message = json.loads(body)
    assert message["AlarmName"] == name and message["AlarmDescription"] == "orders failing"
    assert message["AWSAccountId"] == "123456789012" and message["Region"] == "US East (N. Virginia)"
    assert message["NewStateValue"] == "ALARM" and message["OldStateValue"] == "INSUFFICIENT_DATA"
    assert message["NewStateReason"] == alarmed["StateReason"]
    assert message["AlarmArn"] == f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
    assert message["StateChangeTime"].endswith("+0000")
    assert message["Trigger"] == {
        "MetricName": "Errors", "Namespace": namespace, "StatisticType": "Statistic", "Statistic": "MINIMUM",
        "Unit": "Count", "Dimensions": [{"value": "orders", "name": "service"}], "Period": 10, "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold", "Threshold": 5.0, "TreatMissingData": "missing",
        "EvaluateLowSampleCountPercentile": ""}

    evaluate_now(endpoint)  # no state change: no message
    assert drain(aws, enveloped) == [] and drain(aws, raw) == []

    put(aws, namespace, "Errors", 2, Dimensions=dims, Unit="Count")  # the period's minimum drops below 5
    evaluate_now(endpoint)
    assert state(aws, name)["StateValue"] == "OK"
    [recovered] = drain(aws, raw)
    assert json.loads(recovered)["NewStateValue"] == "OK" and json.loads(recovered)["OldStateValue"] == "ALARM"
    assert len(drain(aws, enveloped)) == 1

    history = cw.describe_alarm_history(AlarmName=name)["AlarmHistoryItems"]
    summaries = [item["HistorySummary"] for item in history]
    assert summaries[:2] == [f"Successfully executed action {topic}", "Alarm updated from ALARM to OK"]
    assert summaries[-1] == f'Alarm "{name}" created'
    updates = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert [json.loads(i["HistoryData"])["newState"]["stateValue"] for i in updates] == ["OK", "ALARM"]

    cw.put_metric_alarm(AlarmName=name, Namespace=namespace, MetricName="Errors", Dimensions=dims,
                        Statistic="Minimum", Period=10, EvaluationPeriods=1, Threshold=50,
                        ComparisonOperator="GreaterThanThreshold", AlarmActions=[topic])
    assert state(aws, name)["StateValue"] == "OK"  # an update keeps the state (AWS)


def test_actions_disabled_change_state_without_messages(aws: Any, endpoint: str):
    topic, _, raw = topic_with_queues(aws)
    name = unique("quiet")
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="Quiet", MetricName=name, Statistic="Sum", Period=10, EvaluationPeriods=1,
        Threshold=1, ComparisonOperator="GreaterThanThreshold", AlarmActions=[topic], ActionsEnabled=False,
        TreatMissingData="breaching")
    evaluate_now(endpoint)
    assert state(aws, name)["StateValue"] == "ALARM" and drain(aws, raw) == []


def test_m_out_of_n(aws: Any, endpoint: str):
    cw, namespace = aws("cloudwatch"), unique("MofN")
    for name, m in (("two-of-three", 2), ("three-of-three", 3)):
        cw.put_metric_alarm(AlarmName=f"{namespace}-{name}", Namespace=namespace, MetricName="Latency",
                            Statistic="Average", Period=10, EvaluationPeriods=3, DatapointsToAlarm=m, Threshold=100,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
    for seconds_ago, value in ((25, 150), (15, 20), (5, 100)):  # X 0 X, one period each
        put(aws, namespace, "Latency", value, seconds_ago)
    evaluate_now(endpoint)
    assert state(aws, f"{namespace}-two-of-three")["StateValue"] == "ALARM"
    assert state(aws, f"{namespace}-three-of-three")["StateValue"] == "OK"
    assert state(aws, f"{namespace}-two-of-three")["StateReason"].startswith(
        "Threshold Crossed: 2 out of the last 3 datapoints")


@pytest.mark.parametrize(("treat", "with_one_old_breach", "without_data"), [
    ("missing", "ALARM", "INSUFFICIENT_DATA"),
    ("ignore", "INSUFFICIENT_DATA", "INSUFFICIENT_DATA"),  # keeps the state it has
    ("breaching", "ALARM", "ALARM"),
    ("notBreaching", "OK", "OK"),
])
def test_treat_missing_data(aws: Any, endpoint: str, treat: str, with_one_old_breach: str, without_data: str):
    cw, namespace = aws("cloudwatch"), unique("Missing")
    for metric in ("Sparse", "Silent"):
        cw.put_metric_alarm(AlarmName=f"{namespace}-{metric}", Namespace=namespace, MetricName=metric,
                            Statistic="Maximum", Period=10, EvaluationPeriods=3, Threshold=5,
                            ComparisonOperator="GreaterThanThreshold", TreatMissingData=treat)
    put(aws, namespace, "Sparse", 50, seconds_ago=25)  # "- - X - -"
    evaluate_now(endpoint)
    assert state(aws, f"{namespace}-Sparse")["StateValue"] == with_one_old_breach
    assert state(aws, f"{namespace}-Silent")["StateValue"] == without_data


def test_composite_alarm_follows_its_children_and_notifies(aws: Any, endpoint: str):
    cw = aws("cloudwatch")
    topic, _, raw = topic_with_queues(aws)
    prefix = unique("comp")
    for child, treat in (("down", "breaching"), ("fine", "notBreaching")):  # no data: ALARM and OK
        cw.put_metric_alarm(AlarmName=f"{prefix}-{child}", Namespace=prefix, MetricName=child, Statistic="Sum",
                            Period=10, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                            TreatMissingData=treat)
    cw.put_composite_alarm(AlarmName=f"{prefix}-both", AlarmRule=f'ALARM("{prefix}-down") AND ALARM("{prefix}-fine")',
                           AlarmActions=[topic], OKActions=[topic])
    cw.put_composite_alarm(AlarmName=f"{prefix}-one", AlarmRule=f"ALARM({prefix}-down) AND NOT ALARM({prefix}-fine)",
                           AlarmActions=[topic], AlarmDescription="one child down")
    cw.put_composite_alarm(AlarmName=f"{prefix}-top", AlarmRule=f"ALARM({prefix}-one) OR ALARM({prefix}-both)")
    assert state(aws, f"{prefix}-one")["StateValue"] in ("INSUFFICIENT_DATA", "ALARM")
    evaluate_now(endpoint)
    assert state(aws, f"{prefix}-both")["StateValue"] == "OK"
    one = state(aws, f"{prefix}-one")
    assert one["StateValue"] == "ALARM" and one["AlarmRule"].startswith("ALARM(")
    assert json.loads(one["StateReasonData"])["triggeringAlarms"][0]["arn"].endswith(f":alarm:{prefix}-down")
    assert state(aws, f"{prefix}-top")["StateValue"] == "ALARM"  # a composite of composites settles too
    messages = sorted((json.loads(body) for body in drain(aws, raw)), key=lambda m: m["AlarmName"])
    assert [(m["AlarmName"], m["NewStateValue"]) for m in messages] == [(f"{prefix}-both", "OK"), (f"{prefix}-one", "ALARM")]
    assert messages[1]["AlarmRule"] == f"ALARM({prefix}-down) AND NOT ALARM({prefix}-fine)"
    assert messages[1]["TriggeringChildren"][0]["State"]["Value"] == "ALARM"
    listed = cw.describe_alarms(AlarmNamePrefix=prefix)
    assert len(listed["MetricAlarms"]) == 2 and listed["CompositeAlarms"] == []  # AWS: metric alarms by default
    history = cw.describe_alarm_history(AlarmName=f"{prefix}-one", AlarmTypes=["CompositeAlarm"])
    assert "Alarm updated from INSUFFICIENT_DATA to ALARM" in [i["HistorySummary"] for i in history["AlarmHistoryItems"]]


def test_set_alarm_state_acts_and_the_next_evaluation_corrects_it(aws: Any, endpoint: str):
    cw = aws("cloudwatch")
    topic, _, raw = topic_with_queues(aws)
    name = unique("forced")
    cw.put_metric_alarm(AlarmName=name, Namespace="Forced", MetricName=name, Statistic="Sum", Period=10,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                        TreatMissingData="breaching", AlarmActions=[topic], OKActions=[topic])
    evaluate_now(endpoint)
    assert [json.loads(b)["NewStateValue"] for b in drain(aws, raw)] == ["ALARM"]
    cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="testing the pager")
    assert state(aws, name)["StateValue"] == "OK" and state(aws, name)["StateReason"] == "testing the pager"
    assert [json.loads(b)["NewStateReason"] for b in drain(aws, raw)] == ["testing the pager"]
    cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="again")  # no change: no action
    assert drain(aws, raw) == []
    evaluate_now(endpoint)
    assert state(aws, name)["StateValue"] == "ALARM" and len(drain(aws, raw)) == 1


def test_what_the_local_cloud_cannot_evaluate_is_refused_at_put(aws: Any):
    cw = aws("cloudwatch")
    base = dict(EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    with pytest.raises(ClientError, match="PutMetricAlarm: metric math"):
        cw.put_metric_alarm(AlarmName=unique("math"), Metrics=[
            {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "M"}, "Period": 60, "Stat": "Sum"},
             "ReturnData": False},
            {"Id": "e1", "Expression": "m1 * 2", "ReturnData": True}], **base)
    with pytest.raises(ClientError, match="SNS topic and Lambda function actions only"):
        cw.put_metric_alarm(AlarmName=unique("ec2"), Namespace="N", MetricName="M", Statistic="Sum", Period=60,
                            AlarmActions=["arn:aws:automate:us-east-1:ec2:stop"], **base)
    with pytest.raises(ClientError, match="PutCompositeAlarm: AlarmRule"):
        cw.put_composite_alarm(AlarmName=unique("bad"), AlarmRule="AT_LEAST(2, ALARM, (a, b))")


def test_metric_widget_image_is_a_png_of_the_requested_size(aws: Any):
    cw, namespace = aws("cloudwatch"), unique("Widget")
    for seconds_ago, value in ((250, 3), (130, 8), (10, 5)):
        put(aws, namespace, "Orders", value, seconds_ago, Dimensions=[{"Name": "shop", "Value": "uk"}])
    definition = {"metrics": [[namespace, "Orders", "shop", "uk", {"stat": "Sum", "label": "orders"}],
                              [".", ".", ".", ".", {"stat": "Maximum"}]],
                  "view": "timeSeries", "period": 60, "start": "-PT10M", "title": "Orders", "width": 640,
                  "height": 320, "annotations": {"horizontal": [{"value": 7, "label": "target"}]}}
    for view in ("timeSeries", "singleValue"):
        image = cw.get_metric_widget_image(MetricWidget=json.dumps({**definition, "view": view}))["MetricWidgetImage"]
        assert image[:8] == b"\x89PNG\r\n\x1a\n" and image[12:16] == b"IHDR"
        assert struct.unpack(">II", image[16:24]) == (640, 320)
    with pytest.raises(ClientError, match="view 'pie' is not rendered"):
        cw.get_metric_widget_image(MetricWidget=json.dumps({**definition, "view": "pie"}))
    dashboard = json.dumps({"widgets": [{"type": "metric", "properties": definition}]})
    cw.put_dashboard(DashboardName=namespace, DashboardBody=dashboard)
    assert json.loads(cw.get_dashboard(DashboardName=namespace)["DashboardBody"]) == json.loads(dashboard)


def test_the_clock_evaluates_without_being_asked(tmp_path: Any):
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "cloudwatch", "RETAIL_CLOUDWATCH_TICK_S": "1"}
    with lifecycle.running(tmp_path, env) as url:
        cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        cw.put_metric_alarm(AlarmName="clock", Namespace="Clock", MetricName="Beat", Statistic="Maximum", Period=10,
                            EvaluationPeriods=1, Threshold=5, ComparisonOperator="GreaterThanThreshold")
        cw.put_metric_data(Namespace="Clock", MetricData=[{"MetricName": "Beat", "Value": 6}])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if cw.describe_alarms(AlarmNames=["clock"])["MetricAlarms"][0]["StateValue"] == "ALARM":
                break
            time.sleep(0.2)
        assert cw.describe_alarms(AlarmNames=["clock"])["MetricAlarms"][0]["StateValue"] == "ALARM"


def test_state_and_history_survive_a_restart(tmp_path: Any):
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "persistence,cloudwatch", "RETAIL_CLOUDWATCH_TICK_S": "3600"}
    with lifecycle.running(tmp_path, env) as url:
        port = int(url.rsplit(":", 1)[1])
        cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        cw.put_metric_alarm(AlarmName="kept", Namespace="Kept", MetricName="M", Statistic="Sum", Period=10,
                            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                            TreatMissingData="breaching")
        evaluate_now(url)
        lifecycle.down(port)  # state kept
        assert lifecycle.up(port) == url
        assert cw.describe_alarms(AlarmNames=["kept"])["MetricAlarms"][0]["StateValue"] == "ALARM"
        summaries = [i["HistorySummary"] for i in cw.describe_alarm_history(AlarmName="kept")["AlarmHistoryItems"]]
        assert summaries == ["Alarm updated from INSUFFICIENT_DATA to ALARM", 'Alarm "kept" created']


def test_a_state_change_posted_from_outside_is_refused(aws: Any, endpoint: str):
    """The route state changes are journaled through answers the local cloud itself, never a client."""
    import urllib.error
    import urllib.request

    from localcloud.persistence.effects import pack

    name = unique("guarded")
    aws("cloudwatch").put_metric_alarm(AlarmName=name, Namespace="Guarded", MetricName="M", Statistic="Sum",
                                       Period=60, EvaluationPeriods=1, Threshold=1,
                                       ComparisonOperator="GreaterThanThreshold")
    forged = pack({"kind": "transition", "account": "123456789012", "region": "us-east-1", "alarm": name,
                   "from": "INSUFFICIENT_DATA", "to": "ALARM", "reason": "forged", "reason_data": {},
                   "when": "2026-01-01T00:00:00"})
    request = urllib.request.Request(f"{endpoint}/_localcloud/effects/cloudwatch", data=forged, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert state(aws, name)["StateValue"] == "INSUFFICIENT_DATA"


def test_state_changes_reach_eventbridge_rules(aws: Any, endpoint: str):
    events, sqs = aws("events"), aws("sqs")
    url = sqs.create_queue(QueueName=unique("alarm-events"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = unique("evented")
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.cloudwatch"],
                                                        "detail-type": ["CloudWatch Alarm State Change"],
                                                        "detail": {"alarmName": [name]}}))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name, AlarmDescription="evented", Namespace="Evented", MetricName="M",
        Dimensions=[{"Name": "shop", "Value": "uk"}], Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="breaching")
    evaluate_now(endpoint)
    [event] = [json.loads(body) for body in drain(aws, url)]
    assert event["source"] == "aws.cloudwatch" and event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["resources"] == [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"]
    detail = event["detail"]
    assert detail["alarmName"] == name
    assert detail["state"]["value"] == "ALARM" and detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    assert detail["state"]["reason"].startswith("Threshold Crossed: no datapoints were received for 1 period")
    assert detail["configuration"]["description"] == "evented"
    assert detail["configuration"]["metrics"][0]["metricStat"] == {
        "metric": {"dimensions": {"shop": "uk"}, "name": "M", "namespace": "Evented"}, "period": 10, "stat": "Sum"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"Period": 15}, "Period 15 is not valid"),
    ({"Period": 60, "EvaluationPeriods": 1441}, "at most one day"),
    ({"Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 3}, "DatapointsToAlarm must be between"),
])
def test_aws_limits_on_periods(aws: Any, settings: dict[str, Any], message: str):
    arguments = {"EvaluationPeriods": 1, **settings}
    with pytest.raises(ClientError, match=message) as caught:
        aws("cloudwatch").put_metric_alarm(AlarmName=unique("limits"), Namespace="N", MetricName="M",
                                           Statistic="Sum", Threshold=1, ComparisonOperator="GreaterThanThreshold",
                                           **arguments)
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_alarm_on_an_aws_metric_moto_provides(aws: Any, endpoint: str):
    bucket = unique("lake")
    aws("s3").create_bucket(Bucket=bucket)
    for key in ("a", "b", "c"):
        aws("s3").put_object(Bucket=bucket, Key=key, Body=b"x")
    name = unique("objects")
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="AWS/S3", MetricName="NumberOfObjects", Statistic="Average", Period=86400,
        EvaluationPeriods=1, Threshold=2, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "StorageType", "Value": "AllStorageTypes"}, {"Name": "BucketName", "Value": bucket}])
    evaluate_now(endpoint)
    assert state(aws, name)["StateValue"] == "ALARM"
    assert json.loads(state(aws, name)["StateReasonData"])["recentDatapoints"] == [3.0]


# --------------------------------------------------------------------------------------------------
# Lambda alarm actions (a local cloud with the Lambda runtime)

FORWARDER = """
import json, os, boto3
def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT_QUEUE"], MessageBody=json.dumps(event))
"""


@pytest.fixture(scope="module")
def with_lambda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "awslambda,cloudwatch", "RETAIL_CLOUDWATCH_TICK_S": "3600"}
    with lifecycle.running(tmp_path_factory.mktemp("cloudwatch-lambda"), env) as url:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        yield url, (lambda service: session.client(service, endpoint_url=url))


def test_lambda_action_needs_permission_then_receives_the_alarm_event(with_lambda: tuple[str, Any]):
    import io
    import zipfile

    url, aws = with_lambda
    queue = aws("sqs").create_queue(QueueName=unique("pager"))["QueueUrl"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", FORWARDER)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "lambda.amazonaws.com"}}]})
    role_name = unique("pager")
    role = aws("iam").create_role(RoleName=role_name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    queue_arn = aws("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws("iam").put_role_policy(RoleName=role_name, PolicyName="forward", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}]}))
    function = aws("lambda").create_function(
        FunctionName=unique("pager"), Runtime="python3.11", Role=role, Handler="app.handler",
        Code={"ZipFile": code.getvalue()}, Environment={"Variables": {"OUT_QUEUE": queue}})["FunctionArn"]
    name = unique("paged")
    cw = aws("cloudwatch")
    cw.put_metric_alarm(AlarmName=name, AlarmDescription="pages", Namespace="Paged", MetricName="M",
                        Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                        ComparisonOperator="GreaterThanThreshold", TreatMissingData="breaching",
                        AlarmActions=[function], OKActions=[function])
    evaluate_now(url)
    [failed] = cw.describe_alarm_history(AlarmName=name, HistoryItemType="Action")["AlarmHistoryItems"]
    assert failed["HistorySummary"] == f"Failed to execute action {function}"
    assert "not authorized" in json.loads(failed["HistoryData"])["error"]

    alarm_arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
    aws("lambda").add_permission(FunctionName=function, StatementId="alarms", Action="lambda:InvokeFunction",
                                 Principal="lambda.alarms.cloudwatch.amazonaws.com", SourceArn=alarm_arn)
    cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="drill")
    deadline, bodies = time.monotonic() + 30, []
    while not bodies and time.monotonic() < deadline:
        bodies = drain(aws, queue)
        time.sleep(0.2)
    [event] = [json.loads(body) for body in bodies]
    assert event["source"] == "aws.cloudwatch" and event["alarmArn"] == alarm_arn
    assert event["accountId"] == "123456789012" and event["region"] == "us-east-1"
    data = event["alarmData"]
    assert data["alarmName"] == name and data["state"]["value"] == "OK" and data["state"]["reason"] == "drill"
    assert data["previousState"]["value"] == "ALARM"
    assert data["configuration"]["description"] == "pages"
    assert data["configuration"]["metrics"][0]["metricStat"]["metric"] == {"dimensions": {}, "name": "M",
                                                                          "namespace": "Paged"}
