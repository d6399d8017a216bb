"""JSON in and out: bodies refused past a depth every reader can encode, answers that always encode."""

from __future__ import annotations

import json
from typing import Any

import orjson

from relay.errors import BadRequest

__all__ = ["MAX_DEPTH", "check_depth", "dumps"]

# A body's nesting, counted from its top value. A result is sent at most three levels further in (an SSE
# message's `data` holds the job, whose `result` it is), far inside orjson's own limit of 254, and within
# the 64 that common parsers elsewhere (.NET's System.Text.Json among them) accept by default.
MAX_DEPTH = 64


def check_depth(doc: Any, body: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse (400 `too_deep`) a parsed body that nests deeper than `limit` arrays and objects."""
    # A body with fewer brackets than the limit cannot nest past it: nearly every body ends here, unwalked.
    if body.count(b"{") + body.count(b"[") <= limit or not isinstance(doc, dict | list):
        return
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            raise BadRequest(f"the body nests deeper than {limit} arrays and objects", "too_deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def dumps(value: Any) -> bytes:
    """`value` as JSON bytes; past orjson's depth limit (values stored before the limit above existed),
    by the standard library's encoder, so that nothing already stored makes a read fail."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
