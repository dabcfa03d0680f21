"""Deploy steps the streaming notebooks (02-05) call: package and deploy Lambda functions, and ensure
streams, queues, buckets, tables, event source mappings and REST APIs exist, idempotently.

Only public boto3 calls through `config.client(...)`, so the same code builds on the local cloud and
on a real account (where `config.require_create_allowed` stops it unless the user said yes). Every
`ensure_*` finds what exists by name and changes only what differs, so running a notebook twice
reuses everything; `teardown(prefix)` removes what the workbook built under a prefix, and nothing else.

Dependencies: a function folder's `requirements.txt` is vendored into the function zip (`package`),
copied offline from this environment's installed distributions. That runs the same on every runtime
(the local one and AWS) with no layer support needed. `package_layer` / `ensure_layer` build the
same files as a shared layer (`python/` prefix), which is what AWS users usually do for Powertools.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, NamedTuple, Sequence

from botocore.exceptions import ClientError
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from helpers import config
from helpers.paths import BUILD_DIR, LAMBDAS_DIR
from helpers.resources import names

log = logging.getLogger("helpers.deploy")

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the local Python: what we test with
HANDLER = "app.handler"
PACKAGE_CACHE = BUILD_DIR / "lambda"
# The Lambda Python runtime ships these; vendoring them would only add megabytes and version skew.
RUNTIME_PROVIDED = frozenset(
    canonicalize_name(n) for n in ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files give the same bytes and CodeSha256
PROJECT_TAG = {"project": "retail-pipelines"}
ROLE_PROPAGATION_SECONDS = 30.0  # a new IAM role can take a few seconds before Lambda may assume it
ROLE_RETRY_DELAY = 3.0
_EXCLUDED_PARTS = {"__pycache__", "tests", "test", ".pytest_cache"}


class PackagingError(RuntimeError):
    """A function or layer cannot be packaged (a requirement is missing or the wrong version)."""


# -------------------------------------------------------------------------------------------------
# Packaging


def function_folder(folder: str | Path) -> Path:
    """`lambdas/<folder>/`, or `folder` itself when it is a path to a directory (tests, experiments)."""
    path = Path(folder)
    if not path.is_absolute():
        path = LAMBDAS_DIR / path
    if not (path / "app.py").is_file():
        raise PackagingError(f"{path} is not a Lambda function folder: it has no app.py with handler(event, context)")
    return path


def source_files(folder: Path) -> dict[str, Path]:
    """The folder's .py files by archive name (tests and caches left out)."""
    files = {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if _EXCLUDED_PARTS & set(relative.parts[:-1]) or relative.name.startswith(("test_", ".")):
            continue
        files[relative.as_posix()] = path
    return files


def read_requirements(source: Path | Iterable[str]) -> list[Requirement]:
    """Requirements from a requirements.txt (comments, blank lines and pip options ignored) or lines."""
    lines = source.read_text().splitlines() if isinstance(source, Path) else list(source)
    requirements = []
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirements.append(Requirement(text))
        except InvalidRequirement as error:
            raise PackagingError(f"cannot read requirement {text!r}: {error}") from None
    return requirements


def resolve(requirements: Sequence[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions to vendor: each requirement and, recursively, its non-optional
    dependencies, less what the Lambda runtime provides. Offline: this environment is the source, so
    a requirement must be installed here at a version its pin allows."""
    environment = {**default_environment(), "extra": ""}
    found: dict[str, metadata.Distribution] = {}
    pending = [(requirement, "requirements.txt") for requirement in requirements]
    while pending:
        requirement, wanted_by = pending.pop(0)
        key = canonicalize_name(requirement.name)
        if key in RUNTIME_PROVIDED:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # an extra or another platform's dependency
        try:
            distribution = found.get(key) or metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{requirement} (needed by {wanted_by}) is not installed in this environment ({sys.prefix}); "
                f"packaging is offline and copies installed files: pip install '{requirement}' first"
            ) from None
        if not requirement.specifier.contains(distribution.version, prereleases=True):
            raise PackagingError(
                f"{requirement} (needed by {wanted_by}) is pinned, but {distribution.metadata['Name']} "
                f"{distribution.version} is installed: install the pinned version or change the pin"
            )
        if key in found:
            continue
        found[key] = distribution
        pending += [(Requirement(text), f"{distribution.metadata['Name']} {distribution.version}")
                    for text in distribution.requires or []]
    return [found[key] for key in sorted(found)]


def distribution_files(distribution: metadata.Distribution) -> dict[str, Path]:
    """What `pip install -t` would put in the target folder for this distribution: its package files
    and .dist-info, without compiled caches or scripts outside site-packages."""
    files = {}
    for entry in distribution.files or []:
        relative = entry.as_posix()
        if relative.startswith("..") or "__pycache__" in entry.parts or relative.endswith(".pyc"):
            continue
        path = Path(str(distribution.locate_file(entry)))
        if path.is_file():
            files[relative] = path
    if not _runs_on_lambda(distribution):
        warnings.warn(
            f"{distribution.metadata['Name']} {distribution.version} was installed with compiled extensions for "
            f"another platform than Lambda's ({LAMBDA_PLATFORM}, {RUNTIME}); the function will fail to import it. "
            "Package on linux x86_64, or use a layer built for Lambda",
            stacklevel=4,
        )
    return files


LAMBDA_PLATFORM = "manylinux x86_64"  # the architecture deploy_function creates (Lambda's default)


def _runs_on_lambda(distribution: metadata.Distribution) -> bool:
    """Pure Python, or a wheel tagged for manylinux x86_64 and this CPython (or the stable ABI)."""
    wheel = distribution.read_text("WHEEL") or ""
    if "Root-Is-Purelib: false" not in wheel:
        return True
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for line in wheel.splitlines():
        if line.startswith("Tag:"):
            _python, tag_abi, platform = line.split(":", 1)[1].strip().split("-", 2)
            if "linux" in platform and platform.endswith("x86_64") and tag_abi in (abi, "abi3", "none"):
                return True
    return False


def deterministic_zip(files: dict[str, Path | bytes]) -> bytes:
    """A zip of `files` (archive name -> path or bytes), sorted, with fixed timestamps and modes, so
    unchanged content always gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            content = files[name]
            archive.writestr(info, content if isinstance(content, bytes) else content.read_bytes())
    return buffer.getvalue()


def _vendored(distributions: Sequence[metadata.Distribution], prefix: str = "") -> dict[str, Path]:
    files: dict[str, Path] = {}
    for distribution in distributions:
        for name, path in distribution_files(distribution).items():
            files[prefix + name] = path
    return files


def _cache_key(kind: str, parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256(f"{kind}|{RUNTIME}|".encode())
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _cached_build(name: str, key: str, build: Callable[[], bytes]) -> bytes:
    """The zip built before for the same content (build/lambda/<name>-<key>.zip), else a new one."""
    path = PACKAGE_CACHE / f"{name}-{key[:16]}.zip"
    if path.is_file():
        return path.read_bytes()
    data = build()
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return data


def package(folder: str | Path) -> bytes:
    """The deployment zip of a function folder: its .py files plus, when it has a requirements.txt,
    those distributions vendored at the zip root as `pip install -t` would (offline, from this
    environment). Deterministic, so an unchanged function has an unchanged CodeSha256."""
    path = function_folder(folder)
    sources = source_files(path)
    requirements_file = path / "requirements.txt"
    requirements = read_requirements(requirements_file) if requirements_file.is_file() else []
    distributions = resolve(requirements)  # checks pins even when the zip is cached
    key = _cache_key("function", [
        *(name.encode() + b"\0" + file.read_bytes() for name, file in sources.items()),
        *(f"{d.metadata['Name']}=={d.version}".encode() for d in distributions),
    ])

    def build() -> bytes:
        files: dict[str, Path | bytes] = dict(_vendored(distributions))
        clashes = sorted(set(files) & set(sources))
        if clashes:
            raise PackagingError(f"{path.name}: files would overwrite vendored ones: {clashes[:5]}")
        files.update(sources)
        return deterministic_zip(files)

    return _cached_build(path.name, key, build)


def package_layer(requirements: Path | Iterable[str]) -> bytes:
    """A layer zip of the requirements (under `python/`, where Lambda puts layers on sys.path)."""
    wanted = read_requirements(requirements if isinstance(requirements, Path) else list(requirements))
    distributions = resolve(wanted)
    key = _cache_key("layer", [f"{d.metadata['Name']}=={d.version}".encode() for d in distributions])
    return _cached_build("layer", key, lambda: deterministic_zip(dict(_vendored(distributions, prefix="python/"))))


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256 of a zip: base64 of its sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


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
    when its CodeSha256 differs, configuration only when a setting differs; waits until it is ready."""
    path = function_folder(folder)
    name = name or names().function(path.name)
    data = package(path)
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


def ensure_layer(name: str, requirements: Path | Iterable[str]) -> str:
    """Publish the requirements as a layer version unless the latest one has the same content;
    returns the layer version ARN (pass it to deploy_function(layers=...))."""
    data = package_layer(requirements)
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
                                           Description="retail-pipelines dependencies")["LayerVersionArn"]


# Settings of a mapping fixed at creation; the rest can be updated in place.
_CREATE_ONLY = {"StartingPosition", "StartingPositionTimestamp", "Topics", "Queues", "SelfManagedEventSource",
                "SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig", "Tags"}
_TRANSITIONAL = {"Creating", "Enabling", "Disabling", "Updating"}


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
            _wait_mapping(uuid)
            awslambda.update_event_source_mapping(UUID=uuid, **changed)
            log.info("updated mapping %s: %s", uuid, sorted(changed))
    _wait_mapping(uuid)
    return uuid


def _mapping_setting_matches(current: dict[str, Any], key: str, value: Any) -> bool:
    if key == "Enabled":
        return (current.get("State") in ("Enabled", "Enabling")) == bool(value)
    return current.get(key) == value


def _wait_mapping(uuid: str, seconds: float = 120.0) -> dict[str, Any]:
    """Until the mapping is no longer Creating/Updating... (AWS refuses updates in between)."""
    awslambda = config.client("lambda")
    deadline = time.monotonic() + seconds
    while True:
        mapping = awslambda.get_event_source_mapping(UUID=uuid)
        if mapping.get("State") not in _TRANSITIONAL or time.monotonic() > deadline:
            return mapping
        time.sleep(1)


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


# -------------------------------------------------------------------------------------------------
# API Gateway (REST)


class Route(NamedTuple):
    """One method on one path, integrated with a Lambda function (a plain tuple works too)."""

    path: str  # "/invoices/{invoiceNo}"
    method: str  # "GET", "POST", ... or "ANY"
    function_arn: str
    integration: Literal["AWS_PROXY", "AWS"] = "AWS_PROXY"


@dataclass(frozen=True)
class Authorizer:
    """A Lambda authorizer applied to every route of the API."""

    name: str
    function_arn: str
    type: Literal["TOKEN", "REQUEST"] = "TOKEN"
    identity_source: str = "method.request.header.Authorization"
    ttl: int = 300


@dataclass(frozen=True)
class RestApi:
    id: str
    name: str
    stage: str
    url: str  # the stage's invoke URL, without a trailing slash

    def url_for(self, path: str) -> str:
        return self.url + "/" + path.lstrip("/")


def invoke_url(api_id: str, stage: str) -> str:
    """Where a stage answers: the local cloud serves `/restapis/{id}/{stage}/_user_request_`."""
    current = config.settings()
    if current.is_local:
        return f"{current.endpoint_url.rstrip('/')}/restapis/{api_id}/{stage}/_user_request_"
    return f"https://{api_id}.execute-api.{current.region}.amazonaws.com/{stage}"


def lambda_uri(function_arn: str) -> str:
    """The integration URI API Gateway uses to invoke a function."""
    region = function_arn.split(":")[3]
    return f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


def find_rest_api(name: str) -> str | None:
    """The id of the REST API with this name (the oldest if several)."""
    apis = [api for page in config.client("apigateway").get_paginator("get_rest_apis").paginate()
            for api in page["items"] if api["name"] == name]
    return min(apis, key=lambda api: str(api.get("createdDate", "")))["id"] if apis else None


def _not_found(error: ClientError) -> bool:
    return _error_code(error) in ("NotFoundException", "ResourceNotFoundException")


class _ApiBuilder:
    """Converges one REST API on a list of routes; `changed` says whether a new deployment is due."""

    def __init__(self, api_id: str, created: bool):
        self.api_id, self.changed = api_id, created
        self.apigw = config.client("apigateway")
        self.region, self.account = config.settings().region, config.account_id()
        self.resources = {item["path"]: item["id"] for page in self.apigw.get_paginator("get_resources").paginate(
            restApiId=api_id) for item in page["items"]}

    def resource(self, path: str) -> str:
        """The id of `path`, creating missing parents one part at a time."""
        path = "/" + path.strip("/")
        if path not in self.resources:
            parent_path, _, part = path.rpartition("/")
            parent = self.resource(parent_path or "/")
            self.resources[path] = self.apigw.create_resource(restApiId=self.api_id, parentId=parent,
                                                              pathPart=part)["id"]
            self.changed = True
        return self.resources[path]

    def method(self, resource: str, verb: str, *, api_key_required: bool, authorizer_id: str | None) -> None:
        wanted = {"authorizationType": "CUSTOM" if authorizer_id else "NONE", "apiKeyRequired": api_key_required}
        if authorizer_id:
            wanted["authorizerId"] = authorizer_id
        try:
            current = self.apigw.get_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
            if all(current.get(key) == value for key, value in wanted.items()):
                return
            # update_method is not in every backend; delete + put converges the same way.
            self.apigw.delete_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        except ClientError as error:
            if not _not_found(error):
                raise
        self.apigw.put_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb, **wanted)
        self.changed = True

    def integration(self, resource: str, route: Route) -> None:
        from localcloud.apigateway.vtl import PASSTHROUGH_TEMPLATE  # AWS's console template

        wanted: dict[str, Any] = {"type": route.integration, "httpMethod": "POST", "uri": lambda_uri(route.function_arn)}
        if route.integration == "AWS":
            wanted["requestTemplates"] = {"application/json": PASSTHROUGH_TEMPLATE}
            wanted["passthroughBehavior"] = "WHEN_NO_TEMPLATES"
        verb = route.method.upper()
        try:
            current = self.apigw.get_integration(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        except ClientError as error:
            if not _not_found(error):
                raise
            current = {}
        if any(current.get(key) != value for key, value in wanted.items()):
            arguments = {("integrationHttpMethod" if key == "httpMethod" else key): value
                         for key, value in wanted.items()}
            self.apigw.put_integration(restApiId=self.api_id, resourceId=resource, httpMethod=verb, **arguments)
            self.changed = True
            current = {}
        if route.integration == "AWS":
            self._non_proxy_responses(resource, verb, current)

    def _non_proxy_responses(self, resource: str, verb: str, integration: dict[str, Any]) -> None:
        """A non-proxy integration needs a 200 method response and integration response to answer."""
        method = self.apigw.get_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        if "200" not in (method.get("methodResponses") or {}):
            self.apigw.put_method_response(restApiId=self.api_id, resourceId=resource, httpMethod=verb,
                                           statusCode="200", responseModels={"application/json": "Empty"})
            self.changed = True
        if "200" not in (integration.get("integrationResponses") or {}):
            self.apigw.put_integration_response(restApiId=self.api_id, resourceId=resource, httpMethod=verb,
                                                statusCode="200", selectionPattern="")
            self.changed = True

    def authorizer(self, authorizer: Authorizer) -> str:
        wanted = {"type": authorizer.type, "authorizerUri": lambda_uri(authorizer.function_arn),
                  "identitySource": authorizer.identity_source, "authorizerResultTtlInSeconds": authorizer.ttl}
        existing = [a for a in self.apigw.get_authorizers(restApiId=self.api_id).get("items", [])
                    if a["name"] == authorizer.name]
        if existing and all(existing[0].get(key) == value for key, value in wanted.items()):
            authorizer_id = existing[0]["id"]
        else:
            if existing:
                self.apigw.delete_authorizer(restApiId=self.api_id, authorizerId=existing[0]["id"])
            authorizer_id = self.apigw.create_authorizer(restApiId=self.api_id, name=authorizer.name, **wanted)["id"]
            self.changed = True
        self.permission(authorizer.function_arn, f"apigw-{self.api_id}-authorizer-{authorizer.name}",
                        f"{self.execute_arn}/authorizers/{authorizer_id}")
        return authorizer_id

    @property
    def execute_arn(self) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}"

    def route_permission(self, route: Route) -> None:
        """Let API Gateway invoke the function for this method and path only (path parameters as *)."""
        verb = route.method.upper()
        path = re.sub(r"\{[^/]+\}", "*", "/" + route.path.strip("/"))
        source_arn = f"{self.execute_arn}/*/{'*' if verb == 'ANY' else verb}{path if path != '/' else '/'}"
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", route.path.strip("/")) or "root"
        self.permission(route.function_arn, f"apigw-{self.api_id}-{verb}-{slug}"[:100], source_arn)

    def permission(self, function_arn: str, statement_id: str, source_arn: str) -> None:
        """add_permission unless the statement is already there with this SourceArn (re-added if not)."""
        awslambda = config.client("lambda")
        try:
            statements = json.loads(awslambda.get_policy(FunctionName=function_arn)["Policy"])["Statement"]
        except ClientError as error:
            if _error_code(error) != "ResourceNotFoundException":
                raise
            statements = []
        same_id = [s for s in statements if s.get("Sid") == statement_id]
        if same_id and all(_source_arn(s) == source_arn for s in same_id):
            return
        if same_id:
            awslambda.remove_permission(FunctionName=function_arn, StatementId=statement_id)
        awslambda.add_permission(FunctionName=function_arn, StatementId=statement_id, Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com", SourceArn=source_arn)

    def deploy(self, stage: str) -> None:
        try:
            self.apigw.get_stage(restApiId=self.api_id, stageName=stage)
        except ClientError as error:
            if not _not_found(error):
                raise
            self.changed = True
        if self.changed:
            self.apigw.create_deployment(restApiId=self.api_id, stageName=stage,
                                         description="retail-pipelines deploy.ensure_rest_api")


def _source_arn(statement: dict[str, Any]) -> str | None:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    return condition.get("AWS:SourceArn")


def ensure_rest_api(name: str, routes: Sequence[Route | tuple[str, ...]], *, stage: str = "v1",
                    api_key_required: bool = False, authorizer: Authorizer | None = None) -> RestApi:
    """A REST API named `name` whose routes invoke Lambda functions (proxy or non-proxy with AWS's
    passthrough template), with invoke permissions scoped to each method and path, deployed to
    `stage`. Found by name and converged, so a rerun changes (and redeploys) only what differs.
    Routes no longer listed are left in place."""
    apigw = config.client("apigateway")
    api_id = find_rest_api(name)
    created = api_id is None
    if api_id is None:
        config.require_create_allowed(f"API Gateway REST API {name}")
        api_id = apigw.create_rest_api(name=name, description="retail-pipelines", tags=PROJECT_TAG,
                                       endpointConfiguration={"types": ["REGIONAL"]})["id"]
    else:
        config.require_create_allowed(f"changes to API Gateway REST API {name}")
    builder = _ApiBuilder(api_id, created)
    authorizer_id = builder.authorizer(authorizer) if authorizer else None
    for given in routes:
        route = Route(*given)
        resource = builder.resource(route.path)
        builder.method(resource, route.method.upper(), api_key_required=api_key_required, authorizer_id=authorizer_id)
        builder.integration(resource, route)
        builder.route_permission(route)
    builder.deploy(stage)
    return RestApi(id=api_id, name=name, stage=stage, url=invoke_url(api_id, stage))


def ensure_api_key(api: RestApi, name: str) -> str:
    """An API key `name` in a usage plan `name` that covers the API's stage; returns the key's value
    (send it as the x-api-key header)."""
    apigw = config.client("apigateway")
    config.require_create_allowed(f"API key and usage plan {name}")
    plans = [p for page in apigw.get_paginator("get_usage_plans").paginate() for p in page["items"] if p["name"] == name]
    if plans:
        plan = plans[0]
        if not any(s["apiId"] == api.id and s["stage"] == api.stage for s in plan.get("apiStages", [])):
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                {"op": "add", "path": "/apiStages", "value": f"{api.id}:{api.stage}"}])
    else:
        plan = apigw.create_usage_plan(name=name, apiStages=[{"apiId": api.id, "stage": api.stage}],
                                       tags=PROJECT_TAG)
    keys = [k for page in apigw.get_paginator("get_api_keys").paginate(nameQuery=name, includeValues=True)
            for k in page["items"] if k["name"] == name]
    key = keys[0] if keys else apigw.create_api_key(name=name, enabled=True, tags=PROJECT_TAG)
    in_plan = {k["id"] for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan["id"])
               for k in page["items"]}
    if key["id"] not in in_plan:
        apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


# -------------------------------------------------------------------------------------------------
# Deleting


def delete_function(name: str) -> bool:
    """Delete a function (and its event source mappings first). False when it did not exist."""
    awslambda = config.client("lambda")
    delete_event_source_mappings(name)
    try:
        awslambda.delete_function(FunctionName=name)
    except awslambda.exceptions.ResourceNotFoundException:
        return False
    return True


def delete_event_source_mappings(function: str) -> list[str]:
    """Delete every mapping of a function; returns their UUIDs."""
    awslambda = config.client("lambda")
    try:
        mappings = [m for page in awslambda.get_paginator("list_event_source_mappings").paginate(FunctionName=function)
                    for m in page["EventSourceMappings"]]
    except awslambda.exceptions.ResourceNotFoundException:
        return []
    for mapping in mappings:
        _wait_mapping(mapping["UUID"])
        awslambda.delete_event_source_mapping(UUID=mapping["UUID"])
    return [m["UUID"] for m in mappings]


def delete_layer(name: str) -> list[int]:
    awslambda = config.client("lambda")
    versions = [v["Version"] for page in awslambda.get_paginator("list_layer_versions").paginate(LayerName=name)
                for v in page["LayerVersions"]]
    for version in versions:
        awslambda.delete_layer_version(LayerName=name, VersionNumber=version)
    return versions


def delete_rest_api(name: str) -> bool:
    """Delete the REST API with this name, and the usage plans that cover it. False when absent."""
    api_id = find_rest_api(name)
    if api_id is None:
        return False
    apigw = config.client("apigateway")
    for page in apigw.get_paginator("get_usage_plans").paginate():
        for plan in page["items"]:
            stages = [s for s in plan.get("apiStages", []) if s["apiId"] == api_id]
            if stages:
                apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                    {"op": "remove", "path": "/apiStages", "value": f"{api_id}:{s['stage']}"} for s in stages])
    _throttled(lambda: apigw.delete_rest_api(restApiId=api_id))
    return True


def _throttled(call: Callable[[], Any], seconds: float = 120.0) -> Any:
    """AWS allows one DeleteRestApi per 30 s per account: wait it out instead of failing teardown."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as error:
            if _error_code(error) != "TooManyRequestsException" or time.monotonic() > deadline:
                raise
            time.sleep(5)


def delete_stream(name: str) -> bool:
    kinesis = config.client("kinesis")
    try:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    except kinesis.exceptions.ResourceNotFoundException:
        return False
    kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    return True


def delete_queue(name: str) -> bool:
    sqs = config.client("sqs")
    try:
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        return False
    return True


def delete_table(name: str) -> bool:
    dynamodb = config.client("dynamodb")
    try:
        dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    dynamodb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    return True


def delete_bucket(name: str) -> bool:
    """Empty the bucket (every object version and delete marker) and delete it."""
    s3 = config.client("s3")
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            objects = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                       for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for first in range(0, len(objects), 1000):
                s3.delete_objects(Bucket=name, Delete={"Objects": objects[first:first + 1000], "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        return False
    return True


def delete_log_group(name: str) -> bool:
    logs = config.client("logs")
    try:
        logs.delete_log_group(logGroupName=name)
    except logs.exceptions.ResourceNotFoundException:
        return False
    return True


_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}$")


def _owned(prefix: str) -> Callable[[str], bool]:
    """Names the workbook built under `prefix` are `<prefix>-...` (lower case): exactly those."""
    if not _PREFIX_RE.match(prefix or ""):
        raise ValueError(f"refusing to tear down with prefix {prefix!r}: it must be a workbook prefix like 'retail'")
    start = prefix.lower() + "-"
    return lambda name: name.lower().startswith(start)


def workbook_resources(prefix: str | None = None) -> dict[str, list[str]]:
    """What `teardown` would remove: resource names under `prefix` (default: the settings'), by kind."""
    prefix = config.settings().prefix if prefix is None else prefix  # "" is refused, never the default
    owned = _owned(prefix)
    prefix = prefix.lower()
    awslambda, apigw = config.client("lambda"), config.client("apigateway")
    functions = sorted(f["FunctionName"] for page in awslambda.get_paginator("list_functions").paginate()
                       for f in page["Functions"] if owned(f["FunctionName"]))
    function_arns = {f["FunctionArn"] for page in awslambda.get_paginator("list_functions").paginate()
                     for f in page["Functions"] if owned(f["FunctionName"])}
    mappings = sorted(m["UUID"] for page in awslambda.get_paginator("list_event_source_mappings").paginate()
                      for m in page["EventSourceMappings"] if m.get("FunctionArn") in function_arns)
    return {
        "event_source_mappings": mappings,
        "rest_apis": sorted({a["name"] for page in apigw.get_paginator("get_rest_apis").paginate()
                             for a in page["items"] if owned(a["name"])}),
        "usage_plans": sorted(p["name"] for page in apigw.get_paginator("get_usage_plans").paginate()
                              for p in page["items"] if owned(p["name"])),
        "api_keys": sorted(k["name"] for page in apigw.get_paginator("get_api_keys").paginate()
                           for k in page["items"] if owned(k.get("name", ""))),
        "functions": functions,
        "layers": sorted(layer["LayerName"] for page in awslambda.get_paginator("list_layers").paginate()
                         for layer in page["Layers"] if owned(layer["LayerName"])),
        "log_groups": sorted(g["logGroupName"] for page in config.client("logs").get_paginator(
            "describe_log_groups").paginate(logGroupNamePrefix="/aws/lambda/")
            for g in page["logGroups"] if owned(g["logGroupName"].removeprefix("/aws/lambda/"))),
        "streams": sorted(s for page in config.client("kinesis").get_paginator("list_streams").paginate()
                          for s in page["StreamNames"] if owned(s)),
        "queues": sorted(url.rsplit("/", 1)[-1] for page in config.client("sqs").get_paginator("list_queues").paginate(
            QueueNamePrefix=prefix) for url in page.get("QueueUrls", [])
            if owned(url.rsplit("/", 1)[-1])),
        "tables": sorted(t for page in config.client("dynamodb").get_paginator("list_tables").paginate()
                         for t in page["TableNames"] if owned(t)),
        "buckets": sorted(b["Name"] for b in config.client("s3").list_buckets().get("Buckets", []) if owned(b["Name"])),
    }


def teardown(prefix: str | None = None, *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove everything named `<prefix>-...` that these deploy steps build (IAM roles are iam.py's),
    in dependency order; returns what was (or, with dry_run, would be) removed."""
    found = workbook_resources(prefix)
    if dry_run:
        return found
    awslambda, apigw = config.client("lambda"), config.client("apigateway")
    for uuid in found["event_source_mappings"]:
        _wait_mapping(uuid)
        awslambda.delete_event_source_mapping(UUID=uuid)
    for plan in [p for page in apigw.get_paginator("get_usage_plans").paginate() for p in page["items"]
                 if p["name"] in found["usage_plans"]]:
        for key in [k for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan["id"])
                    for k in page["items"]]:
            apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
        if plan.get("apiStages"):
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                {"op": "remove", "path": "/apiStages", "value": f"{s['apiId']}:{s['stage']}"}
                for s in plan["apiStages"]])
        apigw.delete_usage_plan(usagePlanId=plan["id"])
    for key in [k for page in apigw.get_paginator("get_api_keys").paginate() for k in page["items"]
                if k.get("name") in found["api_keys"]]:
        apigw.delete_api_key(apiKey=key["id"])
    for name in found["rest_apis"]:
        while delete_rest_api(name):  # several APIs may share a name
            pass
    for name in found["functions"]:
        delete_function(name)
    for name in found["layers"]:
        delete_layer(name)
    for name in found["log_groups"]:
        delete_log_group(name)
    for name in found["streams"]:
        delete_stream(name)
    for name in found["queues"]:
        delete_queue(name)
    for name in found["tables"]:
        delete_table(name)
    for name in found["buckets"]:
        delete_bucket(name)
    return found
