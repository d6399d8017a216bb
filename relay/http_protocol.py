"""uvicorn's httptools protocol, bounded against hostile clients.

A connection is capped (the oldest idle one makes room for a new one), a request's headers must arrive
within `header_timeout_s` and `max_header_bytes` with at most `max_headers` fields (else 431), and its body
within `body_timeout_s` (else 408 from the app). The clocks are run by one periodic sweep of the
`ConnectionRegistry`, not a timer per request: a request that arrives whole in one read costs a few
dictionary operations and no timer at all.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from relay.connections import ConnectionRegistry
from relay.errors import HeadersTooLarge, RelayError, RequestTimeout, ServiceUnavailable
from relay.routes.common import error_response

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

__all__ = ["RelayHttpProtocol", "protocol_class"]

# Where the parser stands in the connection's byte stream.
_HEAD = 0  # reading a request line and headers (or waiting for a first request)
_BODY = 1  # headers read, the body still arriving or the request being answered
_BETWEEN = 2  # after a complete request: the next byte starts the next one
_DONE = 3  # refused or closing: nothing more is parsed


# The base class's methods, called directly where every request passes: cheaper than `super()` there.
_base = HttpToolsProtocol
_feed = HttpToolsProtocol.data_received


class _BodyCycle(RequestResponseCycle):
    """A request whose body was still arriving after its headers: its `receive` can time out."""

    timed_out: RequestTimeout | None = None

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if self.timed_out is not None and message["type"] == "http.request":
            raise self.timed_out  # answered by the app's error handling, in the API's error shape
        return message


class RelayHttpProtocol(HttpToolsProtocol):
    """One client connection, registered with its server's `ConnectionRegistry` (see `protocol_class`)."""

    registry: ClassVar[ConnectionRegistry[RelayHttpProtocol]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        registry = self.registry
        limits = registry.limits
        # The registry's lists and clock, held here: every request moves its connection between them.
        self._idle, self._heads, self._bodies, self._clock = (
            registry.idle,
            registry.heads,
            registry.bodies,
            registry.clock,
        )
        self._max_head_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._phase = _HEAD
        self._head_bytes = 0
        self._body_timed = False
        self._refusal: RelayError | None = None

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.registry.admit(self):  # every connection is answering a request: no room for this one
            self._phase = _DONE
            self._write_error(
                ServiceUnavailable("too many connections; retry shortly", "too_many_connections")
            )
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _BETWEEN:  # the first byte of the next request: its head's clock and count start
            self._phase = phase = _HEAD
            self._heads[self] = self._clock()
            self._head_bytes = 0
        if phase == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._feed_bounded(data)
            else:
                _feed(self, data)
        elif phase == _BODY:
            _feed(self, data)
        else:
            return  # refused: the remaining bytes are dropped while the answer lingers
        if self._phase == _BODY and not self._body_timed:
            self._track_body()

    def _feed_bounded(self, data: bytes) -> None:
        """Feed the parser up to the head's bound only (httptools holds a partial header line in memory),
        and refuse the request if its headers did not end within it."""
        room = len(data) - (self._head_bytes - self._max_head_bytes)
        _feed(self, data[:room])
        if self._phase == _HEAD:
            limit = self._max_head_bytes
            self._refuse(HeadersTooLarge(f"the request line and headers exceed {limit} bytes"))
        elif self._phase != _DONE:
            _feed(self, data[room:])  # the headers ended within it: the rest is body or the next request

    def _track_body(self) -> None:
        """The body is still to come: start its clock, and let the app's `receive` time out (the app has
        not run yet: its task starts after this read)."""
        self._body_timed = True
        self._bodies[self] = self._clock()
        self.cycle.__class__ = _BodyCycle

    # Parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's own, inlined (it runs for every header of every request), after the bound on their number.
        if len(self.headers) >= self._max_headers:
            # Raising stops the parser; uvicorn then answers through `send_400_response`.
            self._refusal = HeadersTooLarge(f"more than {self._max_headers} header fields")
            raise self._refusal
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._heads.pop(self, None)
        self._idle.pop(self, None)  # a request is in progress: not to be evicted
        _base.on_headers_complete(self)

    def on_message_complete(self) -> None:
        # A pipelined request begun later in the same read is timed from the next read (or by uvicorn's
        # keep-alive timeout when none comes), and its head bytes counted from there: at most one read more.
        self._phase = _BETWEEN
        if self._body_timed:
            self._body_timed = False
            self._bodies.pop(self, None)
        _base.on_message_complete(self)

    def on_response_complete(self) -> None:
        _base.on_response_complete(self)
        if self.cycle.response_complete and not self.transport.is_closing():
            self._idle[self] = None  # answered, and no other request waits: the newest idle connection

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        self._phase = _DONE
        super().send_400_response(msg)

    def _should_upgrade_to_ws(self) -> bool:
        return False  # relay serves no WebSocket, and an upgraded connection would leave the registry

    # Limits reached (called by the registry's sweep)

    def close_now(self) -> None:
        """Close at once: evicted at the cap, headers too slow, or a refusal's lingering over."""
        self._phase = _DONE
        self.registry.forget(self)
        self.transport.close()

    def body_expired(self) -> None:
        """The body is late: the app's next `receive` raises 408, and the connection closes after it."""
        cycle = cast(_BodyCycle, self.cycle)  # `_track_body` made it one: only a timed body expires
        if cycle.response_complete:  # answered without the body (a 404, a 413): nothing more to wait for
            self.close_now()
            return
        cycle.keep_alive = False
        timeout = self.registry.limits.body_timeout_s
        cycle.timed_out = RequestTimeout(f"the request body did not arrive within {timeout:g} s")
        cycle.message_event.set()

    def _refuse(self, exc: RelayError) -> None:
        """Answer `exc` and parse nothing more; read and drop what the client still sends, for a short
        while, so that it gets to read the answer instead of a reset."""
        self._phase = _DONE
        self._heads.pop(self, None)
        self._bodies.pop(self, None)
        if self.cycle is not None and not self.cycle.response_complete:
            self.close_now()  # an earlier request is still being answered on this connection
            return
        self._write_error(exc)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.registry.lingering[self] = self._clock()
        else:
            self.close_now()

    def _write_error(self, exc: RelayError) -> None:
        response = error_response(exc)
        head = [STATUS_LINE[exc.status]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", response.body]))


def protocol_class(registry: ConnectionRegistry[RelayHttpProtocol]) -> type[RelayHttpProtocol]:
    """The protocol for one server (uvicorn's `http=`), its connections all in `registry`."""

    class ServerHttpProtocol(RelayHttpProtocol):
        pass

    ServerHttpProtocol.registry = registry
    return ServerHttpProtocol
