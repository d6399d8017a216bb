"""JSON in and out: bodies refused past a depth every reader can encode, answers that always encode."""

from __future__ import annotations

import json
from typing import Any

import orjson

from relay.errors import BadRequest

__all__ = ["MAX_DEPTH", "check_depth", "dumps", "too_deep"]

# A body's nesting, counted from its top value. A result is sent at most three levels further in (an SSE
# message's `data` holds the job, whose `result` it is), far inside orjson's own limit of 254, and within
# the 64 that common parsers elsewhere (.NET's System.Text.Json among them) accept by default.
MAX_DEPTH = 64


def too_deep(limit: int = MAX_DEPTH) -> BadRequest:
    """The refusal (400 `too_deep`) of a body that nests deeper than `limit` arrays and objects."""
    return BadRequest(f"the body nests deeper than {limit} arrays and objects", "too_deep")


def check_depth(doc: Any, body: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse (400 `too_deep`) a parsed body that nests deeper than `limit` arrays and objects."""
    # A body with fewer brackets than the limit cannot nest past it: nearly every body ends here, unwalked.
    if body.count(b"{") + body.count(b"[") <= limit or not isinstance(doc, dict | list):
        return
    if _deeper(doc, limit - 1):
        raise too_deep(limit)


_CONTAINERS = (dict, list)


def _deeper(value: Any, room: int) -> bool:
    """Whether `value` holds arrays or objects nested more than `room` levels inside it.

    Parsed JSON (orjson's or the standard library's) holds plain dicts and lists only, so an exact type
    test serves, at about half the cost of `isinstance` on a hot path."""
    for child in value.values() if type(value) is dict else value:
        if type(child) in _CONTAINERS and (room == 0 or _deeper(child, room - 1)):
            return True
    return False


def dumps(value: Any) -> bytes:
    """`value` as JSON bytes; past orjson's depth limit (values stored before the limit above existed),
    by the standard library's encoder, so that nothing already stored makes a read fail."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
