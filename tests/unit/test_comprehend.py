"""Comprehend sentiment in a real local cloud, called with plain boto3: computed per text (not moto's
canned NEUTRAL), in AWS's answer shape, with AWS's limits; and a function calling it from Lambda."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any, Iterator

import boto3
import pytest

from localcloud import lifecycle
from localcloud.comprehend import sentiment

POSITIVE = "I love this road, the new cameras are wonderful and the drivers are so polite!"
NEGATIVE = "Terrible traffic again, this awful junction is dangerous and I hate it."
NEUTRAL = "The van passed the sensor on the A1 at 10:32 travelling north."
MIXED = "The food was great but the service was awful."


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lifecycle.running(tmp_path_factory.mktemp("localcloud"), {}) as url:
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def assert_scores(answer: dict[str, Any]) -> None:
    scores = answer["SentimentScore"]
    assert set(scores) == {"Positive", "Negative", "Neutral", "Mixed"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(scores, key=scores.get) == answer["Sentiment"].capitalize()


@pytest.mark.parametrize("text, expected", [(POSITIVE, "POSITIVE"), (NEGATIVE, "NEGATIVE"), (NEUTRAL, "NEUTRAL"),
                                            (MIXED, "MIXED")])
def test_detect_sentiment_is_computed(endpoint: str, text: str, expected: str):
    answer = client(endpoint, "comprehend").detect_sentiment(Text=text, LanguageCode="en")
    assert answer["Sentiment"] == expected
    assert_scores(answer)


def test_detect_sentiment_limits_and_languages(endpoint: str):
    comprehend = client(endpoint, "comprehend")
    with pytest.raises(comprehend.exceptions.TextSizeLimitExceededException, match="5000 bytes"):
        comprehend.detect_sentiment(Text="é" * 2501, LanguageCode="en")  # 5,002 bytes of UTF-8
    assert comprehend.detect_sentiment(Text="a" * 5000, LanguageCode="en")["Sentiment"] == "NEUTRAL"
    with pytest.raises(comprehend.exceptions.UnsupportedLanguageException, match="DetectSentiment"):
        comprehend.detect_sentiment(Text="Quelle belle journée", LanguageCode="fr")
    with pytest.raises(comprehend.exceptions.ClientError, match="ValidationException"):
        comprehend.detect_sentiment(Text="hello", LanguageCode="xx")


def test_batch_detect_sentiment(endpoint: str):
    comprehend = client(endpoint, "comprehend")
    answer = comprehend.batch_detect_sentiment(TextList=[NEGATIVE, POSITIVE, NEUTRAL], LanguageCode="en")
    assert [r["Index"] for r in answer["ResultList"]] == [0, 1, 2]
    assert [r["Sentiment"] for r in answer["ResultList"]] == ["NEGATIVE", "POSITIVE", "NEUTRAL"]
    assert answer["ErrorList"] == []
    for result in answer["ResultList"]:
        assert_scores(result)
    with pytest.raises(comprehend.exceptions.BatchSizeLimitExceededException, match="25"):
        comprehend.batch_detect_sentiment(TextList=["fine"] * 26, LanguageCode="en")
    with pytest.raises(comprehend.exceptions.TextSizeLimitExceededException):
        comprehend.batch_detect_sentiment(TextList=["ok", "x" * 5001], LanguageCode="en")
    with pytest.raises(comprehend.exceptions.UnsupportedLanguageException, match="BatchDetectSentiment"):
        comprehend.batch_detect_sentiment(TextList=["hola"], LanguageCode="es")


TRANSFORM = '''
import base64, json, os, boto3
comprehend = boto3.client("comprehend")
def handler(event, context):
    out = []
    for record in event["records"]:
        row = json.loads(base64.b64decode(record["data"]))
        row["sentiment"] = comprehend.detect_sentiment(Text=row["comment"], LanguageCode="en")["Sentiment"]
        out.append({"recordId": record["recordId"], "result": "Ok",
                    "data": base64.b64encode(json.dumps(row).encode()).decode()})
    return {"records": out}
'''


def test_a_transformation_lambda_calls_comprehend(endpoint: str):
    iam, awslambda = client(endpoint, "iam"), client(endpoint, "lambda")
    role = iam.create_role(RoleName="transform-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName="transform-role", PolicyName="sentiment", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["comprehend:DetectSentiment", "comprehend:BatchDetectSentiment"],
                                                "Resource": "*"}]}))  # the local cloud enforces IAM, as AWS does
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", TRANSFORM)
    awslambda.create_function(FunctionName="sentiment-transform", Runtime="python3.11", Role=role,
                              Handler="app.handler", Code={"ZipFile": buffer.getvalue()}, Timeout=30)
    awslambda.get_waiter("function_active_v2").wait(FunctionName="sentiment-transform")
    records = [{"recordId": str(i), "data": base64.b64encode(json.dumps({"comment": text}).encode()).decode()}
               for i, text in enumerate([POSITIVE, NEGATIVE])]
    answer = awslambda.invoke(FunctionName="sentiment-transform", Payload=json.dumps({"records": records}))
    assert "FunctionError" not in answer, answer["Payload"].read()
    rows = [json.loads(base64.b64decode(r["data"])) for r in json.loads(answer["Payload"].read())["records"]]
    assert [row["sentiment"] for row in rows] == ["POSITIVE", "NEGATIVE"]


def test_scores_in_process():
    for text in (POSITIVE, NEGATIVE, NEUTRAL, MIXED, "!!!"):
        assert_scores(sentiment.detect(text))


def test_language_detection_is_refused_by_name(endpoint: str):
    comprehend = client(endpoint, "comprehend")
    with pytest.raises(comprehend.exceptions.InvalidRequestException, match="DetectDominantLanguage"):
        comprehend.detect_dominant_language(Text="Hello there")


def test_moto_backend_answers_computed_sentiment_while_the_executor_runs():
    from localcloud.comprehend.executor import ComprehendExecutor
    from localcloud.motoapi import ServiceException, get_backend

    backend = get_backend("comprehend")["123456789012"]["us-east-1"]
    executor = ComprehendExecutor()
    executor.start(None)  # type: ignore[arg-type]  # the executor needs nothing of the cloud
    try:
        assert backend.detect_sentiment(NEGATIVE, "en")["Sentiment"] == "NEGATIVE"
        with pytest.raises(ServiceException) as refused:
            backend.detect_sentiment("x" * 5001, "en")
        assert refused.value.code == "TextSizeLimitExceededException"
    finally:
        executor.stop()
    assert backend.detect_sentiment(NEGATIVE, "en")["Sentiment"] == "NEUTRAL"  # moto's canned answer again
