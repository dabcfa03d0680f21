"""Actions and resources of the JSON- and query-protocol services (DynamoDB, Kinesis, SQS, SNS, SSM,
Secrets Manager, Logs, Firehose, EventBridge, CloudWatch, redshift-data, Glue, Athena, KMS, IAM, STS,
Comprehend), per the Service Authorization Reference: the action is `<prefix>:<Operation>` and the
resource is built from the parameter that names it; an operation with no resource type is asked on "*"."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Mapping

from localcloud.iam.enforcement.asks import Ask, Request, Unmapped, prefix

# Operations whose Service Authorization Reference entry has no resource type (asked on "*").
STAR_OPERATIONS: dict[str, frozenset[str]] = {
    "dynamodb": frozenset({"ListTables", "DescribeLimits", "DescribeEndpoints", "ListBackups", "ListImports",
                           "ListExports", "ListGlobalTables", "ListStreams", "ListTagsOfResource"}),
    "kinesis": frozenset({"ListStreams", "DescribeLimits"}),
    "sqs": frozenset({"ListQueues"}),
    "sns": frozenset({"ListTopics", "ListSubscriptions", "CreatePlatformApplication", "ListPlatformApplications",
                      "CheckIfPhoneNumberIsOptedOut", "GetSMSAttributes"}),
    "ssm": frozenset({"DescribeParameters"}),
    "secretsmanager": frozenset({"ListSecrets", "GetRandomPassword", "BatchGetSecretValue"}),
    "logs": frozenset({"DescribeLogGroups", "DescribeDestinations", "DescribeQueries", "StopQuery",
                       "GetQueryResults", "DescribeExportTasks"}),
    "firehose": frozenset({"ListDeliveryStreams"}),
    "events": frozenset({"ListEventBuses", "TestEventPattern", "ListRuleNamesByTarget"}),
    "monitoring": frozenset({"PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics",
                             "DescribeAlarms", "DescribeAlarmHistory", "GetMetricWidgetImage",
                             "DescribeAlarmsForMetric", "ListDashboards"}),
    "redshift-data": frozenset({"DescribeStatement", "GetStatementResult", "GetStatementResultV2",
                                "ListStatements", "CancelStatement"}),
    "glue": frozenset({"ListCrawlers", "GetCrawlers", "GetCrawlerMetrics", "ListJobs", "GetClassifiers"}),
    "athena": frozenset({"ListWorkGroups", "ListDataCatalogs", "CreateWorkGroup"}),
    "kms": frozenset({"CreateKey", "ListKeys", "ListAliases", "GenerateRandom"}),
    "iam": frozenset({"ListRoles", "ListUsers", "ListPolicies", "ListGroups", "GetAccountSummary",
                      "GetAccountAuthorizationDetails", "ListInstanceProfiles", "SimulateCustomPolicy",
                      "GetAccountPasswordPolicy", "ListAccountAliases", "ListOpenIDConnectProviders"}),
    "sts": frozenset({"GetCallerIdentity", "GetSessionToken", "DecodeAuthorizationMessage", "GetAccessKeyInfo"}),
    "comprehend": frozenset({"DetectSentiment", "BatchDetectSentiment", "DetectDominantLanguage",
                             "BatchDetectDominantLanguage", "DetectEntities", "DetectKeyPhrases",
                             "DetectPiiEntities", "DetectSyntax", "ContainsPiiEntities"}),
}
# Operations AWS authorizes under another action's name.
RENAMED: dict[tuple[str, str], str] = {
    ("dynamodb", "TransactWriteItems"): "",  # per item, below
    ("dynamodb", "TransactGetItems"): "",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("kinesis", "SubscribeToShard"): "SubscribeToShard",
}


def arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


# --------------------------------------------------------------------------------------------------
# Resource builders: request -> resources (empty when the request names none)


def _dynamodb(r: Request) -> list[str]:
    p = r.params
    base = lambda table: arn("dynamodb", r.region, r.account, f"table/{table}")  # noqa: E731
    if "StreamArn" in p:
        return [p["StreamArn"]]
    if "|" in str(p.get("ShardIterator", "")):  # a DynamoDB Streams iterator starts with its stream's ARN
        return [str(p["ShardIterator"]).split("|", 1)[0]]
    for key in ("TableArn", "ResourceArn", "ImportArn", "ExportArn", "BackupArn"):
        if key in p:
            return [p[key]]
    if "TableName" in p:
        table = p["TableName"]
        table_arn = table if table.startswith("arn:") else base(table)
        return [f"{table_arn}/index/{p['IndexName']}" if p.get("IndexName") else table_arn]
    if "RequestItems" in p:
        return [name if name.startswith("arn:") else base(name) for name in p["RequestItems"]]
    creation = p.get("TableCreationParameters")
    if isinstance(creation, dict) and "TableName" in creation:
        return [base(creation["TableName"])]
    return []


def _kinesis(r: Request) -> list[str]:
    p = r.params
    if "ConsumerARN" in p:
        return [p["ConsumerARN"]]
    if "StreamARN" in p:
        return [p["StreamARN"]]
    if "StreamName" in p:
        return [arn("kinesis", r.region, r.account, f"stream/{p['StreamName']}")]
    if "ShardIterator" in p:  # the iterator names its stream
        try:
            stream = base64.b64decode(p["ShardIterator"]).decode().split(":")[0]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return []
        return [arn("kinesis", r.region, r.account, f"stream/{stream}")] if stream else []
    return []


def _sqs(r: Request) -> list[str]:
    p = r.params
    if "QueueUrl" in p:
        parts = p["QueueUrl"].rstrip("/").split("/")
        account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else r.account
        return [arn("sqs", r.region, account, parts[-1])]
    if "QueueName" in p:
        return [arn("sqs", r.region, p.get("QueueOwnerAWSAccountId") or r.account, p["QueueName"])]
    return []


def _sns(r: Request) -> list[str]:
    p = r.params
    for key in ("TopicArn", "TargetArn", "ResourceArn"):
        if key in p:
            return [p[key]]
    if "SubscriptionArn" in p:
        return [p["SubscriptionArn"].rsplit(":", 1)[0]]
    if r.operation == "CreateTopic" and "Name" in p:
        return [arn("sns", r.region, r.account, p["Name"])]
    return []


def _ssm_parameter(r: Request, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return arn("ssm", r.region, r.account, "parameter" + (name if name.startswith("/") else "/" + name))


def _ssm(r: Request) -> list[str]:
    p = r.params
    if "Name" in p:
        return [_ssm_parameter(r, p["Name"].split(":")[0] if not p["Name"].startswith("arn:") else p["Name"])]
    if "Names" in p:
        return [_ssm_parameter(r, name) for name in p["Names"]]
    if "Path" in p:
        return [_ssm_parameter(r, p["Path"].rstrip("/") or "/")]
    return []


def _secret_arn(r: Request, secret: str) -> str:
    if secret.startswith("arn:"):
        return secret
    try:
        from localcloud.motoapi import secretsmanager_backends

        stored = secretsmanager_backends[r.account][r.region].secrets.get(secret)
        if stored is not None:
            return str(stored.arn)
    except Exception:  # moto's secret store read best-effort; the name form below is still an ARN
        pass
    return arn("secretsmanager", r.region, r.account, f"secret:{secret}-??????")


def _secretsmanager(r: Request) -> list[str]:
    p = r.params
    if "SecretId" in p:
        return [_secret_arn(r, p["SecretId"])]
    if r.operation == "CreateSecret" and "Name" in p:
        return [_secret_arn(r, p["Name"])]
    return []


def _logs(r: Request) -> list[str]:
    p = r.params
    group = p.get("logGroupName") or p.get("logGroupIdentifier")
    if group:
        if group.startswith("arn:"):
            return [group]
        stream = p.get("logStreamName")
        return [arn("logs", r.region, r.account, f"log-group:{group}" + (f":log-stream:{stream}" if stream
                                                                          else ""))]
    if "logGroupNames" in p:
        return [arn("logs", r.region, r.account, f"log-group:{g}") for g in p["logGroupNames"]]
    if "resourceArn" in p:
        return [p["resourceArn"]]
    return []


def _firehose(r: Request) -> list[str]:
    name = r.params.get("DeliveryStreamName")
    return [arn("firehose", r.region, r.account, f"deliverystream/{name}")] if name else []


def _events(r: Request) -> list[str]:
    p = r.params
    if r.operation == "PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in _list(p.get("Entries"))} or {"default"}
        return [b if b.startswith("arn:") else arn("events", r.region, r.account, f"event-bus/{b}")
                for b in sorted(buses)]
    bus = p.get("EventBusName")
    rule = p.get("Rule") or (p.get("Name") if "Rule" in r.operation or r.operation in (
        "PutRule", "DeleteRule", "DescribeRule", "EnableRule", "DisableRule") else None)
    if rule:
        prefix_ = f"rule/{bus}/" if bus and bus != "default" and not bus.startswith("arn:") else "rule/"
        return [arn("events", r.region, r.account, prefix_ + rule)]
    if "EventBus" in r.operation and (p.get("Name") or bus):
        return [arn("events", r.region, r.account, f"event-bus/{p.get('Name') or bus}")]
    if r.operation == "ListRules":
        return [arn("events", r.region, r.account, "rule/*")]
    if "ResourceARN" in p:
        return [p["ResourceARN"]]
    return []


def _cloudwatch(r: Request) -> list[str]:
    p = r.params
    alarm = lambda name: arn("cloudwatch", r.region, r.account, f"alarm:{name}")  # noqa: E731
    if "AlarmName" in p:
        return [alarm(p["AlarmName"])]
    if "AlarmNames" in p:
        return [alarm(name) for name in p["AlarmNames"]]
    if "ResourceARN" in p:
        return [p["ResourceARN"]]
    return []


def _redshift_data(r: Request) -> list[str]:
    p = r.params
    if "ClusterIdentifier" in p:
        return [arn("redshift", r.region, r.account, f"cluster:{p['ClusterIdentifier']}")]
    if "WorkgroupName" in p:
        name = p["WorkgroupName"]
        return [name if name.startswith("arn:") else arn("redshift-serverless", r.region, r.account,
                                                         f"workgroup/{name}")]
    return []


def _glue(r: Request) -> list[str]:
    p = r.params
    catalog = arn("glue", r.region, r.account, "catalog")
    if "Crawler" in r.operation and "Name" in p:
        return [arn("glue", r.region, r.account, f"crawler/{p['Name']}")]
    database = p.get("DatabaseName") or (p.get("Name") if "Database" in r.operation else None)
    if database is None and isinstance(p.get("DatabaseInput"), dict):
        database = p["DatabaseInput"].get("Name")
    if database is None:
        return [catalog, arn("glue", r.region, r.account, "database/*")] if r.operation == "GetDatabases" else []
    resources = [catalog, arn("glue", r.region, r.account, f"database/{database}")]
    table = p.get("TableName") or (p.get("Name") if "Table" in r.operation else None)
    if table is None and isinstance(p.get("TableInput"), dict):
        table = p["TableInput"].get("Name")
    if table is not None or r.operation in ("GetTables", "DeleteDatabase"):
        resources.append(arn("glue", r.region, r.account, f"table/{database}/{table or '*'}"))
    return resources


def _athena(r: Request) -> list[str]:
    p = r.params
    group = p.get("WorkGroup")
    if group is None and "WorkGroup" in r.operation:
        group = p.get("Name")
    if group is None and ("QueryExecutionId" in p or "QueryExecutionIds" in p or r.operation in (
            "StartQueryExecution", "ListQueryExecutions", "ListNamedQueries", "CreateNamedQuery")):
        group = _athena_workgroup(r)
    return [arn("athena", r.region, r.account, f"workgroup/{group}")] if group else []


def _athena_workgroup(r: Request) -> str:
    execution_id = r.params.get("QueryExecutionId")
    if execution_id:
        try:
            from localcloud.motoapi import athena_backends

            execution = athena_backends[r.account][r.region].executions.get(execution_id)
            if execution is not None and getattr(execution, "workgroup", None):
                group = execution.workgroup
                return str(getattr(group, "name", group))
        except Exception:  # unknown id: Athena answers that itself
            pass
    return "primary"


def _kms(r: Request) -> list[str]:
    key = r.params.get("KeyId")
    if not key:
        return []
    if key.startswith("arn:"):
        return [key]
    return [arn("kms", r.region, r.account, key if key.startswith("alias/") else f"key/{key}")]


def _iam(r: Request) -> list[str]:
    p = r.params
    account = r.account
    if "PolicyArn" in p:
        return [p["PolicyArn"]]
    if "PolicySourceArn" in p:
        return [p["PolicySourceArn"]]
    for key, kind in (("RoleName", "role"), ("UserName", "user"), ("GroupName", "group"),
                      ("InstanceProfileName", "instance-profile")):
        if key in p:
            return [_iam_arn(account, kind, p[key], p.get("Path"))]
    if r.operation == "CreatePolicy" and "PolicyName" in p:
        return [f"arn:aws:iam::{account}:policy{p.get('Path') or '/'}{p['PolicyName']}"]
    if r.operation in ("GetUser", "ListAccessKeys", "CreateAccessKey", "DeleteAccessKey", "UpdateAccessKey"):
        return []  # the caller's own user: resolved by the caller
    return []


def _iam_arn(account: str, kind: str, name: str, path: str | None) -> str:
    try:
        from localcloud.motoapi import iam_backends

        backend = iam_backends[account]["aws"]
        if kind == "role":
            found = next((role for role in list(backend.roles.values()) if role.name == name), None)
            if found is not None:
                return str(found.arn)
        elif kind == "user" and name in backend.users:
            return str(backend.users[name].arn)
    except Exception:  # best-effort: the path is read from moto's state when the entity exists
        pass
    return f"arn:aws:iam::{account}:{kind}{path or '/'}{name}"


def _sts(r: Request) -> list[str]:
    if "RoleArn" in r.params:
        return [r.params["RoleArn"]]
    return []


RESOURCES: dict[str, Callable[[Request], list[str]]] = {
    "dynamodb": _dynamodb, "kinesis": _kinesis, "sqs": _sqs, "sns": _sns, "ssm": _ssm,
    "secretsmanager": _secretsmanager, "logs": _logs, "firehose": _firehose, "events": _events,
    "monitoring": _cloudwatch, "redshift-data": _redshift_data, "glue": _glue, "athena": _athena, "kms": _kms,
    "iam": _iam, "sts": _sts, "comprehend": lambda r: [],
}


def asks(r: Request) -> list[Ask]:
    """The asks of a JSON- or query-protocol request; Unmapped when its service or resource is unknown."""
    service_prefix = prefix(r.service)
    action = f"{service_prefix}:{r.operation}"
    if r.service not in RESOURCES:
        raise Unmapped(action)
    if r.service == "dynamodb" and r.operation in ("TransactWriteItems", "TransactGetItems"):
        return _transact(r)
    operation = RENAMED.get((r.service, r.operation), r.operation)
    action = f"{service_prefix}:{operation}"
    resources = RESOURCES[r.service](r)
    if not resources:
        if r.operation not in STAR_OPERATIONS.get(r.service, ()):
            raise Unmapped(action)
        resources = ["*"]
    context = _context(r)
    return [Ask(action, resource, context) for resource in resources]


def _transact(r: Request) -> list[Ask]:
    found: list[Ask] = []
    names = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
             "Get": "GetItem"}
    for item in _list(r.params.get("TransactItems")):
        for kind, body in item.items():
            table = body.get("TableName", "")
            resource = table if table.startswith("arn:") else arn("dynamodb", r.region, r.account, f"table/{table}")
            found.append(Ask(f"dynamodb:{names.get(kind, kind)}", resource))
    if not found:
        raise Unmapped(f"dynamodb:{r.operation}")
    return found


def _context(r: Request) -> dict[str, tuple[str, ...]]:
    """Service condition keys the workbook's policies may use."""
    p = r.params
    context: dict[str, tuple[str, ...]] = {}
    if r.service == "dynamodb":
        attributes = _list(p.get("AttributesToGet"))
        if attributes:
            context["dynamodb:attributes"] = tuple(attributes)
        if p.get("Select"):
            context["dynamodb:select"] = (p["Select"],)
    if r.service == "monitoring" and "Namespace" in p:
        context["cloudwatch:namespace"] = (p["Namespace"],)
    if r.service == "ssm" and "WithDecryption" in p:
        context["ssm:withdecryption"] = ("true" if p["WithDecryption"] in (True, "true") else "false",)
    return context


def json_params(body: bytes, environ: dict[str, Any] | None = None) -> Mapping[str, Any]:
    """The parameters of a JSON body ({} when it is not a JSON object); decoded once per request with
    `environ` (moto's parser reads the same document)."""
    from localcloud.executor_base import json_body

    try:
        value = json_body(environ, body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
