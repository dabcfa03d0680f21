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
                allow(["s3:PutObject"], [f"{names.lake_bucket_arn}/raw/*"], "WriteRawLakeFiles"),
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
    """Create or update the role so it holds exactly this policy; returns its ARN. Idempotent."""
    config.require_create_allowed(f"IAM role {role.role_name}")
    iam = config.client("iam")
    trust = json.dumps(LAMBDA_TRUST_POLICY)
    try:
        arn = iam.get_role(RoleName=role.role_name)["Role"]["Arn"]
        iam.update_assume_role_policy(RoleName=role.role_name, PolicyDocument=trust)
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=role.role_name,
            AssumeRolePolicyDocument=trust,
            Description=role.purpose[:1000],
            Tags=[MANAGED_TAG],
        )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role.role_name, PolicyName=role.policy_name, PolicyDocument=json.dumps(role.policy_document())
    )
    # Exactly this policy: drop inline policies left by an earlier version of the workbook.
    for name in iam.list_role_policies(RoleName=role.role_name)["PolicyNames"]:
        if name != role.policy_name:
            iam.delete_role_policy(RoleName=role.role_name, PolicyName=name)
    return arn


def delete_role(role_name: str) -> bool:
    """Delete a role and its inline and attached policies. False when it did not exist."""
    iam = config.client("iam")
    try:
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role_name, PolicyName=name)
        for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role_name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=role_name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def workbook_roles(prefix: str) -> list[str]:
    """Names of the roles this workbook created under `prefix` (found by name and tag, for teardown)."""
    iam = config.client("iam")
    found = []
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            if not role["RoleName"].startswith(f"{prefix}-"):
                continue
            tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            if MANAGED_TAG in tags:
                found.append(role["RoleName"])
    return sorted(found)


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
