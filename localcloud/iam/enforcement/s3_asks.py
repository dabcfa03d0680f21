"""S3's REST requests as IAM actions: the operation is read from the method, the bucket and key, and the
sub-resource in the query (`?policy`, `?notification`, `?uploads`...), and named as the Service
Authorization Reference names it (HeadObject is s3:GetObject, ListObjectsV2 is s3:ListBucket, a multipart
upload is s3:PutObject, CopyObject reads the source too)."""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import unquote

from localcloud.iam.enforcement.asks import Ask, Unmapped

# Bucket sub-resources: query key -> (GET, PUT, DELETE) actions.
BUCKET_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
    "notification": ("GetBucketNotification", "PutBucketNotification", None),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
                          "PutBucketPublicAccessBlock"),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls", "PutBucketOwnershipControls"),
    "location": ("GetBucketLocation", None, None),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "object-lock": ("GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", None),
    "replication": ("GetReplicationConfiguration", "PutReplicationConfiguration", "PutReplicationConfiguration"),
    "accelerate": ("GetAccelerateConfiguration", "PutAccelerateConfiguration", None),
    "requestPayment": ("GetBucketRequestPayment", "PutBucketRequestPayment", None),
    "uploads": ("ListBucketMultipartUploads", None, None),
    "versions": ("ListBucketVersions", None, None),
    "analytics": ("GetAnalyticsConfiguration", "PutAnalyticsConfiguration", "PutAnalyticsConfiguration"),
    "inventory": ("GetInventoryConfiguration", "PutInventoryConfiguration", "PutInventoryConfiguration"),
    "metrics": ("GetMetricsConfiguration", "PutMetricsConfiguration", "PutMetricsConfiguration"),
    "intelligent-tiering": ("GetIntelligentTieringConfiguration", "PutIntelligentTieringConfiguration",
                            "PutIntelligentTieringConfiguration"),
}
# Object sub-resources: query key -> (GET, PUT, DELETE) actions.
OBJECT_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "tagging": ("GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging"),
    "acl": ("GetObjectAcl", "PutObjectAcl", None),
    "retention": ("GetObjectRetention", "PutObjectRetention", None),
    "legal-hold": ("GetObjectLegalHold", "PutObjectLegalHold", None),
    "attributes": ("GetObjectAttributes", None, None),
    "torrent": ("GetObjectTorrent", None, None),
}
_HOST_BUCKET = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*)\.s3[.-]", re.IGNORECASE)
_METHODS = {"GET": 0, "HEAD": 0, "PUT": 1, "DELETE": 2}


def bucket_and_key(host: str, path: str) -> tuple[str | None, str | None]:
    """(bucket, key) of a path-style or virtual-hosted request; the key is URL-decoded."""
    match = _HOST_BUCKET.match(host or "")
    path = path or "/"
    if match:
        key = path.lstrip("/")
        return match.group("bucket"), unquote(key) if key else None
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 and parts[1] else None
    return bucket, unquote(key) if key is not None else None


def asks(method: str, host: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
         body: bytes) -> list[Ask]:
    bucket, key = bucket_and_key(host, path)
    if bucket is None:
        if method == "GET":
            return [_ask("ListAllMyBuckets", "*")]
        raise Unmapped(f"s3:{method} /")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if key is None:
        return _bucket(method, bucket_arn, query, body)
    object_arn = f"{bucket_arn}/{key}"
    for name, actions in OBJECT_SUBRESOURCES.items():
        if name in query and method in _METHODS and actions[_METHODS[method]]:
            return [_ask(actions[_METHODS[method]], object_arn)]
    if "uploadId" in query:
        action = {"GET": "ListMultipartUploadParts", "DELETE": "AbortMultipartUpload"}.get(method, "PutObject")
        return [_ask(action, object_arn)]
    if method in ("GET", "HEAD"):
        return [_ask("GetObjectVersion" if "versionId" in query else "GetObject", object_arn)]
    if method == "PUT" or (method == "POST" and "uploads" in query):
        found = [_ask("PutObject", object_arn)]
        source = headers.get("x-amz-copy-source")
        if source:
            source = unquote(source.lstrip("/")).split("?versionId=")[0]
            found.append(_ask("GetObject", f"arn:aws:s3:::{source}"))
        return found
    if method == "DELETE":
        return [_ask("DeleteObjectVersion" if "versionId" in query else "DeleteObject", object_arn)]
    raise Unmapped(f"s3:{method} object")


def _ask(action: str, resource: str, **context: tuple[str, ...]) -> Ask:
    return Ask(f"s3:{action}", resource, context)


def _bucket(method: str, bucket_arn: str, query: Mapping[str, str], body: bytes) -> list[Ask]:
    for name, actions in BUCKET_SUBRESOURCES.items():
        if name in query and method in _METHODS:
            action = actions[_METHODS[method]]
            if action is None:
                raise Unmapped(f"s3:{method} ?{name}")
            return [_ask(action, bucket_arn)]
    if method == "POST" and "delete" in query:
        keys = re.findall(rb"<Key>(.*?)</Key>", body or b"", re.DOTALL)
        return [_ask("DeleteObject", f"{bucket_arn}/{_xml_text(k)}") for k in keys] or [
            _ask("DeleteObject", f"{bucket_arn}/*")]
    if method in ("GET", "HEAD"):
        prefix = query.get("prefix")
        return [_ask("ListBucket", bucket_arn, **({"s3:prefix": (prefix,)} if prefix is not None else {}))]
    if method == "PUT":
        return [_ask("CreateBucket", bucket_arn)]
    if method == "DELETE":
        return [_ask("DeleteBucket", bucket_arn)]
    raise Unmapped(f"s3:{method} bucket")


def _xml_text(raw: bytes) -> str:
    from html import unescape

    return unescape(raw.decode("utf-8", "replace"))
