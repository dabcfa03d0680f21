"""IAM enforced by the local cloud, with plain boto3 against a real local cloud: a function's execution
role, an IAM user's access key and an assume_role session are allowed exactly what their policies allow,
with AWS's refusals (AccessDeniedException, S3 AccessDenied, SNS AuthorizationError, SignatureDoesNotMatch,
InvalidClientTokenId); the account root may do everything; RETAIL_LOCALCLOUD_IAM=off allows all."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import lifecycle

REGION, ACCOUNT = "us-east-1", "123456789012"
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

# A function that makes the calls it is told to and reports each answer (or AWS's error code and message).
PROBE = '''
import json, boto3
from botocore.exceptions import ClientError

def handler(event, context):
    results = []
    for service, operation, params in event["calls"]:
        try:
            getattr(boto3.client(service), operation)(**params)
            results.append(["ok", ""])
        except ClientError as error:
            results.append([error.response["Error"]["Code"], error.response["Error"]["Message"]])
    return results
'''


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Any, resources: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def bundle(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud"), {"RETAIL_LOCALCLOUD_IAM": "on"}) as url:
        yield url


def client(endpoint: str, service: str, key: str = "testing", secret: str = "testing",
           token: str | None = None) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=NO_RETRIES)


def error_of(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def world(endpoint: str) -> dict[str, str]:
    """Root creates two buckets, a table, a stream and the token secret, as notebook 00-05 would."""
    s3, names = client(endpoint, "s3"), {"a": unique("bucket-a"), "b": unique("bucket-b"), "table": unique("t")}
    for bucket in (names["a"], names["b"]):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k.txt", Body=b"hello")
    client(endpoint, "dynamodb").create_table(
        TableName=names["table"], KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    names["parameter"] = f"/{unique('retail')}/token-secret"
    client(endpoint, "ssm").put_parameter(Name=names["parameter"], Value="s3cr3t", Type="SecureString")
    return names


def deploy(endpoint: str, role_policy: str) -> tuple[str, str]:
    """A function whose execution role holds only `role_policy`; (function name, role name)."""
    iam, name = client(endpoint, "iam"), unique("fn")
    role = iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=TRUST)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="only", PolicyDocument=role_policy)
    client(endpoint, "lambda").create_function(
        FunctionName=name, Runtime="python3.11", Role=role["Arn"], Handler="app.handler", Timeout=30,
        Code={"ZipFile": bundle({"app.py": PROBE})})
    return name, role["RoleName"]


def run(endpoint: str, function: str, *calls: tuple[str, str, dict[str, Any]]) -> list[list[str]]:
    answer = client(endpoint, "lambda").invoke(FunctionName=function, Payload=json.dumps({"calls": calls}))
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def test_a_function_gets_exactly_what_its_role_allows(endpoint: str, world: dict[str, str]):
    function, role = deploy(endpoint, policy(allow("s3:GetObject", f"arn:aws:s3:::{world['a']}/*")))
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{function}"
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{world['table']}"
    results = run(endpoint, function,
                  ("s3", "get_object", {"Bucket": world["a"], "Key": "k.txt"}),
                  ("s3", "get_object", {"Bucket": world["b"], "Key": "k.txt"}),
                  ("s3", "put_object", {"Bucket": world["a"], "Key": "new.txt", "Body": "x"}),
                  ("s3", "list_buckets", {}),
                  ("dynamodb", "scan", {"TableName": world["table"]}),
                  ("dynamodb", "put_item", {"TableName": world["table"], "Item": {"pk": {"S": "1"}}}),
                  ("ssm", "get_parameter", {"Name": world["parameter"], "WithDecryption": True}),
                  ("kinesis", "put_record", {"StreamName": "any", "Data": "x", "PartitionKey": "p"}),
                  ("iam", "create_user", {"UserName": unique("intruder")}))
    assert results[0] == ["ok", ""]
    assert results[1] == ["AccessDenied", f"User: {session} is not authorized to perform: s3:GetObject on resource: "
                          f"\"arn:aws:s3:::{world['b']}/k.txt\" because no identity-based policy allows the "
                          "s3:GetObject action"]
    assert results[2][0] == results[3][0] == "AccessDenied"
    assert results[4] == ["AccessDeniedException", f"User: {session} is not authorized to perform: dynamodb:Scan on "
                          f"resource: {table_arn} because no identity-based policy allows the dynamodb:Scan action"]
    assert results[5][0] == "AccessDeniedException" and "dynamodb:PutItem" in results[5][1]
    parameter_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{world['parameter']}"
    assert results[6] == ["AccessDeniedException", f"User: {session} is not authorized to perform: ssm:GetParameter "
                          f"on resource: {parameter_arn} because no identity-based policy allows the "
                          "ssm:GetParameter action"]
    assert results[7][0] == "AccessDeniedException" and "kinesis:PutRecord" in results[7][1]
    assert results[8][0] == "AccessDenied" and "iam:CreateUser" in results[8][1]


def test_a_missing_object_is_access_denied_without_list_bucket(endpoint: str, world: dict[str, str]):
    objects = f"arn:aws:s3:::{world['a']}/*"
    blind, _ = deploy(endpoint, policy(allow("s3:GetObject", objects)))
    seeing, _ = deploy(endpoint, policy(allow("s3:GetObject", objects),
                                        allow("s3:ListBucket", f"arn:aws:s3:::{world['a']}")))
    missing = ("s3", "get_object", {"Bucket": world["a"], "Key": "not-yet.txt"})
    assert run(endpoint, blind, missing)[0][0] == "AccessDenied"
    assert run(endpoint, seeing, missing)[0][0] == "NoSuchKey"


def test_a_securestring_under_a_customer_key_needs_kms_decrypt(endpoint: str, world: dict[str, str]):
    key = client(endpoint, "kms").create_key()["KeyMetadata"]
    name = f"/{unique('retail')}/customer-key-secret"
    client(endpoint, "ssm").put_parameter(Name=name, Value="s3cr3t", Type="SecureString", KeyId=key["KeyId"])
    parameter_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"
    without, _ = deploy(endpoint, policy(allow("ssm:GetParameter", parameter_arn)))
    with_key, _ = deploy(endpoint, policy(allow("ssm:GetParameter", parameter_arn), allow("kms:Decrypt", key["Arn"])))
    read = ("ssm", "get_parameter", {"Name": name, "WithDecryption": True})
    code, message = run(endpoint, without, read)[0]
    assert code == "AccessDeniedException" and f"kms:Decrypt on resource: {key['Arn']}" in message
    assert run(endpoint, with_key, read)[0] == ["ok", ""]
    assert run(endpoint, without, ("ssm", "get_parameter", {"Name": name}))[0] == ["ok", ""]  # no decryption


def test_an_explicit_deny_wins_over_an_allow(endpoint: str, world: dict[str, str]):
    function, _ = deploy(endpoint, policy(allow("s3:*", "*"),
                                          {"Effect": "Deny", "Action": "s3:GetObject",
                                           "Resource": f"arn:aws:s3:::{world['b']}/*"}))
    ok, denied = run(endpoint, function, ("s3", "get_object", {"Bucket": world["a"], "Key": "k.txt"}),
                     ("s3", "get_object", {"Bucket": world["b"], "Key": "k.txt"}))
    assert ok == ["ok", ""]
    assert denied[0] == "AccessDenied" and denied[1].endswith("with an explicit deny in an identity-based policy")


def test_a_users_access_key_is_held_to_its_policies(endpoint: str, world: dict[str, str]):
    iam, user = client(endpoint, "iam"), unique("analyst")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read-table", PolicyDocument=policy(
        allow(["dynamodb:GetItem", "dynamodb:Scan"], f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{world['table']}")))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    dynamodb = client(endpoint, "dynamodb", key["AccessKeyId"], key["SecretAccessKey"])
    assert dynamodb.scan(TableName=world["table"])["Count"] >= 0
    code, message = error_of(dynamodb.delete_item, TableName=world["table"], Key={"pk": {"S": "1"}})
    assert code == "AccessDeniedException"
    assert message.startswith(f"User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: "
                              "dynamodb:DeleteItem")
    own = client(endpoint, "iam", key["AccessKeyId"], key["SecretAccessKey"])
    code, message = error_of(own.get_user)  # the caller's own user, named in the refusal
    assert code == "AccessDenied" and message.endswith(
        f"iam:GetUser on resource: arn:aws:iam::{ACCOUNT}:user/{user} because no identity-based policy allows the "
        "iam:GetUser action")
    sns = client(endpoint, "sns", key["AccessKeyId"], key["SecretAccessKey"])
    assert error_of(sns.create_topic, Name=unique("topic"))[0] == "AuthorizationError"
    queue = client(endpoint, "sqs").create_queue(QueueName=unique("q"))["QueueUrl"]
    sqs = client(endpoint, "sqs", key["AccessKeyId"], key["SecretAccessKey"])
    assert error_of(sqs.send_message, QueueUrl=queue, MessageBody="x")[0] == "AccessDenied"
    awslambda = client(endpoint, "lambda", key["AccessKeyId"], key["SecretAccessKey"])
    code, message = error_of(awslambda.invoke, FunctionName="anything", Payload=b"{}")
    assert code == "AccessDeniedException" and f"lambda:InvokeFunction on resource: arn:aws:lambda:{REGION}:" \
        f"{ACCOUNT}:function:anything because" in message
    s3 = client(endpoint, "s3", key["AccessKeyId"], key["SecretAccessKey"])
    assert error_of(s3.list_buckets)[0] == "AccessDenied"


def test_handing_a_role_to_lambda_needs_pass_role(endpoint: str, world: dict[str, str]):
    iam, user = client(endpoint, "iam"), unique("deployer")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="deploy", PolicyDocument=policy(allow("lambda:CreateFunction", "*")))
    role = iam.create_role(RoleName=unique("exec"), AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    awslambda = client(endpoint, "lambda", key["AccessKeyId"], key["SecretAccessKey"])
    create = dict(FunctionName=unique("fn"), Runtime="python3.11", Role=role, Handler="app.handler",
                  Code={"ZipFile": bundle({"app.py": PROBE})})
    code, message = error_of(awslambda.create_function, **create)
    assert code == "AccessDeniedException" and f"iam:PassRole on resource: {role}" in message
    iam.put_user_policy(UserName=user, PolicyName="pass", PolicyDocument=policy(allow("iam:PassRole", role)))
    assert awslambda.create_function(**create)["Role"] == role


def test_assume_role_credentials_carry_the_roles_policies(endpoint: str, world: dict[str, str]):
    iam, user = client(endpoint, "iam"), unique("operator")
    iam.create_user(UserName=user)
    role = iam.create_role(RoleName=unique("reader"), AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="read-a", PolicyDocument=policy(
        allow("s3:GetObject", f"arn:aws:s3:::{world['a']}/*")))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sts = client(endpoint, "sts", key["AccessKeyId"], key["SecretAccessKey"])
    assert error_of(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="first-try")[0] == "AccessDenied"
    assert error_of(client(endpoint, "sts").assume_role, RoleArn=role["Arn"], RoleSessionName="as-root") == (
        "AccessDenied", "Roles may not be assumed by root accounts.")
    iam.put_user_policy(UserName=user, PolicyName="assume", PolicyDocument=policy(allow("sts:AssumeRole", role["Arn"])))
    credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="night-shift")["Credentials"]
    s3 = client(endpoint, "s3", credentials["AccessKeyId"], credentials["SecretAccessKey"],
                credentials["SessionToken"])
    assert s3.get_object(Bucket=world["a"], Key="k.txt")["Body"].read() == b"hello"
    code, message = error_of(s3.get_object, Bucket=world["b"], Key="k.txt")
    assert code == "AccessDenied"
    assert f"assumed-role/{role['RoleName']}/night-shift is not authorized" in message
    who = client(endpoint, "sts", credentials["AccessKeyId"], credentials["SecretAccessKey"],
                 credentials["SessionToken"]).get_caller_identity()
    assert who["Arn"].endswith(f"assumed-role/{role['RoleName']}/night-shift")
    wrong_token = client(endpoint, "s3", credentials["AccessKeyId"], credentials["SecretAccessKey"], "forged")
    assert error_of(wrong_token.get_object, Bucket=world["a"], Key="k.txt")[0] == "InvalidToken"


def test_a_wrong_secret_is_signature_does_not_match(endpoint: str, world: dict[str, str]):
    code, message = error_of(client(endpoint, "dynamodb", "testing", "not-the-secret").list_tables)
    assert code == "InvalidSignatureException"
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    assert error_of(client(endpoint, "sqs", "testing", "nope").list_queues)[0] == "SignatureDoesNotMatch"
    assert error_of(client(endpoint, "s3", "testing", "nope").list_buckets)[0] == "SignatureDoesNotMatch"
    assert error_of(client(endpoint, "iam", "testing", "nope").list_roles)[0] == "SignatureDoesNotMatch"


def test_an_unknown_key_is_refused(endpoint: str, world: dict[str, str]):
    made_up = ("MADEUPACCESSKEYID000", "made-up-secret")
    code, message = error_of(client(endpoint, "sts", *made_up).get_caller_identity)
    assert (code, message) == ("InvalidClientTokenId", "The security token included in the request is invalid.")
    assert error_of(client(endpoint, "ssm", *made_up).get_parameter, Name=world["parameter"],
                    WithDecryption=True)[0] == "UnrecognizedClientException"
    assert error_of(client(endpoint, "s3", *made_up).get_object, Bucket=world["a"], Key="k.txt")[0] == \
        "InvalidAccessKeyId"


def test_unsigned_requests_are_refused(endpoint: str, world: dict[str, str]):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(endpoint + "/", data=b"{}", method="POST", headers={
        "X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert json.loads(caught.value.read())["__type"] == "MissingAuthenticationTokenException"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{endpoint}/{world['a']}/k.txt", timeout=10)
    assert caught.value.code == 403 and b"<Code>AccessDenied</Code>" in caught.value.read()
    public = unique("public")  # anonymous callers get what a bucket policy grants to "*"
    root = client(endpoint, "s3")
    root.create_bucket(Bucket=public)
    root.put_object(Bucket=public, Key="site/index.html", Body=b"<h1>shop</h1>")
    root.put_bucket_policy(Bucket=public, Policy=policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                         "Resource": f"arn:aws:s3:::{public}/site/*"}))
    with urllib.request.urlopen(f"{endpoint}/{public}/site/index.html", timeout=10) as answer:
        assert answer.read() == b"<h1>shop</h1>"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{public}/site/x", data=b"x", method="PUT"), timeout=10)
    assert caught.value.code == 403


def test_a_presigned_url_is_checked(endpoint: str, world: dict[str, str]):
    import urllib.error
    import urllib.request

    for config in (NO_RETRIES, Config(signature_version="s3v4")):  # boto3's default (SigV2 query) and SigV4
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=config)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": world["a"], "Key": "k.txt"})
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == b"hello"
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url.replace("Signature=", "Signature=0"), timeout=10)
        assert b"<Code>SignatureDoesNotMatch</Code>" in caught.value.read()


def test_the_root_may_do_everything(endpoint: str, world: dict[str, str]):
    root = client(endpoint, "iam")
    user = unique("temp")
    root.create_user(UserName=user)
    root.delete_user(UserName=user)
    assert client(endpoint, "s3").list_buckets()["Buckets"]
    assert client(endpoint, "ssm").get_parameter(Name=world["parameter"], WithDecryption=True)["Parameter"]["Value"] \
        == "s3cr3t"


def test_an_event_source_the_role_cannot_read_is_refused(endpoint: str, world: dict[str, str]):
    queue = client(endpoint, "sqs").create_queue(QueueName=unique("q"))["QueueUrl"]
    queue_arn = client(endpoint, "sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    function, role = deploy(endpoint, policy(allow("s3:GetObject", "*")))
    awslambda = client(endpoint, "lambda")
    code, message = error_of(awslambda.create_event_source_mapping, EventSourceArn=queue_arn, FunctionName=function)
    assert (code, message) == ("InvalidParameterValueException",
                               "The provided execution role does not have permissions to call ReceiveMessage on SQS")
    client(endpoint, "iam").put_role_policy(RoleName=role, PolicyName="consume", PolicyDocument=policy(
        allow(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], queue_arn)))
    assert awslambda.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=function)["UUID"]


def test_off_allows_all(tmp_path_factory: pytest.TempPathFactory):
    with lifecycle.running(tmp_path_factory.mktemp("open"), {"RETAIL_LOCALCLOUD_IAM": "off"}) as url:
        made_up = client(url, "s3", "MADEUPACCESSKEYID000", "whatever")
        made_up.create_bucket(Bucket="anything-goes")
        assert [b["Name"] for b in made_up.list_buckets()["Buckets"]] == ["anything-goes"]


# --------------------------------------------------------------------------------------------------
# Request -> (action, resource), in-process


def _json_request(service: str, operation: str, params: dict[str, Any]) -> Any:
    from localcloud.iam.enforcement.asks import Request

    return Request(service, "json", operation, "POST", "/", {}, params, REGION, ACCOUNT, {})


@pytest.mark.parametrize("service, operation, params, expected", [
    ("dynamodb", "Query", {"TableName": "t", "IndexName": "by-customer"},
     [("dynamodb:Query", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/index/by-customer")]),
    ("dynamodb", "BatchWriteItem", {"RequestItems": {"a": [], "b": []}},
     [("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/a"),
      ("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/b")]),
    ("dynamodb", "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "t"}}, {"Delete": {"TableName": "t"}}]},
     [("dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"),
      ("dynamodb:DeleteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t")]),
    ("dynamodb", "GetRecords", {"ShardIterator": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/stream/2026|1|abc"},
     [("dynamodb:GetRecords", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/stream/2026")]),
    ("kinesis", "GetRecords", {"ShardIterator": "c3RyZWFtLWE6c2hhcmRJZC0wMDA6MTA="},
     [("kinesis:GetRecords", f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/stream-a")]),
    ("sqs", "SendMessageBatch", {"QueueUrl": f"http://127.0.0.1:4566/{ACCOUNT}/quarantine"},
     [("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:quarantine")]),
    ("ssm", "GetParameter", {"Name": "/retail/token", "WithDecryption": True},
     [("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/retail/token")]),
    ("logs", "PutLogEvents", {"logGroupName": "/aws/lambda/f", "logStreamName": "s"},
     [("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:log-stream:s")]),
    ("monitoring", "PutMetricData", {"Namespace": "Retail"}, [("cloudwatch:PutMetricData", "*")]),
    ("firehose", "PutRecordBatch", {"DeliveryStreamName": "d"},
     [("firehose:PutRecordBatch", f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/d")]),
])
def test_json_requests_map_to_the_service_authorization_reference(service, operation, params, expected):
    from localcloud.iam.enforcement import json_asks

    assert [(ask.action, ask.resource) for ask in json_asks.asks(_json_request(service, operation, params))] == expected


def test_an_unknown_operation_is_unmapped():
    from localcloud.iam.enforcement import json_asks
    from localcloud.iam.enforcement.asks import Unmapped

    with pytest.raises(Unmapped):
        json_asks.asks(_json_request("dynamodb", "ExecuteStatement", {"Statement": "SELECT * FROM t"}))
    with pytest.raises(Unmapped):
        json_asks.asks(_json_request("stepfunctions", "StartExecution", {}))


def test_s3_and_lambda_requests_map_to_their_actions():
    from localcloud.iam.enforcement import rest_asks, s3_asks

    def s3(method: str, path: str, query: dict[str, str] | None = None, copy: str = "") -> list[tuple[str, str]]:
        return [(a.action, a.resource) for a in s3_asks.asks(method, "127.0.0.1", path, query or {},
                                                             {"x-amz-copy-source": copy}, b"")]

    assert s3("HEAD", "/lake/raw/a.json") == [("s3:GetObject", "arn:aws:s3:::lake/raw/a.json")]
    assert s3("GET", "/lake", {"list-type": "2", "prefix": "raw/"}) == [("s3:ListBucket", "arn:aws:s3:::lake")]
    assert s3("PUT", "/lake", {"notification": ""}) == [("s3:PutBucketNotification", "arn:aws:s3:::lake")]
    assert s3("PUT", "/lake/b", copy="/src/a%20b") == [("s3:PutObject", "arn:aws:s3:::lake/b"),
                                                        ("s3:GetObject", "arn:aws:s3:::src/a b")]
    assert s3("POST", "/lake/big", {"uploads": ""}) == [("s3:PutObject", "arn:aws:s3:::lake/big")]
    assert s3("GET", "/") == [("s3:ListAllMyBuckets", "*")]
    operation, asks = rest_asks.lambda_asks("POST", "/2015-03-31/functions/ingest/invocations", {"Qualifier": "live"},
                                            b"", REGION, ACCOUNT)
    assert (operation, asks[0].action, asks[0].resource) == (
        "Invoke", "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ingest:live")


def test_an_enforcement_failure_refuses_the_request(monkeypatch: pytest.MonkeyPatch):
    from localcloud.iam import enforcement
    from localcloud.iam.enforcement import gate
    from localcloud.persistence import REPLAY_DONE

    def broken(environ: dict[str, Any]) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(gate, "check", broken)
    assert REPLAY_DONE.is_set()
    answer = enforcement.check({"REQUEST_METHOD": "POST", "PATH_INFO": "/"})
    statuses: list[str] = []
    body = b"".join(answer({}, lambda status, headers: statuses.append(status)))
    assert statuses == ["500 Internal Server Error"] and b"KeyError" in body


def test_an_expired_session_is_recognised():
    from datetime import datetime, timedelta

    from localcloud.iam.enforcement.authn import _expired

    assert _expired(datetime.utcnow() - timedelta(seconds=1)) and not _expired(datetime.utcnow() + timedelta(hours=1))
