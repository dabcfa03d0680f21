"""Schemathesis over the query API's OpenAPI document, as a user sees it: the document is fetched through
API Gateway (GET /openapi.json on the stage notebook 05 builds, run headless under the prefix `fuzz`),
and requests generated from it for every operation (valid and invalid path and query parameters) go to
the live stage. With a customer's token no answer is a 5xx and every answer is one the document
describes (schemathesis' checks: status code, content type, body schema, auth enforced); without a
token, or with a malformed, forged or expired one, API Gateway refuses with 401 or 403 as documented.
The serving table holds data/sample.csv, and generated values are now and then swapped for its invoice
numbers, customer ids and page tokens (issued, cut short, forged), so lookups hit real items and pages."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode

from helpers import apis, client, config, pipelines, resources, workbook

pytestmark = pytest.mark.localcloud

INVOICE, LISTING = "GET /invoices/{invoice_no}", "GET /customers/{customer_id}/invoices"
OPERATIONS = {INVOICE, LISTING}
EXAMPLES = 100  # generated requests per operation and mode (derandomized: the same ones every run)
REFUSED_EXAMPLES = 10  # per operation and kind of bad token


@dataclass(frozen=True)
class QueryApi:
    """The deployed stage, its token secret, and what the seeded table holds."""

    url: str
    secret: str
    customer: str  # the token's holder: the sample's customer with the most invoices
    invoices: tuple[str, ...]  # theirs
    others: tuple[str, ...]  # other customers' and guests' invoices
    customers: tuple[str, ...]
    tokens: tuple[str, ...]  # next_token values the API issued for the customer's list

    def token(self, subject: str | None = None, lifetime_s: int = 3600) -> str:
        return pipelines.customer_token(self.secret, subject or self.customer, lifetime_s=lifetime_s)


def seed(built: dict[str, Any]) -> list[dict[str, Any]]:
    """data/sample.csv (3,712 rows: sales, cancellations, adjustments, guests) sent through notebook 02's
    API and drained into the serving table."""
    rows = client.read_rows(None)
    sent = client.send(apis.invoke_url(built["ingest_api_id"], built["stage"]) + "/transactions", rows, progress=False)
    assert sent.failed == 0 and not sent.errors, sent
    quarantine = config.client("sqs").get_queue_url(QueueName=built["quarantine_queue"])["QueueUrl"]
    pipelines.drain(built["stream"], quarantine, "stream_to_dynamodb")
    return rows.records


def page_tokens(url: str, customer: str, authorization: str) -> list[str]:
    """Every next_token of the customer's list read a page of one invoice at a time."""
    tokens: list[str] = []
    while True:
        params = {"limit": "1", **({"next_token": tokens[-1]} if tokens else {})}
        page = requests.get(f"{url}/customers/{customer}/invoices", params=params,
                            headers={"Authorization": authorization}, timeout=30)
        assert page.status_code == 200, (page.status_code, page.text)
        if not page.json()["next_token"]:
            return tokens
        tokens.append(page.json()["next_token"])


def deployed() -> QueryApi:
    """Notebook 05's API (and what it builds on) under the configured prefix, its table seeded."""
    built = workbook.require("05")
    by_customer: dict[str, set[str]] = {}
    for record in seed(built):
        by_customer.setdefault(record["CustomerID"] or "", set()).add(record["InvoiceNo"])
    secret = config.client("ssm").get_parameter(Name=resources.names().auth_secret_parameter,
                                                WithDecryption=True)["Parameter"]["Value"]
    customer = max((c for c in by_customer if c), key=lambda c: (len(by_customer[c]), c))
    url = apis.invoke_url(built["query_api_id"], "v1")
    tokens = page_tokens(url, customer, pipelines.customer_token(secret, customer))
    assert len(tokens) == len(by_customer[customer]) - 1 > 0
    return QueryApi(url=url, secret=secret, customer=customer, invoices=tuple(sorted(by_customer[customer])),
                    others=tuple(sorted(i for c, found in by_customer.items() if c != customer for i in found)),
                    customers=tuple(sorted(c for c in by_customer if c)), tokens=tuple(tokens))


@pytest.fixture(scope="module")
def query(endpoint: str) -> Iterator[QueryApi]:
    config.configure(target="local", endpoint_url=endpoint, region="us-east-1", prefix="fuzz")
    try:
        yield deployed()
    finally:
        config._current = None


@pytest.fixture(scope="module")
def query_schema(query: QueryApi) -> Any:
    return document_schema(query)


def document_schema(query: QueryApi) -> Any:
    """The document GET /openapi.json answers through the stage, pointed at the stage."""
    loaded = schemathesis.openapi.from_url(f"{query.url}/openapi.json", headers={"Authorization": query.token()},
                                           timeout=30)
    # The token is part of every generated case (negative ones included), as a client would send it.
    loaded.config.update(base_url=query.url, headers={"Authorization": query.token()}, request_timeout=30)
    assert {result.ok().label for result in loaded.get_all_operations()} == OPERATIONS

    @loaded.hook
    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        """A valid generated value, or as often one of the table's (negative cases stay negative)."""
        found = parameters or {}
        if re.fullmatch(r"[CA]?[0-9]{6}", str(found.get("invoice_no"))):
            name, seeded = "invoice_no", [query.invoices, query.others]
        elif re.fullmatch(r"[0-9]{1,20}", str(found.get("customer_id"))):
            name, seeded = "customer_id", [(query.customer,), (query.customer,), query.customers]
        else:
            return st.just(parameters)
        return st.one_of(st.just(parameters), *(st.sampled_from(values).map(lambda v: {**found, name: v})
                                                for values in seeded))

    @loaded.hook
    def flatmap_query(context: Any, parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        """The list's query with, as often as not, a page token: issued, cut short, or never issued."""
        if context.operation.label != LISTING:
            return st.just(parameters)
        found = parameters or {}
        tokens = [query.tokens, [t[: len(t) // 2] for t in query.tokens], forged_tokens(query.customer)]
        return st.one_of(st.just(parameters), *(st.sampled_from(values).map(lambda t: {**found, "next_token": t})
                                                for values in tokens))

    return loaded


def forged_tokens(customer: str) -> list[str]:
    """Page tokens this API never issued, in its own encoding (base64url of JSON)."""
    key = {"GSI1PK": f"CUSTOMER#{customer}", "GSI1SK": "INVOICE#2011-01-01T00:00#536365",
           "PK": "INVOICE#536365", "SK": "INVOICE"}
    texts = ["[" * 5000 + "]" * 5000, "", "\u00e9t\u00e9"] + [json.dumps(document) for document in (
        key | {"GSI1PK": "CUSTOMER#00000"},  # another customer's list
        key | {"PK": "", "SK": ""},  # AWS refuses empty key values (moto does not)
        key | {"SK": 7}, key | {"extra": "x"}, {k: v for k, v in key.items() if k != "PK"}, [key], None, "x" * 900)]
    return [base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") for text in texts]


def run(schema: Any, mode: GenerationMode, examples: int, exchange: Callable[[Any], None]) -> None:
    """`exchange(case)` for `examples` generated cases of every operation of the document."""
    for result in schema.get_all_operations():
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=result.ok().as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            exchange(case)

        one()


def exchange(query: QueryApi, session: requests.Session, case: Any) -> int:
    """Send a case (it carries the customer's token), run schemathesis' checks on the answer; its status.

    A page token the API never issued is valid to the document (a string) yet refused with 400: for
    those the answer is checked here instead of by the positive-data-acceptance check."""
    token = (case.query or {}).get("next_token")
    unissued = bool(token) and token not in query.tokens
    excluded = [schemathesis.checks.positive_data_acceptance] if unissued else []
    response = case.call_and_validate(session=session, excluded_checks=excluded)
    if unissued and (case.path_parameters or {}).get("customer_id") == query.customer:
        assert response.status_code == 400, (token, response.status_code, response.text[:300])
    return response.status_code


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_generated_request_gets_a_documented_answer_never_a_5xx(query: QueryApi, query_schema: Any,
                                                                      mode: GenerationMode):
    statuses: Counter[tuple[str, int]] = Counter()
    session = requests.Session()

    def one(case: Any) -> None:
        statuses[case.operation.label, exchange(query, session, case)] += 1

    run(query_schema, mode, EXAMPLES, one)
    if mode == GenerationMode.POSITIVE:  # the table's items and pages were reached; others' refused
        expected = {(INVOICE, 200), (INVOICE, 403), (INVOICE, 404), (LISTING, 200), (LISTING, 400), (LISTING, 403)}
    else:
        expected = {(INVOICE, 400), (LISTING, 400)}
    assert expected <= set(statuses), statuses


def test_every_page_token_the_api_never_issued_is_a_documented_400(query: QueryApi, query_schema: Any):
    """The hostile tokens of forged_tokens() and each issued token cut short, on the caller's own list:
    each one, not just those the generator happens to draw."""
    listing = query_schema.find_operation_by_label(LISTING)
    session = requests.Session()
    answers = {}
    for token in forged_tokens(query.customer) + [t[: len(t) // 2] for t in query.tokens]:
        case = listing.Case(path_parameters={"customer_id": query.customer}, query={"next_token": token},
                            headers={"Authorization": query.token()})
        answers[token[:40]] = exchange(query, session, case)
    assert answers == {token: 400 if token else 200 for token in answers}, answers


@pytest.mark.parametrize("label, parameters", [(INVOICE, {"invoice_no": "\u0665\u0663\u0666\u0663\u0666\u0665"}),
                                               (LISTING, {"customer_id": "\u0661\u0662\u0663\u0664\u0667"})])
def test_digits_of_other_scripts_are_a_malformed_parameter(query: QueryApi, query_schema: Any, label: str,
                                                           parameters: dict[str, str]):
    """The document's pattern ([0-9], the record contract's) means ASCII digits; Arabic-Indic ones are a 400."""
    case = query_schema.find_operation_by_label(label).Case(path_parameters=parameters,
                                                            headers={"Authorization": query.token("admin")})
    response = case.call_and_validate(session=requests.Session())
    assert response.status_code == 400 and response.json()["errors"][0]["parameter"] in parameters, response.text


def forged(token: str) -> str:
    """The same token, one bit of its signature flipped."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{int(signature[0], 16) ^ 1:x}{signature[1:]}"


BAD_TOKENS: dict[str, tuple[Callable[[QueryApi], str | None], int]] = {
    "no token": (lambda q: None, 401),
    "not a token": (lambda q: "Bearer " + base64.b64encode(b"anything").decode(), 401),
    "expired": (lambda q: q.token(lifetime_s=-60), 401),
    "forged signature": (lambda q: forged(q.token()), 403),
    "another secret": (lambda q: pipelines.customer_token("not the secret", q.customer), 403),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_api_gateway_refuses_requests_without_a_valid_token(query: QueryApi, query_schema: Any, kind: str):
    make, expected = BAD_TOKENS[kind]
    token = make(query)
    session = requests.Session()
    seen: Counter[int] = Counter()

    def refused(case: Any) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        response = case.call_and_validate(session=session, headers={"Authorization": token} if token else {})
        seen[response.status_code] += 1
        assert response.status_code == expected, (kind, case.formatted_path, response.status_code, response.text)

    run(query_schema, GenerationMode.POSITIVE, REFUSED_EXAMPLES, refused)
    assert sum(seen.values()) >= len(OPERATIONS), seen
