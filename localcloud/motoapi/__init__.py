"""The local cloud's one door to moto: every name it uses from moto, every patch it applies, and the
moto versions it was built and tested for.

moto is the API and the state of the local cloud; the executors read its backends in-process and hook a
few of its functions. Everything they touch is listed here, so a moto upgrade is checked in one place:
- `check()` runs at server start: the installed moto must be in `SUPPORTED` and every target of
  `patches.py` must exist with the parameters its fix was written for; an executor's target is checked
  the same way when the executor replaces it (at its start), and an exported name when it is first
  used. Anything else refuses to start with a message naming what moved. `problems(everything=True)`
  checks all of it at once (the test suite does), at the cost of importing every moto service used.
- `replace(target, make)` is the only way to patch moto: `make(original)` returns the replacement, and the
  returned function undoes it. Targets are named in `TARGETS` with their expected parameters.
- `CLOCK_READS` lists where moto reads the clock itself (besides its `utcnow` helper); `clock.install`
  routes every read to the journal's clock, so a replayed request reads the times it read first.
- Names are imported lazily (`from localcloud.motoapi import kinesis_backends`), so importing the facade
  costs nothing until a name is used.

`patches.py` (fixes moto needs under real volumes) and `fast_json_protocol.py` (its JSON protocol, faster)
live beside this file and are the only other modules that import moto; the other patches beside them
(`clock.py`, `kinesis_put.py`, ...) take what they need of moto from EXPORTS.
"""

from __future__ import annotations

import base64
import importlib
import inspect
from datetime import datetime, timezone
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

# The moto releases this package was built for and whose whole test suite passed. A newer one may move
# a private function a patch relies on: widen the range only after `make test` passes on it.
SUPPORTED: tuple[str, str] = ("5.2.6", "5.2.6")


class MotoVersionError(RuntimeError):
    """The installed moto is not one the local cloud was built for, or a name or patch target moved."""


# name -> "module:attribute" (or "module" for a whole module). The executors' whole surface of moto.
EXPORTS: dict[str, str] = {
    "core_utils": "moto.core.utils",  # its utcnow, bound into every module that imports it (clock.py)
    # backends: moto's in-process state, per account and region
    "get_backend": "moto.backends:get_backend",
    "apigateway_backends": "moto.apigateway.models:apigateway_backends",
    "apigatewayv2_backends": "moto.apigatewayv2.models:apigatewayv2_backends",
    "mock_random": "moto.moto_api._internal:mock_random",
    "athena_backends": "moto.athena.models:athena_backends",
    "cloudwatch_backends": "moto.cloudwatch.models:cloudwatch_backends",
    "dynamodb_backends": "moto.dynamodb.models:dynamodb_backends",
    "events_backends": "moto.events.models:events_backends",
    "firehose_backends": "moto.firehose.models:firehose_backends",
    "glue_backends": "moto.glue.models:glue_backends",
    "iam_backends": "moto.iam.models:iam_backends",
    "kinesis_backends": "moto.kinesis.models:kinesis_backends",
    "kinesis_models": "moto.kinesis.models",  # Record and the utcnow it reads (kinesis_put.py)
    "kinesis_exceptions": "moto.kinesis.exceptions",
    "DynamoType": "moto.dynamodb.models.dynamo_type:DynamoType",  # dynamodb_sizes.py
    "dynamodb_bytesize": "moto.dynamodb.models.utilities:bytesize",
    "dynamodb_number_size": "moto.dynamodb.models.utilities:number_size",
    "DynamoTable": "moto.dynamodb.models.table:Table",  # transact_copy.py
    "lambda_backends": "moto.awslambda.models:lambda_backends",
    "logs_backends": "moto.logs.models:logs_backends",
    "s3_backends": "moto.s3.models:s3_backends",
    "sns_backends": "moto.sns.models:sns_backends",
    "sqs_backends": "moto.sqs.models:sqs_backends",
    "sts_backends": "moto.sts.models:sts_backends",  # iam enforcement: assumed-role sessions
    "secretsmanager_backends": "moto.secretsmanager.models:secretsmanager_backends",  # iam enforcement: secret ARNs
    "ssm_backends": "moto.ssm.models:ssm_backends",  # iam enforcement: SecureStrings under customer keys
    # models and helpers the executors use
    "EventPattern": "moto.events.models:EventPattern",
    "LambdaFunction": "moto.awslambda.models:LambdaFunction",
    "lambda_backend_for_arn": "moto.awslambda.utils:get_backend",
    "get_account_id_from": "moto.iam.models:get_account_id_from",
    # errors answered in AWS's words
    "JsonRESTError": "moto.core.exceptions:JsonRESTError",
    "ServiceException": "moto.core.exceptions:ServiceException",
    "EventsValidationException": "moto.events.models:ValidationException",
    "FirehoseInvalidArgumentException": "moto.firehose.exceptions:InvalidArgumentException",
    "FirehoseResourceNotFoundException": "moto.firehose.exceptions:ResourceNotFoundException",
    "FirehoseValidationException": "moto.firehose.exceptions:ValidationException",
    "S3InvalidArgumentError": "moto.s3.exceptions:InvalidArgumentError",
    "S3MissingBucket": "moto.s3.exceptions:MissingBucket",
    # the server
    "DomainDispatcherApplication": "moto.moto_server.werkzeug_app:DomainDispatcherApplication",
    "create_backend_app": "moto.moto_server.werkzeug_app:create_backend_app",
    "MotoRequestHandler": "moto.moto_server.werkzeug_app:MotoRequestHandler",
    # cloudwatch: the operations moto lacks are answered by a subclass of its response class
    "CloudWatchResponse": "moto.cloudwatch.responses:CloudWatchResponse",
    "CloudWatchMetricDatum": "moto.cloudwatch.models:MetricDatum",
    "CloudWatchInvalidParameterValue": "moto.cloudwatch.exceptions:InvalidParameterValue",
    "CloudWatchResourceNotFound": "moto.cloudwatch.exceptions:ResourceNotFound",
    "CloudWatchValidationError": "moto.cloudwatch.exceptions:ValidationError",
    "ActionResult": "moto.core.responses:ActionResult",
    "MotoRequest": "moto.core.request:Request",
}


@dataclass(frozen=True)
class Target:
    """A moto function or method a patch replaces, and the parameters the patch was written for."""

    module: str
    owner: str | None  # a class in `module`, or None for a module-level function
    attribute: str
    parameters: tuple[str, ...]

    def resolve(self) -> tuple[Any, Any]:
        """(owner object, current value); AttributeError/ImportError when it moved."""
        holder: Any = importlib.import_module(self.module)
        if self.owner:
            holder = getattr(holder, self.owner)
        return holder, getattr(holder, self.attribute)

    def __str__(self) -> str:
        return f"{self.module}:{self.owner + '.' if self.owner else ''}{self.attribute}"


def _t(path: str, *parameters: str) -> Target:
    module, _, name = path.partition(":")
    owner, _, attribute = name.rpartition(".")
    return Target(module, owner or None, attribute, parameters)


# Every function of moto the local cloud replaces while it runs (the executors' hooks); `patches.py` lists
# its own (fixes applied once) in the same form.
TARGETS: dict[str, Target] = {
    # persistence: moto's random draws are recorded with each journaled request and drawn again on replay
    "random.getrandbits": _t("moto.moto_api._internal.moto_random:MotoRandom.getrandbits", "self", "k"),
    "random.random": _t("moto.moto_api._internal.moto_random:MotoRandom.random", "self"),
    # persistence: moto's clock helper (its other reads are CLOCK_READS), recorded and replayed the same way
    "clock.utcnow": _t("moto.core.utils:utcnow"),
    # notifications: S3 events and SNS deliveries run functions through the Lambda runtime
    "s3.get_s3_event": _t("moto.s3.notifications:_get_s3_event", "event_name", "bucket", "key", "notification_id"),
    "s3.invoke_awslambda": _t("moto.s3.notifications:_invoke_awslambda", "account_id", "event_body", "fn_arn",
                              "region_name"),
    "s3.send_event": _t("moto.s3.notifications:send_event", "account_id", "event_name", "bucket", "key"),
    "s3.put_bucket_notification_configuration": _t(
        "moto.s3.models:S3Backend.put_bucket_notification_configuration", "self", "bucket_name",
        "notification_config"),
    "s3.complete_multipart_upload": _t("moto.s3.models:S3Backend.complete_multipart_upload", "self",
                                       "bucket_name", "multipart_id", "body"),
    "s3.response.put_object": _t("moto.s3.responses:S3Response.put_object", "self"),
    "s3.response.copy_object": _t("moto.s3.responses:S3Response.copy_object", "self"),
    "sns.subscription.publish": _t("moto.sns.models:Subscription.publish", "self", "message", "message_id",
                                   "subject", "message_attributes", "group_id", "deduplication_id",
                                   "message_structure"),
    # scheduler: EventBridge rules deliver through the local cloud's scheduler
    "events.rule.send_to_targets": _t("moto.events.models:Rule.send_to_targets", "self",
                                      "original_event", "transform_input"),
    "events.put_rule": _t("moto.events.models:EventsBackend.put_rule", "self", "name", "description",
                          "event_bus_arn", "event_pattern", "role_arn", "scheduled_expression", "state",
                          "managed_by", "tags"),
    # lambda runtime: moto's own callers of LambdaFunction.invoke run the real function
    "lambda.function.invoke": _t("moto.awslambda.models:LambdaFunction.invoke", "self", "body", "request_headers",
                                 "response_headers"),
    # event sources: moto's inline delivery is switched off when a mapping is created
    "lambda.create_event_source_mapping": _t("moto.awslambda.models:LambdaBackend.create_event_source_mapping",
                                             "self", "spec"),
    "lambda.update_event_source_mapping": _t("moto.awslambda.models:LambdaBackend.update_event_source_mapping",
                                             "self", "uuid", "spec"),  # TumblingWindowInSeconds checked
    # firehose: deliveries go through the local cloud's Firehose executor
    "firehose.put_record_batch": _t("moto.firehose.models:FirehoseBackend.put_record_batch", "self",
                                    "delivery_stream_name", "records"),
    "firehose.create_delivery_stream": _t("moto.firehose.models:FirehoseBackend.create_delivery_stream", "self",
                                          "region", "delivery_stream_name", "delivery_stream_type",
                                          "kinesis_stream_source_configuration",
                                          "delivery_stream_encryption_configuration_input",
                                          "s3_destination_configuration",
                                          "extended_s3_destination_configuration",
                                          "redshift_destination_configuration",
                                          "elasticsearch_destination_configuration",
                                          "splunk_destination_configuration",
                                          "http_endpoint_destination_configuration",
                                          "snowflake_destination_configuration",
                                          "iceberg_destination_configuration", "tags"),
    # warehouse: a cluster's DuckDB files are deleted with it and copied by its snapshots
    "redshift.delete_cluster": _t("moto.redshift.models:RedshiftBackend.delete_cluster", "self", "cluster_kwargs"),
    "redshift.create_cluster_snapshot": _t("moto.redshift.models:RedshiftBackend.create_cluster_snapshot", "self",
                                           "cluster_identifier", "snapshot_identifier"),
    "redshift.delete_cluster_snapshot": _t("moto.redshift.models:RedshiftBackend.delete_cluster_snapshot", "self",
                                           "snapshot_identifier"),
    "redshift.restore_from_cluster_snapshot": _t("moto.redshift.models:RedshiftBackend.restore_from_cluster_snapshot",
                                                 "self", "kwargs"),
    # apigatewayv2: HTTP APIs answer at a local ApiEndpoint; stages show their deployment; quick create
    "apigatewayv2.api.to_json": _t("moto.apigatewayv2.models:Api.to_json", "self"),
    "apigatewayv2.stage.to_json": _t("moto.apigatewayv2.models:Stage.to_json", "self"),
    "apigatewayv2.response.create_api": _t("moto.apigatewayv2.responses:ApiGatewayV2Response.create_api", "self"),
    "moto_server.dispatch": _t("moto.moto_server.werkzeug_app:DomainDispatcherApplication.__call__", "self",
                               "environ", "start_response"),
    # comprehend: sentiment computed offline
    "comprehend.detect_sentiment": _t("moto.comprehend.models:ComprehendBackend.detect_sentiment", "self", "text",
                                      "language"),
    # glue: a started crawler really crawls; GetCrawler shows how its last crawl ended
    "glue.start_crawler": _t("moto.glue.models:GlueBackend.start_crawler", "self", "name"),
    "glue.crawler.as_dict": _t("moto.glue.models:FakeCrawler.as_dict", "self"),
    # cloudwatch: alarms start INSUFFICIENT_DATA and keep their state when updated; state changes act;
    # EMF lines written to CloudWatch Logs become metrics
    "cloudwatch.put_metric_alarm": _t("moto.cloudwatch.models:CloudWatchBackend.put_metric_alarm", "self", "name",
                                      "namespace", "metric_name", "comparison_operator", "evaluation_periods"),
    "cloudwatch.set_alarm_state": _t("moto.cloudwatch.models:CloudWatchBackend.set_alarm_state", "self",
                                     "alarm_name", "reason", "reason_data", "state_value"),
    "logs.put_log_events": _t("moto.logs.models:LogsBackend.put_log_events", "self", "log_group_name",
                              "log_stream_name", "log_events"),
}


@dataclass(frozen=True)
class ClockRead:
    """A moto module global through which that module reads the clock itself, not through moto's
    `utcnow` helper: `holds` is what the global is ("datetime module", "datetime class", "time module"
    or "time function"); motoapi/clock.py replaces it with a stand-in reading the journal's clock."""

    module: str
    name: str
    holds: str

    def expected(self) -> Any:
        import datetime as datetime_module
        import time as time_module

        return {"datetime module": datetime_module, "datetime class": datetime_module.datetime,
                "time module": time_module, "time function": time_module.time}[self.holds]

    def check(self, module: Any) -> Any:
        """The global's current value; MotoVersionError if it is not what this entry says."""
        current = getattr(module, self.name, None)
        if current is not self.expected():
            raise MotoVersionError(f"{self.module}.{self.name} is {current!r}, not the {self.holds} "
                                   f"whose clock reads the journal replays")
        return current

    def __str__(self) -> str:
        return f"{self.module}:{self.name} ({self.holds})"


# persistence: where moto reads the clock while it applies a request, besides its `utcnow` helper
# (TARGETS["clock.utcnow"]), in the moto packages of CLOCK_SERVICES (grep of moto 5.2.6; test_motoapi
# reads their source for `datetime.now()`, `time.time()`... and fails on a read missing here). The journal
# records what they read and replays it, so times survive a crash. Not listed: moto_api's ManagedState
# (status transitions compare the live clock; they store no time a response shows).
CLOCK_SERVICES: tuple[str, ...] = (
    "core", "apigateway", "apigatewayv2", "athena", "awslambda", "cloudwatch", "comprehend", "dynamodb",
    "dynamodbstreams", "events", "firehose", "glue", "iam", "kinesis", "kms", "logs", "redshift", "redshiftdata",
    "s3", "secretsmanager", "sns", "sqs", "ssm", "sts")
CLOCK_READS: tuple[ClockRead, ...] = (
    ClockRead("moto.s3.models", "datetime", "datetime module"),  # a bucket's CreationDate; access log names
    ClockRead("moto.apigateway.models", "time", "time module"),  # createdDate of REST APIs, deployments, keys
    ClockRead("moto.apigateway.models", "datetime", "datetime class"),  # an export's version
    ClockRead("moto.apigatewayv2.models", "datetime", "datetime class"),  # createdDate of APIs, stages
    ClockRead("moto.awslambda.models", "time", "time module"),  # moto's own Kinesis delivery (replaced)
    ClockRead("moto.awslambda.models", "datetime", "datetime class"),  # zip2tar's local offset
    ClockRead("moto.cloudwatch.models", "datetime", "datetime class"),  # a dashboard's LastModified
    ClockRead("moto.firehose.models", "time", "time function"),  # an HTTP endpoint delivery's timestamp
    ClockRead("moto.redshift.models", "datetime", "datetime class"),  # snapshot ids, logging status
    ClockRead("moto.redshiftdata.models", "datetime", "datetime class"),  # a statement's CreatedAt
    ClockRead("moto.athena.models", "time", "time module"),  # executions' and data catalogs' times
    ClockRead("moto.athena.models", "datetime", "datetime class"),  # a prepared statement's LastModifiedTime
    ClockRead("moto.secretsmanager.models", "time", "time module"),  # a secret's CreatedDate, versions
)


# Shapes of moto's records that changed between releases, read in one place. moto 5.2.6 keeps a Kinesis
# record's data as raw bytes and its arrival as a naive UTC datetime (5.2.5: base64 text, epoch float).
def kinesis_record_bytes(record: Any) -> bytes:
    data = record.data
    return data if isinstance(data, bytes) else base64.b64decode(data)


def kinesis_record_base64(record: Any) -> str:
    data = record.data
    return base64.b64encode(data).decode() if isinstance(data, bytes) else data


def kinesis_record_arrival(record: Any) -> float:
    """Seconds since the epoch at which the record arrived (AWS's ApproximateArrivalTimestamp)."""
    created = record.created_at
    if isinstance(created, datetime):
        return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()
    return float(created)


def installed_version() -> str:
    return metadata.version("moto")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def parameters_of(function: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def problems(everything: bool = False) -> list[str]:
    """What about the installed moto this package was not built for (empty: all is well). By default the
    version and `patches.py`'s targets (what start needs); `everything` adds every export and target."""
    found: list[str] = []
    version = installed_version()
    low, high = SUPPORTED
    if not _release(low) <= _release(version) <= _release(high):
        found.append(f"moto {version} is installed; the local cloud is built for moto {low}"
                     + (f" to {high}" if high != low else "") + " (pip install -r requirements.txt)")
        return found
    for name in EXPORTS if everything else ():
        try:
            _load(name)
        except (ImportError, AttributeError) as error:
            found.append(f"moto no longer has {EXPORTS[name]} ({error})")
    from localcloud.motoapi import patches

    for key, target in ({**TARGETS, **patches.TARGETS} if everything else patches.TARGETS).items():
        try:
            _, current = target.resolve()
        except (ImportError, AttributeError):
            found.append(f"patch {key}: moto no longer has {target}")
            continue
        if getattr(current, "__localcloud_patch__", False):
            continue  # already replaced in this process (the check runs again after a restart in tests)
        have = parameters_of(current)
        if have[: len(target.parameters)] != target.parameters:
            found.append(f"patch {key}: {target} takes {have}, the patch was written for {target.parameters}")
    for site in CLOCK_READS if everything else ():
        try:
            module = importlib.import_module(site.module)
            if not getattr(getattr(module, site.name, None), "__localcloud_patch__", False):
                site.check(module)
        except (ImportError, MotoVersionError) as error:
            found.append(f"clock read {site}: {error}")
    return found


def check() -> None:
    """Refuse to run on a moto this package was not built for (called at server start)."""
    found = problems()
    if found:
        raise MotoVersionError("the local cloud cannot start on this moto:\n- " + "\n- ".join(found))


def replace(target: str | Target, make: Callable[[Any], Any]) -> Callable[[], None]:
    """Replace a moto function with `make(original)`; returns the undo. `target` is a key of TARGETS
    (or of patches.TARGETS, or a Target): a patch of a function moved or re-shaped by a moto upgrade
    fails here, loudly, instead of silently never being called."""
    spec = target if isinstance(target, Target) else _target(target)
    holder, original = spec.resolve()
    have = parameters_of(original)
    if have[: len(spec.parameters)] != spec.parameters:
        raise MotoVersionError(f"{spec} takes {have}; the patch was written for {spec.parameters}")
    replacement = make(original)
    try:
        replacement.__localcloud_patch__ = True
    except (AttributeError, TypeError):
        pass
    setattr(holder, spec.attribute, replacement)

    def undo() -> None:
        if getattr(holder, spec.attribute) is replacement:
            setattr(holder, spec.attribute, original)
    return undo


def _target(key: str) -> Target:
    if key in TARGETS:
        return TARGETS[key]
    from localcloud.motoapi import patches

    return patches.TARGETS[key]


def _load(name: str) -> Any:
    module, _, attribute = EXPORTS[name].partition(":")
    value = importlib.import_module(module)
    return getattr(value, attribute) if attribute else value


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"localcloud.motoapi exports no {name!r}: add it to EXPORTS")
    try:
        value = _load(name)
    except (ImportError, AttributeError) as error:
        raise MotoVersionError(f"moto {installed_version()} has no {EXPORTS[name]} ({error})") from error
    globals()[name] = value
    return value
