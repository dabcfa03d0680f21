"""Firehose delivery into the warehouse, the parts that are waiting rather than building.

Notebook 06 writes out `firehose.create_delivery_stream` with every argument. What it leaves to this
module: retrying a create while a new IAM role propagates, waiting for ACTIVE, noticing a delivery
stream whose Kinesis source was re-created after it, getting a batch delivered *now* (the local
cloud's flush route, instead of waiting out the buffer interval; on AWS, waiting), reading
`stl_load_errors`, and deleting a delivery stream and waiting until it is gone.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
from botocore.exceptions import ClientError

from helpers import config
from helpers.redshift_data import Warehouse, query, scalar

ROLE_PROPAGATION_S = 60.0  # a role created seconds ago may not be assumable by Firehose yet
ROLE_RETRY_DELAY_S = 3.0


def retry_new_role(create: Callable[[], Any], seconds: float = ROLE_PROPAGATION_S) -> Any:
    """Call `create()`; retry only Firehose's "cannot assume the role" refusal, for a while."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return create()
        except ClientError as error:
            message = error.response["Error"].get("Message", "")
            if error.response["Error"]["Code"] != "InvalidArgumentException" or "role" not in message.lower() \
                    or time.monotonic() > deadline:
                raise
            time.sleep(ROLE_RETRY_DELAY_S)


def wait_active(name: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Wait for a delivery stream to be ACTIVE; its description."""
    firehose = config.client("firehose")
    deadline = time.monotonic() + timeout_s
    while True:
        described = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        status = described["DeliveryStreamStatus"]
        if status == "ACTIVE":
            return described
        if status.endswith("FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"Firehose delivery stream {name} is {status}: "
                               f"{described.get('FailureDescription', {}).get('Details', '')}")
        time.sleep(5)


def reads_another_stream(name: str, stream_arn: str) -> bool:
    """True when delivery stream `name` exists but does not read this Kinesis stream: another source, or
    this name's stream deleted and created again after it (Firehose cannot change its source)."""
    firehose = config.client("firehose")
    try:
        described = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    except firehose.exceptions.ResourceNotFoundException:
        return False
    source = (described.get("Source") or {}).get("KinesisStreamSourceDescription") or {}
    if source.get("KinesisStreamARN") != stream_arn:
        return True
    stream = config.client("kinesis").describe_stream_summary(StreamName=stream_arn.rsplit("/", 1)[-1])
    return stream["StreamDescriptionSummary"]["StreamCreationTimestamp"] > described["CreateTimestamp"]


def delete_delivery_stream(name: str, timeout_s: float = 600.0) -> bool:
    """Delete a delivery stream and wait until it is gone. False when it did not exist."""
    firehose = config.client("firehose")
    try:
        firehose.delete_delivery_stream(DeliveryStreamName=name)
    except firehose.exceptions.ResourceNotFoundException:
        return False
    wait_deleted(name, timeout_s)
    return True


def wait_deleted(name: str, timeout_s: float = 600.0) -> None:
    """Wait until DescribeDeliveryStream says the delivery stream is gone."""
    firehose = config.client("firehose")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            firehose.describe_delivery_stream(DeliveryStreamName=name)
        except firehose.exceptions.ResourceNotFoundException:
            return
        time.sleep(2)
    raise TimeoutError(f"Firehose delivery stream {name} still exists after {timeout_s:.0f} s")


def deliver(name: str, *, interval_s: int = 60, until: Callable[[], bool] | None = None,
            timeout_s: float = 900.0) -> dict[str, Any]:
    """Get what the delivery stream has read delivered now. Local: the flush route, repeated until the
    source is drained (no waiting for the buffer interval). AWS: wait for the interval, then poll
    `until()` (e.g. "the table has the rows") with a timeout. Returns the summed local flush reports."""
    total: dict[str, Any] = {"Records": 0, "Objects": [], "Manifests": [], "Copied": [], "ErrorManifests": [],
                             "Errors": []}
    current = config.settings()
    if current.is_local:
        from localcloud.firehose import executor as firehose

        while True:
            report = firehose.flush(current.endpoint_url, name, account=config.account_id(), region=current.region)
            for key, value in total.items():
                total[key] = value + report.get(key, 0 if isinstance(value, int) else [])
            if not report.get("Records"):
                return total
    time.sleep(interval_s)
    deadline = time.monotonic() + timeout_s
    while until is not None and not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: not delivered after {interval_s + timeout_s:.0f} s")
        time.sleep(15)
    return total


def copy_mark(wh: Warehouse) -> int:
    """The newest query id in stl_load_errors: errors of later COPYs are this run's."""
    return int(scalar(wh, "SELECT COALESCE(MAX(query), 0) FROM stl_load_errors") or 0)


def load_errors(wh: Warehouse, *, after_query: int, file_prefix: str) -> pd.DataFrame:
    """stl_load_errors rows of the COPYs after `after_query` that read files under `file_prefix`."""
    return query(wh, f"""
        SELECT query, TRIM(filename) AS filename, line_number, TRIM(colname) AS colname, TRIM(type) AS type,
               TRIM(raw_field_value) AS raw_field_value, err_code, TRIM(err_reason) AS err_reason, raw_line
        FROM stl_load_errors
        WHERE query > {int(after_query)} AND filename LIKE '{file_prefix}%'
        ORDER BY query, filename, line_number""")


def staged_keys(bucket: str, prefix: str) -> set[str]:
    """Keys under a prefix of the staging bucket (e.g. the manifests Firehose parked under errors/)."""
    listing = config.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in listing for item in page.get("Contents", [])}
