"""A fast path for moto's AWS JSON protocol (DynamoDB, Kinesis, SQS, ...): same results, a fraction
of the time.

moto 5.2 parses every JSON request and serializes every JSON response by walking the botocore shape
model with a generic "attribute picker" that tries every member of every structure under five aliases.
For DynamoDB that is every member of `AttributeValue` (S, N, B, SS, ... ten of them) for every
attribute of every item: a Query answering 20 items spends most of its 13 ms there, and a
BatchWriteItem of 25 items a third of its time in the request parser. On the full file's pipeline
the serializer alone was 21% of the local cloud's samples (py-spy).

This module walks the same shapes, but over the keys the data *has* instead of every member the shape
*could* have, with the exact rules of moto's JSON parser and serializer (blobs base64, timestamps as
epoch seconds, None members dropped, serialization names honoured). Whatever it is not certain to
reproduce falls back to moto's own code: a result that is not plain dicts and lists (model objects,
aliases), a response class with transformers, pretty printing, event streams, errors, non-JSON
protocols.

`RETAIL_LOCALCLOUD_FASTPATH=0` turns it off; `RETAIL_LOCALCLOUD_FASTPATH=check` runs moto's code as
well on every request and fails the request if the two differ (the test suite runs this way).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

from localcloud.executor_base import json_body

log = logging.getLogger("localcloud.fastpath")

MODE_ENV = "RETAIL_LOCALCLOUD_FASTPATH"


class Fallback(Exception):
    """This value is not one the fast path is certain to handle exactly as moto does."""


class Mismatch(AssertionError):
    """check mode: the fast path and moto's code disagree (a bug here, never served silently)."""


def mode() -> str:
    value = os.environ.get(MODE_ENV, "on").strip().lower()
    return {"0": "off", "false": "off", "no": "off", "off": "off", "check": "check"}.get(value, "on")


# --------------------------------------------------------------------------------------------------
# Compiled walkers: one function per shape of a service, built once
#
# A walker is a one-element list holding a function, or None for "the value as it is" (strings and
# booleans). The list lets a recursive shape (DynamoDB's AttributeValue holds maps and lists of
# itself) refer to its own walker before it is built. Shapes are keyed by service model and name:
# botocore makes new Shape objects for every traversal, so their ids never repeat.

Walker = list  # [Callable[[Any], Any] | None]
_INTEGERS = frozenset({"integer", "long", "short", "byte"})
_FLOATS = frozenset({"float", "double"})
_parsers: dict[tuple[int, str], Walker] = {}
_serializers: dict[tuple[int, str], Walker] = {}


def _fallback(reason: str) -> Any:
    def refuse(_value: Any) -> Any:
        raise Fallback(reason)
    return refuse


def parser(shape: Any, namespace: int) -> Walker:
    """The walker that does `BaseJSONParser._parse_shape(shape, value)` (MAP_TYPE dict)."""
    kind = shape.type_name
    if kind == "blob":
        return [base64.b64decode]
    if kind == "timestamp":
        from moto.core.parse import default_timestamp_parser

        return [default_timestamp_parser]
    if kind in _INTEGERS:
        return [int]
    if kind in _FLOATS:
        return [float]
    if kind not in ("structure", "list", "map") or (kind == "structure" and shape.is_document_type):
        return [None]
    return _compiled(_parsers, _container_parser, shape, kind, namespace)


def _compiled(cache: dict[tuple[int, str], Walker], build: Any, shape: Any, kind: str, namespace: int) -> Walker:
    """The cached walker of a container shape; registered before it is built, for recursive shapes."""
    key = (namespace, shape.name)
    walker = cache.get(key)
    if walker is None:
        walker = cache[key] = [None]
        walker[0] = build(shape, kind, namespace)
    return walker


def _container_parser(shape: Any, kind: str, namespace: int) -> Any:
    if kind == "structure" and shape.name == "AttributeValue" and set(shape.members) >= {"S", "N", "M", "L"}:
        return _attribute_values(_structure_parser(shape, namespace), drop_none_in_maps=False)
    if kind == "structure":
        return _structure_parser(shape, namespace)
    return _collection_parser(shape, kind, namespace)


def _structure_parser(shape: Any, namespace: int) -> Any:
    members = {member.serialization.get("name", name): (name, parser(member, namespace))
               for name, member in shape.members.items()}

    def parse_structure(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not dict:
            raise Fallback("structure is not an object")
        parsed = {}
        for wire_name, raw in value.items():
            member = members.get(wire_name)
            if member is not None and raw is not None:
                walk = member[1][0]
                parsed[member[0]] = raw if walk is None else walk(raw)
        return parsed
    return parse_structure


def _collection_parser(shape: Any, kind: str, namespace: int) -> Any:
    if kind == "list":
        item_walker = parser(shape.member, namespace)

        def parse_list(value: Any) -> Any:
            if type(value) is not list:
                raise Fallback("list is not an array")
            walk = item_walker[0]
            return list(value) if walk is None else [walk(item) for item in value]
        return parse_list
    if shape.key.type_name != "string":
        return _fallback("map key is not a string")
    value_walker = parser(shape.value, namespace)

    def parse_map(value: Any) -> Any:
        if type(value) is not dict:
            raise Fallback("map is not an object")
        walk = value_walker[0]
        return dict(value) if walk is None else {key: walk(item) for key, item in value.items()}
    return parse_map


def parse_body(operation_model: Any, body: bytes | str, environ: dict[str, Any] | None = None) -> dict[str, Any]:
    """`JSONParser.parse` of a request body (moto turns a body that is not JSON into a message); with the
    request's `environ`, the document IAM already decoded is read again, not decoded twice."""
    input_shape = operation_model.input_shape
    if input_shape is None:
        return {}
    if not body:
        document: Any = {}
    else:
        try:
            document = json_body(environ, body)
        except ValueError:
            raise Fallback("body is not JSON") from None
    return parser(input_shape, id(operation_model.service_model))[0](document)


class _Timestamps:
    """moto's own TimestampSerializer, with the JSON protocol's default format."""

    def __init__(self) -> None:
        self._serializer: Any = None

    def serialize(self, shape: Any, value: Any) -> Any:
        if self._serializer is None:
            from moto.core.serialize import BaseJSONSerializer, TimestampSerializer

            self._serializer = TimestampSerializer(BaseJSONSerializer.DEFAULT_TIMESTAMP_FORMAT)
        wrapper: dict[str, Any] = {}
        self._serializer.serialize(wrapper, value, shape, "timestamp")
        return wrapper["timestamp"]


_timestamps = _Timestamps()


def _serialize_string(value: Any) -> Any:
    if type(value) is str or value == {} or value == []:
        return value
    from enum import Enum

    return str(value.value if isinstance(value, Enum) else value)


def _serialize_blob(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).strip().decode("utf-8")


def serializer(shape: Any, namespace: int) -> Walker:
    """The walker for what `BaseJSONSerializer._serialize` stores for a (non-None) value."""
    kind = shape.type_name
    if kind == "string":
        return [_serialize_string]
    if kind == "boolean" or (kind == "structure" and shape.is_document_type):
        return [None]
    if kind == "blob":
        return [_serialize_blob]
    if kind == "timestamp":
        return [lambda value: _timestamps.serialize(shape, value)]
    if kind in _INTEGERS:
        return [int]
    if kind in _FLOATS:
        return [float]
    if kind not in ("structure", "list", "map"):
        return [_fallback(f"shape type {kind}")]
    return _compiled(_serializers, _container_serializer, shape, kind, namespace)


def _attribute_values(generic: Any, drop_none_in_maps: bool) -> Any:
    """DynamoDB's AttributeValue (and DynamoDB Streams'), walked by its one key, in a request or an answer:
    a text, number, boolean or null value is the value itself; a map or list walks its elements; anything
    else (binary to decode or encode, sets, several keys) takes `generic`, the structure walker. What the
    generic walkers give for those kinds: a text or number keeps its str, a boolean its bool; a list keeps a
    None element as None; a map keeps it when parsing and drops it when serializing (`drop_none_in_maps`).
    So the result is the same, without a loop over the ten members for each of the millions of values of a
    bulk load. A map or list whose elements all come back as they are is itself given back as it is: the
    usual item (texts, numbers, maps and lists of them) is checked, not copied."""
    def walk(value: Any) -> Any:
        if type(value) is dict and len(value) == 1:
            for key, item in value.items():
                inner = type(item)
                if (key == "S" or key == "N") and inner is str:
                    return value
                if (key == "BOOL" or key == "NULL") and inner is bool:
                    return value
                if key == "M" and inner is dict:
                    for element in item.values():
                        if drop_none_in_maps if element is None else walk(element) is not element:
                            return {"M": walk_map(item)}
                    return value
                if key == "L" and inner is list:
                    for element in item:
                        if element is not None and walk(element) is not element:
                            return {"L": [None if element is None else walk(element) for element in item]}
                    return value
        return generic(value)

    def walk_map(item: dict[str, Any]) -> dict[str, Any]:
        if drop_none_in_maps:
            return {name: walk(element) for name, element in item.items() if element is not None}
        return {name: None if element is None else walk(element) for name, element in item.items()}
    return walk


def _container_serializer(shape: Any, kind: str, namespace: int) -> Any:
    if kind == "structure" and shape.name == "AttributeValue" and set(shape.members) >= {"S", "N", "M", "L"}:
        return _attribute_values(_generic_structure_serializer(shape, namespace), drop_none_in_maps=True)
    if kind == "structure":
        return _generic_structure_serializer(shape, namespace)
    return _collection_serializer(shape, kind, namespace)


def _generic_structure_serializer(shape: Any, namespace: int) -> Any:
    members = {name: (member.serialization.get("name", name), serializer(member, namespace))
               for name, member in shape.members.items()}
    shape_name = shape.name

    def serialize_structure(value: Any) -> Any:
        if type(value) is not dict:
            raise Fallback("structure is not a dict")  # a model object: moto's attribute picker
        out = {}
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                raise Fallback(f"key {key!r} is not a member of {shape_name}")  # moto may read it as an alias
            if item is not None:
                walk = member[1][0]
                out[member[0]] = item if walk is None else walk(item)
        return out
    return serialize_structure


def _collection_serializer(shape: Any, kind: str, namespace: int) -> Any:
    if kind == "list":
        member_shape = shape.member
        if member_shape.serialization.get("name", member_shape.name) != member_shape.name:
            return _fallback("list member with a serialization name")
        item_walker = serializer(member_shape, namespace)

        def serialize_list(value: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise Fallback("list is not a list")
            walk = item_walker[0]
            return list(value) if walk is None else [item if item is None else walk(item) for item in value]
        return serialize_list
    value_shape = shape.value
    if "name" in value_shape.serialization:
        return _fallback("map value with a serialization name")
    value_walker, value_kind = serializer(value_shape, namespace), value_shape.type_name

    def serialize_map(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Fallback("map is not a dict")
        walk = value_walker[0]
        out = {}
        for key, item in value.items():
            if item is not None:
                out[key] = item if walk is None else walk(item)
            elif value_kind == "string":
                out[key] = None
            elif value_kind != "structure":  # moto skips a None structure, fails on the rest
                raise Fallback("None map value")
        return out
    return serialize_map


def serialize_result(operation_model: Any, result: Any) -> str:
    output_shape = operation_model.output_shape
    if output_shape is None:
        return json.dumps({})
    if not isinstance(result, dict):
        raise Fallback("result is not a dict")
    return json.dumps(serializer(output_shape, id(operation_model.service_model))[0](result))


# --------------------------------------------------------------------------------------------------
# Hooks into moto


def apply() -> None:
    """Route moto's JSON-protocol parsing and serialization through the fast path (unless turned off)."""
    if mode() == "off":
        return
    checking = mode() == "check"
    from moto.core import responses
    from moto.core.request import determine_request_protocol
    from moto.core.serialize import JSONSerializer
    from moto.core.utils import get_service_model

    original_parse = responses.BaseResponse.parse_parameters
    original_execute = responses.ActionResult.execute_result

    def parse_parameters(handler: Any, request: Any) -> None:
        if handler.PROTOCOL_PARSER_MAP_TYPE is dict:
            service_model = get_service_model(handler.boto3_service_name)
            if determine_request_protocol(service_model, request) == "json":
                operation_model = service_model.operation_model(handler._get_action())
                try:
                    fast = parse_body(operation_model, request.data, getattr(request, "environ", None))
                except Fallback:
                    pass
                else:
                    if checking:
                        original_parse(handler, request)
                        _compare("request", operation_model.name, fast, handler.params)
                    handler.params = fast
                    return
        original_parse(handler, request)

    def execute_result(result: Any, context: Any) -> Any:
        from moto import settings

        if (type(result).execute_result is execute_result  # not a subclass with its own (paginated) rules
                and context.serializer_class is JSONSerializer
                and not settings.PRETTIFY_RESPONSES
                and not getattr(context.response, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
                and not isinstance(result.result, Exception)
                and not context.operation_model.has_event_stream_output):
            try:
                body = serialize_result(context.operation_model, result.result)
            except Fallback:
                pass
            else:
                status = context.operation_model.http.get("responseCode", 200)
                json_version = context.service_model.metadata.get("jsonVersion", "1.0")
                headers = {"Content-Type": f"application/x-amz-json-{json_version}"}
                if checking:
                    expected = original_execute(result, context)
                    _compare("response", context.operation_model.name,
                             (status, headers, json.loads(body)), (expected[0], expected[1], json.loads(expected[2])))
                return status, headers, body
        return original_execute(result, context)

    responses.BaseResponse.parse_parameters = parse_parameters  # type: ignore[method-assign]
    responses.ActionResult.execute_result = execute_result  # type: ignore[method-assign]


def _compare(what: str, operation: str, fast: Any, expected: Any) -> None:
    if fast != expected:
        log.error("fast path %s of %s differs from moto's: %r != %r", what, operation, fast, expected)
        raise Mismatch(f"fast path {what} of {operation} differs from moto's")
