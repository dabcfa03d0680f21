"""The one teardown path removes the workbook's EventBridge schedules (notebook 07's), and only its own."""

from __future__ import annotations

import pytest

from helpers import config, teardown

pytestmark = pytest.mark.localcloud


def test_rules_of_the_prefix_go_with_their_targets_and_others_stay(endpoint: str):
    events = config.client("events")
    events.put_rule(Name="rulestest-nightly", ScheduleExpression="rate(1 day)")
    events.put_targets(Rule="rulestest-nightly", Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:123456789012:q"}])
    events.put_rule(Name="rulestestother-nightly", ScheduleExpression="rate(1 day)")
    assert teardown.inventory("rulestest")["event_rules"] == ["rulestest-nightly"]
    assert teardown.everything("rulestest")["event_rules"] == ["rulestest-nightly"]
    left = [rule["Name"] for rule in events.list_rules()["Rules"]]
    assert "rulestest-nightly" not in left and "rulestestother-nightly" in left
    assert teardown.delete_rule("rulestest-nightly") is False
    events.delete_rule(Name="rulestestother-nightly")
