"""Unimplemented is loud: calls the local cloud cannot perform fail with an error naming the call.

moto answers many calls by recording them: a Glue job run that turns SUCCEEDED without running its
script, a SageMaker training job that trains nothing, canned Textract text. A workbook built on such an
answer would pass offline and fail on AWS. This executor claims those requests (`catalog.py` lists them
with the reason) before moto sees them and answers HTTP 501 in the service's own error shape: JSON
`{"__type": "NotImplemented", "message": ...}`, REST-JSON the same with `x-amzn-ErrorType`, query
`<ErrorResponse><Error><Code>NotImplemented</Code>...`. botocore raises a ClientError whose code is
`NotImplemented` and whose message names the service and operation; it does not retry a 501.

It is the last executor: any executor that comes to perform one of these calls claims it first.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request

from localcloud.executor_base import respond, signing_name
from localcloud.executors import CloudContext, WSGIApp
from localcloud.unsupported.catalog import NOT_PERFORMED, STATUS, Catalog, Unperformed, build

log = logging.getLogger("localcloud.unsupported")



def error_app(entry: Unperformed) -> WSGIApp:
    """The refusal, as the service would word an error."""
    message = entry.message
    if entry.protocol == "query":
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{NOT_PERFORMED}</Code>"
                f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        return respond(STATUS, body.encode(), "text/xml", request_id=True)
    content_type = f"application/x-amz-json-{entry.json_version}" if entry.protocol == "json" else "application/json"
    payload = json.dumps({"__type": NOT_PERFORMED, "message": message}).encode()
    return respond(STATUS, payload, content_type, request_id=True,
                   headers=[("x-amzn-ErrorType", NOT_PERFORMED)])


def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
    """A query request's parameters; the body is put back so moto still reads it when not claimed."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    body = stream.read(length) if stream is not None and length > 0 else b""
    environ["wsgi.input"] = BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return {**parse_qs(environ.get("QUERY_STRING", "")), **parse_qs(body.decode("utf-8", "replace"))}


class UnsupportedCalls:
    """Claims the calls in the catalog and refuses them."""

    name = "unsupported"

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog
        self.refused = 0
        self._built = threading.Event()
        if catalog is not None:
            self._built.set()

    def start(self, cloud: CloudContext) -> None:
        """Reading botocore's models takes about half a second: it happens beside the start, not in it
        (a request that comes before it is done waits for it)."""
        if self.catalog is None and not self._built.is_set():
            threading.Thread(target=self._build, name="unsupported-catalog", daemon=True).start()

    def _build(self) -> None:
        try:
            self.catalog = build()
        finally:
            self._built.set()

    def stop(self) -> None:
        pass

    def route(self, request: Request) -> WSGIApp | None:
        self._built.wait()
        if self.catalog is None:
            return None
        environ = request.environ
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target is not None:  # the JSON protocol (DynamoDB, Kinesis...: the hot path) costs one lookup
            entry = self.catalog.targets.get(target)
        else:
            method, signed_for = environ.get("REQUEST_METHOD", "GET"), signing_name(environ)
            entry = self.catalog.find(None, signed_for, method, environ.get("PATH_INFO", "/"))
            if entry is None and method == "POST" and signed_for in self.catalog.query_services \
                    and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                entry = self.catalog.query_action(signed_for, (_form(environ).get("Action") or [None])[0])
        if entry is None:
            return None
        self.refused += 1
        log.warning("refused %s %s: not performed by the local cloud", entry.service, entry.operation)
        return error_app(entry)


def make_executor() -> UnsupportedCalls:
    return UnsupportedCalls()
