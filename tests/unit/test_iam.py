"""Execution roles as code against the session's local cloud: least privilege, idempotent, removable."""

from __future__ import annotations

import json

import pytest

from helpers import config, iam
from helpers.resources import INGEST_API, QUERY_API, Names, names


@pytest.fixture
def roles(request: pytest.FixtureRequest):
    prefix = "t" + request.node.name.replace("_", "")[-12:].lower()
    config.configure(target="local", prefix=prefix)
    yield iam.course_roles(names())
    for name in iam.workbook_roles(prefix):
        iam.delete_role(name)
    config._current = None


def test_every_role_is_scoped_to_named_resources():
    n = Names(prefix="retail", region="us-east-1", account="123456789012")
    for role in iam.course_roles(n):
        document = role.policy_document()
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all(":" in action and "*" not in action for action in statement["Action"]), statement
            assert all(resource != "*" for resource in statement["Resource"]), statement
        log_resources = [r for s in document["Statement"] for r in s["Resource"] if ":logs:" in r]
        assert log_resources and all(f"/aws/lambda/{n.function(role.folder)}" in r for r in log_resources)
    ingest = next(r for r in iam.course_roles(n) if r.folder == INGEST_API)
    assert ingest.statements[0]["Action"] == ["kinesis:PutRecord", "kinesis:PutRecords"]
    assert ingest.statements[0]["Resource"] == [n.stream_arn]


def test_ensure_role_is_idempotent_and_removes_stale_policies(roles):
    client = config.client("iam")
    role = roles[0]
    arn = iam.ensure_role(role)
    client.put_role_policy(RoleName=role.role_name, PolicyName="left-by-an-old-version",
                           PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                               {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    assert iam.ensure_role(role) == arn
    assert client.list_role_policies(RoleName=role.role_name)["PolicyNames"] == [role.policy_name]
    trust = client.get_role(RoleName=role.role_name)["Role"]["AssumeRolePolicyDocument"]
    assert trust == iam.LAMBDA_TRUST_POLICY


def test_permissions_reads_back_the_stored_policy(roles):
    role = next(r for r in roles if r.folder == QUERY_API)
    iam.ensure_role(role)
    held = iam.permissions(role.role_name)
    assert set(held.columns) == {"policy", "sid", "effect", "action", "resource"}
    table_rows = held[held["sid"] == "ReadTheServingTable"]
    assert set(table_rows["action"]) == {"dynamodb:GetItem", "dynamodb:Query"}
    assert len(table_rows) == 4, "2 actions x (table, its indexes)"


def test_workbook_roles_finds_only_tagged_roles_of_the_prefix(roles):
    for role in roles:
        iam.ensure_role(role)
    prefix = config.settings().prefix
    config.client("iam").create_role(RoleName=f"{prefix}-hand-made-role",
                                     AssumeRolePolicyDocument=json.dumps(iam.LAMBDA_TRUST_POLICY))
    try:
        assert iam.workbook_roles(prefix) == sorted(r.role_name for r in roles)
    finally:
        iam.delete_role(f"{prefix}-hand-made-role")


def test_delete_role_removes_policies_and_reports_absence(roles):
    role = roles[0]
    iam.ensure_role(role)
    assert iam.delete_role(role.role_name) is True
    assert iam.delete_role(role.role_name) is False


def test_simulate_separates_allowed_from_denied(roles):
    n = names()
    ingest = next(r for r in roles if r.folder == INGEST_API)
    arn = iam.ensure_role(ingest)
    other = n.stream_arn.replace(n.stream, "other")
    verdicts = iam.simulate(arn, ["kinesis:PutRecords", "kinesis:DeleteStream"], [n.stream_arn, other])
    decided = {(row.action, row.resource): row.decision for row in verdicts.itertuples()}
    assert decided == {
        ("kinesis:PutRecords", n.stream_arn): "allowed",
        ("kinesis:PutRecords", other): "implicitDeny",
        ("kinesis:DeleteStream", n.stream_arn): "implicitDeny",
        ("kinesis:DeleteStream", other): "implicitDeny",
    }


def test_creating_roles_on_aws_needs_an_explicit_yes(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    config.configure(target="aws")
    try:
        role = iam.course_roles(Names(prefix="retail", region="us-east-1", account="111122223333"))[0]
        with pytest.raises(config.AwsCreateNotAllowed):
            iam.ensure_role(role)
    finally:
        config._current = None
