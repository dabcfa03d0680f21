"""DynamoDB item sizes by moto's rules, measured with fewer calls: every item written is measured (its
400 KB limit), and a bulk load's items are maps of maps of texts and numbers.

`DynamoType.size` (patches.py's copy-free version) called moto's `number_size` for every number (it
strips, partitions and counts the digits of the text each time) and `bytesize` (a UTF-8 encode) for
every text and attribute name: half the time of building the items of a BatchWriteItem of invoice
documents. Here a number's size is looked up by its text (a file repeats its prices and quantities), an
attribute name's too, and an ASCII text's size is its length; maps and lists are summed in a loop. Other
kinds (binary, sets, booleans, null) go to the size it replaces. The same sizes, in about half the time.

A new item (`Item(...)`, patches.py) is built and measured in one walk by `measured`: the same
`DynamoType` tree as `DynamoType(value)` and the same size as its `size()`, without walking it twice.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from localcloud import motoapi

CACHE_SIZE = 65_536
_undo: list[Callable[[], None]] = []


@functools.cache
def _text_sizes() -> tuple[Callable[[str], int], Callable[[str], int]]:
    """moto's size of a number's text and of a name, remembered per text (shared by `make` and `measured`)."""
    return (functools.lru_cache(maxsize=CACHE_SIZE)(motoapi.dynamodb_number_size),
            functools.lru_cache(maxsize=CACHE_SIZE)(motoapi.dynamodb_bytesize))


def make(current: Callable[[Any], int]) -> Callable[[Any], int]:
    """The replacement of DynamoType.size (`current`: the size it replaces, for the kinds left to it)."""
    DynamoType = motoapi.DynamoType  # noqa: N806 - moto's class
    number_text_size, name_size = _text_sizes()

    def size(value: Any) -> int:
        kind, inner = value.type, value.value
        if kind == "S" and type(inner) is str:
            return len(inner) if inner.isascii() else len(inner.encode("utf-8"))
        if kind == "N" and type(inner) is str:
            return number_text_size(inner)
        if kind == "M":
            total = 0
            for key, element in inner.items():
                total += name_size(key) + (element if type(element) is DynamoType else DynamoType(element)).size()
            return total
        if kind == "L":
            total = 0
            for element in inner:
                total += element.size()
            return total
        return current(value)

    size.replaced = current  # type: ignore[attr-defined]
    size.moto_original = getattr(current, "moto_original", current)  # type: ignore[attr-defined]  # moto's own, for the tests
    return size


def measured(value: Any) -> tuple[Any, int]:
    """`DynamoType(value)` and its `size()`, in one walk: texts, numbers, maps and lists are built here (as
    moto's `__init__` builds them: the kind and the value, a map's or list's elements typed in turn); any
    other kind, or a value that is not a one-key dict, is moto's `DynamoType(value)` and its `size()`."""
    return _walker()(value)


@functools.cache
def _walker() -> Callable[[Any], tuple[Any, int]]:
    DynamoType = motoapi.DynamoType  # noqa: N806 - moto's class
    new = object.__new__
    number_text_size, name_size = _text_sizes()

    def walk(value: Any) -> tuple[Any, int]:
        if type(value) is dict and len(value) == 1:
            for kind, inner in value.items():
                break
            inner_type = type(inner)
            if kind == "S" and inner_type is str:
                size = len(inner) if inner.isascii() else len(inner.encode("utf-8"))
            elif kind == "N" and inner_type is str:
                size = number_text_size(inner)
            elif kind == "M" and inner_type is dict:
                elements, size = {}, 0
                for name, element in inner.items():
                    elements[name], element_size = walk(element)
                    size += name_size(name) + element_size
                inner = elements
            elif kind == "L" and inner_type is list:
                items, size = [], 0
                for element in inner:
                    typed, element_size = walk(element)
                    items.append(typed)
                    size += element_size
                inner = items
            else:
                kind = ""
            if kind:
                typed = new(DynamoType)
                typed.type, typed.value = kind, inner
                return typed, size
        typed = DynamoType(value)
        return typed, typed.size()
    return walk


def apply() -> None:
    """Install the faster size over the one in place (idempotent)."""
    if _undo:
        return
    DynamoType = motoapi.DynamoType  # noqa: N806 - moto's class
    current = DynamoType.size
    if motoapi.parameters_of(current)[:1] not in (("self",), ("value",)) or len(motoapi.parameters_of(current)) != 1:
        raise motoapi.MotoVersionError(f"DynamoType.size takes {motoapi.parameters_of(current)}; dynamodb_sizes "
                                       "was written for a size of the value alone")
    replacement = make(current)
    replacement.__localcloud_patch__ = True  # type: ignore[attr-defined]
    DynamoType.size = replacement  # type: ignore[method-assign]

    def undo() -> None:
        if DynamoType.size is replacement:
            DynamoType.size = current  # type: ignore[method-assign]
    _undo.append(undo)


def undo() -> None:
    while _undo:
        _undo.pop()()
