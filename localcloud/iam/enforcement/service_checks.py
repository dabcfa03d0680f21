"""What AWS checks besides the caller's own permissions:

- `lambda:CreateEventSourceMapping` (and an update that enables one): the function's execution role must
  be able to read the stream or queue, or Lambda answers InvalidParameterValueException, whoever calls;
- `iam:PassRole`: handing a role to Lambda (CreateFunction, UpdateFunctionConfiguration) needs it;
- `sts:AssumeRole`: the role's trust policy must trust the caller (or its account).
"""

from __future__ import annotations

import json
from typing import Any

from localcloud.executors import WSGIApp
from localcloud.iam.enforcement.asks import Ask, Request
from localcloud.iam.enforcement.authn import Caller
from localcloud.iam.enforcement.decide import Denial, decide

STREAM_READ = ("kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream", "kinesis:ListShards")
DYNAMODB_STREAM_READ = ("dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream",
                        "dynamodb:ListStreams")
QUEUE_READ = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


def _body(r: Request) -> dict[str, Any]:
    try:
        value = json.loads(r.body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check(r: Request) -> WSGIApp | None:
    """Lambda's own refusal of an event source its function's role cannot read."""
    if r.service != "lambda" or r.operation != "CreateEventSourceMapping":
        return None
    body = _body(r)
    source, function = str(body.get("EventSourceArn", "")), str(body.get("FunctionName", ""))
    if not source or not function:
        return None
    message = event_source_refusal(function, source, r.account, r.region)
    if message is None:
        return None
    from localcloud.executor_base import respond

    answer = json.dumps({"Type": "User", "Message": message, "message": message}).encode()
    return respond(400, answer, "application/json", request_id=True,
                   headers=[("x-amzn-ErrorType", "InvalidParameterValueException")])


def event_source_refusal(function: str, source: str, account: str, region: str) -> str | None:
    """Lambda's message when the function's role cannot read `source`, else None."""
    from localcloud.iam.enforcement.rest_asks import function_arn
    from localcloud.motoapi import lambda_backends

    arn = function_arn(function, region, account)
    parts = arn.split(":")
    try:
        role = str(lambda_backends[parts[4]][parts[3]].get_function(parts[6]).role)
    except Exception:  # noqa: BLE001 - no such function: Lambda answers that itself
        return None
    service = source.split(":")[2] if source.count(":") >= 5 else ""
    if service == "kinesis":
        actions, message = STREAM_READ, (f"Cannot access stream {source}. Please ensure the role can perform the "
                                         "GetRecords, GetShardIterator, DescribeStream, and ListShards Actions on "
                                         "your stream in IAM.")
    elif service == "dynamodb":
        actions, message = DYNAMODB_STREAM_READ, (f"Cannot access stream {source}. Please ensure the role can "
                                                  "perform the GetRecords, GetShardIterator, DescribeStream, and "
                                                  "ListStreams Actions on your stream in IAM.")
    elif service == "sqs":
        denied = role_denial(role, parts[6], [Ask(a, source) for a in QUEUE_READ], region)
        if denied is None:
            return None
        name = denied.ask.action.split(":", 1)[1]
        return f"The provided execution role does not have permissions to call {name} on SQS"
    else:
        return None
    return message if role_denial(role, parts[6], [Ask(a, source) for a in actions], region) else None


def role_denial(role_arn: str, session_name: str, asks: list[Ask], region: str) -> Denial | None:
    """What a session of `role_arn` would be refused among `asks` (None: all allowed), resource policies
    included: for executors acting in-process on a role's behalf (a delivery role, an event source)."""
    from localcloud.iam.enforcement.resources import resource_policy

    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else "123456789012"
    session = Caller("assumed-role", f"arn:aws:sts::{account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/"
                     f"{session_name}", account, role_arn)
    return decide(session, asks, region, lambda ask: resource_policy(ask, account, region))


def extra_asks(r: Request) -> list[Ask]:
    """iam:PassRole when a request hands a role to Lambda; kms:Decrypt when SSM decrypts a SecureString
    under a customer key (the AWS managed key aws/ssm needs no key permission of the caller)."""
    if r.service == "lambda" and r.operation in ("CreateFunction", "UpdateFunctionConfiguration"):
        role = _body(r).get("Role")
        if role:
            return [Ask("iam:PassRole", str(role), {"iam:passedtoservice": ("lambda.amazonaws.com",)})]
    if r.service == "ssm" and r.operation in ("GetParameter", "GetParameters") and \
            r.params.get("WithDecryption") in (True, "true"):
        names = [r.params["Name"]] if "Name" in r.params else list(r.params.get("Names") or [])
        return [Ask("kms:Decrypt", key, {"kms:viaservice": (f"ssm.{r.region}.amazonaws.com",)})
                for key in _customer_keys(r, names)]
    return []


def _customer_keys(r: Request, names: list[str]) -> list[str]:
    from localcloud.motoapi import ssm_backends

    keys = []
    for name in names:
        try:
            parameter = ssm_backends[r.account][r.region].get_parameter(str(name))
        except Exception:  # noqa: BLE001 - no such parameter: SSM answers that itself
            parameter = None
        key = getattr(parameter, "keyid", None) if getattr(parameter, "parameter_type", "") == "SecureString" else None
        if key and key != "alias/aws/ssm":
            keys.append(key if key.startswith("arn:") else
                        f"arn:aws:kms:{r.region}:{r.account}:{key if key.startswith('alias/') else 'key/' + key}")
    return keys


def trust_refusal(caller: Caller, asks: list[Ask]) -> str | None:
    """AWS's refusal of sts:AssumeRole when the role's trust policy trusts neither the caller nor its
    account."""
    for ask in asks:
        if ask.action != "sts:AssumeRole":
            continue
        from localcloud.iam.principals import parse_principal_arn
        from localcloud.iam.model import SimulatorError
        from localcloud.motoapi import iam_backends

        try:
            principal = parse_principal_arn(ask.resource)
            backend = iam_backends[principal.account_id]["aws"]
            role = next(r for r in list(backend.roles.values()) if r.name == principal.name)
            trust = json.loads(role.assume_role_policy_document)
        except (SimulatorError, StopIteration, ValueError, TypeError, KeyError):
            trust = {}
        if not _trusts(trust, caller):
            return f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {ask.resource}"
    return None


def _trusts(trust: Any, caller: Caller) -> bool:
    statements = trust.get("Statement", []) if isinstance(trust, dict) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        values = principal.get("AWS", []) if isinstance(principal, dict) else [principal]
        for value in values if isinstance(values, list) else [values]:
            if value in ("*", caller.account, f"arn:aws:iam::{caller.account}:root", caller.entity_arn, caller.arn):
                return True
    return False


def missing_object_refusal(caller: Caller, asks: list[Ask], region: str) -> str | None:
    """S3 answers a read of a key that does not exist with 403 AccessDenied, not 404 NoSuchKey, unless
    the caller may also list the bucket (s3:ListBucket): what a missing object looks like to a caller
    depends on that permission."""
    from localcloud.iam.enforcement.resources import resource_policy
    from localcloud.motoapi import s3_backends

    for ask in asks:
        if ask.action not in ("s3:GetObject", "s3:GetObjectVersion") or "/" not in ask.resource[13:]:
            continue
        bucket, key = ask.resource[len("arn:aws:s3:::"):].split("/", 1)
        found = s3_backends[caller.account]["aws"].buckets.get(bucket)
        if found is None or key in found.keys:
            continue
        listing = Ask("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": (key,)})
        denied = decide(caller, [listing], region, lambda a: resource_policy(a, caller.account, region))
        if denied is not None:
            return denied.message.replace(f"on resource: {listing.resource}", f'on resource: "{listing.resource}"')
    return None
