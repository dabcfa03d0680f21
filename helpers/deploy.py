"""Converging deploy steps for code whose lesson is not the build (the end-to-end benchmark, the
warehouse helpers, tests): `deploy_function`, `ensure_event_source_mapping`, `ensure_stream`,
`ensure_queue`, `ensure_bucket`, `ensure_table`, `ensure_layer`. Each finds what exists by name and
changes only what differs.

The notebooks build with the real boto3 calls instead (`create_function`, `create_stream`...), with
`helpers.idempotent.exists_ok` around each. Packaging is `helpers.packaging`, REST APIs
`helpers.apis`, deleting `helpers.teardown`; their names are re-exported here for older callers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from botocore.exceptions import ClientError

from helpers import config, waiting
from helpers.apis import (  # noqa: F401  (re-exported)
    Authorizer, RestApi, Route, ensure_api_key, ensure_rest_api, find_rest_api, invoke_url, lambda_uri,
)
from helpers.packaging import (  # noqa: F401  (re-exported)
    HANDLER, LAMBDA_PLATFORM, PACKAGE_CACHE, RUNTIME, PackagingError, code_sha256, deterministic_zip,
    function_folder, imported_layers, package, package_layer, package_layer_folder, read_requirements, resolve,
    source_files,
)
from helpers.resources import names

log = logging.getLogger("helpers.deploy")

PROJECT_TAG = {"project": "retail-pipelines"}
ROLE_PROPAGATION_SECONDS = 30.0  # a new IAM role can take a few seconds before Lambda may assume it
ROLE_RETRY_DELAY = 3.0


# -------------------------------------------------------------------------------------------------
# Lambda


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _function_config(name: str) -> dict[str, Any] | None:
    try:
        return config.client("lambda").get_function(FunctionName=name)["Configuration"]
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
            return None
        raise


def _wait(waiter: str, name: str) -> None:
    config.client("lambda").get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})


def _create_function(**arguments: Any) -> dict[str, Any]:
    """create_function, retrying while a new role has not reached Lambda yet (IAM is eventually
    consistent on AWS: 'The role defined for the function cannot be assumed by Lambda')."""
    awslambda = config.client("lambda")
    deadline = time.monotonic() + ROLE_PROPAGATION_SECONDS
    while True:
        try:
            return awslambda.create_function(**arguments)
        except ClientError as error:
            propagating = (_error_code(error) == "InvalidParameterValueException"
                           and "cannot be assumed by Lambda" in str(error))
            if not propagating or time.monotonic() + ROLE_RETRY_DELAY > deadline:
                raise
            log.info("role %s not assumable by Lambda yet; retrying", arguments["Role"])
            time.sleep(ROLE_RETRY_DELAY)


def deploy_function(folder: str | Path, *, role_arn: str, environment: dict[str, str] | None = None,
                    timeout: int = 30, memory: int = 256, layers: Sequence[str] = (),
                    name: str | None = None) -> str:
    """Create or update the function of `lambdas/<folder>/` and return its ARN. Code is uploaded only
    when its CodeSha256 differs, configuration only when a setting differs; waits until it is ready. The
    layers of `lambdas/layers/` its code imports (the record contract) are published and attached too."""
    path = function_folder(folder)
    name = name or names().function(path.name)
    data = package(path)
    layers = [*layers, *(ensure_folder_layer(layer) for layer in imported_layers(path))]  # what its code imports
    desired = {"Role": role_arn, "Handler": HANDLER, "Runtime": RUNTIME, "Timeout": timeout, "MemorySize": memory,
               "Environment": {"Variables": dict(environment or {})}, "Layers": list(layers)}
    awslambda = config.client("lambda")
    current = _function_config(name)
    if current is None:
        config.require_create_allowed(f"Lambda function {name}")
        created = _create_function(FunctionName=name, Code={"ZipFile": data}, Tags=PROJECT_TAG,
                                   Description=f"retail-pipelines lambdas/{path.name}", **desired)
        _wait("function_active_v2", name)
        log.info("created %s", name)
        return created["FunctionArn"]

    if current.get("CodeSha256") != code_sha256(data):
        config.require_create_allowed(f"new code for Lambda function {name}")
        awslambda.update_function_code(FunctionName=name, ZipFile=data)
        _wait("function_updated_v2", name)
        log.info("updated the code of %s", name)
    if _config_differs(current, desired):
        config.require_create_allowed(f"new configuration for Lambda function {name}")
        awslambda.update_function_configuration(FunctionName=name, **desired)
        _wait("function_updated_v2", name)
        log.info("updated the configuration of %s", name)
    return current["FunctionArn"]


def _config_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    now = {
        "Role": current.get("Role"), "Handler": current.get("Handler"), "Runtime": current.get("Runtime"),
        "Timeout": current.get("Timeout"), "MemorySize": current.get("MemorySize"),
        "Environment": {"Variables": (current.get("Environment") or {}).get("Variables") or {}},
        "Layers": [layer["Arn"] for layer in current.get("Layers") or []],
    }
    return now != desired


def ensure_layer(name: str, data: bytes, description: str = "retail-pipelines dependencies") -> str:
    """Publish a layer zip (`package_layer_folder`, `package_layer`) as a version unless the latest one has
    the same content; returns the layer version ARN (pass it to deploy_function(layers=...))."""
    awslambda = config.client("lambda")
    versions = awslambda.list_layer_versions(LayerName=name).get("LayerVersions", [])
    if versions:
        latest = max(versions, key=lambda v: v["Version"])
        content = awslambda.get_layer_version(LayerName=name, VersionNumber=latest["Version"])["Content"]
        if content.get("CodeSha256") == code_sha256(data):
            return latest["LayerVersionArn"]
    config.require_create_allowed(f"Lambda layer {name}")
    return awslambda.publish_layer_version(LayerName=name, Content={"ZipFile": data},
                                           CompatibleRuntimes=[RUNTIME],
                                           Description=description)["LayerVersionArn"]


def ensure_folder_layer(folder: str) -> str:
    """A layer of `lambdas/layers/<folder>/` (the record contract: "records"), published as notebook 02 does."""
    return ensure_layer(names().layer(folder), package_layer_folder(folder), f"retail-pipelines lambdas/layers/{folder}")


# Settings of a mapping fixed at creation; the rest can be updated in place.
_CREATE_ONLY = {"StartingPosition", "StartingPositionTimestamp", "Topics", "Queues", "SelfManagedEventSource",
                "SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig", "Tags"}


def ensure_event_source_mapping(function: str, source_arn: str, **settings: Any) -> str:
    """The mapping from `source_arn` to `function` (name or ARN) with these settings (boto3's
    create_event_source_mapping arguments); found and updated in place if it exists. Returns its UUID."""
    awslambda = config.client("lambda")
    existing = awslambda.list_event_source_mappings(FunctionName=function, EventSourceArn=source_arn)
    mappings = existing.get("EventSourceMappings", [])
    if not mappings:
        config.require_create_allowed(f"event source mapping {source_arn} -> {function}")
        uuid = awslambda.create_event_source_mapping(FunctionName=function, EventSourceArn=source_arn,
                                                     **settings)["UUID"]
    else:
        current = mappings[0]
        uuid = current["UUID"]
        changed = {key: value for key, value in settings.items()
                   if key not in _CREATE_ONLY and not _mapping_setting_matches(current, key, value)}
        if changed:
            config.require_create_allowed(f"event source mapping {uuid} settings")
            waiting.mapping_ready(uuid)
            awslambda.update_event_source_mapping(UUID=uuid, **changed)
            log.info("updated mapping %s: %s", uuid, sorted(changed))
    waiting.mapping_ready(uuid)
    return uuid


def _mapping_setting_matches(current: dict[str, Any], key: str, value: Any) -> bool:
    if key == "Enabled":
        return (current.get("State") in ("Enabled", "Enabling")) == bool(value)
    return current.get(key) == value


# -------------------------------------------------------------------------------------------------
# Streams, queues, buckets, tables


def ensure_stream(name: str, shards: int = 1) -> str:
    """A provisioned Kinesis stream with `shards` open shards, active; returns its ARN."""
    kinesis = config.client("kinesis")
    try:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except kinesis.exceptions.ResourceNotFoundException:
        config.require_create_allowed(f"Kinesis stream {name} ({shards} shards)")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        return _wait_stream(name)["StreamARN"]
    if summary["StreamStatus"] != "ACTIVE":
        summary = _wait_stream(name)
    if summary.get("OpenShardCount") != shards:
        config.require_create_allowed(f"{shards} shards for Kinesis stream {name}")
        kinesis.update_shard_count(StreamName=name, TargetShardCount=shards, ScalingType="UNIFORM_SCALING")
        summary = _wait_stream(name)
    return summary["StreamARN"]


def _wait_stream(name: str) -> dict[str, Any]:
    kinesis = config.client("kinesis")
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]


def ensure_queue(name: str, attributes: dict[str, str] | None = None) -> str:
    """An SQS queue's URL, creating it if needed (existing attributes are left as they are)."""
    sqs = config.client("sqs")
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        config.require_create_allowed(f"SQS queue {name}")
        return sqs.create_queue(QueueName=name, Attributes=attributes or {}, tags=PROJECT_TAG)["QueueUrl"]


def ensure_bucket(name: str) -> str:
    """An S3 bucket in the configured region (us-east-1 takes no LocationConstraint, others must)."""
    s3 = config.client("s3")
    try:
        s3.head_bucket(Bucket=name)
        return name
    except ClientError as error:
        code = _error_code(error)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise RuntimeError(f"bucket {name} exists but belongs to another account (names are global)") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    config.require_create_allowed(f"S3 bucket {name}")
    region = config.settings().region
    options: dict[str, Any] = {}
    if region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(Bucket=name, **options)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
    return name


def ensure_table(name: str, schema_kwargs: dict[str, Any]) -> str:
    """A DynamoDB table (created with create_table's arguments `schema_kwargs` if missing), active;
    returns its ARN. An existing table is kept as is: changing keys means a new table."""
    dynamodb = config.client("dynamodb")
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
        if table["TableStatus"] == "ACTIVE":
            return table["TableArn"]
    except dynamodb.exceptions.ResourceNotFoundException:
        config.require_create_allowed(f"DynamoDB table {name}")
        dynamodb.create_table(TableName=name, **schema_kwargs)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    return dynamodb.describe_table(TableName=name)["Table"]["TableArn"]
