"""The REST-JSON services' requests as IAM actions: Lambda (operations found from botocore's own route
table, named as IAM names them: Invoke is lambda:InvokeFunction) and API Gateway's control plane
(`apigateway:GET` ... on `arn:aws:apigateway:<region>::/restapis/...`)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Mapping
from urllib.parse import unquote

from localcloud.iam.enforcement.asks import Ask, Unmapped

LAMBDA_ACTIONS = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction",
                  "InvokeAsync": "InvokeFunction", "ListVersionsByFunction": "ListVersionsByFunction"}
LAMBDA_STAR = frozenset({"ListFunctions", "ListEventSourceMappings", "CreateEventSourceMapping", "ListLayers",
                         "GetAccountSettings", "ListCodeSigningConfigs", "CreateCodeSigningConfig"})
_QUALIFIED = frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"})


@lru_cache(maxsize=1)
def _lambda_routes() -> dict[str, list[tuple[re.Pattern[str], str]]]:
    """method -> [(path regex with named groups, operation)], most specific first."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("lambda")
    routes: dict[str, list[tuple[re.Pattern[str], str, int]]] = {}
    for name in model.operation_names:
        http = model.operation_model(name).http
        path = http["requestUri"].split("?", 1)[0]
        parts = re.split(r"(\{[^}]+\})", path)
        regex = "".join(f"(?P<{p[1:-1].rstrip('+')}>{'.+' if p.endswith('+}') else '[^/]+'})" if p.startswith("{")
                        else re.escape(p) for p in parts) + "/?"
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        routes.setdefault(http["method"], []).append((re.compile(regex), name, literal))
    return {method: [(regex, name) for regex, name, _ in sorted(found, key=lambda item: -item[2])]
            for method, found in routes.items()}


def lambda_operation(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for regex, name in _lambda_routes().get(method, ()):
        match = regex.fullmatch(path)
        if match:
            return name, {key: unquote(value) for key, value in match.groupdict().items()}
    return None


def function_arn(name: str, region: str, account: str, qualifier: str | None = None) -> str:
    """The ARN of a function named by name, `name:qualifier`, partial (`account:function:name`) or full ARN."""
    if name.startswith("arn:"):
        parts = name.split(":")
        region, account, name = parts[3], parts[4], parts[6]
        qualifier = qualifier or (parts[7] if len(parts) > 7 else None)
    elif ":function:" in name:
        account, _, rest = name.partition(":function:")
        name, _, inline = rest.partition(":")
        qualifier = qualifier or inline or None
    elif ":" in name:
        name, _, inline = name.partition(":")
        qualifier = qualifier or inline or None
    return f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")


def lambda_asks(method: str, path: str, query: Mapping[str, str], body: bytes, region: str,
                account: str) -> tuple[str, list[Ask]]:
    found = lambda_operation(method, path)
    if found is None:
        raise Unmapped(f"lambda:{method} {path}")
    operation, params = found
    action = f"lambda:{LAMBDA_ACTIONS.get(operation, operation)}"
    if "FunctionName" in params:
        qualifier = query.get("Qualifier") if operation in _QUALIFIED else None
        return operation, [Ask(action, function_arn(params["FunctionName"], region, account, qualifier))]
    if "UUID" in params:
        return operation, [Ask(action, f"arn:aws:lambda:{region}:{account}:event-source-mapping:{params['UUID']}")]
    if "LayerName" in params:
        layer = params["LayerName"]
        layer_arn = layer if layer.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:layer:{layer}"
        version = params.get("VersionNumber")
        return operation, [Ask(action, f"{layer_arn}:{version}" if version else layer_arn)]
    if operation == "CreateFunction":
        name = _json(body).get("FunctionName", "")
        return operation, [Ask(action, function_arn(str(name), region, account))]
    if operation in LAMBDA_STAR:
        context = {}
        if operation == "CreateEventSourceMapping" and _json(body).get("FunctionName"):
            context = {"lambda:functionarn": (function_arn(str(_json(body)["FunctionName"]), region, account),)}
        return operation, [Ask(action, "*", context)]
    raise Unmapped(action)


def apigateway_asks(method: str, path: str, region: str) -> list[Ask]:
    """API Gateway's management actions are the HTTP method on the resource path."""
    return [Ask(f"apigateway:{method}", f"arn:aws:apigateway:{region}::{unquote(path)}")]


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
