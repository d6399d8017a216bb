"""Helpers for provider tests: sources built through real settings, fal signing, a JWKS server on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.providers import KINDS, Provider, SourceConfig
from relay.settings import load_settings

# providers.md 8.2: the self-generated ed25519 fixture key (seed 00..1f).
FIXTURE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def source(kind: str, name: str = "src", **table: Any) -> SourceConfig:
    """A source as `[sources.NAME]` with `kind` and `table` would give, validated by the real settings."""
    settings = load_settings(
        None, environ={}, overrides={"secret_key": "k", "sources": {name: {"kind": kind, **table}}}
    )
    return settings.sources[name]


def provider(kind: str, **table: Any) -> Provider:
    """The provider of a freshly validated source."""
    src = source(kind, **table)
    return KINDS[src.kind](src)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The JWKS entry fal would publish for `key`."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().public_bytes_raw())}


def fal_headers(
    key: Ed25519PrivateKey,
    body: bytes,
    request_id: str = "5057fca7-2eb3-468f-b95d-cefe92b0b9d4",
    user_id: str = "user-123",
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers signed the way fal signs a webhook."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    message = f"{request_id}\n{user_id}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": user_id,
        "x-fal-webhook-timestamp": ts,
        "x-fal-webhook-signature": key.sign(message).hex(),
        "content-type": "application/json",
    }


def fal_body(request_id: str = "5057fca7-2eb3-468f-b95d-cefe92b0b9d4", **fields: Any) -> bytes:
    """A fal webhook body, OK with a small payload unless changed."""
    doc: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": {"images": [{"url": "https://url.to/image.png"}], "seed": 42},
        "error": None,
        **fields,
    }
    return orjson.dumps(doc)


class JwksServer:
    """A JWKS document served over real HTTP on 127.0.0.1; tests change `keys` or `status` between calls."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys: list[Mapping[str, str]] = [jwk(k) for k in keys]
        self.status = 200
        self.requests = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        body = orjson.dumps({"keys": self.keys}) if self.status == 200 else b"{}"
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (self.status, len(body), body)
        )
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> JwksServer:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
