"""The record contract of the retail workbook (`retail_records.contract`), as a Lambda layer and a package."""

from retail_records.contract import (
    COLUMNS, CUSTOMER_PATTERN, DATE_FORMAT, INTEGER_PATTERN, INVOICE_PATTERN, INVOICE_RE, MAX_CUSTOMER_DIGITS,
    MAX_QUANTITY, MAX_RECORD_ID_CHARS, MAX_SIGNIFICANT_DIGITS, MAX_TEXT_CHARS, MAX_UNIT_PRICE, MIN_MAGNITUDE,
    NOT_CUSTOMER, NOT_DATE, NOT_INTEGER, NOT_INVOICE, NOT_NUMBER, NUMBER_PATTERN, PRODUCT_CODE_PATTERN, REQUIRED,
    Accepted, BadRow, Refused, canonical, customer_id, date_text, derive_record_ids, invoice_date, invoice_type,
    number_text, parse_date, prepare, quantity, raw_fields, reason, row_digest, short, stream_json, stream_number,
    unit_price,
)

__all__ = [
    "COLUMNS", "CUSTOMER_PATTERN", "DATE_FORMAT", "INTEGER_PATTERN", "INVOICE_PATTERN", "INVOICE_RE",
    "MAX_CUSTOMER_DIGITS", "MAX_QUANTITY", "MAX_RECORD_ID_CHARS", "MAX_SIGNIFICANT_DIGITS", "MAX_TEXT_CHARS",
    "MAX_UNIT_PRICE", "MIN_MAGNITUDE", "NOT_CUSTOMER", "NOT_DATE", "NOT_INTEGER", "NOT_INVOICE", "NOT_NUMBER",
    "NUMBER_PATTERN", "PRODUCT_CODE_PATTERN", "REQUIRED", "Accepted", "BadRow", "Refused", "canonical",
    "customer_id", "date_text", "derive_record_ids", "invoice_date", "invoice_type", "number_text", "parse_date",
    "prepare", "quantity", "raw_fields", "reason", "row_digest", "short", "stream_json", "stream_number",
    "unit_price",
]
