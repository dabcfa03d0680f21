"""Amazon Comprehend's DetectSentiment and BatchDetectSentiment, computed offline (sentiment.py).

moto answers DetectSentiment with one canned NEUTRAL result for every text and lacks
BatchDetectSentiment. This executor answers both over HTTP itself (`route`): they change no state, so
they skip moto's dispatch and the write-ahead journal (DetectSentiment: 10-13 ms a call against 17-21 ms
through moto on a loaded two-core machine; a transformation Lambda calls it once per record). moto's
backend method is replaced too (through the facade), so moto can never give its canned answer.
Checks, as AWS makes them: LanguageCode in AWS's list (else ValidationException); a language AWS
supports but the local lexicon does not (anything but `en`) fails with UnsupportedLanguageException
naming the call, rather than a made-up answer; Text of 1 to 5,000 bytes of UTF-8
(TextSizeLimitExceededException above); at most 25 documents a batch (BatchSizeLimitExceededException).
A batch's ResultList carries each document's Index; ErrorList is empty (every document that passes the
checks gets a result). DetectDominantLanguage / BatchDetectDominantLanguage are refused with an
InvalidRequestException that says the local cloud does not identify languages.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud import motoapi
from localcloud.comprehend import sentiment
from localcloud.executors import CloudContext, WSGIApp

TARGET_PREFIX = "Comprehend_20171127."
JSON_TYPE = "application/x-amz-json-1.1"
# moto lacks these and answers a bare NotImplementedError: refused here in AWS's error shape, naming the call.
NOT_COMPUTED = ("DetectDominantLanguage", "BatchDetectDominantLanguage")


class ComprehendError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def check_language(language: Any, operation: str) -> None:
    if language not in sentiment.LANGUAGES:
        raise ComprehendError("ValidationException", f"1 validation error detected: Value '{language}' at "
                              f"'languageCode' failed to satisfy constraint: Member must satisfy enum value set: "
                              f"[{', '.join(sentiment.LANGUAGES)}]")
    if language not in sentiment.COMPUTED_LANGUAGES:
        raise ComprehendError("UnsupportedLanguageException", f"{operation}: the local cloud computes sentiment "
                              f"for English (en) only; '{language}' is answered by Amazon Comprehend on AWS")


def check_text(text: Any, member: str = "text") -> str:
    if not isinstance(text, str) or not text:
        raise ComprehendError("ValidationException", f"1 validation error detected: Value at '{member}' failed to "
                              "satisfy constraint: Member must have length greater than or equal to 1")
    size = len(text.encode("utf-8"))
    if size > sentiment.MAX_TEXT_BYTES:
        raise ComprehendError("TextSizeLimitExceededException", "Input text size exceeds limit. Max length of "
                              f"request text allowed is {sentiment.MAX_TEXT_BYTES} bytes while in this request "
                              f"the text size is {size} bytes")
    return text


def detect_sentiment(text: Any, language: Any) -> dict[str, Any]:
    check_language(language, "DetectSentiment")
    return sentiment.detect(check_text(text))


def batch_detect_sentiment(texts: Any, language: Any) -> dict[str, Any]:
    if not isinstance(texts, list) or not texts:
        raise ComprehendError("ValidationException", "1 validation error detected: Value at 'textList' failed to "
                              "satisfy constraint: Member must have length greater than or equal to 1")
    if len(texts) > sentiment.MAX_BATCH:
        raise ComprehendError("BatchSizeLimitExceededException", f"The number of documents in the request exceeds "
                              f"the limit of {sentiment.MAX_BATCH}. Try your request again with fewer documents.")
    check_language(language, "BatchDetectSentiment")
    checked = [check_text(text, "textList") for text in texts]
    return {"ResultList": [{"Index": index, **sentiment.detect(text)} for index, text in enumerate(checked)],
            "ErrorList": []}


def _answer(status: int, body: dict[str, Any], error: str | None = None) -> WSGIApp:
    data = json.dumps(body).encode()
    headers = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(data))),
               ("x-amzn-RequestId", str(uuid.uuid4()))] + ([("x-amzn-ErrorType", error)] if error else [])

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", headers)
        return [data]

    return app


class ComprehendExecutor:
    name = "comprehend"

    def __init__(self) -> None:
        self._undo: Callable[[], None] | None = None

    def start(self, cloud: CloudContext) -> None:
        if self._undo is None:
            self._undo = motoapi.replace("comprehend.detect_sentiment", lambda original: _moto_detect_sentiment)

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None

    def route(self, request: Request) -> WSGIApp | None:
        target = request.headers.get("X-Amz-Target", "")
        if target == TARGET_PREFIX + "BatchDetectSentiment":
            return self._batch
        if target == TARGET_PREFIX + "DetectSentiment":
            return self._single
        if target.removeprefix(TARGET_PREFIX) in NOT_COMPUTED:
            operation = target.removeprefix(TARGET_PREFIX)
            return _answer(400, {"__type": "InvalidRequestException", "message": f"{operation}: the local cloud "
                                 "does not identify languages offline (it computes DetectSentiment and "
                                 "BatchDetectSentiment for English)"}, "InvalidRequestException")
        return None

    def _batch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return _json_call(environ, start_response,
                          lambda body: batch_detect_sentiment(body.get("TextList"), body.get("LanguageCode")))

    def _single(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return _json_call(environ, start_response,
                          lambda body: detect_sentiment(body.get("Text"), body.get("LanguageCode")))


def _json_call(environ: dict[str, Any], start_response: Callable[..., Any],
               compute: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """One JSON-protocol call answered here: the computed result, or AWS's error shape."""
    body = Request(environ).get_json(force=True, silent=True)
    try:
        if not isinstance(body, dict):
            raise ComprehendError("SerializationException", "the request body is not a JSON object")
        app = _answer(200, compute(body))
    except ComprehendError as error:
        app = _answer(400, {"__type": error.code, "message": error.message}, error.code)
    return app(environ, start_response)


def _moto_detect_sentiment(self: Any, text: str, language: str) -> dict[str, Any]:
    """moto's ComprehendBackend.detect_sentiment, computed; errors in moto's serializable form."""
    try:
        return detect_sentiment(text, language)
    except ComprehendError as error:
        from localcloud.motoapi import ServiceException

        raise ServiceException(error.code, error.message) from None


def make_executor() -> ComprehendExecutor:
    return ComprehendExecutor()
