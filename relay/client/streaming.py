"""`events()` as a plan without I/O: decode the server-sent events, remember the last id, and say whether
to reconnect (with `Last-Event-ID`, so no event is repeated or skipped) or stop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from relay.client import calls
from relay.client.errors import error_from_answer
from relay.client.models import Event
from relay.client.retrying import Retrying

__all__ = ["EventFollow", "SseDecoder"]


class SseDecoder:
    """Lines of a `text/event-stream` in, `(id, event, data)` of each complete message out (HTML's rules:
    a blank line ends a message, `:` starts a comment, several `data:` lines join with newlines)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str, str] | None:
        if not line:
            if not self._data:
                self._event = "message"
                return None
            message = (self._id, self._event, "\n".join(self._data))
            self._event, self._data = "message", []
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class EventFollow:
    """Follow one job's stream across reconnections until relay ends it after a final state (or answers
    204: nothing follows)."""

    def __init__(
        self,
        source: str,
        job_id: str,
        last_event_id: int | None,
        *,
        idle_timeout: float,
        max_outage_s: float,
        base_url: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.job_id = job_id
        self.last_id = last_event_id
        self.done = False
        self._idle_timeout = idle_timeout
        self._retrying = Retrying(max_outage_s, base_url, clock)
        self._decoder = SseDecoder()
        self._final_seen = False

    def next_call(self) -> calls.Call:
        """The stream request, resuming after the last event handed out."""
        return calls.job_events(self.source, self.job_id, self.last_id, self._idle_timeout)

    def opened(self) -> None:
        """The stream answered 200: decode it from a clean state."""
        self._decoder = SseDecoder()
        self._retrying.reachable()

    def feed(self, line: str) -> Event | None:
        """The event a line completes, unless it was handed out before."""
        message = self._decoder.feed(line)
        if message is None:
            return None
        position, _, data = message
        if position is None or not position.isdigit():
            return None  # relay numbers every event; anything else is not one of its events
        if self.last_id is not None and int(position) <= self.last_id:
            return None
        event = Event.from_message(int(position), json.loads(data))
        self.last_id = event.id
        self._final_seen = event.job.is_final
        self._retrying.reset()
        return event

    def ended(self) -> float:
        """The stream closed cleanly: done after a final state; else (a relay stopping) the pause before
        reconnecting."""
        if self._final_seen:
            self.done = True
            return 0.0
        return self._retrying.slow_down()

    def refused(self, status_code: int, body: bytes) -> float:
        """Not a stream: 204 means nothing follows; 502/503/504 are retried; the rest raise."""
        if status_code == 204:
            self.done = True
            return 0.0
        return self._retrying.failed(error_from_answer(status_code, body))

    def broke(self, exc: httpx.TransportError) -> float:
        """The connection failed or dropped: the pause before reconnecting."""
        return self._retrying.transport_failed(exc)
