"""`unsigned`: providers that sign nothing (Luma, Krea...): a URL token authenticates; fields by pointer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from relay.models import Callback
from relay.providers.base import SourceConfig, UnsignedProvider
from relay.providers.fields import POINTER_OPTIONS, BodyFields

__all__ = ["Unsigned"]


class Unsigned(UnsignedProvider):
    kind = "unsigned"
    options: ClassVar[Mapping[str, Any]] = {**UnsignedProvider.options, **POINTER_OPTIONS}

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        self._fields = BodyFields(source)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Callback:
        return self._fields.callback(body)
