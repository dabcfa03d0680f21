"""The workbook's one idempotency idiom: create, and accept "it is already there".

A notebook builds each resource with its real boto3 call inside `exists_ok()`:

    with exists_ok():
        kinesis.create_stream(StreamName=stream, ShardCount=shards)

The first run creates the stream; a re-run gets the service's "already exists" error, which
`exists_ok` swallows (and nothing else: a throttle, a bad argument or a permission error still
raises). Where a setting of an existing resource could differ from the notebook's, the next cell makes
the visible `update_*` call that converges it (`update_function_configuration`,
`update_event_source_mapping`, ...), so running a notebook twice changes nothing.

`created` tells afterwards whether the call made something new:

    with exists_ok() as outcome:
        iam.create_role(...)
    outcome.created   # False on a re-run
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from botocore.exceptions import ClientError

# The "already exists" error codes of the services the workbook builds with. Each is raised only when
# the named thing exists already (for S3, in *this* account: BucketAlreadyExists, someone else's
# bucket, is deliberately not here, since that name cannot be ours).
ALREADY_EXISTS_CODES = frozenset({
    "ResourceInUseException",          # kinesis.create_stream, dynamodb.create_table, firehose
    "ResourceConflictException",       # lambda.create_function, add_permission (same StatementId)
    "EntityAlreadyExists",             # iam.create_role, create_policy
    "EntityAlreadyExistsException",
    "BucketAlreadyOwnedByYou",         # s3.create_bucket in this account
    "QueueAlreadyExists",              # sqs.create_queue with other attributes
    "QueueNameExists",
    "ConflictException",               # apigateway.create_resource / put_method / create_usage_plan_key
    "ResourceAlreadyExistsException",  # logs.create_log_group, scheduler, secrets
    "ParameterAlreadyExists",          # ssm.put_parameter without Overwrite
    "ClusterAlreadyExists",            # redshift.create_cluster
    "ClusterAlreadyExistsFault",
    "AlreadyExistsException",          # glue
})


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def already_exists(error: BaseException) -> bool:
    """True when `error` is a service's answer that the thing being created is already there."""
    return isinstance(error, ClientError) and error_code(error) in ALREADY_EXISTS_CODES


@dataclass
class Outcome:
    """What happened inside an `exists_ok()` block."""

    created: bool = True
    code: str | None = None  # the swallowed error code on a re-run


@contextlib.contextmanager
def exists_ok(*extra_codes: str) -> Iterator[Outcome]:
    """Run a create_* call; swallow only "already exists" (plus `extra_codes`), raise the rest."""
    outcome = Outcome()
    try:
        yield outcome
    except ClientError as error:
        code = error_code(error)
        if code not in ALREADY_EXISTS_CODES and code not in extra_codes:
            raise
        outcome.created, outcome.code = False, code


# The "not there" codes of the same services, for Cleanup cells: deleting twice changes nothing either.
NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException",       # kinesis, dynamodb, lambda, logs, firehose
    "NoSuchEntity",                    # iam
    "NoSuchBucket",                    # s3
    "NotFoundException",               # apigateway
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",  # sqs
    "ParameterNotFound",               # ssm
    "ClusterNotFound", "ClusterNotFoundFault",
})


@contextlib.contextmanager
def gone_ok(*extra_codes: str) -> Iterator[Outcome]:
    """Run a delete_* call; swallow only "not found" (plus `extra_codes`): it is gone either way."""
    outcome = Outcome()
    try:
        yield outcome
    except ClientError as error:
        code = error_code(error)
        if code not in NOT_FOUND_CODES and code not in extra_codes:
            raise
        outcome.created, outcome.code = False, code
