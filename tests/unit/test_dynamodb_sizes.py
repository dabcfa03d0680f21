"""Item sizes by localcloud/motoapi/dynamodb_sizes.py are moto's own: texts (ASCII or not), numbers
written every way, names, maps, lists, sets, binary, booleans, null, and a whole invoice document."""

from __future__ import annotations

import random
from typing import Any

import pytest

from localcloud.motoapi import dynamodb_sizes, patches

NUMBERS = ["0", "-0", "6", "-12", "2.55", "2.550", "0.0010", "-0.0010", "1E+2", "1e-130", "+7", " 3 ",
           "12345678901234567890123456789012345678", "100", "10000000", "0.000"]
TEXTS = ["", "a", "RABBIT NIGHT LIGHT", "héllo", "日本", "emoji 🐇", "x" * 300]


def values() -> list[dict[str, Any]]:
    scalars = [{"N": n} for n in NUMBERS] + [{"S": t} for t in TEXTS] + [
        {"B": b"\x00\x01"}, {"BOOL": True}, {"NULL": True}, {"SS": ["b", "é"]}, {"NS": ["1", "2.50"]}, {"BS": [b"x"]}]
    nested = [{"M": {name: value for name, value in zip(["q", "prix", "描述", "Quantity"], scalars[i:i + 4])}}
              for i in range(0, len(scalars), 4)]
    nested += [{"L": scalars[i:i + 5]} for i in range(0, len(scalars), 5)]
    rng = random.Random(14)
    lines = [{"M": {"record_id": {"S": f"{rng.getrandbits(64):016x}#1"}, "StockCode": {"S": "85123A"},
                    "Description": {"S": rng.choice(TEXTS) or "x"}, "Quantity": {"N": str(rng.randint(-80, 80))},
                    "UnitPrice": {"N": rng.choice(NUMBERS[:8])}, "amount": {"N": "15.30"}}} for _ in range(50)]
    return scalars + nested + [{"M": {"lines": {"L": lines}, "total_amount": {"N": "9747747.934"}}}]


@pytest.mark.parametrize("value", values())
def test_sizes_are_moto_own(value: dict[str, Any]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    patches.apply()
    assert DynamoType.size.replaced is not None  # dynamodb_sizes is the size in place
    ours = DynamoType(value)
    assert ours.size() == DynamoType.size.moto_original(ours)


def _tree(typed: Any) -> Any:
    """A DynamoType as plain data, each node checked to be one: (kind, value), maps and lists walked."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    assert type(typed) is DynamoType and set(vars(typed)) == {"type", "value"}
    if typed.type == "M":
        return ("M", {name: _tree(element) for name, element in typed.value.items()})
    if typed.type == "L":
        return ("L", [_tree(element) for element in typed.value])
    return (typed.type, typed.value)


@pytest.mark.parametrize("value", values())
def test_an_item_is_built_and_measured_in_one_walk_as_moto_builds_and_measures_it(value: dict[str, Any]) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    patches.apply()
    typed, size = dynamodb_sizes.measured(value)
    morphed = DynamoType(value)
    assert _tree(typed) == _tree(morphed)
    assert size == DynamoType.size.moto_original(morphed)


def test_a_document_too_big_is_still_refused() -> None:
    """The 400 KB limit is checked with these sizes: 400 KB of names and numbers is refused."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    patches.apply()
    lines = [{"M": {"n": {"N": "12345678901234567890"}, "t": {"S": "é" * 100}}} for _ in range(2000)]
    with pytest.raises(ItemSizeTooLarge):
        Item(DynamoType({"S": "k"}), None, {"PK": {"S": "k"}, "lines": {"L": lines}})


def test_undo_puts_back_the_size_it_replaced() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    patches.apply()
    installed = DynamoType.size
    dynamodb_sizes.undo()
    try:
        assert DynamoType.size is installed.replaced
    finally:
        dynamodb_sizes.apply()
    assert DynamoType.size.replaced is installed.replaced
