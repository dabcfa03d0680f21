"""Execution roles as code: one role per Lambda function, each with least-privilege inline policies.

The course's click-path attaches broad managed policies (AmazonKinesisFullAccess, AmazonS3FullAccess...)
to one shared role. Here every function gets its own role that may do exactly what its job needs, on
exactly its resources, and writes logs only to its own log group. `simulate` proves it with IAM's own
policy simulator, which the local cloud answers too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from helpers import config
from helpers.idempotent import exists_ok
from helpers.resources import CUSTOMER_AUTHORIZER, INGEST_API, QUERY_API, STREAM_TO_DYNAMODB, STREAM_TO_S3, Names

Statement = dict[str, Any]

LAMBDA_TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
# Roles the workbook manages carry this tag, so teardown finds exactly them.
MANAGED_TAG = {"Key": "project", "Value": "retail-pipelines"}

# What a Lambda event source mapping needs to read a stream (scoped to one stream, unlike the
# managed AWSLambdaKinesisExecutionRole which allows every stream in the account).
KINESIS_READ_ACTIONS = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
]


def allow(actions: Iterable[str], resources: Iterable[str], sid: str) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": sorted(resources)}


@dataclass(frozen=True)
class FunctionRole:
    """The execution role of one Lambda function and why it holds each permission."""

    folder: str
    purpose: str
    statements: tuple[Statement, ...]
    names: Names = field(repr=False)

    @property
    def role_name(self) -> str:
        return self.names.role(self.folder)

    @property
    def policy_name(self) -> str:
        return f"{self.folder}-least-privilege"

    def policy_document(self) -> dict[str, Any]:
        logs = allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"], [self.names.log_group_arn(self.folder) + ":*"], "OwnLogs"
        )
        log_group = allow(["logs:CreateLogGroup"], [self.names.log_group_arn(self.folder)], "OwnLogGroup")
        return {"Version": "2012-10-17", "Statement": [*self.statements, log_group, logs]}


def course_roles(names: Names) -> list[FunctionRole]:
    """The execution roles of the streaming pipelines (notebooks 02-05)."""
    return [
        FunctionRole(
            INGEST_API,
            "API Gateway -> Lambda: validates posted rows and puts them on the stream",
            (allow(["kinesis:PutRecord", "kinesis:PutRecords"], [names.stream_arn], "PutOnTheStream"),),
            names,
        ),
        FunctionRole(
            STREAM_TO_S3,
            "Kinesis -> Lambda: writes raw JSON-lines files into the lake",
            (
                allow(KINESIS_READ_ACTIONS, [names.stream_arn], "ReadTheStream"),
                # It merges into a file: reads it (GetObject) and writes it back (PutObject).
                allow(["s3:GetObject", "s3:PutObject"], [f"{names.lake_bucket_arn}/raw/*"], "MergeRawLakeFiles"),
                # Without ListBucket S3 answers AccessDenied, not NoSuchKey, for a file not written yet.
                {**allow(["s3:ListBucket"], [names.lake_bucket_arn], "ListRawLakeFiles"),
                 "Condition": {"StringLike": {"s3:prefix": ["raw/*"]}}},
                allow(["sqs:SendMessage"], [names.quarantine_queue_arn], "QuarantineBadRecords"),
            ),
            names,
        ),
        FunctionRole(
            STREAM_TO_DYNAMODB,
            "Kinesis -> Lambda: upserts customers, invoices and line items",
            (
                allow(KINESIS_READ_ACTIONS, [names.stream_arn], "ReadTheStream"),
                allow(
                    ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
                    [names.table_arn],
                    "WriteTheServingTable",  # BatchGetItem: the headers a batch adds its lines to
                ),
                allow(["sqs:SendMessage"], [names.quarantine_queue_arn], "QuarantineBadRecords"),
            ),
            names,
        ),
        FunctionRole(
            QUERY_API,
            "API Gateway -> Lambda: reads invoices and a customer's invoices",
            (
                allow(
                    ["dynamodb:GetItem", "dynamodb:Query"],
                    [names.table_arn, f"{names.table_arn}/index/*"],
                    "ReadTheServingTable",
                ),
            ),
            names,
        ),
        FunctionRole(
            CUSTOMER_AUTHORIZER,
            "API Gateway authorizer: checks a customer's signed token (calls no AWS API: logs only)",
            (),
            names,
        ),
    ]


def ensure_role(role: FunctionRole) -> str:
    """Notebook 00's steps for one role, for the roles it does not spell out: create it (or find it),
    converge its trust policy, put exactly its inline policy; returns its ARN. Idempotent."""
    config.require_create_allowed(f"IAM role {role.role_name}")
    client = config.client("iam")
    trust = json.dumps(LAMBDA_TRUST_POLICY)
    with exists_ok():
        client.create_role(RoleName=role.role_name, AssumeRolePolicyDocument=trust,
                           Description=role.purpose[:1000], Tags=[MANAGED_TAG])
    client.update_assume_role_policy(RoleName=role.role_name, PolicyDocument=trust)
    client.put_role_policy(RoleName=role.role_name, PolicyName=role.policy_name,
                           PolicyDocument=json.dumps(role.policy_document()))
    drop_other_policies(role)
    return client.get_role(RoleName=role.role_name)["Role"]["Arn"]


def drop_other_policies(role: FunctionRole) -> list[str]:
    """Exactly this policy: remove inline policies an earlier version of the workbook left on the role."""
    client = config.client("iam")
    stale = [name for name in client.list_role_policies(RoleName=role.role_name)["PolicyNames"]
             if name != role.policy_name]
    for name in stale:
        client.delete_role_policy(RoleName=role.role_name, PolicyName=name)
    return stale


def delete_role(role_name: str) -> bool:
    """helpers.teardown.delete_role (the one teardown path)."""
    from helpers import teardown

    return teardown.delete_role(role_name)


def workbook_roles(prefix: str) -> list[str]:
    """helpers.teardown.workbook_roles (the one teardown path)."""
    from helpers import teardown

    return teardown.workbook_roles(prefix)


def permissions(role_name: str) -> pd.DataFrame:
    """One row per (policy, statement, action, resource) the role holds, read back from IAM."""
    iam = config.client("iam")
    rows = []
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # boto3 decodes it; keep working if a backend does not
            document = json.loads(document)
        statements = document["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            for action in _as_list(statement.get("Action")):
                for resource in _as_list(statement.get("Resource")):
                    rows.append(
                        {"policy": policy_name, "sid": statement.get("Sid", ""), "effect": statement["Effect"],
                         "action": action, "resource": resource}
                    )
    return pd.DataFrame(rows, columns=["policy", "sid", "effect", "action", "resource"])


def simulate(role_arn: str, actions: Iterable[str], resources: Iterable[str]) -> pd.DataFrame:
    """IAM's policy simulator for every (action, resource) pair: allowed / implicitDeny / explicitDeny.

    IAM answers one result per action and the per-resource decisions in `ResourceSpecificResults`
    (older answers gave one result per pair); both shapes are read.
    """
    iam = config.client("iam")
    results = iam.simulate_principal_policy(
        PolicySourceArn=role_arn, ActionNames=list(actions), ResourceArns=list(resources)
    )["EvaluationResults"]
    rows = []
    for result in results:
        per_resource = result.get("ResourceSpecificResults") or [
            {"EvalResourceName": result.get("EvalResourceName", "*"), "EvalResourceDecision": result["EvalDecision"]}
        ]
        rows += [
            {"action": result["EvalActionName"], "resource": r["EvalResourceName"], "decision": r["EvalResourceDecision"]}
            for r in per_resource
        ]
    return pd.DataFrame(rows, columns=["action", "resource", "decision"])


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
