"""The warehouse part's resources as a whole (notebooks 06 and 08), for the one teardown path.

Notebook 06 builds them with its visible boto3 calls and removes them in its own `## Cleanup`; this
is the same removal for `helpers.teardown.everything` (notebook 99): the delivery streams first (they
read the Kinesis stream and COPY into the warehouse), then the warehouse (the local cluster, or the
Serverless workgroup and its namespace). The staging bucket and the two roles go with the rest of the
prefix (`teardown.streaming` finds buckets by name, `teardown.workbook_roles` roles by name and tag).
"""

from __future__ import annotations

import time

from helpers import config
from helpers.delivery import delete_delivery_stream
from helpers.resources import Names, names as resource_names


def delete_warehouse(names: Names | None = None) -> list[str]:
    """Delete the warehouse: the cluster (local), or the workgroup, then its namespace (AWS); what went."""
    names = names or resource_names()
    removed: list[str] = []
    if config.settings().is_local:
        redshift = config.client("redshift")
        try:
            redshift.delete_cluster(ClusterIdentifier=names.warehouse_cluster, SkipFinalClusterSnapshot=True)
            removed.append(names.warehouse_cluster)
        except redshift.exceptions.ClusterNotFoundFault:
            pass
        return removed
    serverless = config.client("redshift-serverless")
    try:
        serverless.delete_workgroup(workgroupName=names.warehouse_cluster)
        removed.append(f"workgroup {names.warehouse_cluster}")
        while True:  # the namespace cannot go while its workgroup is deleting
            serverless.get_workgroup(workgroupName=names.warehouse_cluster)
            time.sleep(10)
    except serverless.exceptions.ResourceNotFoundException:
        pass
    try:
        serverless.delete_namespace(namespaceName=names.warehouse_cluster)
        removed.append(f"namespace {names.warehouse_cluster}")
    except serverless.exceptions.ResourceNotFoundException:
        pass
    return removed


def teardown(names: Names | None = None) -> dict[str, list[str]]:
    """Delete the delivery streams and the warehouse; what went, by kind."""
    names = names or resource_names()
    streams = [s for s in (names.firehose_stream, names.firehose_course_stream) if delete_delivery_stream(s)]
    return {"delivery_streams": streams, "warehouse": delete_warehouse(names)}


def wait_workgroup_deleted(name: str, timeout_s: float = 1800.0) -> None:
    """Wait until a Serverless workgroup is gone (its namespace cannot be deleted before)."""
    serverless = config.client("redshift-serverless")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            serverless.get_workgroup(workgroupName=name)
        except serverless.exceptions.ResourceNotFoundException:
            return
        time.sleep(10)
    raise TimeoutError(f"Redshift Serverless workgroup {name} still exists after {timeout_s:.0f} s")


def remaining(names: Names | None = None) -> dict[str, list[str]]:
    """What of notebook 06's resources still exists: delivery streams, warehouse, staging bucket, roles."""
    names = names or resource_names()
    firehose, s3, iam = (config.client(service) for service in ("firehose", "s3", "iam"))
    streams = [s for s in firehose.list_delivery_streams(Limit=100)["DeliveryStreamNames"]
               if s in (names.firehose_stream, names.firehose_course_stream)]
    if config.settings().is_local:
        clusters = [c["ClusterIdentifier"] for c in config.client("redshift").describe_clusters()["Clusters"]
                    if c["ClusterIdentifier"] == names.warehouse_cluster and c.get("ClusterStatus") != "deleting"]
    else:
        clusters = [w["workgroupName"] for w in config.client("redshift-serverless").list_workgroups()["workgroups"]
                    if w["workgroupName"] == names.warehouse_cluster]
    buckets = [b["Name"] for b in s3.list_buckets().get("Buckets", []) if b["Name"] == names.staging_bucket]
    roles = []
    for role in (names.firehose_role, names.warehouse_role):
        try:
            iam.get_role(RoleName=role)
            roles.append(role)
        except iam.exceptions.NoSuchEntityException:
            pass
    return {"delivery_streams": streams, "warehouse": clusters, "buckets": buckets, "roles": roles}
