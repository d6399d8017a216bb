"""The two handles every part of `SQLiteStore` works through: the group-commit writer and the one reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosqlite

if TYPE_CHECKING:
    from relay.store.sqlite.writer import GroupCommitWriter

__all__ = ["Handles"]


class Handles:
    """The base of `SQLiteStore` and its mixins; `SQLiteStore` sets both handles when it opens."""

    writer: GroupCommitWriter
    _reader: aiosqlite.Connection | None

    @property
    def _db(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("the store is closed")
        return self._reader
