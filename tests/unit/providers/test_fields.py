"""The compiled pointer against the `jsonpointer` library it replaces on the hot path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonpointer import EndOfList, JsonPointer

from relay.providers.fields import Pointer

DOC: dict[str, Any] = {
    "a": {"b": [1, {"c": None, "": 5, "~/": 7}], "0": 3},
    "l": [[0, 1], [2]],
    "x": "text",
}


def _library(pointer: str, doc: Any) -> Any:
    found = JsonPointer(pointer).resolve(doc, None)
    return None if isinstance(found, EndOfList) else found  # `-` names no element: nothing to read


@pytest.mark.parametrize(
    "pointer",
    ["", "/a", "/a/b", "/a/b/0", "/a/b/1/c", "/a/b/1/", "/a/b/1/~0~1", "/a/b/2", "/a/b/-", "/a/b/01",
     "/a/0", "/l/0/1", "/l/1/5", "/x/y", "/missing/y", "/a/b/1/c/d"],
)  # fmt: skip
def test_resolves_as_the_library_does(pointer: str) -> None:
    """Each kind of step (member, index, escape, past the end, leading zero, `-`) agrees with jsonpointer."""
    assert Pointer(pointer).resolve(DOC) == _library(pointer, DOC)


def test_names_its_path() -> None:
    """A 400 names where it looked: the pointer as configured, the whole document as `/`."""
    assert Pointer("/data/id").path == "/data/id"
    assert Pointer("").path == "/"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "0", "1", ""]), inner),
    max_leaves=12,
)


@given(doc=_json, tokens=st.lists(st.sampled_from(["a", "0", "1", "", "-", "01", "9"]), max_size=4))
def test_any_document_any_pointer(doc: Any, tokens: list[str]) -> None:
    """Random documents and pointers: the same answer as the library."""
    pointer = "".join("/" + token for token in tokens)
    assert Pointer(pointer).resolve(doc) == _library(pointer, doc)
