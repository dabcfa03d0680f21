"""Waiting for AWS to finish something, where boto3 has no waiter (or the waiter needs settings).

Not the lesson: a notebook says `waiting.mapping_ready(uuid)` after `create_event_source_mapping`, and
`waiting.role_assumable(lambda: lambda_.create_function(...))` around the first function a new role runs.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from botocore.exceptions import ClientError

from helpers import config

T = TypeVar("T")
ROLE_PROPAGATION_SECONDS = 30.0  # a new IAM role can take a few seconds before Lambda may assume it
ROLE_RETRY_DELAY = 3.0
MAPPING_TRANSITIONS = {"Creating", "Enabling", "Disabling", "Updating", "Deleting"}
FAST = {"Delay": 1, "MaxAttempts": 300}  # waiter settings: poll every second, up to 5 minutes


def role_assumable(call: Callable[[], T], seconds: float = ROLE_PROPAGATION_SECONDS) -> T:
    """`call()` (a create_function or update_function_configuration), retried while Lambda answers
    'The role defined for the function cannot be assumed by Lambda': IAM is eventually consistent on AWS,
    and a role made seconds ago may not have reached Lambda yet. Any other error raises at once."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as error:
            propagating = (error.response.get("Error", {}).get("Code") == "InvalidParameterValueException"
                           and "cannot be assumed by Lambda" in str(error))
            if not propagating or time.monotonic() + ROLE_RETRY_DELAY > deadline:
                raise
            time.sleep(ROLE_RETRY_DELAY)


def function_ready(name: str) -> None:
    """Until a function is Active and its last update Successful (boto3's two waiters)."""
    awslambda = config.client("lambda")
    awslambda.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    awslambda.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST)


def mapping_ready(uuid: str, seconds: float = 120.0) -> dict[str, Any]:
    """Until an event source mapping is no longer Creating/Updating... (AWS refuses changes in between);
    returns it as get_event_source_mapping answers."""
    awslambda = config.client("lambda")
    deadline = time.monotonic() + seconds
    while True:
        mapping = awslambda.get_event_source_mapping(UUID=uuid)
        if mapping.get("State") not in MAPPING_TRANSITIONS or time.monotonic() > deadline:
            return mapping
        time.sleep(1)


def mapping_of(function: str, source_arn: str) -> str | None:
    """The UUID of the mapping from `source_arn` to `function`, if there is one (a re-run finds it here:
    create_event_source_mapping itself would make a second one)."""
    found = config.client("lambda").list_event_source_mappings(FunctionName=function, EventSourceArn=source_arn)
    mappings = found.get("EventSourceMappings", [])
    return mappings[0]["UUID"] if mappings else None
