"""EventBridge in the local cloud: the schedule parser and input transforms on their own, then rules
fired through a real server of its own delivering to SQS, SNS and Lambda targets."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.scheduler import rules as sch

UTC = timezone.utc
ACCOUNT = "123456789012"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_fire(expression: str, after: str) -> str:
    return sch.parse_schedule(expression).next_after(at(after)).strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------------------------------
# Schedule expressions (pure)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("rate(1 minute)", "2026-11-21 18:30:10", "2026-11-21 18:31"),
    ("rate(5 minutes)", "2026-11-21 18:30", "2026-11-21 18:35"),
    ("rate(2 hours)", "2026-11-21 18:30", "2026-11-21 20:30"),
    ("rate(1 day)", "2026-11-21 18:30", "2026-11-22 18:30"),
    ("cron(0 12 * * ? *)", "2026-11-21 18:30", "2026-11-22 12:00"),
    ("cron(0 12 * * ? *)", "2026-11-21 11:59:59", "2026-11-21 12:00"),
    ("cron(0 12 * * ? *)", "2026-11-21 12:00", "2026-11-22 12:00"),  # strictly after
    ("cron(0/15 * * * ? *)", "2026-11-21 18:31", "2026-11-21 18:45"),
    ("cron(*/20 * * * ? *)", "2026-11-21 18:41", "2026-11-21 19:00"),
    ("cron(10-50/20 * * * ? *)", "2026-11-21 18:31", "2026-11-21 18:50"),
    ("cron(0,30 8-9 * * ? *)", "2026-11-21 09:31", "2026-11-22 08:00"),
    ("cron(0/15 * ? * MON-FRI *)", "2026-11-21 18:30", "2026-11-23 00:00"),  # Saturday -> Monday
    ("cron(0 9 ? * 2-6 *)", "2026-11-21 18:30", "2026-11-23 09:00"),  # 1 = Sunday
    ("cron(0 9 ? * SUN,SAT *)", "2026-11-21 18:30", "2026-11-22 09:00"),
    ("cron(0 8 L * ? *)", "2026-11-21 18:30", "2026-11-30 08:00"),
    ("cron(0 8 L * ? *)", "2028-02-01 00:00", "2028-02-29 08:00"),  # leap year
    ("cron(0 8 L-2 * ? *)", "2026-11-21 18:30", "2026-11-28 08:00"),
    ("cron(0 8 LW * ? *)", "2026-05-01 00:00", "2026-05-29 08:00"),  # 31 May 2026 is a Sunday
    ("cron(0 8 15W * ? *)", "2026-11-01 00:00", "2026-11-16 08:00"),  # 15 Nov 2026: Sunday -> Monday
    ("cron(0 8 14W * ? *)", "2026-11-01 00:00", "2026-11-13 08:00"),  # Saturday -> Friday
    ("cron(0 8 1W * ? *)", "2026-08-01 00:00", "2026-08-03 08:00"),  # 1 Aug 2026 Saturday -> Monday 3rd
    ("cron(0 8 ? * 6L *)", "2026-11-21 18:30", "2026-11-27 08:00"),  # last Friday
    ("cron(0 8 ? * FRIL *)", "2026-11-21 18:30", "2026-11-27 08:00"),
    ("cron(0 8 ? * L *)", "2026-11-21 18:30", "2026-11-28 08:00"),  # L alone: Saturday
    ("cron(0 8 ? * 2#1 *)", "2026-11-21 18:30", "2026-12-07 08:00"),  # first Monday
    ("cron(0 8 ? * MON#3 *)", "2026-11-01 00:00", "2026-11-16 08:00"),
    ("cron(0 0 1 JAN ? 2030)", "2026-11-21 18:30", "2030-01-01 00:00"),
    ("cron(0 0 29 FEB ? 2027-2030)", "2026-11-21 18:30", "2028-02-29 00:00"),
    ("cron(15 10 ? MAR-MAY WED 2027/2)", "2026-11-21 18:30", "2027-03-03 10:15"),
    ("cron(0 0 31 * ? *)", "2026-11-21 18:30", "2026-12-31 00:00"),
])
def test_next_fire(expression: str, after: str, expected: str):
    assert next_fire(expression, after) == expected


@pytest.mark.parametrize("expression", [
    "rate(1 minutes)", "rate(2 minute)", "rate(0 minutes)", "rate(-1 minutes)", "rate(5 seconds)",
    "rate(5minutes)", "rate(1.5 hours)", "every 5 minutes",
    "cron(0 12 * * * *)",  # both day fields given
    "cron(0 12 ? * ? *)",  # neither
    "cron(60 * * * ? *)", "cron(0 24 * * ? *)", "cron(0 0 32 * ? *)", "cron(0 0 1 13 ? *)",
    "cron(0 0 ? * 8 *)", "cron(0 0 ? * 2#6 *)", "cron(0 0 1 * ? 1969)", "cron(0 12 * *)",
    "cron(0 12 * * ? * *)", "cron(0 0 1 FOO ? *)", "cron(5-1 * * * ? *)", "cron(0/0 * * * ? *)",
])
def test_invalid_expressions_are_rejected(expression: str):
    with pytest.raises(sch.ScheduleError):
        sch.parse_schedule(expression)


def test_a_schedule_that_ended_never_fires_again():
    with pytest.raises(sch.ScheduleError):
        sch.parse_schedule("cron(0 0 1 1 ? 2020)").next_after(at("2026-01-01 00:00"))


# --------------------------------------------------------------------------------------------------
# Target input (pure)

EVENT = {
    "version": "0", "id": "e-1", "detail-type": "Order Placed", "source": "shop", "account": ACCOUNT,
    "time": "2026-11-21T18:00:00Z", "region": "us-east-1", "resources": ["r1"],
    "detail": {"order": {"id": "o-1", "total": 12.5, "lines": [{"sku": "A"}]}, "note": 'say "hi"'},
}
RULE_ARN = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/r"


def render(target: dict[str, Any]) -> str:
    return sch.target_input(target, EVENT, RULE_ARN, "r")


def test_without_input_the_whole_event_is_sent():
    assert json.loads(render({})) == EVENT


def test_input_is_sent_verbatim():
    assert render({"Input": '{"mode": "nightly"}'}) == '{"mode": "nightly"}'


def test_input_path_selects_part_of_the_event():
    assert json.loads(render({"InputPath": "$.detail.order"})) == EVENT["detail"]["order"]
    assert json.loads(render({"InputPath": "$.detail.order.lines[0].sku"})) == "A"
    assert json.loads(render({"InputPath": "$['detail-type']"})) == "Order Placed"


def test_json_template_inserts_strings_inside_quotes_and_values_outside():
    body = render({"InputTransformer": {
        "InputPathsMap": {"id": "$.detail.order.id", "total": "$.detail.order.total",
                          "order": "$.detail.order", "note": "$.detail.note"},
        "InputTemplate": '{"id": <id>, "label": "order <id>", "total": <total>, "order": <order>, '
                         '"note": "<note>", "rule": "<aws.events.rule-name>"}'}})
    assert json.loads(body) == {"id": "o-1", "label": "order o-1", "total": 12.5,
                                "order": EVENT["detail"]["order"], "note": 'say "hi"', "rule": "r"}


def test_string_template_gives_the_text():
    body = render({"InputTransformer": {"InputPathsMap": {"id": "$.detail.order.id"},
                                        "InputTemplate": '"order <id> placed"'}})
    assert body == '"order o-1 placed"'


def test_predefined_event_variable_and_missing_paths():
    body = render({"InputTransformer": {"InputPathsMap": {"nope": "$.detail.absent"},
                                        "InputTemplate": '{"e": <aws.events.event>, "x": <nope>, "s": "<nope>"}'}})
    assert json.loads(body) == {"e": EVENT, "x": None, "s": ""}


def test_scheduled_event_shape():
    event = sch.scheduled_event(RULE_ARN, ACCOUNT, "us-east-1", at("2026-11-21 18:31:00"))
    assert {k: v for k, v in event.items() if k != "id"} == {
        "version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "account": ACCOUNT,
        "time": "2026-11-21T18:31:00Z", "region": "us-east-1", "resources": [RULE_ARN], "detail": {}}
    uuid.UUID(event["id"])


# --------------------------------------------------------------------------------------------------
# Through a real local cloud


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud"), {"RETAIL_LOCALCLOUD_SCHEDULER_TICK": "0.1"}) as url:
        yield url


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_queue(aws: Any) -> tuple[str, str]:
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive(aws: Any, url: str, expected: int = 1, wait_s: float = 10.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + wait_s
    while len(bodies) < expected and time.monotonic() < deadline:
        messages = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        bodies += [m["Body"] for m in messages.get("Messages", [])]
        if len(bodies) < expected:
            time.sleep(0.1)
    return bodies


def test_put_rule_rejects_what_aws_rejects(aws: Any):
    with pytest.raises(ClientError) as error:
        aws("events").put_rule(Name=unique("bad"), ScheduleExpression="cron(0 12 * * * *)")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    aws("events").put_rule(Name=unique("good"), ScheduleExpression="cron(0 8 ? * 6L *)", State="DISABLED")


def test_fire_rule_delivers_the_scheduled_event_to_sqs(aws: Any, endpoint: str):
    url, arn = make_queue(aws)
    name = unique("every-minute")
    rule_arn = aws("events").put_rule(Name=name, ScheduleExpression="rate(1 minute)")["RuleArn"]
    aws("events").put_targets(Rule=name, Targets=[
        {"Id": "whole", "Arn": arn},
        {"Id": "const", "Arn": arn, "Input": '{"mode": "nightly"}'},
        {"Id": "path", "Arn": arn, "InputPath": "$.resources"},
        {"Id": "tx", "Arn": arn, "InputTransformer": {"InputPathsMap": {"t": "$.time", "kind": "$.detail-type"},
                                                      "InputTemplate": '{"at": "<t>", "kind": <kind>}'}},
    ])
    result = sch.fire_rule(name, endpoint=endpoint)
    assert [d["Status"] for d in result["Deliveries"]] == ["delivered"] * 4
    bodies = sorted(receive(aws, url, 4))
    event = result["Event"]
    assert sorted([json.dumps(event), '{"mode": "nightly"}', json.dumps([rule_arn]),
                   json.dumps({"at": event["time"], "kind": "Scheduled Event"})]) == sorted(
        json.dumps(json.loads(b)) if b.startswith("{") or b.startswith("[") else b for b in bodies)
    assert event["detail-type"] == "Scheduled Event" and event["resources"] == [rule_arn]


def test_fire_rule_publishes_to_sns(aws: Any, endpoint: str):
    url, queue_arn = make_queue(aws)
    topic = aws("sns").create_topic(Name=unique("t"))["TopicArn"]
    aws("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    name = unique("to-sns")
    aws("events").put_rule(Name=name, ScheduleExpression="rate(5 minutes)")
    aws("events").put_targets(Rule=name, Targets=[{"Id": "sns", "Arn": topic, "Input": '{"hello": "sns"}'}])
    sch.fire_rule(name, endpoint=endpoint)
    assert receive(aws, url) == ['{"hello": "sns"}']


def test_disabled_rule_does_not_fire(aws: Any, endpoint: str):
    url, arn = make_queue(aws)
    name = unique("off")
    aws("events").put_rule(Name=name, ScheduleExpression="rate(1 minute)", State="DISABLED")
    aws("events").put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    result = sch.fire_rule(name, endpoint=endpoint)
    assert result["State"] == "DISABLED" and result["Deliveries"] == []
    aws("events").enable_rule(Name=name)
    assert len(sch.fire_rule(name, endpoint=endpoint)["Deliveries"]) == 1
    assert len(receive(aws, url)) == 1


def test_the_clock_thread_fires_enabled_rules_when_time_passes(aws: Any, endpoint: str):
    url, arn = make_queue(aws)
    on, off = unique("on"), unique("off")
    for name, state in ((on, "ENABLED"), (off, "DISABLED")):
        aws("events").put_rule(Name=name, ScheduleExpression="rate(1 minute)", State=state)
        aws("events").put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn, "Input": json.dumps({"rule": name})}])
    time.sleep(0.5)  # the scheduler thread (tick 0.1 s) plans both rules
    sch.advance_clock(61, endpoint=endpoint)
    assert [json.loads(body) for body in receive(aws, url, 2, wait_s=1.0)] == [{"rule": on}]


def test_unknown_rule_is_reported(endpoint: str):
    with pytest.raises(LookupError):
        sch.fire_rule("no-such-rule", endpoint=endpoint)


def test_event_pattern_rule_delivers_matching_events_only(aws: Any):
    url, arn = make_queue(aws)
    events = aws("events")
    name = unique("orders")
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["shop"], "detail": {"status": ["paid"]}}))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn, "InputTransformer": {
        "InputPathsMap": {"id": "$.detail.id"}, "InputTemplate": '{"paid": "<id>"}'}}])
    off = unique("off")
    events.put_rule(Name=off, EventPattern=json.dumps({"source": ["shop"]}), State="DISABLED")
    events.put_targets(Rule=off, Targets=[{"Id": "q", "Arn": arn}])
    schedule_only = unique("sched")
    events.put_rule(Name=schedule_only, ScheduleExpression="rate(1 day)")
    events.put_targets(Rule=schedule_only, Targets=[{"Id": "q", "Arn": arn}])
    events.put_events(Entries=[
        {"Source": "shop", "DetailType": "Order", "Detail": json.dumps({"status": "paid", "id": "o-1"})},
        {"Source": "shop", "DetailType": "Order", "Detail": json.dumps({"status": "open", "id": "o-2"})},
        {"Source": "other", "DetailType": "Order", "Detail": json.dumps({"status": "paid", "id": "o-3"})},
    ])
    assert [json.loads(b) for b in receive(aws, url, 2, wait_s=1.0)] == [{"paid": "o-1"}]


def test_the_clock_fires_due_rules():
    """The background loop's decision, with a fake clock: first sighting plans, due rules fire."""
    scheduler = sch.Scheduler()
    fired: list[datetime] = []
    scheduler.fire = lambda rule, moment=None: fired.append(moment) or {}  # type: ignore[method-assign]

    class Rule:
        arn, scheduled_expression, state = "arn:rule", "rate(1 minute)", "ENABLED"

    rule = Rule()
    original = sch._schedule_rules
    sch._schedule_rules = lambda: iter([rule])  # type: ignore[assignment]
    try:
        scheduler.tick(at("2026-11-21 18:00:00"))
        scheduler.tick(at("2026-11-21 18:00:59"))
        assert fired == []
        scheduler.tick(at("2026-11-21 18:01:00"))
        assert fired == [at("2026-11-21 18:01:00")]
        rule.state = "DISABLED"
        scheduler.tick(at("2026-11-21 18:02:00"))
        assert len(fired) == 1
        rule.state, rule.scheduled_expression = "ENABLED", "cron(30 18 * * ? *)"  # an update re-plans
        scheduler.tick(at("2026-11-21 18:03:00"))
        scheduler.tick(at("2026-11-21 18:29:00"))
        assert len(fired) == 1
        scheduler.tick(at("2026-11-21 18:30:00"))
        assert fired[-1] == at("2026-11-21 18:30:00")
    finally:
        sch._schedule_rules = original  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------------
# Lambda targets (need the lambda-runtime executor)

FORWARDER = """
import os, json, boto3
def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT_QUEUE"], MessageBody=json.dumps(event))
"""


def make_forwarder(aws: Any) -> tuple[str, str]:
    """A deployed function that forwards each event it receives to a fresh queue: (ARN, queue URL)."""
    url, _ = make_queue(aws)
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role_name = unique("fn")
    role = aws("iam").create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    aws("iam").put_role_policy(RoleName=role_name, PolicyName="forward", PolicyDocument=json.dumps({  # as on AWS
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", FORWARDER)
    arn = aws("lambda").create_function(
        FunctionName=unique("fwd"), Runtime="python3.11", Role=role, Handler="app.handler",
        Code={"ZipFile": buffer.getvalue()}, Timeout=10, Environment={"Variables": {"OUT_QUEUE": url}},
    )["FunctionArn"]
    return arn, url


def test_schedule_and_pattern_rules_invoke_lambda(aws: Any, endpoint: str):
    function_arn, out = make_forwarder(aws)
    events = aws("events")
    name = unique("nightly")
    rule_arn = events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": function_arn, "InputTransformer": {
        "InputPathsMap": {"rule": "$.resources[0]"}, "InputTemplate": '{"fired_by": <rule>}'}}])
    [delivery] = sch.fire_rule(name, endpoint=endpoint)["Deliveries"]
    assert delivery["Status"] == "delivered"
    assert receive(aws, out) == [json.dumps({"fired_by": rule_arn})]

    pattern = unique("paid")
    events.put_rule(Name=pattern, EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule=pattern, Targets=[{"Id": "fn", "Arn": function_arn}])
    events.put_events(Entries=[{"Source": "shop", "DetailType": "Order", "Detail": '{"id": "o-9"}'}])
    [event] = [json.loads(body) for body in receive(aws, out)]
    assert (event["source"], event["detail-type"], event["detail"]) == ("shop", "Order", {"id": "o-9"})
    assert event["time"].endswith("Z") and event["resources"] == [] and "ingestion-time" not in event


def test_lambda_targets_are_invoked_asynchronously_with_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """In process with a fake Invoker standing in for the lambda-runtime."""
    from moto import mock_aws

    from localcloud.executors import CloudContext

    calls: list[tuple[str, Any, str]] = []

    class FakeInvoker:
        def invoke(self, function: str, payload: bytes, *, invocation_type: str = "RequestResponse", **_: Any) -> None:
            calls.append((function, json.loads(payload), invocation_type))

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("RETAIL_LOCALCLOUD_SCHEDULER_TICK", "60")
    executor = sch.make_executor()
    function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
    with mock_aws():
        executor.start(CloudContext("http://fake", 0, tmp_path, {"lambda-runtime": FakeInvoker()}))
        try:
            events = boto3.client("events", region_name="us-east-1")
            events.put_rule(Name="s", ScheduleExpression="rate(1 minute)")
            events.put_targets(Rule="s", Targets=[{"Id": "f", "Arn": function_arn, "InputPath": "$.detail-type"}])
            events.put_rule(Name="p", EventPattern=json.dumps({"source": ["shop"]}))
            events.put_targets(Rule="p", Targets=[{"Id": "f", "Arn": function_arn, "Input": '{"k": 1}'}])
            events.put_events(Entries=[{"Source": "shop", "DetailType": "d", "Detail": "{}"}])
            assert calls == [(function_arn, {"k": 1}, "Event")]
            from moto.events.models import events_backends

            rule = events_backends[ACCOUNT]["us-east-1"].event_buses["default"].rules["s"]
            [delivery] = executor.fire(rule)["Deliveries"]
            assert delivery["Status"] == "delivered" and calls[-1] == (function_arn, "Scheduled Event", "Event")
        finally:
            executor.stop()
