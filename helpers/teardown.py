"""The one teardown path: a delete function per resource kind, `workbook_resources(prefix)` to list
what the workbook built under a prefix, and `everything(prefix)` for notebook 99.

Every notebook's `## Cleanup` makes its own delete calls visibly (`lambda_.delete_function(...)`)
inside `gone_ok()`; these functions are the same calls for code that removes a whole prefix, in
dependency order: what reads (delivery streams, mappings, APIs, functions) before what it reads from
(streams, queues, tables, buckets), the secret, and the execution roles last. Nothing is deleted that
is not named `<prefix>-...` (IAM roles must also carry the workbook's tag).

Parts of the platform add their kind here as one function each (see `EXTRA_TEARDOWNS`): the warehouse
(notebooks 06, 08) registers its delete step so that notebook 99 stays one call.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from helpers import config, iam
from helpers.apis import find_rest_api
from helpers.waiting import mapping_ready as _wait_mapping


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def delete_function(name: str) -> bool:
    """Delete a function (and its event source mappings first). False when it did not exist."""
    awslambda = config.client("lambda")
    delete_event_source_mappings(name)
    try:
        awslambda.delete_function(FunctionName=name)
    except awslambda.exceptions.ResourceNotFoundException:
        return False
    return True


def delete_event_source_mappings(function: str) -> list[str]:
    """Delete every mapping of a function; returns their UUIDs."""
    awslambda = config.client("lambda")
    try:
        mappings = [m for page in awslambda.get_paginator("list_event_source_mappings").paginate(FunctionName=function)
                    for m in page["EventSourceMappings"]]
    except awslambda.exceptions.ResourceNotFoundException:
        return []
    for mapping in mappings:
        _wait_mapping(mapping["UUID"])
        awslambda.delete_event_source_mapping(UUID=mapping["UUID"])
    return [m["UUID"] for m in mappings]


def delete_layer(name: str) -> list[int]:
    awslambda = config.client("lambda")
    versions = [v["Version"] for page in awslambda.get_paginator("list_layer_versions").paginate(LayerName=name)
                for v in page["LayerVersions"]]
    for version in versions:
        awslambda.delete_layer_version(LayerName=name, VersionNumber=version)
    return versions


def delete_rest_api(name: str) -> bool:
    """Delete the REST API with this name, and the usage plans that cover it. False when absent."""
    api_id = find_rest_api(name)
    if api_id is None:
        return False
    apigw = config.client("apigateway")
    for page in apigw.get_paginator("get_usage_plans").paginate():
        for plan in page["items"]:
            stages = [s for s in plan.get("apiStages", []) if s["apiId"] == api_id]
            if stages:
                apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                    {"op": "remove", "path": "/apiStages", "value": f"{api_id}:{s['stage']}"} for s in stages])
    _throttled(lambda: apigw.delete_rest_api(restApiId=api_id))
    return True


def _throttled(call: Callable[[], Any], seconds: float = 120.0) -> Any:
    """AWS allows one DeleteRestApi per 30 s per account: wait it out instead of failing teardown."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as error:
            if _error_code(error) != "TooManyRequestsException" or time.monotonic() > deadline:
                raise
            time.sleep(5)


def delete_stream(name: str) -> bool:
    kinesis = config.client("kinesis")
    try:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    except kinesis.exceptions.ResourceNotFoundException:
        return False
    kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    return True


def delete_queue(name: str) -> bool:
    sqs = config.client("sqs")
    try:
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        return False
    return True


def delete_table(name: str) -> bool:
    dynamodb = config.client("dynamodb")
    try:
        dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    dynamodb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    return True


def delete_bucket(name: str) -> bool:
    """Empty the bucket (every object version and delete marker) and delete it."""
    s3 = config.client("s3")
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            objects = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                       for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for first in range(0, len(objects), 1000):
                s3.delete_objects(Bucket=name, Delete={"Objects": objects[first:first + 1000], "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        return False
    return True


def delete_log_group(name: str) -> bool:
    logs = config.client("logs")
    try:
        logs.delete_log_group(logGroupName=name)
    except logs.exceptions.ResourceNotFoundException:
        return False
    return True


_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}$")


def _owned(prefix: str) -> Callable[[str], bool]:
    """Names the workbook built under `prefix` are `<prefix>-...` (lower case): exactly those."""
    if not _PREFIX_RE.match(prefix or ""):
        raise ValueError(f"refusing to tear down with prefix {prefix!r}: it must be a workbook prefix like 'retail'")
    start = prefix.lower() + "-"
    return lambda name: name.lower().startswith(start)


def workbook_resources(prefix: str | None = None) -> dict[str, list[str]]:
    """What `teardown` would remove: resource names under `prefix` (default: the settings'), by kind."""
    prefix = config.settings().prefix if prefix is None else prefix  # "" is refused, never the default
    owned = _owned(prefix)
    prefix = prefix.lower()
    awslambda, apigw = config.client("lambda"), config.client("apigateway")
    functions = sorted(f["FunctionName"] for page in awslambda.get_paginator("list_functions").paginate()
                       for f in page["Functions"] if owned(f["FunctionName"]))
    function_arns = {f["FunctionArn"] for page in awslambda.get_paginator("list_functions").paginate()
                     for f in page["Functions"] if owned(f["FunctionName"])}
    mappings = sorted(m["UUID"] for page in awslambda.get_paginator("list_event_source_mappings").paginate()
                      for m in page["EventSourceMappings"] if m.get("FunctionArn") in function_arns)
    return {
        "event_source_mappings": mappings,
        "rest_apis": sorted({a["name"] for page in apigw.get_paginator("get_rest_apis").paginate()
                             for a in page["items"] if owned(a["name"])}),
        "usage_plans": sorted(p["name"] for page in apigw.get_paginator("get_usage_plans").paginate()
                              for p in page["items"] if owned(p["name"])),
        "api_keys": sorted(k["name"] for page in apigw.get_paginator("get_api_keys").paginate()
                           for k in page["items"] if owned(k.get("name", ""))),
        "functions": functions,
        "layers": sorted(layer["LayerName"] for page in awslambda.get_paginator("list_layers").paginate()
                         for layer in page["Layers"] if owned(layer["LayerName"])),
        "log_groups": sorted(g["logGroupName"] for page in config.client("logs").get_paginator(
            "describe_log_groups").paginate(logGroupNamePrefix="/aws/lambda/")
            for g in page["logGroups"] if owned(g["logGroupName"].removeprefix("/aws/lambda/"))),
        "streams": sorted(s for page in config.client("kinesis").get_paginator("list_streams").paginate()
                          for s in page["StreamNames"] if owned(s)),
        "queues": sorted(url.rsplit("/", 1)[-1] for page in config.client("sqs").get_paginator("list_queues").paginate(
            QueueNamePrefix=prefix) for url in page.get("QueueUrls", [])
            if owned(url.rsplit("/", 1)[-1])),
        "tables": sorted(t for page in config.client("dynamodb").get_paginator("list_tables").paginate()
                         for t in page["TableNames"] if owned(t)),
        "buckets": sorted(b["Name"] for b in config.client("s3").list_buckets().get("Buckets", []) if owned(b["Name"])),
    }


def streaming(prefix: str | None = None, *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove the streaming platform named `<prefix>-...` (notebooks 02-05: mappings, APIs and their
    usage plans and keys, functions, layers, log groups, streams, queues, tables, buckets), in dependency
    order; returns what was (or, with dry_run, would be) removed. Roles and the secret: `everything`."""
    found = workbook_resources(prefix)
    if dry_run:
        return found
    awslambda, apigw = config.client("lambda"), config.client("apigateway")
    for uuid in found["event_source_mappings"]:
        _wait_mapping(uuid)
        awslambda.delete_event_source_mapping(UUID=uuid)
    for plan in [p for page in apigw.get_paginator("get_usage_plans").paginate() for p in page["items"]
                 if p["name"] in found["usage_plans"]]:
        for key in [k for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan["id"])
                    for k in page["items"]]:
            apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
        if plan.get("apiStages"):
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                {"op": "remove", "path": "/apiStages", "value": f"{s['apiId']}:{s['stage']}"}
                for s in plan["apiStages"]])
        apigw.delete_usage_plan(usagePlanId=plan["id"])
    for key in [k for page in apigw.get_paginator("get_api_keys").paginate() for k in page["items"]
                if k.get("name") in found["api_keys"]]:
        apigw.delete_api_key(apiKey=key["id"])
    for name in found["rest_apis"]:
        while delete_rest_api(name):  # several APIs may share a name
            pass
    for name in found["functions"]:
        delete_function(name)
    for name in found["layers"]:
        delete_layer(name)
    for name in found["log_groups"]:
        delete_log_group(name)
    for name in found["streams"]:
        delete_stream(name)
    for name in found["queues"]:
        delete_queue(name)
    for name in found["tables"]:
        delete_table(name)
    for name in found["buckets"]:
        delete_bucket(name)
    return found


def delete_role(role_name: str) -> bool:
    """Delete an execution role with its inline and attached policies. False when it did not exist."""
    client = config.client("iam")
    try:
        for name in client.list_role_policies(RoleName=role_name)["PolicyNames"]:
            client.delete_role_policy(RoleName=role_name, PolicyName=name)
        for attached in client.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
            client.detach_role_policy(RoleName=role_name, PolicyArn=attached["PolicyArn"])
        client.delete_role(RoleName=role_name)
    except client.exceptions.NoSuchEntityException:
        return False
    return True


def workbook_roles(prefix: str) -> list[str]:
    """The roles the workbook created under `prefix`: named `<prefix>-...` and tagged project=retail-pipelines."""
    client = config.client("iam")
    found = []
    for page in client.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            if not role["RoleName"].startswith(f"{prefix}-"):
                continue
            if iam.MANAGED_TAG in client.list_role_tags(RoleName=role["RoleName"])["Tags"]:
                found.append(role["RoleName"])
    return sorted(found)


def delete_parameter(name: str) -> bool:
    """Delete an SSM parameter (the query API's token secret). False when it did not exist."""
    ssm = config.client("ssm")
    try:
        ssm.delete_parameter(Name=name)
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def workbook_parameters(prefix: str) -> list[str]:
    """SSM parameters under `/<prefix>/` (the workbook's secrets)."""
    _owned(prefix)
    ssm = config.client("ssm")
    return sorted(p["Name"] for page in ssm.get_paginator("describe_parameters").paginate(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [f"/{prefix}/"]}])
        for p in page["Parameters"])


def inventory(prefix: str) -> dict[str, list[str]]:
    """Everything of `prefix` that `everything` removes, by kind (the streaming platform, parameters, roles)."""
    return {**workbook_resources(prefix), **telemetry_resources(prefix), **lake_catalog_resources(prefix),
            **rule_resources(prefix), "ssm_parameters": workbook_parameters(prefix), "iam_roles": workbook_roles(prefix)}


def _warehouse(prefix: str) -> dict[str, list[str]]:
    """The warehouse's delivery streams, cluster and workgroup (helpers.warehouse knows them)."""
    from helpers import resources, warehouse

    return warehouse.teardown(resources.Names(prefix=prefix, region=config.settings().region,
                                              account=config.account_id()))


def delete_http_api(api_id: str) -> bool:
    """Delete an HTTP API (API Gateway v2). False when it did not exist."""
    client = config.client("apigatewayv2")
    try:
        client.delete_api(ApiId=api_id)
    except client.exceptions.NotFoundException:
        return False
    return True


def delete_delivery_stream(name: str) -> bool:
    """Delete a Firehose delivery stream (and wait until it is gone). False when it did not exist."""
    from helpers import delivery

    return delivery.delete_delivery_stream(name)


def delete_alarm(name: str) -> bool:
    config.client("cloudwatch").delete_alarms(AlarmNames=[name])  # an unknown name is not an error
    return True


def delete_dashboard(name: str) -> bool:
    client = config.client("cloudwatch")
    try:
        client.delete_dashboards(DashboardNames=[name])
    except ClientError as error:
        if _error_code(error) not in ("ResourceNotFound", "DashboardNotFoundError"):
            raise
        return False
    return True


def delete_topic(arn: str) -> bool:
    config.client("sns").delete_topic(TopicArn=arn)  # deleting a missing topic succeeds, as on AWS
    return True


def telemetry_resources(prefix: str) -> dict[str, list[str]]:
    """Notebook 09's kinds beyond the streaming core, named `<prefix>-...`: HTTP APIs (by id), its Firehose
    delivery streams, alarms, dashboards and SNS topics (by ARN). Its functions, stream, queue, bucket and
    roles are listed with the streaming core and the roles."""
    owned = _owned(prefix)
    telemetry = f"{prefix.lower()}-telemetry-"
    apigw, cloudwatch = config.client("apigatewayv2"), config.client("cloudwatch")
    return {
        "http_apis": sorted(a["ApiId"] for a in apigw.get_apis().get("Items", []) if owned(a["Name"])),
        "telemetry_delivery_streams": sorted(
            n for n in config.client("firehose").list_delivery_streams(Limit=1000)["DeliveryStreamNames"]
            if n.lower().startswith(telemetry)),
        "alarms": sorted(a["AlarmName"] for page in cloudwatch.get_paginator("describe_alarms").paginate()
                         for a in page["MetricAlarms"] if owned(a["AlarmName"])),
        "dashboards": sorted(d["DashboardName"] for d in cloudwatch.list_dashboards().get("DashboardEntries", [])
                             if owned(d["DashboardName"])),
        "sns_topics": sorted(t["TopicArn"] for page in config.client("sns").get_paginator("list_topics").paginate()
                             for t in page["Topics"] if owned(t["TopicArn"].rsplit(":", 1)[-1])),
    }


def _telemetry(prefix: str) -> dict[str, list[str]]:
    """Remove notebook 09's kinds beyond the streaming core (`telemetry_resources`); returns what went."""
    found = telemetry_resources(prefix)
    for api_id in found["http_apis"]:
        delete_http_api(api_id)
    for name in found["telemetry_delivery_streams"]:
        delete_delivery_stream(name)
    for name in found["alarms"]:
        delete_alarm(name)
    for name in found["dashboards"]:
        delete_dashboard(name)
    for arn in found["sns_topics"]:
        delete_topic(arn)
    return found


# One delete step per part of the platform that is not the streaming core, run first (they read from it).
EXTRA_TEARDOWNS: list[Callable[[str], dict[str, list[str]]]] = [_warehouse, _telemetry]


def everything(prefix: str | None = None) -> dict[str, list[str]]:
    """Remove everything the workbook built under `prefix`, in dependency order; returns what went."""
    prefix = config.settings().prefix if prefix is None else prefix
    _owned(prefix)
    removed: dict[str, list[str]] = {}
    for step in EXTRA_TEARDOWNS:
        removed |= step(prefix)
    removed |= streaming(prefix)
    removed["ssm_parameters"] = [name for name in workbook_parameters(prefix) if delete_parameter(name)]
    removed["iam_roles"] = [name for name in workbook_roles(prefix) if delete_role(name)]
    return removed


def delete_crawler(name: str) -> bool:
    """Delete a Glue crawler. False when it did not exist."""
    glue = config.client("glue")
    try:
        glue.delete_crawler(Name=name)
    except glue.exceptions.EntityNotFoundException:
        return False
    return True


def delete_glue_database(name: str) -> bool:
    """Delete a Glue database and its tables (their S3 data stays: it is the lake's). False when absent."""
    glue = config.client("glue")
    try:
        for page in glue.get_paginator("get_tables").paginate(DatabaseName=name):
            for table in page["TableList"]:
                glue.delete_table(DatabaseName=name, Name=table["Name"])
        glue.delete_database(Name=name)
    except glue.exceptions.EntityNotFoundException:
        return False
    return True


def delete_work_group(name: str) -> bool:
    """Delete an Athena workgroup with its named queries and query history (RecursiveDeleteOption)."""
    athena = config.client("athena")
    try:
        athena.delete_work_group(WorkGroup=name, RecursiveDeleteOption=True)
    except athena.exceptions.InvalidRequestException as error:
        if "not found" not in str(error):
            raise
        return False
    return True


def lake_catalog_resources(prefix: str) -> dict[str, list[str]]:
    """Notebook 10's catalog: Glue crawlers named `<prefix>-...`, Glue databases `<prefix>_...` (hyphens
    as underscores), Athena workgroups `<prefix>-...`. Its result bucket and the crawler's role are listed
    with the buckets and roles."""
    owned = _owned(prefix)
    database_start = prefix.lower().replace("-", "_") + "_"
    glue, athena = config.client("glue"), config.client("athena")
    groups, token = [], None
    while True:  # boto3 has no paginator for ListWorkGroups
        page = athena.list_work_groups(**({"NextToken": token} if token else {}))
        groups += [g["Name"] for g in page["WorkGroups"] if owned(g["Name"])]
        if not (token := page.get("NextToken")):
            break
    return {
        "glue_crawlers": sorted(c["Name"] for page in glue.get_paginator("get_crawlers").paginate()
                                for c in page["Crawlers"] if owned(c["Name"])),
        "glue_databases": sorted(d["Name"] for page in glue.get_paginator("get_databases").paginate()
                                 for d in page["DatabaseList"] if d["Name"].lower().startswith(database_start)),
        "athena_workgroups": sorted(groups),
    }


def _lake_catalog(prefix: str) -> dict[str, list[str]]:
    """Remove notebook 10's catalog (`lake_catalog_resources`): crawlers, databases with their tables,
    workgroups with their named queries; returns what went."""
    found = lake_catalog_resources(prefix)
    for name in found["glue_crawlers"]:
        delete_crawler(name)
    for name in found["glue_databases"]:
        delete_glue_database(name)
    for name in found["athena_workgroups"]:
        delete_work_group(name)
    return found


EXTRA_TEARDOWNS.append(_lake_catalog)  # the catalog reads the lake: removed before its bucket


def delete_rule(name: str) -> bool:
    """Delete an EventBridge rule (its targets first: EventBridge refuses a rule that still has any)."""
    events = config.client("events")
    try:
        targets = [target["Id"] for target in events.list_targets_by_rule(Rule=name).get("Targets", [])]
        if targets:
            events.remove_targets(Rule=name, Ids=targets)
        events.delete_rule(Name=name)
    except events.exceptions.ResourceNotFoundException:
        return False
    return True


def rule_resources(prefix: str) -> dict[str, list[str]]:
    """EventBridge rules named `<prefix>-...` on the default bus (notebook 07's schedule)."""
    owned, events = _owned(prefix), config.client("events")
    names = [rule["Name"] for page in events.get_paginator("list_rules").paginate(NamePrefix=f"{prefix}-")
             for rule in page["Rules"] if owned(rule["Name"])]
    return {"event_rules": names}


def _rules(prefix: str) -> dict[str, list[str]]:
    """Remove the schedules first: a rule must not fire a function that the teardown is removing."""
    return {"event_rules": [name for name in rule_resources(prefix)["event_rules"] if delete_rule(name)]}


EXTRA_TEARDOWNS.insert(0, _rules)
