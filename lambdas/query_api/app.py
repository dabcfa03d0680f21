"""API Gateway (Lambda proxy) -> the serving table: an invoice, a customer's invoices, the OpenAPI doc.

Routes (Powertools APIGatewayRestResolver with validation; a malformed parameter answers 400):
- GET /invoices/{invoice_no}: header, totals and line items; 404 unknown, 400 not 6 digits with an optional C or A prefix;
- GET /customers/{customer_id}/invoices?limit=&next_token=: the customer's invoices by date, with
  totals, a page at a time (`next_token` is opaque: base64url of DynamoDB's LastEvaluatedKey);
  404 unknown customer, 400 not 1 to 20 ASCII digits (the record contract's CustomerID);
- GET /openapi.json: the resolver's OpenAPI document: every answer's status code and body schema,
  API Gateway's own refusals (401, 403) included, and the token the authorizer reads.

Authorization: the API's Lambda authorizer (lambdas/customer_authorizer) puts `customerId` and `role`
into requestContext.authorizer. Defence in depth, this function enforces it too: a customer reads only
their own list (403 otherwise) and only invoices of their own (403); role=admin reads everything,
including guest invoices (no CustomerID). Without an authorizer context every data route answers 403.

Reads only (GetItem on the table, Query on its GSI1): the table model is in stream_to_dynamodb.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import boto3
import retail_records as contract  # the record contract, from the layer the deploy step attaches
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ForbiddenError, NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field

logger = Logger(service="query_api")
dynamodb = boto3.client("dynamodb")
app = APIGatewayRestResolver(enable_validation=True)

CUSTOMER_INDEX = os.environ.get("CUSTOMER_INDEX", "GSI1")  # stream_to_dynamodb/schema.py
# The record contract's patterns ([0-9]: ASCII digits for the validator and the document alike).
INVOICE_PATTERN = rf"^{contract.INVOICE_PATTERN}$"
CUSTOMER_PATTERN = rf"^[0-9]{{1,{contract.MAX_CUSTOMER_DIGITS}}}$"
MAX_TOKEN_CHARS = 1024  # an issued token is about 200; a longer one is refused before it is decoded
ADMIN = "admin"
_deserialize = TypeDeserializer().deserialize
_serialize = TypeSerializer().serialize


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


@app.exception_handler(RequestValidationError)
def bad_parameter(error: RequestValidationError) -> Response:
    """Validation errors are the client's mistake in a parameter: 400 (Powertools' default is 422)."""
    problems = [{"parameter": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg")}
                for e in error.errors()]
    return Response(status_code=400, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps({"statusCode": 400, "message": "invalid request parameters",
                                     "errors": problems}))


# --------------------------------------------------------------------------------------------------
# What the answers look like: documented in /openapi.json (the routes return plain dicts)


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the document says no other fields: a client may rely on it


Number = int | float  # DynamoDB's numbers: whole ones as JSON integers


class Totals(Document):
    amount: Number
    quantity: Number
    lines: int


class Line(Document):
    record_id: str | None
    stock_code: str | None
    description: str | None
    quantity: Number | None
    unit_price: Number | None
    amount: Number | None
    invoice_date: str | None


class Invoice(Document):
    invoice_no: str
    invoice_type: str | None
    customer_id: str | None = Field(description="null for a guest sale")
    country: str | None
    invoice_date: str | None
    invoice_time: str | None
    totals: Totals
    items: list[Line]


class InvoiceSummary(Document):
    invoice_no: str | None
    invoice_type: str | None
    invoice_date: str | None
    invoice_time: str | None
    country: str | None
    total_amount: Number | None
    total_quantity: Number | None
    line_count: Number | None


class InvoicePage(Document):
    customer_id: str
    invoices: list[InvoiceSummary]
    next_token: str | None = Field(description="pass it back for the next page; null on the last")


class ParameterProblem(Document):
    parameter: str
    message: str | None


class Problem(Document):
    """An error this function answers (Powertools' shape; `errors` names each malformed parameter)."""
    statusCode: int
    message: str
    errors: list[ParameterProblem] | None = None


class Refusal(Document):
    """API Gateway's own answer: no or an expired token (401), a forged one or an unknown path (403)."""
    message: str


JSON = content_types.APPLICATION_JSON
TOKEN_SCHEME = "customerToken"


def answers(model: type[Document], *, ok: str, bad: str, forbidden: str, missing: str) -> dict[int, Any]:
    """A route's documented responses: 200 with `model`, the function's errors, API Gateway's refusals."""
    return {
        200: {"description": ok, "content": {JSON: {"model": model}}},
        400: {"description": bad, "content": {JSON: {"model": Problem}}},
        401: {"description": "no token, or a malformed or expired one (API Gateway, from the authorizer)",
              "content": {JSON: {"model": Refusal}}},
        403: {"description": f"{forbidden}; or a token whose signature fails, or an unknown path (API Gateway)",
              "content": {JSON: {"model": Problem | Refusal}}},
        404: {"description": missing, "content": {JSON: {"model": Problem}}},
    }


# --------------------------------------------------------------------------------------------------
# Who is calling


@dataclass(frozen=True)
class Caller:
    customer_id: str | None
    role: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def may_read(self, customer_id: str | None) -> bool:
        return self.is_admin or (self.customer_id is not None and self.customer_id == customer_id)


def caller() -> Caller:
    context = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    customer = context.get("customerId")
    return Caller(customer_id=str(customer) if customer not in (None, "") else None, role=context.get("role"))


# --------------------------------------------------------------------------------------------------
# Routes


@app.get("/invoices/<invoice_no>", summary="An invoice with its lines and totals",
         responses=answers(Invoice, ok="the invoice", bad="malformed invoice number",
                           forbidden="not the caller's invoice", missing="unknown invoice"))
def get_invoice(
    invoice_no: Annotated[str, Path(pattern=INVOICE_PATTERN, description="6 digits, optional C or A prefix")],
) -> dict[str, Any]:
    who = caller()
    if not who.is_admin and who.customer_id is None:
        raise ForbiddenError("no caller identity from the authorizer")
    item = read_invoice(invoice_no)
    if item is None:
        raise NotFoundError(f"invoice {invoice_no} not found")
    if not who.may_read(item.get("CustomerID")):
        raise ForbiddenError(f"invoice {invoice_no} is not yours")
    return invoice_document(item)


@app.get("/customers/<customer_id>/invoices", summary="A customer's invoices by date, a page at a time",
         responses=answers(InvoicePage, ok="a page of invoices", bad="malformed parameter or next_token",
                           forbidden="another customer's invoices", missing="unknown customer"))
def list_invoices(
    customer_id: Annotated[str, Path(pattern=CUSTOMER_PATTERN, description="digits (the file's are 5)")],
    limit: Annotated[int, Query(ge=1, le=100, description="invoices per page")] = 20,
    next_token: Annotated[str | None, Query(description="from the previous page's next_token")] = None,
) -> dict[str, Any]:
    if not caller().may_read(customer_id):
        raise ForbiddenError(f"the invoices of customer {customer_id} are not yours")
    partition = f"CUSTOMER#{customer_id}"
    request: dict[str, Any] = {
        "TableName": os.environ["TABLE_NAME"], "IndexName": CUSTOMER_INDEX, "Limit": limit,
        "KeyConditionExpression": "GSI1PK = :pk", "ExpressionAttributeValues": {":pk": {"S": partition}},
    }
    if next_token:
        request["ExclusiveStartKey"] = decode_token(next_token, partition)
    answer = dynamodb.query(**request)
    items = [plain(item) for item in answer.get("Items", [])]
    if not items and not next_token:
        raise NotFoundError(f"customer {customer_id} not found")
    last = answer.get("LastEvaluatedKey")
    return {"customer_id": customer_id, "invoices": [invoice_summary(item) for item in items],
            "next_token": encode_token(last) if last else None}


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    document = json.loads(app.get_openapi_json_schema(
        title="Retail query API", version="1.0.0",
        description="Invoices and customers' invoices from the serving table",
        security_schemes={TOKEN_SCHEME: APIKey(name="Authorization", in_=APIKeyIn.header,
                                               description="Bearer <customer id or admin>.<expires>.<signature>")},
        security=[{TOKEN_SCHEME: []}]))
    # Powertools documents its 422 for invalid parameters; bad_parameter above answers 400 instead.
    for path in document["paths"].values():
        for operation in path.values():
            operation["responses"].pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    return document


# --------------------------------------------------------------------------------------------------
# Table reads and documents


def read_invoice(invoice_no: str) -> dict[str, Any] | None:
    """The invoice's item (its lines inside): one GetItem."""
    answer = dynamodb.get_item(TableName=os.environ["TABLE_NAME"],
                               Key={"PK": {"S": f"INVOICE#{invoice_no}"}, "SK": {"S": "INVOICE"}})
    return plain(answer["Item"]) if "Item" in answer else None


def invoice_document(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "invoice_no": item["InvoiceNo"],
        "invoice_type": item.get("invoice_type"),
        "customer_id": item.get("CustomerID"),
        "country": item.get("Country"),
        "invoice_date": item.get("InvoiceDate"),
        "invoice_time": item.get("invoice_time"),
        "totals": {"amount": number(item["total_amount"]), "quantity": number(item["total_quantity"]),
                   "lines": number(item["line_count"])},
        "items": [line_document(line) for line in item.get("lines", [])],
    }


def line_document(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": line.get("record_id"), "stock_code": line.get("StockCode"),
        "description": line.get("Description"), "quantity": number(line.get("Quantity")),
        "unit_price": number(line.get("UnitPrice")), "amount": number(line.get("amount")),
        "invoice_date": line.get("InvoiceDate"),
    }


def invoice_summary(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "invoice_no": item.get("InvoiceNo"), "invoice_type": item.get("invoice_type"),
        "invoice_date": item.get("InvoiceDate"), "invoice_time": item.get("invoice_time"),
        "country": item.get("Country"), "total_amount": number(item.get("total_amount")),
        "total_quantity": number(item.get("total_quantity")), "line_count": number(item.get("line_count")),
    }


def plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserialize(value) for key, value in item.items()}


def number(value: Any) -> int | float | None:
    """DynamoDB's Decimal as a JSON number (int when whole)."""
    if value is None:
        return None
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)


# --------------------------------------------------------------------------------------------------
# Page tokens


def encode_token(key: dict[str, Any]) -> str:
    text = json.dumps({name: _deserialize(value) for name, value in key.items()}, sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, partition: str) -> dict[str, Any]:
    """The ExclusiveStartKey of a token issued for this customer's list, or 400."""
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        raise BadRequestError("next_token is not a token this API issued") from None
    expected = {"GSI1PK", "GSI1SK", "PK", "SK"}
    if (not isinstance(key, dict) or set(key) != expected or key.get("GSI1PK") != partition
            or not all(isinstance(v, str) and v for v in key.values())):  # AWS refuses empty key values
        raise BadRequestError("next_token is not a token this API issued for this customer")
    return {name: _serialize(value) for name, value in key.items()}
