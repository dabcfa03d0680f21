"""The serving table's invoice documents, written from batch rows exactly as the stream path writes them.

The model and the writes are the `retail_records` layer's (`documents`, `document_writes`), shared with
`stream_to_dynamodb`: a line whose record_id the document already lists is never added again, so a
rerun, a continued file or the same rows arriving by the stream change nothing. Here, this function's
policy: a document not read or not written raises, and the caller redoes the whole chunk, which adds
nothing twice.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from retail_records import document_writes
from retail_records.documents import Line

from clients import dynamodb

MAX_ATTEMPTS = int(os.environ.get("WRITE_MAX_ATTEMPTS", "6"))
BASE_BACKOFF_S = float(os.environ.get("WRITE_BACKOFF_SECONDS", "0.05"))


def update_invoices(table: str, lines: list[Line], sleep: Callable[[float], None] = time.sleep
                    ) -> list[tuple[Line, str]]:
    """Fold the lines into their invoices' documents and write the changed ones. Answers the lines
    refused because their invoice is full; raises when a document could not be read or written."""
    folded = document_writes.fold_lines(dynamodb, table, lines, sleep, MAX_ATTEMPTS, BASE_BACKOFF_S)
    for chunk in document_writes.chunks(folded.changed):
        unwritten = document_writes.write_chunk(dynamodb, table, chunk, sleep, MAX_ATTEMPTS, BASE_BACKOFF_S)
        if unwritten:
            raise RuntimeError(f"{len(unwritten)} invoice documents not written (e.g. {sorted(unwritten)[0][0]})")
    return folded.full
