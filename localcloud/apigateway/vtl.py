"""API Gateway mapping templates (Velocity) rendered with airspeed, the engine LocalStack uses.

The variables follow the AWS "API Gateway mapping template reference": `$input` (body, json, path,
params), `$util` (escapeJavaScript, parseJson, base64Encode/Decode, urlEncode/Decode), `$context`
and `$stageVariables`. Unset `$context` fields render as empty strings, as on AWS (plain Velocity
would print the reference itself).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping
from urllib.parse import quote, unquote

import airspeed
from jsonpath_ng.ext import parse as parse_jsonpath

# AWS's "Method Request passthrough" template, as the console generates it.
PASSTHROUGH_TEMPLATE = """##  See http://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html
##  This template will pass through all parameters including path, querystring, header, stage variables, and context through to the integration endpoint via the body/payload
#set($allParams = $input.params())
{
"body-json" : $input.json('$'),
"params" : {
#foreach($type in $allParams.keySet())
    #set($params = $allParams.get($type))
"$type" : {
    #foreach($paramName in $params.keySet())
    "$paramName" : "$util.escapeJavaScript($params.get($paramName))"
        #if($foreach.hasNext),#end
    #end
}
    #if($foreach.hasNext),#end
#end
},
"stage-variables" : {
#foreach($key in $stageVariables.keySet())
"$key" : "$util.escapeJavaScript($stageVariables.get($key))"
    #if($foreach.hasNext),#end
#end
},
"context" : {
    "account-id" : "$context.identity.accountId",
    "api-id" : "$context.apiId",
    "api-key" : "$context.identity.apiKey",
    "authorizer-principal-id" : "$context.authorizer.principalId",
    "caller" : "$context.identity.caller",
    "cognito-authentication-provider" : "$context.identity.cognitoAuthenticationProvider",
    "cognito-authentication-type" : "$context.identity.cognitoAuthenticationType",
    "cognito-identity-id" : "$context.identity.cognitoIdentityId",
    "cognito-identity-pool-id" : "$context.identity.cognitoIdentityPoolId",
    "http-method" : "$context.httpMethod",
    "stage" : "$context.stage",
    "source-ip" : "$context.identity.sourceIp",
    "user" : "$context.identity.user",
    "user-agent" : "$context.identity.userAgent",
    "user-arn" : "$context.identity.userArn",
    "request-id" : "$context.requestId",
    "resource-id" : "$context.resourceId",
    "resource-path" : "$context.resourcePath"
    }
}
"""


class TemplateError(Exception):
    """A mapping template could not be parsed or rendered (API Gateway answers 500)."""


class VelocityDict(dict):
    """A dict that reads like a Java map in templates and renders missing keys as ''."""

    def __missing__(self, key: Any) -> str:
        if isinstance(key, str) and hasattr(VelocityDict, key):
            raise KeyError(key)  # let airspeed find the method of that name
        return ""

    def keySet(self) -> list[Any]:  # noqa: N802 - Velocity's (Java's) name
        return list(self.keys())

    def containsKey(self, key: Any) -> bool:  # noqa: N802
        return key in self

    def size(self) -> int:
        return len(self)

    def isEmpty(self) -> bool:  # noqa: N802
        return not self

    def get(self, key: Any, default: Any = "") -> Any:
        return super().get(key, default)


def velocity(value: Any) -> Any:
    """Wrap nested dicts so templates can navigate them like Java maps."""
    if isinstance(value, Mapping):
        return VelocityDict({key: velocity(item) for key, item in value.items()})
    if isinstance(value, list):
        return [velocity(item) for item in value]
    return "" if value is None else value


def _json_path(document: Any, path: str) -> Any:
    """Evaluate a JSONPath; a single match gives the value, several a list, none None."""
    if path in ("$", ""):
        return document
    matches = [match.value for match in parse_jsonpath(path).find(document)]
    if not matches:
        return None
    return matches[0] if len(matches) == 1 and "[*]" not in path and ".." not in path else matches


class InputVariable:
    """`$input`: the method request's payload and parameters."""

    def __init__(self, body: str, params: Mapping[str, Mapping[str, str]]):
        self.body = body
        self._params = params

    def _document(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # nested deeper than a parser takes is not JSON either
            raise TemplateError("Invalid JSON in request body") from None

    def json(self, path: str = "$") -> str:
        """The JSON text at a JSONPath (the raw body for '$' when it is not JSON, as AWS does)."""
        try:
            value = _json_path(self._document(), path)
        except TemplateError:
            if path == "$":
                return self.body
            raise
        except Exception as error:  # a malformed JSONPath expression
            raise TemplateError(f"Invalid JSONPath {path!r}: {error}") from None
        return json.dumps(value, ensure_ascii=False) if value is not None else "null"

    def path(self, path: str = "$") -> Any:
        try:
            return velocity(_json_path(self._document(), path))
        except TemplateError:
            return self.body if path == "$" else ""
        except Exception as error:
            raise TemplateError(f"Invalid JSONPath {path!r}: {error}") from None

    def params(self, name: str | None = None) -> Any:
        """All parameters by location, or one by name (path, then querystring, then header)."""
        if name is None:
            return velocity(self._params)
        for location in ("path", "querystring"):
            if name in self._params.get(location, {}):
                return self._params[location][name]
        for header, value in self._params.get("header", {}).items():
            if header.lower() == name.lower():
                return value
        return ""


class UtilVariable:
    """`$util`: the helper functions API Gateway offers in templates."""

    @staticmethod
    def escapeJavaScript(value: Any) -> str:  # noqa: N802
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        escaped = json.dumps(text, ensure_ascii=False)[1:-1]
        return escaped.replace("'", "\\'")

    @staticmethod
    def parseJson(value: str) -> Any:  # noqa: N802
        try:
            return velocity(json.loads(value))
        except (TypeError, ValueError):
            raise TemplateError("Invalid JSON passed to $util.parseJson") from None

    @staticmethod
    def base64Encode(value: Any) -> str:  # noqa: N802
        return base64.b64encode(str(value).encode()).decode()

    @staticmethod
    def base64Decode(value: Any) -> str:  # noqa: N802
        try:
            return base64.b64decode(str(value)).decode("utf-8", "replace")
        except ValueError:
            raise TemplateError("Invalid base64 passed to $util.base64Decode") from None

    @staticmethod
    def urlEncode(value: Any) -> str:  # noqa: N802
        return quote(str(value), safe="")

    @staticmethod
    def urlDecode(value: Any) -> str:  # noqa: N802
        return unquote(str(value))


def render(
    template: str,
    *,
    body: str,
    params: Mapping[str, Mapping[str, str]],
    context: Mapping[str, Any],
    stage_variables: Mapping[str, str],
) -> str:
    """Render one mapping template; TemplateError when it is malformed or fails."""
    namespace = {
        "input": InputVariable(body, params),
        "util": UtilVariable(),
        "context": velocity({**context, "authorizer": context.get("authorizer") or {}}),
        "stageVariables": velocity(stage_variables),
    }
    try:
        return airspeed.Template(template).merge(namespace)
    except TemplateError:
        raise
    except Exception as error:  # airspeed's syntax and evaluation errors
        raise TemplateError(f"Mapping template failed: {error}") from None
