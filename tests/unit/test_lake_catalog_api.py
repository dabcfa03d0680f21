"""The catalog calls moto lacks, against a local cloud of its own, as a student's notebook makes them:
Glue's UpdateCrawler converging a crawler's settings (refused while it crawls); Athena's named queries
updated, read in a batch and deleted; a workgroup with contents refused without RecursiveDeleteOption and
deleted with them when it is set; `primary` never deleted."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import lifecycle

RESULTS = "s3://nq-results/athena/"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Any]]:
    env = {"RETAIL_LOCALCLOUD_EXECUTORS": "glue,athena"}
    with lifecycle.running(tmp_path_factory.mktemp("catalog-api-localcloud"), env) as url:
        boto = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        boto.client("s3", endpoint_url=url).create_bucket(Bucket="nq-results")
        yield lambda service: boto.client(service, endpoint_url=url)


@pytest.fixture()
def athena(session: Callable[[str], Any]) -> Any:
    return session("athena")


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def test_update_crawler_sets_the_members_it_names(session: Callable[[str], Any]):
    glue = session("glue")
    glue.create_database(DatabaseInput={"Name": "retail_lake"})
    glue.create_crawler(Name="raw", Role="arn:aws:iam::123456789012:role/crawler", DatabaseName="retail_lake",
                        Targets={"S3Targets": [{"Path": "s3://nq-results/raw/"}]}, TablePrefix="old_",
                        SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"})
    glue.update_crawler(Name="raw", TablePrefix="sales_", Targets={"S3Targets": [{"Path": "s3://nq-results/lake/"}]},
                        SchemaChangePolicy={"UpdateBehavior": "UPDATE_IN_DATABASE",
                                            "DeleteBehavior": "DEPRECATE_IN_DATABASE"})
    crawler = glue.get_crawler(Name="raw")["Crawler"]
    assert crawler["TablePrefix"] == "sales_" and crawler["Version"] == 2
    assert crawler["Targets"]["S3Targets"][0]["Path"] == "s3://nq-results/lake/"
    assert crawler["SchemaChangePolicy"]["DeleteBehavior"] == "DEPRECATE_IN_DATABASE"
    assert crawler["DatabaseName"] == "retail_lake"  # not named: unchanged
    with pytest.raises(ClientError) as missing:
        glue.update_crawler(Name="nowhere", TablePrefix="x_")
    assert code(missing) == "EntityNotFoundException"


def test_named_query_updated_batch_read_and_deleted(athena: Any):
    athena.create_work_group(Name="nq-team", Configuration={"ResultConfiguration": {"OutputLocation": RESULTS}})
    first = athena.create_named_query(Name="revenue", Database="retail", QueryString="SELECT 1 AS one",
                                      WorkGroup="nq-team")["NamedQueryId"]
    athena.update_named_query(NamedQueryId=first, Name="revenue by month", QueryString="SELECT 2 AS two",
                              Description="the learner's query")
    named = athena.get_named_query(NamedQueryId=first)["NamedQuery"]
    assert (named["Name"], named["QueryString"], named["Description"], named["WorkGroup"]) == (
        "revenue by month", "SELECT 2 AS two", "the learner's query", "nq-team")
    batch = athena.batch_get_named_query(NamedQueryIds=[first, "no-such-id"])
    assert [q["NamedQueryId"] for q in batch["NamedQueries"]] == [first]
    assert batch["UnprocessedNamedQueryIds"][0]["NamedQueryId"] == "no-such-id"
    athena.delete_named_query(NamedQueryId=first)
    assert athena.list_named_queries(WorkGroup="nq-team")["NamedQueryIds"] == []
    with pytest.raises(ClientError) as again:
        athena.delete_named_query(NamedQueryId=first)
    assert code(again) == "InvalidRequestException"
    athena.delete_work_group(WorkGroup="nq-team")  # empty: no option needed
    assert "nq-team" not in {g["Name"] for g in athena.list_work_groups()["WorkGroups"]}


def test_a_workgroup_with_contents_needs_the_recursive_option(athena: Any):
    athena.create_work_group(Name="nq-full", Configuration={"ResultConfiguration": {"OutputLocation": RESULTS}})
    named = athena.create_named_query(Name="q", Database="default", QueryString="SELECT 1 AS one",
                                      WorkGroup="nq-full")["NamedQueryId"]
    query_id = athena.start_query_execution(QueryString="SELECT 1 AS one", WorkGroup="nq-full")["QueryExecutionId"]
    deadline = time.monotonic() + 30
    while athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"] in ("QUEUED", "RUNNING"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ClientError) as refused:
        athena.delete_work_group(WorkGroup="nq-full")
    assert code(refused) == "InvalidRequestException" and "RecursiveDeleteOption" in str(refused.value)
    athena.delete_work_group(WorkGroup="nq-full", RecursiveDeleteOption=True)
    assert "nq-full" not in {g["Name"] for g in athena.list_work_groups()["WorkGroups"]}
    with pytest.raises(ClientError) as gone:
        athena.get_named_query(NamedQueryId=named)
    assert code(gone) == "InvalidRequestException"
    with pytest.raises(ClientError) as no_execution:
        athena.get_query_execution(QueryExecutionId=query_id)
    assert code(no_execution) == "InvalidRequestException"
    with pytest.raises(ClientError) as primary:
        athena.delete_work_group(WorkGroup="primary", RecursiveDeleteOption=True)
    assert code(primary) == "InvalidRequestException"
    with pytest.raises(ClientError) as unknown:
        athena.delete_work_group(WorkGroup="nq-never")
    assert code(unknown) == "InvalidRequestException"
