"""Resource-based policies read from moto's state: S3 bucket policies, SQS queue policies, SNS topic
policies, Lambda function policies."""

from __future__ import annotations

import logging

from localcloud.iam.enforcement.asks import Ask

log = logging.getLogger("localcloud.iam.enforcement")


def resource_policy(ask: Ask, account: str, region: str) -> str | None:
    """The policy document attached to the ask's resource, None when it has none (or is not there)."""
    service = ask.action.split(":", 1)[0].lower()
    try:
        if service == "s3" and ask.resource.startswith("arn:aws:s3:::"):
            return _bucket_policy(ask.resource[len("arn:aws:s3:::"):].split("/", 1)[0], account)
        parts = ask.resource.split(":")
        if len(parts) < 6:
            return None
        account, region = parts[4] or account, parts[3] or region
        if service == "sqs":
            from localcloud.motoapi import sqs_backends

            queue = sqs_backends[account][region].queues.get(parts[5])
            return queue.policy if queue is not None else None
        if service == "sns":
            from localcloud.motoapi import sns_backends

            topic = sns_backends[account][region].topics.get(ask.resource)
            return topic.policy if topic is not None else None
        if service == "lambda" and parts[5] == "function":
            from localcloud.motoapi import lambda_backends

            qualifier = parts[7] if len(parts) > 7 else None
            return lambda_backends[account][region].get_policy(parts[6], qualifier)
    except Exception:  # noqa: BLE001 - no such resource or no policy: the service answers for the resource
        return None
    return None


def _bucket_policy(bucket: str, account: str) -> str | None:
    from localcloud.motoapi import s3_backends

    found = s3_backends[account]["aws"].buckets.get(bucket)
    policy = getattr(found, "policy", None)
    return policy.decode() if isinstance(policy, bytes) else policy
