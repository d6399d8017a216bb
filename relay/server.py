"""Running the app under uvicorn (uvloop, httptools) with relay's bounded HTTP protocol
(relay/http_protocol.py), and a shutdown that answers held long-polls."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette

from relay.app import create_app
from relay.connections import ConnectionRegistry, limits_for, raise_open_file_limit, with_room_for_requests
from relay.http_protocol import RelayHttpProtocol, protocol_class
from relay.logs import configure_logging, log_started
from relay.settings import Settings

__all__ = ["RelayServer", "guarded_protocol", "run_worker", "serve"]

log = logging.getLogger("relay")

_YOUNG_GENERATION_THRESHOLD = 10_000  # CPython's default is 700 allocations
# After SIGTERM, open requests get this long to finish before the lifespan stops the background loops.
GRACEFUL_SHUTDOWN_S = 5


class RelayServer(uvicorn.Server):
    """uvicorn's server that tells the hub when shutdown starts.

    uvicorn waits for open requests before the app's lifespan ends, so held long-polls and streams would hold
    the shutdown for the whole grace period and then be cancelled; closing the hub answers them at once.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette, *, tune_gc: bool = False) -> None:
        super().__init__(config)
        self._app = app
        self._tune_gc = tune_gc  # only where the server owns the process (not in tests that embed it)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        services = getattr(self._app.state, "services", None)
        if services is not None:
            worker = any(loop.name == "deliverer" for loop in services.loops)
            log_started(services.settings, listen=_listening(self.servers), worker=worker)
        if self._tune_gc:
            _tune_gc()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.release_waiters()

    def release_waiters(self) -> None:
        """Answer held long-polls and streams now, and refuse new ones."""
        services = getattr(self._app.state, "services", None)
        if services is not None and self._loop is not None:
            # A signal handler may interrupt the loop anywhere: hand the close to the loop itself.
            self._loop.call_soon_threadsafe(services.hub.close)


def _listening(servers: list[asyncio.base_events.Server]) -> str | None:
    """`host:port` of the first socket listening (the port the system chose, for port 0)."""
    for server in servers:
        for sock in server.sockets:
            address = sock.getsockname()
            if isinstance(address, tuple):
                host, port = address[:2]
                return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return str(address)  # a unix socket's path
    return None


def _tune_gc() -> None:
    """Everything allocated by startup (modules, app, store, providers) lives as long as the process: keep it
    out of the collector's full passes, and collect the young generation less often, since a request's
    objects are nearly all freed by reference counting before a collection would find them (about 3 % more
    callbacks per second, docs/benchmarks.md)."""
    gc.freeze()
    gc.set_threshold(_YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def guarded_protocol(settings: Settings, fd_limit: int) -> tuple[type[RelayHttpProtocol], Settings]:
    """The HTTP protocol that applies `settings`' connection limits (the automatic cap from `fd_limit`), and
    the settings with `max_waiters` fitted inside that cap."""
    limits = limits_for(settings, fd_limit)
    registry: ConnectionRegistry[RelayHttpProtocol] = ConnectionRegistry(limits)
    return protocol_class(registry), with_room_for_requests(settings, limits.max_connections)


def serve(settings: Settings, *, worker: bool = True, **uvicorn_options: Any) -> None:
    """Serve the relay until a signal stops it; without `worker`, HTTP only (no deliverer, no sweeper)."""
    configure_logging(settings)
    http, settings = guarded_protocol(settings, raise_open_file_limit())
    app = create_app(settings, worker=worker)
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": http,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "log_level": settings.log_level,
        "log_config": None,  # uvicorn's records go to relay's handler (relay/logs.py)
        **uvicorn_options,
    }
    config = uvicorn.Config(app, host=settings.host, port=settings.port, **options)
    RelayServer(config, app, tune_gc=True).run()


def run_worker(settings: Settings) -> None:
    """Run the deliverer and the sweeper, without HTTP, until SIGTERM or SIGINT."""
    configure_logging(settings)
    uvloop.run(_work(settings))


async def _work(settings: Settings) -> None:
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with app.router.lifespan_context(app):
        _tune_gc()
        log_started(settings, listen=None, worker=True)
        await stop.wait()
        log.info("relay worker stopping: finishing the rounds under way")
    log.info("relay worker stopped")
