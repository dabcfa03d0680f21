"""S3 bucket notifications and SNS subscriptions that invoke Lambda, as AWS does it.

moto matches S3 notification configurations (event types with `s3:ObjectCreated:*` wildcards,
prefix/suffix filter rules, several configurations) and SNS subscriptions, then calls the function
through Docker with a reduced event (S3: no userIdentity/requestParameters/versionId/sequencer; SNS:
fixed example MessageId, TopicArn, attributes). This executor keeps moto's matching and replaces:

- `moto.s3.notifications._get_s3_event` by AWS's full record (also what SQS/SNS destinations get);
- `moto.s3.notifications._invoke_awslambda` by an asynchronous invoke through the lambda-runtime;
- `moto.sns.models.Subscription.publish` for the `lambda` protocol by AWS's SNS event, delivered
  asynchronously only when the function's resource policy allows `sns.amazonaws.com` (else logged);
- `S3Backend.put_bucket_notification_configuration`: like AWS, it fails with InvalidArgument "Unable
  to validate the following destination configurations" when a function's policy does not let
  `s3.amazonaws.com` invoke it (respecting `AWS:SourceArn` / `AWS:SourceAccount` conditions).

- moto also emits `s3:ObjectTagging:Put` whenever PutObject / CopyObject / CompleteMultipartUpload
  store the object's tags (it calls its own put_object_tagging); AWS sends only ObjectCreated then,
  so that event is dropped while one of those three requests is being handled.

All patches are undone by `stop()`. Difference from AWS: the S3 `sequencer` is a process-wide
counter in hex, monotonic per process rather than per key.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote_plus

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.executors import CloudContext, JSONPayload, WSGIApp

log = logging.getLogger("localcloud.notifications")

S3_PRINCIPAL = "s3.amazonaws.com"
SNS_PRINCIPAL = "sns.amazonaws.com"
_sequencer = itertools.count(0x5F0000000000000)
TAGGING_PUT = "s3:ObjectTagging:Put"
_creating = threading.local()  # .depth > 0 while an object-creating request stores the object's tags


def _now_iso() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def s3_event(event_name: str, bucket: Any, key: Any, configuration_id: str, account_id: str) -> dict[str, Any]:
    """AWS's S3 event (one record) for `key` in `bucket`; `event_name` like s3:ObjectCreated:Put."""
    obj: dict[str, Any] = {"key": quote_plus(key.name, safe="/"), "sequencer": f"{next(_sequencer):X}"}
    if not event_name.startswith("s3:ObjectRemoved"):
        obj |= {"size": key.size, "eTag": key.etag.replace('"', "")}
    version = getattr(key, "version_id", None)
    if version and version != "null":
        obj["versionId"] = version
    principal = f"AWS:{account_id}"
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": bucket.region_name,
        "eventTime": _now_iso(), "eventName": event_name.removeprefix("s3:"),
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                             "x-amz-id-2": uuid.uuid4().hex},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": configuration_id,
               "bucket": {"name": bucket.name, "ownerIdentity": {"principalId": account_id},
                          "arn": f"arn:aws:s3:::{bucket.name}"},
               "object": obj},
    }]}


def sns_event(subscription_arn: str, topic_arn: str, message_id: str, message: str, subject: str | None,
              attributes: dict[str, Any] | None) -> dict[str, Any]:
    """AWS's SNS event for a Lambda subscription."""
    region = topic_arn.split(":")[3]
    return {"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": "Notification", "MessageId": message_id, "TopicArn": topic_arn, "Subject": subject,
            "Message": message, "Timestamp": _now_iso(), "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertUrl": f"https://sns.{region}.amazonaws.com/SimpleNotificationService-local.pem",
            "UnsubscribeUrl": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
                              f"&SubscriptionArn={subscription_arn}",
            "MessageAttributes": {name: {"Type": value.get("Type", "String"), "Value": value.get("Value")}
                                  for name, value in (attributes or {}).items()},  # moto stores {Type, Value}
        },
    }]}


# --------------------------------------------------------------------------------------------------
# Resource policies


def policy_allows(policy: dict[str, Any], service: str, source_arn: str, source_account: str) -> bool:
    """Whether a function policy lets `service` invoke it for this source (Allow, no matching Deny)."""
    allowed = False
    for statement in policy.get("Statement", []):
        if not _principal_matches(statement.get("Principal"), service):
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(fnmatch.fnmatchcase("lambda:InvokeFunction".lower(), a.lower()) for a in actions):
            continue
        if not _conditions_hold(statement.get("Condition", {}), source_arn, source_account):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _principal_matches(principal: Any, service: str) -> bool:
    if principal == "*":
        return True
    services = principal.get("Service", []) if isinstance(principal, dict) else []
    return service in ([services] if isinstance(services, str) else services)


def _conditions_hold(conditions: dict[str, Any], source_arn: str, source_account: str) -> bool:
    context = {"aws:sourcearn": source_arn, "aws:sourceaccount": source_account}
    for operator, entries in conditions.items():
        for key, expected in entries.items():
            actual = context.get(key.lower())
            if actual is None:
                return False
            values = [expected] if isinstance(expected, str) else expected
            like = operator.lower().endswith("like")
            if not any(fnmatch.fnmatchcase(actual, v) if like else actual == v for v in values):
                return False
    return True


def function_policy(function_arn: str, account_id: str) -> dict[str, Any]:
    """The function's resource policy from moto ({} when it has none or does not exist)."""
    from localcloud.motoapi import lambda_backend_for_arn as get_backend

    region = function_arn.split(":")[3]
    try:
        wire = json.loads(get_backend(account_id, region).get_policy(function_arn))  # {"Policy": "...", ...}
        return json.loads(wire["Policy"])
    except Exception:
        return {}


# --------------------------------------------------------------------------------------------------
# The executor


class Notifications:
    """Routes moto's S3 and SNS Lambda notifications through the lambda-runtime with AWS's events."""

    name = "notifications"

    def __init__(self) -> None:
        self.cloud: CloudContext | None = None
        self._undo: list[Callable[[], None]] = []

    def start(self, cloud: CloudContext) -> None:
        if self._undo:
            return
        self.cloud = cloud
        for target, make in (
            ("s3.get_s3_event", lambda original: self._s3_event),
            ("s3.invoke_awslambda", lambda original: self._invoke_from_s3),
            ("s3.put_bucket_notification_configuration", self._validating_put),
            ("sns.subscription.publish", self._subscription_publish),
            ("s3.send_event", _without_creation_tagging),
            ("s3.response.put_object", _creating_object),
            ("s3.response.copy_object", _creating_object),
            ("s3.complete_multipart_upload", _creating_object),
        ):
            self._undo.append(motoapi.replace(target, make))

    def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def route(self, request: Request) -> WSGIApp | None:
        return None

    # -- S3

    @staticmethod
    def _s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        return s3_event(event_name, bucket, key, notification_id, bucket.account_id)

    def _invoke_from_s3(self, account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
        self._invoke(fn_arn, event_body, account_id, region_name)

    def _invoke(self, function_arn: str, event: dict[str, Any], account_id: str, region: str) -> None:
        if self.cloud is None or "lambda-runtime" not in self.cloud.executors:
            log.warning("no lambda-runtime: notification to %s dropped", function_arn)
            return
        try:
            self.cloud.invoker().invoke(function_arn, JSONPayload.dumps(event), invocation_type="Event",
                                        account_id=account_id, region=region)
        except Exception as error:  # asynchronous on AWS: the caller never sees the failure
            log.warning("notification to %s failed: %s", function_arn, error)

    @staticmethod
    def _validating_put(original: Callable[..., Any]) -> Callable[..., Any]:
        def put(backend: Any, bucket_name: str, notification_config: dict[str, Any]) -> None:
            from localcloud.motoapi import S3InvalidArgumentError as InvalidArgumentError

            for configuration in (notification_config or {}).get("CloudFunctionConfiguration", []) or []:
                arn = configuration.get("CloudFunction", "")
                policy = function_policy(arn, backend.account_id)
                if not policy_allows(policy, S3_PRINCIPAL, f"arn:aws:s3:::{bucket_name}", backend.account_id):
                    raise InvalidArgumentError("Unable to validate the following destination configurations",
                                               arn, f"Not authorized to invoke function [{arn}]")
            return original(backend, bucket_name, notification_config)

        return put

    # -- SNS

    def _subscription_publish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        executor = self

        def publish(subscription: Any, message: str, message_id: str, subject: str | None = None,
                    message_attributes: dict[str, Any] | None = None, group_id: str | None = None,
                    deduplication_id: str | None = None, message_structure: str | None = None) -> None:
            if subscription.protocol != "lambda":
                return original(subscription, message, message_id, subject=subject,
                                message_attributes=message_attributes, group_id=group_id,
                                deduplication_id=deduplication_id, message_structure=message_structure)
            matcher = subscription._filter_policy_matcher
            if matcher is not None and not matcher.matches(message_attributes, message):
                return None
            if message_structure == "json":
                message = subscription._parse_message_structure(message, "lambda")
            executor._deliver_sns(subscription, message, message_id, subject, message_attributes)
            return None

        return publish

    def _deliver_sns(self, subscription: Any, message: str, message_id: str, subject: str | None,
                     attributes: dict[str, Any] | None) -> None:
        function_arn, topic_arn = subscription.endpoint, subscription.topic.arn
        region, account = function_arn.split(":")[3], subscription.account_id
        if not policy_allows(function_policy(function_arn, account), SNS_PRINCIPAL, topic_arn, account):
            log.warning("SNS %s -> %s not delivered: the function's policy does not allow %s",
                        topic_arn, function_arn, SNS_PRINCIPAL)
            return
        event = sns_event(subscription.arn, topic_arn, message_id, message, subject, attributes)
        self._invoke(function_arn, event, account, region)


def _creating_object(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark the current thread as handling an object-creating request while `method` runs."""
    def marked(*args: Any, **kwargs: Any) -> Any:
        _creating.depth = getattr(_creating, "depth", 0) + 1
        try:
            return method(*args, **kwargs)
        finally:
            _creating.depth -= 1

    return marked


def _without_creation_tagging(send_event: Callable[..., Any]) -> Callable[..., Any]:
    def send(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        if event_name == TAGGING_PUT and getattr(_creating, "depth", 0):
            return None
        return send_event(account_id, event_name, bucket, key)

    return send


def make_executor() -> Notifications:
    return Notifications()


__all__ = ["Notifications", "make_executor", "policy_allows", "s3_event", "sns_event"]
