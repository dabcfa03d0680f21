"""OnFailure destinations of event source mappings (and Lambda's asynchronous destinations)."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("localcloud.event_sources")


def send_to_destination(arn: str, record: dict[str, Any], account_id: str, region: str) -> None:
    """OnFailure to SQS or SNS, through moto's backends."""
    body = json.dumps(record)
    service = arn.split(":")[2]
    if service == "sqs":
        from localcloud.motoapi import sqs_backends

        sqs_backends[account_id][region].send_message(arn.split(":")[-1], body)
    elif service == "sns":
        from localcloud.motoapi import sns_backends

        sns_backends[account_id][region].publish(body, arn=arn)
    else:
        log.warning("unsupported OnFailure destination %s", arn)
