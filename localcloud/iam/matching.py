"""Matching actions and resources against a statement's patterns, with policy variables."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Mapping

from localcloud.iam.model import _MissingKey


def _pattern_regex(
    pattern: str,
    *,
    ignore_case: bool = False,
    arn: bool = False,
    resolve: Callable[[str], str] | None = None,
) -> re.Pattern[str]:
    """Compile an IAM wildcard pattern: `*` any run, `?` one character, everything else literal.

    With `arn`, wildcards in the first five ARN segments stay inside their segment (as ArnLike and
    Resource matching do). With `resolve`, `${...}` policy variables are substituted literally.
    """
    arn = arn and pattern.startswith("arn:")
    parts: list[str] = []
    colons = 0
    for token in re.finditer(r"\$\{([^}]*)\}|[*?]|[^*?$]+|\$", pattern):
        text = token.group(0)
        if token.group(1) is not None and resolve is not None:
            parts.append(re.escape(resolve(token.group(1))))
        elif text in ("*", "?"):
            inside_segment = arn and colons < 5
            any_char = "[^:]" if inside_segment else "."
            parts.append(any_char + "*" if text == "*" else any_char)
        else:
            colons += text.count(":")
            parts.append(re.escape(text))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _matches(pattern: str, value: str, **options: Any) -> bool:
    if options.get("resolve") is None:  # no policy variables: the same pattern compiles once
        return _compiled(pattern, options.get("ignore_case", False), options.get("arn", False)).fullmatch(
            value) is not None
    return _pattern_regex(pattern, **options).fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _compiled(pattern: str, ignore_case: bool, arn: bool) -> re.Pattern[str]:
    """Enforcement evaluates the same statements on every request."""
    return _pattern_regex(pattern, ignore_case=ignore_case, arn=arn)


def action_matches(pattern: str, action: str) -> bool:
    """IAM action names compare case-insensitively ('KINESIS:putrecord' is kinesis:PutRecord)."""
    return _matches(pattern, action, ignore_case=True)


def resource_matches(pattern: str, resource: str, resolve: Callable[[str], str] | None = None) -> bool:
    """Resources compare case-sensitively; an ARN pattern's wildcards stay within their segment."""
    return pattern == "*" or _matches(pattern, resource, arn=True, resolve=resolve)


def _resolver(context: Mapping[str, tuple[str, ...]]) -> Callable[[str], str]:
    """Looks up `${key}` / `${key, 'default'}` in the request context; `${*}` `${?}` `${$}` are literal."""

    def resolve(body: str) -> str:
        if body in ("*", "?", "$"):
            return body
        match = re.fullmatch(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?", body)
        if match is None:
            raise _MissingKey(body.strip())
        key, default = match.group(1), match.group(2)
        values = context.get(key.lower())
        if values and len(values) == 1:
            return values[0]
        if default is not None:
            return default
        raise _MissingKey(key)

    return resolve

