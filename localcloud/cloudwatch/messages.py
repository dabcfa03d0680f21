"""What CloudWatch sends when an alarm changes state, in AWS's shapes: the SNS notification, the
EventBridge "CloudWatch Alarm State Change" detail, and the event a Lambda alarm action receives."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from localcloud.cloudwatch import evaluation as ev


def is_composite(alarm: Any) -> bool:
    return getattr(alarm, "rule", None) is not None


def metric_of(alarm: Any) -> tuple[str, str, list[Any], int, str | None]:
    """(namespace, metric name, dimensions, period, unit) an alarm watches; a Metrics array holding one
    MetricStat is the same thing written differently."""
    queries = [q for q in alarm.metric_data_queries or [] if q.metric_stat is not None]
    if queries:
        stat = queries[0].metric_stat
        return (stat.metric.namespace, stat.metric.metric_name, stat.metric.dimensions, int(stat.period),
                stat.unit)
    return alarm.namespace, alarm.metric_name, alarm.dimensions, int(alarm.period), alarm.unit


def statistic_of(alarm: Any) -> str:
    queries = [q for q in alarm.metric_data_queries or [] if q.metric_stat is not None]
    if queries:
        return str(queries[0].metric_stat.stat)
    return ev.check_statistic(alarm.statistic, alarm.extended_statistic)


@functools.lru_cache(maxsize=64)
def region_description(region: str) -> str:
    """"US East (N. Virginia)" for us-east-1: how alarm notifications name a region."""
    import botocore.session

    for partition in botocore.session.get_session().get_data("endpoints")["partitions"]:
        if region in partition["regions"]:
            return str(partition["regions"][region].get("description", region))
    return region


def state_change_event(alarm: Any, previous: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The detail of the "CloudWatch Alarm State Change" event CloudWatch sends to EventBridge."""
    state = {"reason": alarm.state_reason, "reasonData": alarm.state_reason_data, "timestamp": ev.iso(when),
             "value": alarm.state_value}
    if is_composite(alarm):
        configuration: dict[str, Any] = {"alarmRule": alarm.rule, "description": alarm.description}
    else:
        namespace, name, dimensions, period, _ = metric_of(alarm)
        configuration = {"description": alarm.description, "metrics": [{
            "id": f"{alarm.name}-m1", "returnData": True, "metricStat": {
                "metric": {"dimensions": {d.name: d.value for d in dimensions}, "name": name, "namespace": namespace},
                "period": period, "stat": statistic_of(alarm)}}]}
    configuration = {k: v for k, v in configuration.items() if v is not None}
    return {"alarmName": alarm.name, "configuration": configuration,
            "previousState": {k: v for k, v in previous.items() if v is not None},
            "state": {k: v for k, v in state.items() if v is not None}}


def notification(backend: Any, alarm: Any, old_state: str, when: datetime) -> dict[str, Any]:
    """The JSON message CloudWatch publishes to an SNS topic on a state change."""
    body: dict[str, Any] = {
        "AlarmName": alarm.name, "AlarmDescription": alarm.description, "AWSAccountId": backend.account_id,
        "AlarmConfigurationUpdatedTimestamp": ev.iso(alarm.configuration_updated_timestamp),
        "NewStateValue": alarm.state_value, "NewStateReason": alarm.state_reason, "StateChangeTime": ev.iso(when),
        "Region": region_description(backend.region_name), "AlarmArn": alarm.alarm_arn, "OldStateValue": old_state,
        "OKActions": list(alarm.ok_actions or []), "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
    }
    if is_composite(alarm):
        data = json.loads(alarm.state_reason_data or "{}")
        body["AlarmRule"] = alarm.rule
        body["TriggeringChildren"] = [{"Arn": t["arn"], "State": {"Value": t["state"]["value"],
                                                                  "Timestamp": t["state"]["timestamp"]}}
                                      for t in data.get("triggeringAlarms", [])]
        return body
    namespace, name, dimensions, period, unit = metric_of(alarm)
    trigger: dict[str, Any] = {"MetricName": name, "Namespace": namespace}
    if alarm.extended_statistic:
        trigger |= {"StatisticType": "ExtendedStatistic", "ExtendedStatistic": alarm.extended_statistic}
    else:
        trigger |= {"StatisticType": "Statistic", "Statistic": statistic_of(alarm).upper()}
    trigger |= {"Unit": unit, "Dimensions": [{"value": d.value, "name": d.name} for d in dimensions],
                "Period": period, "EvaluationPeriods": int(alarm.evaluation_periods)}
    if alarm.datapoints_to_alarm:
        trigger["DatapointsToAlarm"] = int(alarm.datapoints_to_alarm)
    trigger |= {"ComparisonOperator": alarm.comparison_operator, "Threshold": float(alarm.threshold),
                "TreatMissingData": alarm.treat_missing_data or "missing",
                "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile or ""}
    body["Trigger"] = trigger
    return body


def lambda_event(backend: Any, alarm: Any, previous: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The payload a Lambda function named in an alarm action receives."""
    return {"source": "aws.cloudwatch", "alarmArn": alarm.alarm_arn, "accountId": backend.account_id,
            "time": ev.iso(when), "region": backend.region_name,
            "alarmData": state_change_event(alarm, previous, when)}
