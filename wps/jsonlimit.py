"""JSON with a depth limit: deeply nested documents answer 400, never a RecursionError.

Used by the application's JSON parser (:mod:`wps.guard`) and by WPS inline JSON inputs.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeep", "loads_limited"]

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a JSON body."""


class JSONTooDeep(ValueError):
    """A JSON document nested deeper than :data:`MAX_JSON_DEPTH`."""


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in node)
    return True


def loads_limited(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises :class:`JSONTooDeep` (a ValueError) for deep nesting."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested deeper than {limit} levels") from None
    if not _depth_ok(value, limit):
        raise JSONTooDeep(f"JSON nested deeper than {limit} levels")
    return value
