"""Refusals in each service's own error shape, so botocore raises the ClientError AWS would cause.

JSON-protocol services answer `{"__type": ..., "message": ...}` (DynamoDB, Kinesis, SSM... with
AccessDeniedException, UnrecognizedClientException, InvalidSignatureException,
MissingAuthenticationTokenException); SQS adds its query-compatible code; REST-JSON services (Lambda, API
Gateway) the same body with `x-amzn-ErrorType`; query services (IAM, STS, SNS, Redshift) an
`<ErrorResponse>` (AccessDenied, SNS AuthorizationError, InvalidClientTokenId, SignatureDoesNotMatch,
MissingAuthenticationToken); S3 its `<Error>` (AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch).
"""

from __future__ import annotations

import json
import uuid
from xml.sax.saxutils import escape

from localcloud.executor_base import respond
from localcloud.executors import WSGIApp

QUERY_NAMESPACES = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/",
                    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
                    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
                    "redshift": "http://redshift.amazonaws.com/doc/2012-12-01/"}

# (kind of refusal) -> code per protocol family
_JSON = {"denied": "AccessDeniedException", "unknown-key": "UnrecognizedClientException",
         "token": "UnrecognizedClientException", "signature": "InvalidSignatureException",
         "missing": "MissingAuthenticationTokenException", "malformed": "IncompleteSignatureException",
         "expired": "ExpiredTokenException", "expired-token": "ExpiredTokenException"}
_QUERY = {"denied": "AccessDenied", "unknown-key": "InvalidClientTokenId", "token": "InvalidClientTokenId",
          "signature": "SignatureDoesNotMatch", "missing": "MissingAuthenticationToken",
          "malformed": "IncompleteSignature", "expired": "ExpiredToken",
          "expired-token": "ExpiredToken"}
_S3 = {"denied": "AccessDenied", "unknown-key": "InvalidAccessKeyId", "token": "InvalidToken",
       "signature": "SignatureDoesNotMatch", "missing": "AccessDenied", "malformed": "AuthorizationHeaderMalformed",
       "expired": "AccessDenied", "expired-token": "ExpiredToken"}
S3_UNKNOWN_KEY = "The AWS Access Key Id you provided does not exist in our records."
S3_BAD_TOKEN = "The provided token is malformed or otherwise invalid."
MISSING_TOKEN = "Request is missing Authentication Token"


def refusal(service: str, protocol: str, kind: str, message: str) -> WSGIApp:
    """The WSGI answer refusing a request of `service` (signing name) spoken in `protocol`."""
    if service == "s3" or protocol == "rest-xml":
        return _s3(kind, message)
    if protocol == "query":
        code = "AuthorizationError" if service == "sns" and kind == "denied" else _QUERY[kind]
        return _query(service, code, message)
    if service == "sqs":  # JSON with the query-compatible code botocore reads
        code = _QUERY[kind]
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
        return respond(_status(kind, 400), body, "application/x-amz-json-1.0", request_id=True,
                       headers=[("x-amzn-query-error", f"{code};Sender")])
    code = _JSON[kind]
    body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    if protocol == "rest-json":
        return respond(403 if kind != "malformed" else 400, body, "application/json", request_id=True,
                       headers=[("x-amzn-ErrorType", code)])
    return respond(_status(kind, 400), body, "application/x-amz-json-1.1", request_id=True)


def _status(kind: str, denied: int) -> int:
    return {"denied": denied, "malformed": 400}.get(kind, 403 if kind != "denied" else denied)


def _query(service: str, code: str, message: str) -> WSGIApp:
    namespace = QUERY_NAMESPACES.get(service, "")
    body = (f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return respond(403 if code != "IncompleteSignature" else 400, body.encode(), "text/xml", request_id=True)


def _s3(kind: str, message: str) -> WSGIApp:
    code = _S3[kind]
    if kind == "unknown-key":
        message = S3_UNKNOWN_KEY
    elif kind == "token":
        message = S3_BAD_TOKEN
    elif kind == "expired-token":
        message = "The provided token has expired."
    elif kind == "missing":
        message = "Access Denied"
    request_id = uuid.uuid4().hex[:16].upper()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message>'
            f"<RequestId>{request_id}</RequestId><HostId>{uuid.uuid4().hex}</HostId></Error>")
    return respond(400 if kind == "malformed" else 403, body.encode(), "application/xml",
                   headers=[("x-amz-request-id", request_id)])
