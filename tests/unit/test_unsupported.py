"""Unimplemented is loud: calls moto would only pretend to perform fail with a 501 naming the call, in the
service's own error shape (JSON, REST-JSON, query), and the calls around them still reach moto."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud import lifecycle
from localcloud.executors import EXECUTOR_MODULES
from localcloud.unsupported.catalog import UNPERFORMED, build


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Any]]:
    """boto3 clients on a private local cloud running only this executor."""
    with lifecycle.running(tmp_path_factory.mktemp("unsupported"), {"RETAIL_LOCALCLOUD_EXECUTORS": "unsupported"}) \
            as endpoint:
        yield lambda service: boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                                           aws_access_key_id="testing", aws_secret_access_key="testing",
                                           config=Config(retries={"mode": "standard", "max_attempts": 3}))


def refused(call: Callable[[], Any], service: str, operation: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert error["Error"]["Code"] == "NotImplemented"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert error["ResponseMetadata"].get("RetryAttempts", 0) == 0  # a 501 is not retried
    assert f"The local cloud does not perform {service} {operation}" in error["Error"]["Message"]
    return caught.value


def test_glue_job_run_is_refused_and_nothing_is_recorded(aws: Callable[[str], Any]):
    glue = aws("glue")
    glue.create_job(Name="nightly", Role="arn:aws:iam::123456789012:role/glue",
                    Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/nightly.py"})  # stored: fine
    error = refused(lambda: glue.start_job_run(JobName="nightly"), "Glue", "StartJobRun")
    assert "without running the job's script" in str(error)
    assert glue.get_job_runs(JobName="nightly")["JobRuns"] == []  # no phantom SUCCEEDED run
    assert glue.get_job(JobName="nightly")["Job"]["Name"] == "nightly"


def test_step_functions_execution_is_refused(aws: Callable[[str], Any]):
    sfn = aws("stepfunctions")
    arn = sfn.create_state_machine(
        name="pipeline", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition='{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}')["stateMachineArn"]
    refused(lambda: sfn.start_execution(stateMachineArn=arn, input="{}"), "SFN", "StartExecution")
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_rest_json_services_answer_with_their_error_header(aws: Callable[[str], Any]):
    scheduler = aws("scheduler")
    refused(lambda: scheduler.create_schedule(
        Name="hourly", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:f", "RoleArn": "arn:aws:iam::1:role/r"}),
        "Scheduler", "CreateSchedule")
    assert scheduler.list_schedules()["Schedules"] == []
    batch = aws("batch")
    refused(lambda: batch.submit_job(jobName="load", jobQueue="q", jobDefinition="d"), "Batch", "SubmitJob")
    runtime = aws("sagemaker-runtime")
    refused(lambda: runtime.invoke_endpoint(EndpointName="model", Body=b"{}", ContentType="application/json"),
            "SageMaker Runtime", "InvokeEndpoint")


def test_query_protocol_answers_an_error_response(aws: Callable[[str], Any]):
    rds = aws("rds")
    refused(lambda: rds.start_export_task(
        ExportTaskIdentifier="export", SourceArn="arn:aws:rds:us-east-1:123456789012:snapshot:snap",
        S3BucketName="lake", IamRoleArn="arn:aws:iam::123456789012:role/export", KmsKeyId="key"),
        "RDS", "StartExportTask")
    # a query call that is not refused still reaches moto with its whole body (the form was put back)
    with pytest.raises(ClientError) as caught:
        rds.describe_db_instances(DBInstanceIdentifier="no-such-db")
    assert caught.value.response["Error"]["Code"] == "DBInstanceNotFound"
    assert "no-such-db" in caught.value.response["Error"]["Message"]


def test_a_service_moto_lacks_is_refused_whole(aws: Callable[[str], Any]):
    """moto has no Redshift Serverless: without this, an HTML 500 that botocore retried four times."""
    serverless = aws("redshift-serverless")
    refused(lambda: serverless.list_workgroups(), "Redshift Serverless", "ListWorkgroups")
    error = refused(lambda: serverless.delete_workgroup(workgroupName="retail-wh"), "Redshift Serverless",
                    "DeleteWorkgroup")
    assert "provisioned cluster" in str(error)


def test_every_entry_matches_botocore_and_the_executor_comes_last():
    catalog = build()
    named = {operation for operations, _ in UNPERFORMED.values() for operation in operations if operation != "*"}
    named |= set(boto3.session.Session().client("redshift-serverless", region_name="us-east-1").meta
                 .service_model.operation_names)
    found = {entry.operation for entry in catalog.targets.values()} \
        | {entry.operation for routes in catalog.routes.values() for _, entry in routes} \
        | {entry.operation for entry in catalog.actions.values()}
    assert found == named
    assert EXECUTOR_MODULES[-1] == "localcloud.unsupported.executor"
    for excluded in ("athena", "comprehend", "apigatewayv2", "lambda", "kinesis", "firehose", "redshift-data"):
        assert excluded not in UNPERFORMED
    assert not any("Crawler" in op or "Alarm" in op for ops, _ in UNPERFORMED.values() for op in ops)


def test_a_catalog_entry_that_botocore_does_not_know_fails_at_build():
    with pytest.raises(Exception, match="NoSuchOperation|not found|StartNothing"):
        build([("glue", (("StartNothing",), "reason"))])

