"""CORS for an HTTP API with a CorsConfiguration, as API Gateway applies it ("Configuring CORS for an
HTTP API"): it answers preflight OPTIONS requests itself, even without an OPTIONS route, and on other
requests from an allowed origin it adds the configured headers, ignoring CORS headers the integration
returned. Without a configuration nothing is added or removed.
"""

from __future__ import annotations

from typing import Any

from localcloud.apigatewayv2.events import HttpResponse


def _config(api: Any) -> dict[str, Any] | None:
    config = api.cors_configuration
    return config if isinstance(config, dict) and config else None


def _allowed_origin(config: dict[str, Any], origin: str | None) -> str | None:
    if not origin:
        return None
    origins = [str(o) for o in config.get("allowOrigins") or []]
    if origin in origins:
        return origin
    if "*" in origins:
        return origin if config.get("allowCredentials") else "*"
    return None


def _joined(values: Any) -> str:
    return ",".join(str(v) for v in values or [])


def preflight(api: Any, method: str, headers: dict[str, str]) -> HttpResponse | None:
    """API Gateway's own answer to a CORS preflight request, or None when it is not one."""
    config = _config(api)
    if config is None or method != "OPTIONS" or "access-control-request-method" not in headers:
        return None
    pairs: list[tuple[str, str]] = []
    origin = _allowed_origin(config, headers.get("origin"))
    if origin is not None:
        pairs.append(("Access-Control-Allow-Origin", origin))
        for header, key in (("Access-Control-Allow-Methods", "allowMethods"),
                            ("Access-Control-Allow-Headers", "allowHeaders"),
                            ("Access-Control-Expose-Headers", "exposeHeaders")):
            if config.get(key):
                pairs.append((header, _joined(config[key])))
        if config.get("maxAge") is not None:
            pairs.append(("Access-Control-Max-Age", str(config["maxAge"])))
        if config.get("allowCredentials"):
            pairs.append(("Access-Control-Allow-Credentials", "true"))
    return HttpResponse(204, pairs, b"")


def decorate(api: Any, origin: str | None, response: HttpResponse) -> HttpResponse:
    """The integration's answer with the configured CORS headers in place of its own."""
    config = _config(api)
    if config is None:
        return response
    pairs = [(k, v) for k, v in response.headers if not k.lower().startswith("access-control-")]
    allowed = _allowed_origin(config, origin)
    if allowed is not None:
        pairs.append(("Access-Control-Allow-Origin", allowed))
        if config.get("exposeHeaders"):
            pairs.append(("Access-Control-Expose-Headers", _joined(config["exposeHeaders"])))
        if config.get("allowCredentials"):
            pairs.append(("Access-Control-Allow-Credentials", "true"))
    return HttpResponse(response.status, pairs, response.body)
