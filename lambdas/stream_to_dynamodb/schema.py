"""The serving table's schema, in one place: `create_table(TableName=..., **TABLE_SCHEMA)`.

Items (all keys are strings, all deterministic, so a replayed batch rewrites the same items):

| item | PK | SK | GSI1PK / GSI1SK |
| --- | --- | --- | --- |
| invoice: type, customer, country, date, totals, `lines` (every line, with its record_id) | `INVOICE#<InvoiceNo>` | `INVOICE` | `CUSTOMER#<CustomerID>` / `INVOICE#<yyyy-mm-ddThh:mm>#<InvoiceNo>` |

A guest invoice (no CustomerID) has no GSI1 keys, so it is in no customer's list (admins read it by
number). `GSI1` answers "a customer's invoices, by date" with the invoice's totals projected (not its
lines). The generic PK/SK names leave room for other item types in the same table.
"""

from __future__ import annotations

from typing import Any

CUSTOMER_INDEX = "GSI1"
# Invoice attributes the customer listing reads from the index (the lines stay in the table).
LISTING_ATTRIBUTES = [
    "InvoiceNo", "CustomerID", "Country", "InvoiceDate", "invoice_time", "invoice_type",
    "total_amount", "total_quantity", "line_count",
]

TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "PK", "AttributeType": "S"},
        {"AttributeName": "SK", "AttributeType": "S"},
        {"AttributeName": "GSI1PK", "AttributeType": "S"},
        {"AttributeName": "GSI1SK", "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": CUSTOMER_INDEX,
            "KeySchema": [
                {"AttributeName": "GSI1PK", "KeyType": "HASH"},
                {"AttributeName": "GSI1SK", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": LISTING_ATTRIBUTES},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
