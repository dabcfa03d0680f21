"""Fixes to moto that a multi-threaded server carrying real volumes needs, applied at server start.

- Kinesis `Shard.put_record` is "not safe for concurrency" (moto's own comment): two concurrent puts on
  one shard took the same sequence number and one record silently replaced the other (seen: 4 of
  3,712 rows lost with 4 concurrent ingest Lambdas). Puts are serialized, as AWS orders them per shard.
- The shard's first/last sequence number were found by listing every key (O(n) per put, so a
  541,909-record stream cost O(n^2)); dicts keep insertion order, so they are O(1) here.
- A DynamoDB item checked its 400 KB limit by re-measuring every attribute each time it set one
  (O(n^2) per item, a third of BatchWriteItem's time); a new item is now measured once.
- moto's dispatcher listed its own package folder (a listdir and ~200 stats) on every request to
  learn its service names; the list is read once.
- Every error answer (an S3 GetObject of a key not written yet, say) rebuilt the service's table of
  error shapes: moto's cache of them lives in a factory it creates anew for each error. One cache now.
- A projection (`ProjectionExpression`) converted each whole item to Python values and back (boto3's
  TypeDeserializer, deepcopy, TypeSerializer) to keep a few attributes: two thirds of a projected
  Query. Top-level scalar attributes are now picked directly (numbers still round-trip through
  Decimal, as moto normalises them); anything else takes moto's path.
- BatchWriteItem checked for duplicates by dumping every whole item to JSON (a tenth of the server's
  time on invoice documents) and so missed what AWS refuses: two requests on one *key* with different
  attributes. It now compares the requests' keys, as AWS does (puts and deletes alike). It also accepted
  an empty list for a table and more than 25 requests: refused now with AWS's ValidationException (an
  empty batch answered as written would hide a client's bug).
- `DynamoType` measured a map's values by re-wrapping each of them in a new DynamoType, and found its
  type with two list copies: the same values and sizes are now computed without the copies.
- moto runs its Flask apps with `debug = True`, and Flask's debug mode gives every request's form a
  class of its own (a helper for a browser's wrong enctype): a class, closures and a reference cycle per
  request, which held the request's body until the cyclic collector ran. That helper is off.
- DynamoDB `Query` sorted every item of the table to keep one partition (about 1 s per query on the
  570,000 items of the full file's serving table). On the table's key it now reads that partition; on
  a global secondary index it reads the items of that index key from a map built in one pass and
  rebuilt after any write to DynamoDB (so a read-mostly API pays the pass once, not per query). On an
  index that projects some attributes (INCLUDE, KEYS_ONLY) it reads the index's items, projected once
  per key until the next write: moto deep-copied every whole item of the key (an invoice's lines and
  all) before projecting, and measured their full size for the 1 MB page, where DynamoDB counts the
  index's items.
- TransactWriteItems deep-copied the tables it writes (its rollback) once per item of the request: 100
  copies of the table for 100 items. Once per request now (`transact_copy.py`).
- Item sizes: each number's digits were counted and each text and attribute name encoded every time an
  item was measured; numbers and names are now measured once per text (`dynamodb_sizes.py`).
- Every answer's body went through a regular expression looking for an XML `<RequestId>` to fill in,
  JSON bodies too (a lookbehind tried at every character: 6% of a GetItem of a 700-line invoice, and
  every GetRecords of a batch). It now runs only on a body that holds `<RequestId>`: the same answers.
- DynamoDB answers turned every attribute (a `DynamoType`) into plain JSON with a generic recursion that
  asks `isinstance` and `hasattr(to_json)` at every node (a quarter of a large GetItem's time). Texts,
  numbers, booleans, nulls, maps and lists are now converted by their type; anything else as before.
"""

from __future__ import annotations

import threading
from typing import Any

from localcloud.motoapi import Target, _t, check

# What these fixes replace, with the parameters they were written for: `check()` (run by `apply`) refuses
# a moto where any of them moved or changed shape.
TARGETS: dict[str, Target] = {
    "kinesis.shard.put_record": _t("moto.kinesis.models:Shard.put_record", "self", "partition_key", "data",
                                   "explicit_hash_key"),
    "kinesis.shard.get_min_sequence_number": _t("moto.kinesis.models:Shard.get_min_sequence_number", "self"),
    "kinesis.shard.get_max_sequence_number": _t("moto.kinesis.models:Shard.get_max_sequence_number", "self"),
    "dynamodb.table.query": _t("moto.dynamodb.models.table:Table.query", "self", "hash_key", "range_comparison",
                               "range_objs", "limit", "exclusive_start_key", "scan_index_forward",
                               "projection_expressions", "index_name", "consistent_read", "filter_expression",
                               "hash_key_conditions"),
    "dynamodb.table.all_items": _t("moto.dynamodb.models.table:Table.all_items", "self"),
    "dynamodb.item.init": _t("moto.dynamodb.models.dynamo_type:Item.__init__", "self", "hash_key", "range_key",
                             "attrs"),
    "dynamodb.item.project": _t("moto.dynamodb.models.dynamo_type:Item.project", "self", "projection_expressions"),
    "dynamodb.type.init": _t("moto.dynamodb.models.dynamo_type:DynamoType.__init__", "self", "type_as_dict"),
    "dynamodb.type.size": _t("moto.dynamodb.models.dynamo_type:DynamoType.size", "self"),
    "dynamodb.number_size": _t("moto.dynamodb.models.utilities:number_size", "val"),
    "dynamodb.batch_write_item": _t("moto.dynamodb.responses:DynamoHandler.batch_write_item", "self"),
    "core.list_of_moto_modules": _t("moto.backends:list_of_moto_modules"),
    "core.error_lookup_factory": _t("moto.core.errors:ErrorLookupFactory.__init__", "self"),
    "core.parse_parameters": _t("moto.core.responses:BaseResponse.parse_parameters", "self", "request"),
    "core.execute_result": _t("moto.core.responses:ActionResult.execute_result", "self", "context"),
    "core.determine_request_protocol": _t("moto.core.request:determine_request_protocol", "service_model",
                                          "request"),
    "flask.attach_enctype_error_multidict": _t("flask.debughelpers:attach_enctype_error_multidict", "request"),
    "core.enrich_response": _t("moto.core.responses:BaseResponse._enrich_response", "headers", "body"),
    "dynamodb.dynamo_to_dict": _t("moto.dynamodb.responses:dynamo_to_dict", "obj"),
}
_KINESIS_PUT = threading.Lock()
_applied = False


def apply() -> None:
    """Check the installed moto, then patch it once per process (idempotent)."""
    global _applied
    if _applied:
        return
    check()
    originals = {key: target.resolve()[1] for key, target in TARGETS.items()}
    from moto.kinesis.models import Shard

    original_put = Shard.put_record

    def put_record(shard: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
        with _KINESIS_PUT:
            return original_put(shard, partition_key, data, explicit_hash_key)

    def get_min_sequence_number(shard: Any) -> int:
        return next(iter(shard.records), 0)

    def get_max_sequence_number(shard: Any) -> int:
        return next(reversed(shard.records), 0)

    Shard.put_record = put_record  # type: ignore[method-assign]
    Shard.get_min_sequence_number = get_min_sequence_number  # type: ignore[method-assign]
    Shard.get_max_sequence_number = get_max_sequence_number  # type: ignore[method-assign]
    from localcloud.motoapi import transact_copy

    transact_copy.apply()  # TransactWriteItems copies each table once (before _query_one_partition wraps it)
    _query_one_partition()
    _item_size_once()
    _dynamo_type_without_copies()
    from localcloud.motoapi import dynamodb_sizes

    dynamodb_sizes.apply()  # numbers and names measured once per text (over the copy-free size above)
    _batch_write_duplicates_by_key()
    _project_top_level_attributes()
    _moto_modules_listed_once()
    _error_tables_built_once()
    _no_flask_form_class_per_request()
    _request_id_only_in_xml()
    _dynamo_to_dict_by_type()
    from localcloud.motoapi import fast_json_protocol, kinesis_put

    fast_json_protocol.apply()
    kinesis_put.apply()  # Kinesis PutRecords in one pass per request
    for key, target in TARGETS.items():  # what is ours now was checked above, before it was replaced
        holder, current = target.resolve()
        if current is not originals[key]:
            try:
                current.__localcloud_patch__ = True
            except (AttributeError, TypeError):
                pass
    _applied = True


_DYNAMODB_WRITES = ("create_table", "delete_table", "update_table", "update_table_global_indexes", "put_item",
                    "update_item", "delete_item", "transact_write_items", "batch_write_item", "execute_statement",
                    "execute_transaction", "batch_execute_statement", "restore_table_from_backup",
                    "restore_table_to_point_in_time", "import_table")
_generation = [0]  # bumped by every DynamoDB write: index maps built before it are stale
_index_maps: dict[tuple[int, tuple[str, ...]], tuple[int, dict[Any, list[Any]]]] = {}  # outside the tables: not snapshotted


def _query_one_partition() -> None:
    """Table.query filters `all_items()` (the whole table, sorted) on the hash key(s); while it runs,
    `all_items()` answers only the items of that key (the same result: query re-checks and re-sorts)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_query, original_all_items = Table.query, Table.all_items
    wanted = threading.local()

    def query(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        conditions = kwargs.get("hash_key_conditions") or []
        wanted.key = (None, hash_key) if not index_name else (index_name, tuple(conditions)) if conditions else None
        try:
            return original_query(table, hash_key, *args, **kwargs)
        finally:
            wanted.key = None

    def all_items(table: Any) -> list[Any]:
        key = getattr(wanted, "key", None)
        if key is None or not table.range_key_attr:
            return original_all_items(table)
        index_name, value = key
        if index_name is None:
            return list(table.items.get(value, {}).values()) if value is not None else original_all_items(table)
        names = tuple(name for name, _ in value)
        built = _index_maps.get((id(table), names))
        if built is None or built[0] != _generation[0]:
            generation, groups = _generation[0], {}
            for stale in [k for k, v in list(_index_maps.items()) if v[0] != generation]:
                _index_maps.pop(stale, None)  # maps of other tables (or deleted ones) are rebuilt when asked
            for partition in list(table.items.values()):
                for item in list(partition.values()):
                    values = tuple(item.attrs.get(name) for name in names)
                    if all(v is not None for v in values):
                        groups.setdefault(values, []).append(item)
            built = _index_maps[(id(table), names)] = (generation, groups, {})
        wanted_values = tuple(v for _, v in value)
        items = built[1].get(wanted_values, ())
        index = next((i for i in table.all_indexes() if i.name == index_name), None)
        if index is None or (index.projection or {}).get("ProjectionType", "ALL") == "ALL":
            return list(items)
        # The index's own items (its keys and projected attributes), as DynamoDB reads them: moto's
        # query sizes, deep-copies and then projects what it is given; given whole items it copied every
        # invoice's lines to keep a dozen attributes (a page of 20 100-line invoices: 30 ms of CPU, now 3).
        projected = built[2].get((index_name, wanted_values))
        if projected is None:
            projected = built[2][(index_name, wanted_values)] = [index.project(item) for item in items]
        return list(projected)

    def bumping(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _generation[0] += 1
            try:
                return method(*args, **kwargs)
            finally:
                _generation[0] += 1
        return wrapper

    for name in _DYNAMODB_WRITES:
        if callable(getattr(DynamoDBBackend, name, None)):
            setattr(DynamoDBBackend, name, bumping(getattr(DynamoDBBackend, name)))
    query.moto_original = original_query  # type: ignore[attr-defined]  # for the differential test
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def _item_size_once() -> None:
    """Item(...) measures its attributes once for the size limit instead of once per attribute set, while it
    builds them (`dynamodb_sizes.measured`)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    from localcloud.motoapi.dynamodb_sizes import measured

    def init(item: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        item.hash_key, item.range_key = hash_key, range_key
        converted, total = {}, 0
        for key, value in attrs.items():
            converted[key], size = measured(value)
            total += bytesize(key) + size
        if total > 405000:  # moto's limit
            raise ItemSizeTooLarge
        item.attrs = LimitedSizeDict()
        dict.update(item.attrs, converted)  # later single-attribute updates still go through the check

    Item.__init__ = init  # type: ignore[method-assign]


def _no_flask_form_class_per_request() -> None:
    """flask.Request._load_form_data calls debughelpers.attach_enctype_error_multidict in debug mode
    (moto's apps are): it only rewords a KeyError for HTML forms; see the module doc for its cost."""
    from flask import debughelpers

    def attach_enctype_error_multidict(request: Any) -> None:
        return None

    attach_enctype_error_multidict.flask_original = debughelpers.attach_enctype_error_multidict  # type: ignore[attr-defined]
    debughelpers.attach_enctype_error_multidict = attach_enctype_error_multidict


def _dynamo_type_without_copies() -> None:
    """DynamoType.__init__ and size with moto's rules, minus its per-value copies (see the module doc)."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize, number_size

    def init(value: Any, type_as_dict: Any) -> None:
        if type(type_as_dict) is DynamoType:
            kind, inner = type_as_dict.type, type_as_dict.value
        else:
            for kind, inner in type_as_dict.items():
                break
            else:
                raise IndexError("list index out of range")  # what moto's list(...)[0] raises on {}
        if kind == "L":
            inner = [DynamoType(element) for element in inner]
        elif kind == "M":
            inner = {key: DynamoType(element) for key, element in inner.items()}
        value.type, value.value = kind, inner

    def size(value: Any) -> int:
        kind, inner = value.type, value.value
        if kind == "N":
            return number_size(str(inner))  # moto 5.2.6: a number's stored size, as AWS counts it
        if kind in ("SS", "NS", "BS"):
            return sum(DynamoType({kind[0]: element}).size() for element in inner)
        if kind == "L":
            return sum(element.size() for element in inner)
        if kind == "M":
            return sum(bytesize(key) + (element if type(element) is DynamoType else DynamoType(element)).size()
                       for key, element in inner.items())
        if isinstance(inner, bool):
            return 1
        return bytesize(inner)

    init.moto_original, size.moto_original = DynamoType.__init__, DynamoType.size  # type: ignore[attr-defined]
    DynamoType.__init__ = init  # type: ignore[method-assign]
    DynamoType.size = size  # type: ignore[method-assign]


MAX_BATCH_WRITES = 25  # BatchWriteItem: at most 25 requests, at least one per table named


def _batch_write_duplicates_by_key() -> None:
    """DynamoHandler.batch_write_item as moto 5.2 has it, its duplicate check on keys and AWS's limits on the
    number of requests (see the module doc)."""

    from moto.core.responses import ActionResult
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import DynamoHandler, validate_put_has_empty_keys

    empty_key = ("One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
                 "contain an empty string value. Key: {}")

    def batch_write_item(handler: Any) -> Any:
        table_batches = handler.body["RequestItems"]
        for table_name, table_requests in table_batches.items():  # AWS's limits, which moto does not check
            if not 1 <= len(table_requests) <= MAX_BATCH_WRITES:
                shown = "[]" if not table_requests else f"[{len(table_requests)} write requests]"
                raise MockValidationException(
                    f"1 validation error detected: Value '{{{table_name}={shown}}}' at 'requestItems' failed to "
                    "satisfy constraint: Map value must satisfy constraint: [Member must have length less than or "
                    f"equal to {MAX_BATCH_WRITES}, Member must have length greater than or equal to 1]")
        if sum(len(table_requests) for table_requests in table_batches.values()) > MAX_BATCH_WRITES:
            raise MockValidationException("Too many items requested for the BatchWriteItem call")
        put_requests, delete_requests, keys, duplicated = [], [], set(), False
        for table_name, table_requests in table_batches.items():
            table = handler.dynamodb_backend.get_table(table_name)
            key_names = [name for name in (table.hash_key_attr, table.range_key_attr) if name]
            for table_request in table_requests:
                request_type, request = next(iter(table_request.items()))
                if request_type == "PutRequest":
                    validate_put_has_empty_keys(request["Item"], table, custom_error_msg=empty_key)
                    put_requests.append((table_name, request["Item"]))
                    attributes = request["Item"]
                elif request_type == "DeleteRequest":
                    delete_requests.append((table_name, request["Key"]))
                    attributes = request["Key"]
                else:
                    continue
                key = (table_name, repr([attributes.get(name) for name in key_names]))
                duplicated = duplicated or key in keys
                keys.add(key)
        if duplicated:  # after every request's own validation, as moto orders its errors
            raise MockValidationException("Provided list of item keys contains duplicates")
        for table_name, item in put_requests:
            handler.dynamodb_backend.put_item(table_name, item)
        for table_name, key_attributes in delete_requests:
            handler.dynamodb_backend.delete_item(table_name, key_attributes)
        return ActionResult({
            "ConsumedCapacity": [{"TableName": table_name, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
                                 for table_name in table_batches],
            "ItemCollectionMetrics": {},
            "UnprocessedItems": {},
        })

    batch_write_item.moto_original = DynamoHandler.batch_write_item  # type: ignore[attr-defined]
    DynamoHandler.batch_write_item = batch_write_item  # type: ignore[method-assign]


_SCALAR_TYPES = frozenset({"S", "N", "BOOL", "NULL"})


def _project_top_level_attributes() -> None:
    """Item.project for expressions that name top-level scalar attributes: the same Item, built
    without converting the whole item to Python values and back."""
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
    from moto.dynamodb.models.dynamo_type import Item

    original_project = Item.project
    to_python, to_dynamodb = TypeDeserializer().deserialize, TypeSerializer().serialize

    def project(item: Any, projection_expressions: list[list[str]]) -> Any:
        names = []
        for expression in projection_expressions:
            if len(expression) != 1 or not isinstance(expression[0], str) or "[" in expression[0]:
                return original_project(item, projection_expressions)
            names.append(expression[0])
        attrs: dict[str, Any] = {}
        for name in names:
            value = item.attrs.get(name)
            if value is None or name in attrs:
                continue
            if value.type not in _SCALAR_TYPES:
                return original_project(item, projection_expressions)
            attrs[name] = to_dynamodb(to_python({"N": value.value})) if value.type == "N" else {value.type: value.value}
        return Item(hash_key=item.hash_key, range_key=item.range_key, attrs=attrs)

    project.moto_original = original_project  # type: ignore[attr-defined]  # for the differential test
    Item.project = project  # type: ignore[method-assign]


def _moto_modules_listed_once() -> None:
    """moto.backends.list_of_moto_modules() reads moto's folder; its answer cannot change while we run."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]


def _error_tables_built_once() -> None:
    """moto.core.errors.get_error_model creates an ErrorLookupFactory per error: share its cache."""
    from moto.core.errors import ErrorLookupFactory

    shared: dict[str, Any] = {}
    original_init = ErrorLookupFactory.__init__

    def init(factory: Any) -> None:
        original_init(factory)
        factory._error_lut_cache = shared

    ErrorLookupFactory.__init__ = init  # type: ignore[method-assign]


def _request_id_only_in_xml() -> None:
    """BaseResponse._enrich_response runs `re.sub` for `<RequestId>...</RequestId>` over every body; a body
    without that tag (every JSON answer) cannot match, so it is returned as it is without the scan."""
    from moto.core.responses import BaseResponse

    original = BaseResponse._enrich_response

    def enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        if isinstance(body, str) and "<RequestId>" in body:
            return original(headers, body)
        headers, _ = original(headers, "")  # its other work (status, request id), over an empty body
        return headers, body

    BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign,assignment]


def _dynamo_to_dict_by_type() -> None:
    """moto.dynamodb.responses.dynamo_to_dict, dispatching on the exact type of each node: a DynamoType
    of a text, number, boolean or null is `{type: value}`, of a map or list its converted elements; dicts
    (an item's attributes are a dict subclass) and lists are walked, plain scalars kept. Any other node
    (binary, sets, datetimes, model objects with `to_json`, subclasses) goes to moto's own function, so
    the result is the same."""
    from moto.dynamodb import responses
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = responses.dynamo_to_dict
    scalars = frozenset({"S", "N", "BOOL", "NULL"})

    def dynamo_to_dict(obj: Any) -> Any:
        kind = type(obj)
        if kind is DynamoType:
            typ, value = obj.type, obj.value
            inner = type(value)
            if typ in scalars and (inner is str or inner is bool):
                return {typ: value}
            if typ == "M" and inner is dict:
                return {"M": {key: dynamo_to_dict(item) for key, item in value.items()}}
            if typ == "L" and inner is list:
                return {"L": [dynamo_to_dict(item) for item in value]}
            return original(obj)
        if kind is dict or (isinstance(obj, dict) and not hasattr(obj, "to_json")):  # an item's attrs: a dict subclass
            return {key: dynamo_to_dict(item) for key, item in obj.items()}
        if kind is list:
            return [dynamo_to_dict(item) for item in obj]
        if kind is str or kind is int or kind is bool or obj is None:
            return obj
        return original(obj)

    dynamo_to_dict.moto_original = original  # type: ignore[attr-defined]  # for the tests
    responses.dynamo_to_dict = dynamo_to_dict
