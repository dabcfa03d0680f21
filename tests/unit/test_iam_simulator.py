"""IAM's policy simulator in the local cloud: the evaluator on its own, then the executor answering
boto3's `simulate_principal_policy` / `simulate_custom_policy` through a real server of its own."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from localcloud.iam import simulator as sim
from localcloud import lifecycle

ACCOUNT = "123456789012"
STREAM = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders"
OTHER_STREAM = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/someone-elses"
TRUST = json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
)


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(
    documents: list[str],
    action: str,
    resource: str = "*",
    context: dict[str, list[str]] | None = None,
    boundary: list[str] | None = None,
) -> sim.EvaluationResult:
    """The evaluator's answer for one (action, resource), without any server."""
    identity = [sim.PolicySource(f"PolicyInputList.{i}", doc) for i, doc in enumerate(documents, 1)]
    limits = [
        sim.PolicySource(f"PermissionsBoundaryPolicyInputList.{i}", doc) for i, doc in enumerate(boundary or [], 1)
    ]
    [result] = sim.simulate(identity, limits, [action], [resource], context or {})
    return result


# --------------------------------------------------------------------------------------------------
# The evaluator (pure)


class TestMatching:
    def test_actions_are_case_insensitive_with_wildcards(self):
        assert sim.action_matches("kinesis:PutRecord", "KINESIS:putrecord")
        assert sim.action_matches("kinesis:Put*", "kinesis:PutRecords")
        assert sim.action_matches("kinesis:PutRecord?", "kinesis:PutRecords")
        assert not sim.action_matches("kinesis:PutRecord?", "kinesis:PutRecord")
        assert sim.action_matches("*", "s3:GetObject")
        assert not sim.action_matches("kinesis:Put*", "kinesis:GetRecords")

    def test_regex_characters_in_patterns_are_literal(self):
        assert not sim.action_matches("s3:Get.bject", "s3:GetObject")
        assert not sim.resource_matches("arn:aws:s3:::a+b", "arn:aws:s3:::aab")
        assert sim.resource_matches("arn:aws:s3:::a+b/(x)", "arn:aws:s3:::a+b/(x)")

    def test_resources_are_case_sensitive_and_wildcards_stay_in_their_arn_segment(self):
        assert sim.resource_matches("*", "anything")
        assert sim.resource_matches("arn:aws:s3:::lake/raw/*", "arn:aws:s3:::lake/raw/year=2011/x.json")
        assert not sim.resource_matches("arn:aws:s3:::lake/raw/*", "arn:aws:s3:::lake/curated/x.json")
        assert not sim.resource_matches("arn:aws:s3:::Lake/*", "arn:aws:s3:::lake/x")
        assert sim.resource_matches("arn:aws:kinesis:*:*:stream/orders", STREAM)
        assert sim.resource_matches("arn:aws:kinesis:us-east-1:123456789012:stream/order?", STREAM)
        assert not sim.resource_matches("arn:aws:iam::*:role/x", "arn:aws:iam::1:2:role/x")
        log_stream = "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f:log-stream:s"
        assert sim.resource_matches("arn:aws:logs:*:*:log-group:/aws/lambda/f:*", log_stream)


class TestDecisions:
    def test_allow_only_what_is_listed(self):
        doc = policy(allow(["kinesis:PutRecord", "kinesis:PutRecords"], STREAM))
        assert decide([doc], "kinesis:PutRecord", STREAM).decision == "allowed"
        assert decide([doc], "kinesis:putrecords", STREAM).decision == "allowed"
        assert decide([doc], "kinesis:PutRecord", OTHER_STREAM).decision == "implicitDeny"
        assert decide([doc], "kinesis:DeleteStream", STREAM).decision == "implicitDeny"

    def test_explicit_deny_beats_allow_and_is_the_only_matched_statement(self):
        result = decide([policy(allow("kinesis:*")), policy(deny("kinesis:DeleteStream", STREAM))],
                        "kinesis:DeleteStream", STREAM)
        assert result.decision == "explicitDeny"
        assert [s.policy_id for s in result.matched] == ["PolicyInputList.2"]
        assert [s.effect for s in result.matched] == ["Deny"]

    def test_statement_and_elements_may_be_single_values(self):
        doc = json.dumps({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "sqs:SendMessage",
                                                                 "Resource": "arn:aws:sqs:us-east-1:1:q"}})
        assert decide([doc], "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q").decision == "allowed"

    def test_not_action_and_not_resource(self):
        everything_but_iam = policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
        assert decide([everything_but_iam], "s3:GetObject").decision == "allowed"
        assert decide([everything_but_iam], "IAM:CreateUser").decision == "implicitDeny"
        not_secret = policy({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::lake/secret/*"})
        assert decide([not_secret], "s3:GetObject", "arn:aws:s3:::lake/raw/x").decision == "allowed"
        assert decide([not_secret], "s3:GetObject", "arn:aws:s3:::lake/secret/x").decision == "implicitDeny"
        deny_outside = policy(allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::lake/*"})
        assert decide([deny_outside], "s3:PutObject", "arn:aws:s3:::other/x").decision == "explicitDeny"
        assert decide([deny_outside], "s3:PutObject", "arn:aws:s3:::lake/x").decision == "allowed"

    def test_no_policies_is_implicit_deny(self):
        assert decide([], "s3:GetObject").decision == "implicitDeny"

    def test_permissions_boundary_caps_the_identity_policies(self):
        identity = [policy(allow(["s3:*", "kinesis:*"]))]
        boundary = [policy(allow("s3:*"))]
        inside = decide(identity, "s3:GetObject", boundary=boundary)
        assert (inside.decision, inside.allowed_by_boundary) == ("allowed", True)
        outside = decide(identity, "kinesis:PutRecord", boundary=boundary)
        assert (outside.decision, outside.allowed_by_boundary, outside.matched) == ("implicitDeny", False, ())
        assert decide(identity, "kinesis:PutRecord").allowed_by_boundary is None
        denied = decide(identity, "s3:DeleteBucket", boundary=[policy(allow("*"), deny("s3:Delete*"))])
        assert denied.decision == "explicitDeny"

    def test_malformed_policies_are_invalid_input(self):
        for document in ("{not json", json.dumps({"Version": "2012-10-17"}),
                         policy({"Effect": "Maybe", "Action": "*", "Resource": "*"}),
                         policy({"Effect": "Allow", "Resource": "*"})):
            with pytest.raises(sim.InvalidInput):
                decide([document], "s3:GetObject")

    def test_statement_positions_follow_the_document_text(self):
        document = json.dumps({"Version": "2012-10-17", "Statement": [allow("a:b"), deny("c:d")]}, indent=2)
        spans = sim.statement_spans(document)
        assert spans[0] == (sim.Position(3, 17), sim.Position(8, 6))  # just after "[", just after "}"
        lines = document.splitlines()
        start, end = spans[1]
        assert lines[start.line - 1][start.column - 2] == ","
        assert lines[end.line - 1][end.column - 2] == "}"
        assert sim.statement_spans("not json") == []


Context = dict[str, "str | list[str]"]


def condition(block: dict[str, Any], context: Context | None = None) -> sim.EvaluationResult:
    """The decision for s3:GetObject under a policy whose only statement carries `block`."""
    values = {key: value if isinstance(value, list) else [value] for key, value in (context or {}).items()}
    return decide([policy(allow("s3:GetObject", "*", Condition=block))], "s3:GetObject", "*", values)


def holds(block: dict[str, Any], context: Context | None = None) -> bool:
    return condition(block, context).decision == "allowed"


REGION = "aws:RequestedRegion"


class TestConditions:
    def test_missing_key_makes_the_statement_not_apply_and_is_reported(self):
        result = condition({"StringEquals": {REGION: "eu-west-1"}})
        assert result.decision == "implicitDeny"
        assert result.missing == (REGION,)
        assert condition({"StringEquals": {REGION: "eu-west-1"}}, {"aws:requestedregion": "eu-west-1"}).missing == ()

    def test_missing_key_of_a_deny_is_reported_and_the_deny_does_not_apply(self):
        doc = policy(allow("s3:*"), deny("s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}}))
        result = decide([doc], "s3:GetObject")
        assert (result.decision, result.missing) == ("allowed", ("aws:SecureTransport",))
        assert decide([doc], "s3:GetObject", context={"aws:SecureTransport": ["false"]}).decision == "explicitDeny"
        assert decide([doc], "s3:GetObject", context={"aws:SecureTransport": ["true"]}).decision == "allowed"

    def test_keys_of_statements_that_do_not_match_the_action_are_not_reported(self):
        doc = policy(allow("s3:GetObject", Condition={"StringEquals": {REGION: "x"}}))
        assert decide([doc], "kinesis:PutRecord").missing == ()

    def test_string_operators(self):
        east = {REGION: "us-east-1"}
        assert holds({"StringEquals": {REGION: ["eu-west-1", "us-east-1"]}}, east)
        assert not holds({"StringEquals": {REGION: "US-EAST-1"}}, east)
        assert holds({"StringEqualsIgnoreCase": {REGION: "US-EAST-1"}}, east)
        assert holds({"StringNotEquals": {REGION: ["eu-west-1", "eu-west-2"]}}, east)
        assert not holds({"StringNotEquals": {REGION: "us-east-1"}}, east)
        assert holds({"StringLike": {"s3:prefix": "raw/*/day=0?"}}, {"s3:prefix": "raw/year=2011/day=09"})
        assert not holds({"StringLike": {"s3:prefix": "raw/*"}}, {"s3:prefix": "curated/x"})
        assert holds({"StringNotLike": {"s3:prefix": "secret/*"}}, {"s3:prefix": "raw/x"})
        assert not holds({"StringNotLike": {"s3:prefix": "secret/*"}}, {"s3:prefix": "secret/x"})

    def test_condition_key_names_are_case_insensitive(self):
        assert holds({"StringEquals": {"AWS:requestedREGION": "us-east-1"}}, {REGION: "us-east-1"})

    def test_arn_operators(self):
        source = {"aws:SourceArn": f"arn:aws:iam::{ACCOUNT}:role/ingest"}
        assert holds({"ArnEquals": {"aws:SourceArn": f"arn:aws:iam::{ACCOUNT}:role/ingest"}}, source)
        assert holds({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role/ing*"}}, source)
        assert not holds({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role/query"}}, source)
        assert holds({"ArnNotEquals": {"aws:SourceArn": "arn:aws:iam::*:role/query"}}, source)
        assert not holds({"ArnNotLike": {"aws:SourceArn": "arn:aws:iam::*:role/*"}}, source)

    def test_bool_numeric_date_and_ip_operators(self):
        assert holds({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "true"})
        assert not holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "false"})
        keys = "s3:max-keys"
        assert holds({"NumericEquals": {keys: 10}}, {keys: "10.0"})
        assert holds({"NumericLessThan": {keys: "10"}}, {keys: "9"})
        assert not holds({"NumericLessThan": {keys: "10"}}, {keys: "10"})
        assert holds({"NumericLessThanEquals": {keys: "10"}}, {keys: "10"})
        assert holds({"NumericGreaterThan": {keys: "10"}}, {keys: "11"})
        assert holds({"NumericGreaterThanEquals": {keys: "10"}}, {keys: "10"})
        assert not holds({"NumericEquals": {keys: "10"}}, {keys: "ten"})
        assert holds({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
                     {"aws:CurrentTime": "2024-06-01T12:00:00Z"})
        assert holds({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.1.2.3"})
        assert holds({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "192.168.0.1"})

    def test_if_exists_and_null(self):
        block = {"StringEqualsIfExists": {REGION: "us-east-1"}}
        result = condition(block)
        assert (result.decision, result.missing) == ("allowed", ())
        assert not holds(block, {REGION: "eu-west-1"})
        assert holds({"Null": {"aws:TokenIssueTime": "true"}})
        assert not holds({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"})

    def test_set_operators(self):
        any_of = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost-center"]}}
        assert holds(any_of, {"aws:TagKeys": ["owner", "team"]})
        assert not holds(any_of, {"aws:TagKeys": ["owner"]})
        all_of = {"ForAllValues:StringLike": {"aws:TagKeys": ["team", "cost-*"]}}
        assert holds(all_of, {"aws:TagKeys": ["team", "cost-center"]})
        assert not holds(all_of, {"aws:TagKeys": ["team", "owner"]})
        none_of = {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}}
        assert holds(none_of, {"aws:TagKeys": ["team", "owner"]})
        assert not holds(none_of, {"aws:TagKeys": ["team", "secret"]})

    def test_all_operators_and_keys_must_hold(self):
        block = {"StringEquals": {REGION: "us-east-1", "aws:PrincipalTag/team": "data"},
                 "Bool": {"aws:SecureTransport": "true"}}
        context = {REGION: "us-east-1", "aws:PrincipalTag/team": "data", "aws:SecureTransport": "true"}
        assert holds(block, context)
        assert not holds(block, {**context, "aws:PrincipalTag/team": "web"})
        partial = condition(block, {REGION: "us-east-1"})
        assert set(partial.missing) == {"aws:PrincipalTag/team", "aws:SecureTransport"}

    def test_unknown_operator_never_matches(self):
        assert not holds({"StringSortOf": {REGION: "us-east-1"}}, {REGION: "us-east-1"})

    def test_policy_variables_in_resources_and_conditions(self):
        home, ana = "arn:aws:s3:::home/${aws:username}/*", {"aws:username": ["ana"]}
        doc = policy(allow("s3:GetObject", home))
        assert decide([doc], "s3:GetObject", "arn:aws:s3:::home/ana/x", ana).decision == "allowed"
        assert decide([doc], "s3:GetObject", "arn:aws:s3:::home/bob/x", ana).decision == "implicitDeny"
        missing = decide([doc], "s3:GetObject", "arn:aws:s3:::home/ana/x")
        assert (missing.decision, missing.missing) == ("implicitDeny", ("aws:username",))
        old = policy(allow("s3:GetObject", home), version="2008-10-17")  # no variables before 2012-10-17
        assert decide([old], "s3:GetObject", "arn:aws:s3:::home/ana/x", ana).decision == "implicitDeny"
        assert holds({"StringLike": {"s3:prefix": "home/${aws:username}/*"}},
                     {"aws:username": "ana", "s3:prefix": "home/ana/x"})


class TestRouting:
    """The executor claims only IAM simulate calls and leaves every other body intact for moto."""

    @staticmethod
    def environ(body: bytes, service: str = "iam", method: str = "POST") -> dict[str, Any]:
        authorization = (f"AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, "
                         "SignedHeaders=host;x-amz-date, Signature=abc")
        return EnvironBuilder(
            method=method, path="/", data=body, content_type="application/x-www-form-urlencoded; charset=utf-8",
            headers={"Authorization": authorization},
        ).get_environ()

    def test_other_services_are_not_read(self):
        environ = self.environ(b"Action=GetCallerIdentity&Version=2011-06-15", service="sts")

        class Untouchable(io.BytesIO):
            def read(self, *args: Any) -> bytes:
                raise AssertionError("the body of a non-IAM request must not be read")

        environ["wsgi.input"] = Untouchable()
        assert sim.make_executor().route(Request(environ, shallow=True)) is None

    def test_other_iam_actions_get_their_body_back(self):
        body = "Action=CreateRole&RoleName=r&AssumeRolePolicyDocument=%7B%22a%22%3A%22%26%2B%C3%A9%22%7D".encode()
        environ = self.environ(body)
        assert sim.make_executor().route(Request(environ, shallow=True)) is None
        assert environ["wsgi.input"].read() == body
        assert environ["CONTENT_LENGTH"] == str(len(body))

    def test_simulate_calls_are_claimed(self):
        body = urlencode({"Action": "SimulateCustomPolicy", "Version": "2010-05-08",
                          "ActionNames.member.1": "s3:GetObject", "PolicyInputList.member.1": policy(allow("s3:*"))})
        app = sim.make_executor().route(Request(self.environ(body.encode()), shallow=True))
        assert app is not None
        seen: list[str] = []
        answer = b"".join(app(self.environ(b""), lambda status, headers: seen.append(status)))
        assert seen == ["200 OK"]
        assert b"<EvalDecision>allowed</EvalDecision>" in answer

    def test_get_requests_are_not_claimed(self):
        assert sim.make_executor().route(Request(self.environ(b"", method="GET"), shallow=True)) is None


# --------------------------------------------------------------------------------------------------
# Through a real local cloud


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud")) as url:
        yield url


def client(endpoint: str, service: str, **config: Any) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def iam(endpoint: str) -> Any:
    return client(endpoint, "iam")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_role(iam: Any, **policies: str) -> str:
    name = unique("role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    for policy_name, document in policies.items():
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=document)
    return arn


def decisions(response: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in response["EvaluationResults"]]


@pytest.fixture(scope="module")
def ingest_role(iam: Any) -> str:
    return make_role(iam, put=policy(allow(["kinesis:PutRecord", "kinesis:PutRecords"], [STREAM])))


def test_the_server_lists_the_executor(endpoint: str):
    health = lifecycle.health(int(endpoint.rsplit(":", 1)[1]))
    assert health is not None and "iam-policy-simulator" in health.executors


def test_least_privilege_role(iam: Any, ingest_role: str):
    response = iam.simulate_principal_policy(
        PolicySourceArn=ingest_role, ActionNames=["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DeleteStream"],
        ResourceArns=[STREAM, OTHER_STREAM],
    )
    assert decisions(response) == [
        ("kinesis:PutRecord", STREAM, "allowed"), ("kinesis:PutRecord", OTHER_STREAM, "implicitDeny"),
        ("kinesis:PutRecords", STREAM, "allowed"), ("kinesis:PutRecords", OTHER_STREAM, "implicitDeny"),
        ("kinesis:DeleteStream", STREAM, "implicitDeny"), ("kinesis:DeleteStream", OTHER_STREAM, "implicitDeny"),
    ]
    assert response["IsTruncated"] is False
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    uuid.UUID(response["ResponseMetadata"]["RequestId"])
    first = response["EvaluationResults"][0]
    role_name = ingest_role.rsplit("/", 1)[1]
    assert first["MatchedStatements"][0]["SourcePolicyId"] == f"role_{role_name}_put"
    assert first["MatchedStatements"][0]["SourcePolicyType"] == "IAM Policy"
    assert first["MatchedStatements"][0]["StartPosition"]["Line"] == 1
    assert first["MissingContextValues"] == []
    assert first["ResourceSpecificResults"] == [
        {"EvalResourceName": STREAM, "EvalResourceDecision": "allowed",
         "MatchedStatements": first["MatchedStatements"], "MissingContextValues": []}
    ]
    assert response["EvaluationResults"][1]["MatchedStatements"] == []


def test_resources_default_to_everything(iam: Any, ingest_role: str):
    response = iam.simulate_principal_policy(PolicySourceArn=ingest_role, ActionNames=["kinesis:PutRecord"])
    assert decisions(response) == [("kinesis:PutRecord", "*", "implicitDeny")]
    assert "ResourceSpecificResults" not in response["EvaluationResults"][0]


def test_explicit_deny_wildcards_and_case(iam: Any):
    arn = make_role(
        iam,
        everything=policy(allow(["kinesis:*", "s3:Get*"], "*")),
        guard=policy(deny("kinesis:Delete*", "arn:aws:kinesis:*:*:stream/order?")),
    )
    response = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["KINESIS:deletestream", "kinesis:PutRecord", "s3:GetObject", "s3:PutObject"],
        ResourceArns=[STREAM],
    )
    assert [r["EvalDecision"] for r in response["EvaluationResults"]] == [
        "explicitDeny", "allowed", "allowed", "implicitDeny"
    ]
    deny_statement = response["EvaluationResults"][0]["MatchedStatements"]
    assert [s["SourcePolicyId"].rsplit("_", 1)[1] for s in deny_statement] == ["guard"]
    other = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kinesis:DeleteStream"],
                                          ResourceArns=[OTHER_STREAM])
    assert decisions(other) == [("kinesis:DeleteStream", OTHER_STREAM, "allowed")]


def test_not_action_and_not_resource(iam: Any):
    arn = make_role(iam, broad=policy(
        {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:*", "NotResource": ["arn:aws:s3:::lake", "arn:aws:s3:::lake/*"]},
    ))
    response = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["iam:CreateUser", "s3:GetObject"],
        ResourceArns=["arn:aws:s3:::lake/raw/x", "arn:aws:s3:::elsewhere/x"],
    )
    assert [r["EvalDecision"] for r in response["EvaluationResults"]] == [
        "implicitDeny", "implicitDeny", "allowed", "explicitDeny"
    ]


def test_attached_managed_policy(iam: Any):
    managed = iam.create_policy(PolicyName=unique("read-table"), PolicyDocument=policy(
        allow(["dynamodb:GetItem", "dynamodb:Query"], f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sales*")
    ))["Policy"]
    arn = make_role(iam)
    iam.attach_role_policy(RoleName=arn.rsplit("/", 1)[1], PolicyArn=managed["Arn"])
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/sales"
    response = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["dynamodb:Query", "dynamodb:Scan"],
                                             ResourceArns=[table, f"{table}/index/by-customer"])
    assert [r["EvalDecision"] for r in response["EvaluationResults"]] == [
        "allowed", "allowed", "implicitDeny", "implicitDeny"
    ]
    assert response["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"] == managed["PolicyName"]


def test_user_with_group_policies(iam: Any):
    user, group = unique("user"), unique("group")
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=user)
    iam.put_group_policy(GroupName=group, PolicyName="analysts", PolicyDocument=policy(allow("athena:*")))
    managed = iam.create_policy(PolicyName=unique("lake-read"), PolicyDocument=policy(
        allow("s3:GetObject", "arn:aws:s3:::lake/*")))["Policy"]
    iam.attach_group_policy(GroupName=group, PolicyArn=managed["Arn"])
    iam.put_user_policy(UserName=user, PolicyName="own", PolicyDocument=policy(deny("athena:DeleteWorkGroup")))
    user_arn = iam.get_user(UserName=user)["User"]["Arn"]

    response = iam.simulate_principal_policy(
        PolicySourceArn=user_arn, ActionNames=["athena:StartQueryExecution", "athena:DeleteWorkGroup", "s3:GetObject"],
        ResourceArns=["arn:aws:s3:::lake/x"],
    )
    assert [r["EvalDecision"] for r in response["EvaluationResults"]] == ["allowed", "explicitDeny", "allowed"]
    assert response["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"] == f"group_{group}_analysts"
    assert response["EvaluationResults"][1]["MatchedStatements"][0]["SourcePolicyId"] == f"user_{user}_own"

    group_arn = iam.get_group(GroupName=group)["Group"]["Arn"]
    as_group = iam.simulate_principal_policy(PolicySourceArn=group_arn, ActionNames=["athena:DeleteWorkGroup"])
    assert decisions(as_group) == [("athena:DeleteWorkGroup", "*", "allowed")]


def test_permissions_boundary(iam: Any):
    boundary = iam.create_policy(PolicyName=unique("boundary"), PolicyDocument=policy(allow("s3:*")))["Policy"]["Arn"]
    name = unique("bounded")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST, PermissionsBoundary=boundary)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="wide", PolicyDocument=policy(allow(["s3:*", "kinesis:*"])))

    response = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject", "kinesis:PutRecord"])
    results = response["EvaluationResults"]
    assert [r["EvalDecision"] for r in results] == ["allowed", "implicitDeny"]
    assert [r["PermissionsBoundaryDecisionDetail"]["AllowedByPermissionsBoundary"] for r in results] == [True, False]

    replaced = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["s3:GetObject", "kinesis:PutRecord"],
        PermissionsBoundaryPolicyInputList=[policy(allow("kinesis:*"))],
    )
    assert [r["EvalDecision"] for r in replaced["EvaluationResults"]] == ["implicitDeny", "allowed"]


def test_extra_policy_inputs_join_the_principal(iam: Any, ingest_role: str):
    response = iam.simulate_principal_policy(
        PolicySourceArn=ingest_role, ActionNames=["kinesis:PutRecord"], ResourceArns=[STREAM],
        PolicyInputList=[policy(deny("kinesis:*"))],
    )
    assert decisions(response) == [("kinesis:PutRecord", STREAM, "explicitDeny")]
    assert response["EvaluationResults"][0]["MatchedStatements"][0]["SourcePolicyId"] == "PolicyInputList.1"


def test_condition_with_and_without_context(iam: Any):
    arn = make_role(iam, regional=policy(allow(
        "s3:GetObject", "arn:aws:s3:::lake/*",
        Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}, "Bool": {"aws:SecureTransport": "true"}},
    )))
    args = {"PolicySourceArn": arn, "ActionNames": ["s3:GetObject"], "ResourceArns": ["arn:aws:s3:::lake/x"]}

    without = iam.simulate_principal_policy(**args)["EvaluationResults"][0]
    assert without["EvalDecision"] == "implicitDeny"
    assert sorted(without["MissingContextValues"]) == ["aws:RequestedRegion", "aws:SecureTransport"]

    context = [
        {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": ["us-east-1"], "ContextKeyType": "string"},
        {"ContextKeyName": "aws:SecureTransport", "ContextKeyValues": ["true"], "ContextKeyType": "boolean"},
    ]
    satisfied = iam.simulate_principal_policy(**args, ContextEntries=context)["EvaluationResults"][0]
    assert (satisfied["EvalDecision"], satisfied["MissingContextValues"]) == ("allowed", [])

    context[0]["ContextKeyValues"] = ["eu-west-1"]
    wrong = iam.simulate_principal_policy(**args, ContextEntries=context)["EvaluationResults"][0]
    assert (wrong["EvalDecision"], wrong["MissingContextValues"]) == ("implicitDeny", [])


def test_custom_policy(iam: Any):
    response = iam.simulate_custom_policy(
        PolicyInputList=[policy(allow("sqs:SendMessage", "arn:aws:sqs:us-east-1:*:quarantine")),
                         policy(deny("sqs:*", "arn:aws:sqs:*:*:secret-<&>"))],
        ActionNames=["sqs:SendMessage"],
        ResourceArns=[f"arn:aws:sqs:us-east-1:{ACCOUNT}:quarantine", "arn:aws:sqs:us-east-1:1:secret-<&>"],
    )
    assert decisions(response) == [
        ("sqs:SendMessage", f"arn:aws:sqs:us-east-1:{ACCOUNT}:quarantine", "allowed"),
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:secret-<&>", "explicitDeny"),
    ]
    assert [r["MatchedStatements"][0]["SourcePolicyId"] for r in response["EvaluationResults"]] == [
        "PolicyInputList.1", "PolicyInputList.2"
    ]


def test_pagination(iam: Any):
    paginator = iam.get_paginator("simulate_custom_policy")
    pages = list(paginator.paginate(PolicyInputList=[policy(allow("s3:*"))], ActionNames=["s3:A", "s3:B", "s3:C"],
                                    PaginationConfig={"PageSize": 2}))
    assert [len(page["EvaluationResults"]) for page in pages] == [2, 1]
    assert pages[0]["IsTruncated"] is True and pages[-1]["IsTruncated"] is False


def test_unknown_entities_are_no_such_entity(iam: Any):
    for arn in (f"arn:aws:iam::{ACCOUNT}:role/nobody", f"arn:aws:iam::{ACCOUNT}:user/nobody"):
        with pytest.raises(iam.exceptions.NoSuchEntityException) as raised:
            iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject"])
        error = raised.value.response
        assert error["Error"]["Code"] == "NoSuchEntity" and error["Error"]["Type"] == "Sender"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert "nobody" in error["Error"]["Message"]


def test_bad_input_is_rejected_like_aws(endpoint: str, iam: Any):
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.simulate_principal_policy(PolicySourceArn="arn:aws:s3:::a-longer-bucket-name", ActionNames=["s3:GetObject"])
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.simulate_custom_policy(PolicyInputList=["{not json"], ActionNames=["s3:GetObject"])
    unchecked = client(endpoint, "iam", parameter_validation=False)
    with pytest.raises(ClientError) as raised:
        unchecked.simulate_custom_policy(PolicyInputList=[policy(allow("*"))])
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "actionNames" in raised.value.response["Error"]["Message"]


def test_other_iam_calls_still_reach_moto(iam: Any):
    name = unique("plain")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "odd chars & + % é", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Description="a & b + c")
    role = iam.get_role(RoleName=name)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Sid"] == "odd chars & + % é"
    assert role["Description"] == "a & b + c"
    document = policy(allow("s3:GetObject", "arn:aws:s3:::lake/a+b/*"))
    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=document)
    assert iam.get_role_policy(RoleName=name, PolicyName="inline")["PolicyDocument"] == json.loads(document)
    assert name in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == ["inline"]


def test_other_services_still_reach_moto(endpoint: str):
    s3 = client(endpoint, "s3")
    bucket = unique("bucket")
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert client(endpoint, "sts").get_caller_identity()["Account"] == ACCOUNT


def test_state_dir_is_the_modules_own(endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    health = lifecycle.health(int(endpoint.rsplit(":", 1)[1]))
    assert health is not None
    assert Path(health.state_dir).is_relative_to(tmp_path_factory.getbasetemp())
