"""The record contract (lambdas/layers/records, package retail_records): one definition of a row, used by
the workbook (helpers.dataset) and by every Lambda function through a layer, never copied."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
import retail_records as contract
from hypothesis import given, settings, strategies as st
from retail_records import documents

from helpers import dataset, packaging
from helpers.paths import LAMBDAS_DIR
from helpers.resources import RECORDS_LAYER

USERS = ("ingest_api", "stream_to_s3", "stream_to_dynamodb", "batch_import", "query_api")


def test_the_workbook_and_the_contract_give_the_sample_the_same_ids_and_refusals():
    """helpers.dataset (pandas, vectorised) and the contract (row by row, as the functions run it) agree:
    the same record_id for every row, and every row the contract refuses is bad_value with the same words."""
    raw = dataset.read_raw()
    bad = [["53636X", "85123A", "X", "6", "12/1/2010 8:26", "2.55", "17850", "United Kingdom"],
           ["536365", "85123A", "X", "six", "12/1/2010 8:26", "2.55", "17850", "United Kingdom"],
           ["536365", "85123A", "X", "6", "13/1/2010 8:26", "2.55", "17850", "United Kingdom"],
           ["536365", "85123A", "X", "6", "12/1/2010 8:26", "2,55", "17850", "United Kingdom"],
           ["536365", "85123A", "X", "6", "12/1/2010 8:26", "2.55", "1785O", "United Kingdom"]]
    rows = raw[list(contract.COLUMNS)].to_dict("records") + [dict(zip(contract.COLUMNS, r)) for r in bad]
    accepted, refused = contract.prepare(rows)
    frame = dataset.classify(dataset.parse(pd_frame(rows)))
    assert [a.record["record_id"] for a in accepted] == frame["record_id"].iloc[[a.index for a in accepted]].tolist()
    assert [r.index for r in refused] == list(range(len(raw), len(rows)))
    for r in refused:
        assert frame.loc[r.index, "quality"] == dataset.Quality.BAD_VALUE
        rule = next(rule for rule in (contract.NOT_INVOICE, contract.NOT_INTEGER, contract.NOT_DATE, contract.NOT_NUMBER,
                                      contract.NOT_CUSTOMER) if rule in r.reason)
        assert rule in frame.loc[r.index, "reason"], (r.reason, frame.loc[r.index, "reason"])


def pd_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(contract.COLUMNS)).astype(str)
    frame["line"] = range(1, len(frame) + 1)
    return frame


def test_no_function_keeps_its_own_copy_of_the_rules():
    """The rules live in the layer: a function that defines them again would drift from it."""
    copies = re.compile(r'^\s*(DATE_FORMAT|INVOICE_RE|CUSTOMER_RE|INT_RE|MAX_QUANTITY|MAX_UNIT_PRICE|'
                        r'ITEM_BUDGET_BYTES|INVOICE_SK)\s*=|^def (canonical|derive_record_ids|raw_fields|fold_invoice|'
                        r'line_entry|entry_bytes|fold_lines|write_chunk|batch_write)\(|%m/%d/%Y %H:%M|\[CA\]\?', re.MULTILINE)
    found = {str(path.relative_to(LAMBDAS_DIR)): copies.findall(path.read_text())
             for path in LAMBDAS_DIR.glob("*/*.py")}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_the_functions_that_need_the_contract_are_deployed_with_its_layer():
    for folder in USERS:
        assert packaging.imported_layers(folder) == [RECORDS_LAYER], folder
    assert packaging.imported_layers("customer_authorizer") == []


def test_the_layer_zip_is_the_folder_under_python_and_deterministic():
    data = packaging.package_layer_folder(RECORDS_LAYER)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["python/retail_records/__init__.py", "python/retail_records/contract.py",
                     "python/retail_records/document_writes.py", "python/retail_records/documents.py",
                     "python/retail_records/quarantine.py"]
    assert packaging.package_layer_folder(RECORDS_LAYER) == data
    with pytest.raises(packaging.PackagingError, match="no python/ folder"):
        packaging.package_layer_folder(LAMBDAS_DIR / "ingest_api")


def test_every_name_the_package_exports_exists():
    assert sorted(contract.__all__) == sorted(set(contract.__all__))
    assert all(hasattr(contract, name) for name in contract.__all__)


@pytest.mark.parametrize("row, reason", [
    ({"InvoiceNo": "536365", "alone": True}, "missing StockCode, Quantity, InvoiceDate, UnitPrice, Country"),
    ({"Quantity": "1" * 19}, f"Quantity '{'1' * 19}' is not an integer"),
    ({"Quantity": 10**7 + 1}, "Quantity 10000001 is outside"),
    ({"UnitPrice": "NaN"}, "UnitPrice 'NaN' is not a number"),
    ({"UnitPrice": "1e-131"}, "below 1e-130"),
    ({"InvoiceDate": "2010-13-01"}, "InvoiceDate '2010-13-01' is not a date like 12/1/2010 8:26"),
    ({"CustomerID": "1" * 21}, "CustomerID '" + "1" * 21 + "' is not digits (at most 20)"),
    ({"CustomerID": "\u0661\u0662\u0663\u0664\u0667"}, "is not digits"),  # Arabic-Indic digits: not the file's
    ({"InvoiceNo": "\u0665\u0663\u0666\u0663\u0666\u0665"}, "is not 6 digits"),
    ({"Quantity": "\u0666"}, "is not an integer"),
    ({"UnitPrice": "\u0662.\u0665\u0665"}, "is not a number"),
    ({"InvoiceDate": "\u0661\u0662/1/2010 8:26"}, "is not a date"),
    ({"Description": "x" * 1001}, "Description is 1,001 characters, more than 1,000"),
    ({"Country": "Eire\ufffd"}, "Country contains U+FFFD"),
])
def test_refusals_name_the_column_and_the_rule(row: dict[str, Any], reason: str):
    good = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "WHITE HANGING HEART T-LIGHT HOLDER",
            "Quantity": "6", "InvoiceDate": "12/1/2010 8:26", "UnitPrice": "2.55", "CustomerID": "17850.0",
            "Country": "United Kingdom"}
    assert contract.canonical(good) == {**good, "Quantity": 6, "UnitPrice": Decimal("2.55"), "CustomerID": "17850"}
    with pytest.raises(contract.BadRow) as refused:
        contract.canonical({k: v for k, v in row.items() if k != "alone"} if row.get("alone") else good | row)
    assert reason in str(refused.value)


def test_the_same_lines_fold_into_a_document_once():
    row = {"InvoiceNo": "536365", "StockCode": "85123A", "Description": "HEART", "Quantity": 6,
           "InvoiceDate": "12/1/2010 8:26", "UnitPrice": Decimal("2.55"), "CustomerID": "17850", "Country": "UK"}
    lines = [documents.line_of(row, f"r#{n}", 6, Decimal("2.55")) for n in (1, 2)]
    document, overflow = documents.fold_invoice("536365", None, lines)
    assert overflow == [] and document["total_amount"] == {"N": "30.60"} and document["line_count"] == {"N": "2"}
    assert document["GSI1SK"] == {"S": "INVOICE#2010-12-01T08:26#536365"}
    assert documents.fold_invoice("536365", document, lines) == (None, [])  # a replay writes nothing


@pytest.mark.localcloud
def test_a_function_deployed_without_the_layer_fails_to_import_as_on_aws(aws: Callable[[str], Any]):
    """The local runtime runs the deployed zip and its layers only: the workbook's installed copy of the
    contract must not leak into a function that forgot its layer."""
    name = f"contract-{uuid.uuid4().hex[:8]}"
    role = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    awslambda = aws("lambda")
    code = packaging.package("ingest_api")
    settings = {"Runtime": packaging.RUNTIME, "Role": role, "Handler": "app.handler",
                "Environment": {"Variables": {"STREAM_NAME": name}}}
    awslambda.create_function(FunctionName=name, Code={"ZipFile": code}, **settings)
    awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
    answer = awslambda.invoke(FunctionName=name, Payload=b'{"body": ""}')
    error = json.loads(answer["Payload"].read())
    assert answer.get("FunctionError") == "Unhandled" and error["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'retail_records'" in error["errorMessage"]

    layer = awslambda.publish_layer_version(LayerName=name, Content={"ZipFile": packaging.package_layer_folder(RECORDS_LAYER)},
                                            CompatibleRuntimes=[packaging.RUNTIME])["LayerVersionArn"]
    awslambda.update_function_configuration(FunctionName=name, Layers=[layer])
    awslambda.get_waiter("function_updated_v2").wait(FunctionName=name)
    answer = awslambda.invoke(FunctionName=name, Payload=b'{"httpMethod": "POST", "body": ""}')
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["statusCode"] == 400  # the empty body, refused by the function itself
    awslambda.delete_function(FunctionName=name)
    awslambda.delete_layer_version(LayerName=name, VersionNumber=1)
    aws("iam").delete_role(RoleName=name)


_TEXTS = st.one_of(st.sampled_from(["", " ", "536365", "C536379", "A563185", "85123A", "POST", "12/1/2010 8:26",
                                    "2010-12-01T08:26:00", "13/1/2010 8:26", "6", "-6", "+6", " 6 ", "6.0", "1e3",
                                    "10000001", "2.55", "-11062.06", "0", "1e-131", "NaN", "Infinity", "17850",
                                    "17850.0", "1785O", "1" * 21, "United Kingdom", "Eire\ufffd", "x" * 1001]),
                   st.text(max_size=12))


@given(st.fixed_dictionaries({name: st.one_of(st.none(), _TEXTS) for name in contract.COLUMNS}))
@settings(max_examples=600, deadline=None, derandomize=True)
def test_the_fast_path_for_text_rows_answers_as_the_rules_do(row: dict[str, Any]):
    """canonical() takes a one-pass path for rows of text: it may step aside (None), never answer otherwise."""
    from retail_records.contract import _canonical_rules, _canonical_text

    fast = _canonical_text(row)
    try:
        ruled: Any = _canonical_rules(row)
    except contract.BadRow as error:
        ruled = error
    if fast is not None:
        assert fast == ruled
    assert (contract.canonical(row) == ruled) if not isinstance(ruled, Exception) else True


def test_the_files_rows_take_the_fast_path_and_get_the_same_records():
    from retail_records.contract import _canonical_rules, _canonical_text

    rows = dataset.read_raw()[list(contract.COLUMNS)].to_dict("records")
    fast = [_canonical_text(row) for row in rows]
    assert sum(record is not None for record in fast) == len(rows)  # the sample has no malformed row
    assert fast == [_canonical_rules(row) for row in rows]
