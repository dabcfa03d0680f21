"""The invoice documents' writes shared by stream_to_dynamodb and batch_import (the `retail_records`
layer's `document_writes`): the BatchWriteItem body written without botocore's serializer is the same
JSON document, whatever the items hold; retries and refusals follow the writers' policy."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import boto3
import pytest
import retail_records as contract
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import given, settings, strategies as st
from retail_records import document_writes, documents

from helpers import dataset


def expected_body(table: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"RequestItems": {table: [{"PutRequest": {"Item": item}} for item in items]}}


def sample_documents() -> list[dict[str, Any]]:
    """The sample's invoice documents, built as the writers build them."""
    accepted, _ = contract.prepare(dataset.read_raw()[list(contract.COLUMNS)].to_dict("records"))
    lines = [documents.line_of(a.record, a.record["record_id"], a.record["Quantity"],
                               contract.stream_number(a.record["UnitPrice"])) for a in accepted]
    by_invoice: dict[str, list[documents.Line]] = {}
    for line in lines:
        by_invoice.setdefault(line.invoice, []).append(line)
    return [documents.fold_invoice(invoice, None, new)[0] for invoice, new in by_invoice.items()]  # type: ignore[misc]


def test_the_body_of_the_samples_documents_is_their_json() -> None:
    items = sample_documents()
    assert len(items) > 100 and any("Description" not in line["M"] for item in items for line in item["lines"]["L"])
    for chunk in document_writes.chunks(items):
        assert json.loads(document_writes.request_body("sales", chunk)) == expected_body("sales", chunk)


def test_a_usual_line_is_written_from_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not by json.dumps (the generic way is for other shapes): the template is what saves the time."""
    line = documents.line_entry(documents.line_of(
        {"InvoiceNo": "536365", "StockCode": "85123A", "Description": 'WHITE "HEART" \\ T-LIGHT\n\u00e9\u2603',
         "InvoiceDate": "12/1/2010 8:26"}, "r1#1", 6, Decimal("2.55")))
    assert tuple(line["M"]) == document_writes.LINE_ATTRIBUTES
    monkeypatch.setattr(document_writes, "_dumps", lambda value: pytest.fail(f"json.dumps of {value}"))
    assert json.loads(document_writes.line_json(line)) == line


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
numbers = st.from_regex(r"-?\d{1,5}(\.\d{1,3})?", fullmatch=True)
other_values = st.one_of(st.fixed_dictionaries({"S": texts, "N": numbers}),  # two keys: the generic way
                         st.fixed_dictionaries({"N": st.integers()}),  # not a text: the generic way
                         st.fixed_dictionaries({"S": texts}), st.fixed_dictionaries({"N": numbers}),
                         st.fixed_dictionaries({"BOOL": st.booleans()}), st.fixed_dictionaries({"NULL": st.just(True)}),
                         st.none(), st.integers(), texts)  # not an attribute value at all: the generic way
usual = st.fixed_dictionaries({name: st.fixed_dictionaries({kind: texts if kind == "S" else numbers})
                               for name, kind in zip(document_writes.LINE_ATTRIBUTES, "SSSSNNN")})
spoiled = st.tuples(usual, st.sampled_from(document_writes.LINE_ATTRIBUTES), other_values).map(
    lambda drawn: {**drawn[0], drawn[1]: drawn[2]})  # one attribute of another kind or shape, in its place
other = st.dictionaries(st.sampled_from(document_writes.LINE_ATTRIBUTES + ("extra",)), other_values)
lines = st.lists(st.one_of(usual.map(lambda m: {"M": m}), spoiled.map(lambda m: {"M": m}),
                           other.map(lambda m: {"M": m}), st.fixed_dictionaries({"M": usual, "S": texts}),
                           texts.map(lambda t: {"S": t})), max_size=6)
items = st.lists(st.fixed_dictionaries({"PK": st.fixed_dictionaries({"S": texts}), "lines": st.one_of(
    st.fixed_dictionaries({"L": lines}), st.fixed_dictionaries({"S": texts}),
    st.fixed_dictionaries({"L": lines, "S": texts}))},
    optional={"total_amount": other_values, "name\"\\é": other_values}), max_size=4)


@settings(max_examples=300, deadline=None)
@given(table=texts, written=items)
def test_any_items_body_is_their_json(table: str, written: list[dict[str, Any]]) -> None:
    """Lines of other shapes, values that are not texts, escapes and any characters: the same JSON."""
    assert json.loads(document_writes.request_body(table, written)) == expected_body(table, written)


def test_an_item_of_lines_alone_is_its_json() -> None:
    for item in ({"lines": {"L": []}}, {"lines": {"L": [{"S": "x"}]}}, {}):
        assert json.loads(document_writes.item_json(item)) == item


def test_unprocessed_items_are_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [{"PK": {"S": f"INVOICE#{n}"}, "SK": {"S": "INVOICE"}} for n in range(3)]
    sent: list[list[str]] = []

    def stuck_on_1(client: Any, table: str, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        sent.append([item["PK"]["S"] for item in chunk])
        stuck = [{"PutRequest": {"Item": item}} for item in chunk if item["PK"]["S"] == "INVOICE#1"]
        return {"UnprocessedItems": {table: stuck}}

    monkeypatch.setattr(document_writes, "batch_write", stuck_on_1)
    pauses: list[float] = []
    assert document_writes.write_chunk(None, "t", items, pauses.append, 3, 0.05) == {("INVOICE#1", "INVOICE")}
    assert sent == [["INVOICE#0", "INVOICE#1", "INVOICE#2"], ["INVOICE#1"], ["INVOICE#1"]] and pauses == [0.05, 0.1]


def test_throttling_is_retried_and_other_errors_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Any] = [ClientError({"Error": {"Code": "ThrottlingException"}}, "BatchWriteItem"), {},
                          ClientError({"Error": {"Code": "ValidationException"}}, "BatchWriteItem")]

    def answer(client: Any, table: str, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        next_answer = answers.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    monkeypatch.setattr(document_writes, "batch_write", answer)
    item = {"PK": {"S": "INVOICE#1"}, "SK": {"S": "INVOICE"}}
    assert document_writes.write_chunk(None, "t", [item], lambda s: None, 3, 0.0) == set()
    with pytest.raises(ClientError, match="ValidationException"):
        document_writes.write_chunk(None, "t", [item], lambda s: None, 3, 0.0)


def test_a_client_that_never_signs_the_request_is_not_taken_for_a_write() -> None:
    """A stubbed client answers without sending: the prepared documents were not written, and saying
    otherwise would lose them."""
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
                          config=Config(parameter_validation=False))  # as the writers make theirs
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {"t": []}})
        with pytest.raises(RuntimeError, match="not sent"):
            document_writes.batch_write(client, "t", [{"PK": {"S": "INVOICE#1"}}])


def test_a_retried_request_carries_the_documents_again() -> None:
    """botocore signs each attempt again (here after a 500): every attempt sends the prepared documents,
    never the empty list the call was made with."""
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self, **_: Any) -> Any:
            yield self.data

    sent: list[bytes] = []

    class Session:
        def send(self, request: Any) -> AWSResponse:
            sent.append(request.body)
            if len(sent) == 1:
                return AWSResponse(request.url, 500, {}, Raw(b'{"__type":"InternalServerError"}'))
            return AWSResponse(request.url, 200, {}, Raw(b'{"UnprocessedItems":{}}'))

    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
                          endpoint_url="http://127.0.0.1:9", config=Config(parameter_validation=False))
    client._endpoint.http_session = Session()  # the transport: what each attempt puts on the wire
    item = {"PK": {"S": "INVOICE#1"}, "SK": {"S": "INVOICE"}}
    assert document_writes.batch_write(client, "t", [item]) == {"UnprocessedItems": {}, "ResponseMetadata": ANY}
    assert len(sent) == 2 and all(json.loads(body) == expected_body("t", [item]) for body in sent)
