"""Which stage and which route of an HTTP API a request addresses, in API Gateway's order.

AWS ("Routing API requests", HTTP APIs): the first path segment selects a stage when a stage of that
name exists; otherwise the request goes to the `$default` stage with its whole path; with neither the
answer is 404 {"message":"Not Found"}. Within the stage the route is chosen by priority:
1. a full match of path and method (literal segments and `{param}` variables; `GET /x` beats `ANY /x`,
   and a literal segment beats a variable at the same place),
2. a match through a greedy variable `{name+}` (the longest prefix first, a method beats ANY),
3. the `$default` route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

_PARAM = re.compile(r"^\{([^{}+]+)\}$")
_GREEDY = re.compile(r"^\{([^{}+]+)\+\}$")
DEFAULT = "$default"


@dataclass(frozen=True)
class RouteMatch:
    route: Any  # moto Route (or a deployed copy of one)
    route_key: str  # "GET /speeders", "ANY /{proxy+}" or "$default"
    path_parameters: dict[str, str]

    @property
    def route_path(self) -> str | None:
        """The route's resource path ("/items/{id}"), None for $default."""
        return None if self.route_key == DEFAULT else self.route_key.split(" ", 1)[1]


def split_stage(path: str, stage_names: Iterable[str]) -> tuple[str, str] | None:
    """(stage name, path within the stage), or None when no stage answers (AWS: 404 Not Found)."""
    names = set(stage_names)
    first, _, rest = path.lstrip("/").partition("/")
    if first and first != DEFAULT and first in names:
        return first, "/" + rest
    if DEFAULT in names:
        return DEFAULT, path if path.startswith("/") else "/" + path
    return None


def _segments(path: str) -> list[str]:
    return [segment for segment in path.split("/") if segment]


def match_path(pattern: str, path: str) -> tuple[bool, tuple[int, ...], dict[str, str]] | None:
    """(greedy, specificity, parameters) when the route path matches the request path."""
    wanted, given = _segments(pattern), _segments(path)
    score: list[int] = []
    params: dict[str, str] = {}
    for index, part in enumerate(wanted):
        greedy = _GREEDY.match(part)
        if greedy:
            if index != len(wanted) - 1 or index >= len(given):
                return None
            params[greedy.group(1)] = "/".join(given[index:])
            return True, (len(wanted), *score), params
        if index >= len(given):
            return None
        single = _PARAM.match(part)
        if single:
            params[single.group(1)] = given[index]
            score.append(1)
        elif part == given[index]:
            score.append(2)
        else:
            return None
    if len(wanted) != len(given):
        return None
    return False, tuple(score), params


def select_route(routes: Iterable[Any], method: str, path: str) -> RouteMatch | None:
    """The route API Gateway runs for `method path` among `routes` (each with a `route_key`)."""
    method = method.upper()
    best: tuple[tuple[Any, ...], RouteMatch] | None = None
    default: Any = None
    for route in routes:
        key = str(route.route_key or "")
        if key == DEFAULT:
            default = route
            continue
        verb, _, pattern = key.partition(" ")
        if verb.upper() not in (method, "ANY") or not pattern:
            continue
        matched = match_path(pattern, path)
        if matched is None:
            continue
        greedy, score, params = matched
        rank = (0 if greedy else 1, score, 1 if verb.upper() == method else 0)
        if best is None or rank > best[0]:
            best = (rank, RouteMatch(route, key, params))
    if best is not None:
        return best[1]
    return RouteMatch(default, DEFAULT, {}) if default is not None else None
