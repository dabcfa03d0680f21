"""DynamoDB TransactWriteItems copies each table it writes once per request, not once per item.

moto keeps a deep copy of the tables a transaction writes, to put them back if the transaction is
cancelled, but it copies a table again for every item of the request: a transaction of 100 updates on a
ledger of 300 items deep-copied 30,000 items (the batch import's 305 DONE marks took seconds of the
server's CPU). Here, while a transaction is being applied, moto's `copy.deepcopy(table)` answers the copy
it made first for that table. moto copies every table before it applies any item, so each of those copies
was of the same, unchanged table: the rollback restores what it restored before. Any other deep copy
(UpdateItem's copy of the old item, say) is moto's own.
"""

from __future__ import annotations

import copy
import threading
from types import ModuleType
from typing import Any, Callable

from localcloud import motoapi
from localcloud.motoapi import _t

TARGET = _t("moto.dynamodb.models:DynamoDBBackend.transact_write_items", "self", "transact_items")
COPY_HOLDER = "moto.dynamodb.models"  # the module whose `copy` global moto's transaction calls deepcopy on


class CopyOnce:
    """Stands for the `copy` module in moto's DynamoDB models: inside a transaction, a Table is deep-copied
    once; everything else goes to the real module."""

    def __init__(self, module: ModuleType, table_class: type) -> None:
        self._module, self._table_class, self._local = module, table_class, threading.local()
        self.copies = 0  # tables deep-copied inside transactions (tests read it)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        made = getattr(self._local, "made", None)
        if made is None or memo is not None or not isinstance(value, self._table_class):
            return self._module.deepcopy(value, memo)
        if id(value) not in made:  # the table is kept with its copy, so its id is not reused meanwhile
            made[id(value)] = (value, self._module.deepcopy(value))
            self.copies += 1
        return made[id(value)][1]

    def transaction(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
            outer = getattr(self._local, "made", None)
            self._local.made = {} if outer is None else outer
            try:
                return original(backend, transact_items)
            finally:
                self._local.made = outer
        return transact_write_items


_undo: list[Callable[[], None]] = []


def apply() -> None:
    """Install the copy-once transaction (idempotent)."""
    if _undo:
        return
    import importlib

    Table = motoapi.DynamoTable  # noqa: N806 - moto's class
    holder = importlib.import_module(COPY_HOLDER)
    if getattr(holder, "copy", None) is not copy:
        raise motoapi.MotoVersionError(f"{COPY_HOLDER} no longer imports the copy module as `copy`; "
                                       "transact_copy was written for that")
    shim = CopyOnce(copy, Table)
    undo_transaction = motoapi.replace(TARGET, shim.transaction)
    holder.copy = shim  # type: ignore[attr-defined]

    def undo() -> None:
        undo_transaction()
        if getattr(holder, "copy", None) is shim:
            holder.copy = copy  # type: ignore[attr-defined]
    _undo.append(undo)


def shim() -> CopyOnce | None:
    """The installed CopyOnce, None when not applied."""
    import importlib

    found = getattr(importlib.import_module(COPY_HOLDER), "copy", None)
    return found if isinstance(found, CopyOnce) else None


def undo() -> None:
    while _undo:
        _undo.pop()()
