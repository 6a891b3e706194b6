"""The composition root: wires the runtime, the session core and the two transports
(WebSocket and HTTP) into one Trio nursery. It decides nothing else.

Start-up: build the engines and registry, bind both ports (so ``/health`` answers 503
while loading), load and warm up models when the config says so, then report readiness
through ``task_status`` with the real ports (port 0 in tests).

Shutdown (``RunningServer.shutdown`` or a signal): stop accepting, close every
WebSocket with 1001 through its own writer, let Hypercorn finish, and cancel whatever
is left after ``shutdown_timeout_s``. A drain (``RunningServer.drain``, SIGTERM) comes
first when ``server.drain_timeout_s`` allows: ``/health`` answers 503, new sessions are
refused, each connection closes once its session has nothing left to say.

The control plane (``cluster/``) is this process alone, or, with ``cluster.redis_url``,
a directory shared with the other replicas.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import WebSocketRequest, serve_websocket

from ..config import Config
from ..protocol import CloseCode
from .cluster import run_control_plane
from .http import TrackedConfig, apply_hypercorn_fixes, create_app
from .runtime import (
    ServerState,
    Services,
    build_services,
    check_defaults,
    frozen_startup_objects,
    load_models,
    rescan_voices,
    tuned_process,
    watch_event_loop,
)
from .security import check_exposure, server_ssl_context
from .session import SessionManager
from .websocket import (
    CLOSE_TIMEOUT_S,
    Connections,
    apply_trio_websocket_fixes,
    serve_connection,
)

log = logging.getLogger(__name__)

#: trio-websocket's receive queue; the reader drains it at once, so a few suffice.
WS_MESSAGE_QUEUE: Final = 8
#: How often abandoned REST-created sessions are looked for.
REAP_INTERVAL_S: Final = 30.0


@dataclass(slots=True)
class RunningServer:
    """Handle returned by ``nursery.start(run_server, config)``."""

    manager: SessionManager
    connections: Connections
    http_port: int
    websocket_port: int
    #: The Wyoming server's port (``server.wyoming_port``); None when it is off.
    wyoming_port: int | None = None
    _shutdown: trio.Event = field(default_factory=trio.Event)
    _drain: trio.Event = field(default_factory=trio.Event)
    #: Set when ``run_server`` is about to return.
    stopped: trio.Event = field(default_factory=trio.Event)

    def shutdown(self) -> None:
        """Begin a graceful shutdown; ``run_server`` returns when it is done."""
        self._shutdown.set()

    def drain(self) -> None:
        """Drain for up to ``server.drain_timeout_s``, then shut down (at once when it
        is 0). ``shutdown()`` during a drain cuts it short."""
        self._drain.set()

    @property
    def draining(self) -> bool:
        return self._drain.is_set()


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Until the first of ``waits`` returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def until(wait: Callable[[], Awaitable[object]] = wait) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until)


async def _drain(
    timeout_s: float, state: ServerState, connections: Connections, running: RunningServer
) -> None:
    log.info("draining: %d connection(s), for up to %.0f s", connections.count, timeout_s)
    state.draining = True
    connections.draining.set()
    with trio.move_on_after(timeout_s):
        await _first(connections.wait_closed, running._shutdown.wait)


async def _reap_sessions(manager: SessionManager) -> None:
    while True:
        await trio.sleep(REAP_INTERVAL_S)
        manager.reap_unattached(time.time())


async def run_server(
    config: Config,
    *,
    services: Services | None = None,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``RunningServer.shutdown()`` (or cancellation)."""
    services = services or build_services(config)
    check_defaults(services)  # before binding: a bad default is a config error
    check_exposure(config, services.security)  # no keys: loopback only, unless allowed
    if config.server.wyoming_port is not None:
        # Imported only when used: the wyoming package is an optional extra.
        from ..adapters.wyoming import check_wyoming_exposure

        check_wyoming_exposure(config, config.server.host, allow_unauthenticated=False)
    with tuned_process(config.performance.event_loop_realtime_priority):
        await _serve(config, services, task_status)


async def _serve(
    config: Config, services: Services, task_status: trio.TaskStatus[RunningServer]
) -> None:
    manager = SessionManager(services)
    connections = Connections(limit=config.server.max_connections)
    state = ServerState(connection_count=lambda: connections.count)
    ports: dict[str, object] = {"http_port": None, "websocket_port": None}

    def describe() -> dict[str, object]:
        """This replica's load and capacity, as the cluster's directory shows it."""
        return ports | {
            "ready": state.ready,
            "draining": state.draining,
            "sessions": len(manager.sessions),
            "connections": connections.count,
            "max_connections": config.server.max_connections,
        }

    apply_hypercorn_fixes()
    apply_trio_websocket_fixes()
    hconfig = TrackedConfig()
    hconfig.bind = [f"{config.server.host}:{config.server.http_port}"]
    hconfig.accesslog = None
    hconfig.graceful_timeout = config.server.shutdown_timeout_s
    hconfig.keep_alive_timeout = config.server.http_keep_alive_timeout_s
    # Read by our Hypercorn fix as "a request head must arrive within this long".
    hconfig.read_timeout = math.ceil(config.server.http_read_timeout_s)  # typed int there
    ssl_context = server_ssl_context(config)  # None without TLS
    if ssl_context is not None:
        hconfig.certfile = str(config.path(config.server.tls_certfile or ""))
        hconfig.keyfile = str(config.path(config.server.tls_keyfile or ""))
        # HTTP/1.1 only: our Hypercorn fixes (and their tests) are for its h11 path.
        hconfig.alpn_protocols = ["http/1.1"]
    http_stop = trio.Event()

    async with trio.open_nursery() as nursery:
        plane = await nursery.start(run_control_plane, config.cluster, manager, describe)
        app = create_app(manager, state, plane)

        async def handler(request: WebSocketRequest) -> None:
            await serve_connection(request, manager, connections, plane)

        ws_server = await nursery.start(
            partial(
                serve_websocket,
                handler,
                config.server.host,
                config.server.websocket_port,
                ssl_context,
                message_queue_size=WS_MESSAGE_QUEUE,
                max_message_size=config.server.max_message_bytes,
                # A half-sent upgrade request holds a task and a socket: bounded.
                connect_timeout=config.server.handshake_timeout_s,
                disconnect_timeout=CLOSE_TIMEOUT_S,
            )
        )
        state.websocket_port = ws_server.port
        binds = await nursery.start(
            partial(hypercorn_serve, app, hconfig, shutdown_trigger=http_stop.wait)
        )
        http_port = int(binds[0].rsplit(":", 1)[1])
        ports.update(http_port=http_port, websocket_port=ws_server.port)
        services.security.origins.page_port = http_port  # the page's own origin
        wyoming_port: int | None = None
        if config.server.wyoming_port is not None:
            from ..adapters.wyoming import serve_wyoming

            wyoming_port = await nursery.start(
                partial(
                    serve_wyoming,
                    services,
                    config.server.host,
                    config.server.wyoming_port,
                    ready=lambda: state.ready,
                )
            )
        running = RunningServer(
            manager=manager,
            connections=connections,
            http_port=http_port,
            websocket_port=ws_server.port,
            wyoming_port=wyoming_port,
        )
        # Ports are bound first so /health answers (503, not ready) while models load;
        # callers of nursery.start() still get a server that is ready to speak.
        if config.performance.preload_models:
            started = trio.current_time()
            await trio.to_thread.run_sync(load_models, services)
            log.info("models loaded in %.2f s", trio.current_time() - started)
        with frozen_startup_objects():
            state.ready = True
            tls = ssl_context is not None
            log.info(
                "serving REST on %s://%s:%d and WebSocket on %s://%s:%d (pid %d)",
                "https" if tls else "http",
                config.server.host,
                http_port,
                "wss" if tls else "ws",
                config.server.host,
                ws_server.port,
                os.getpid(),
            )
            nursery.start_soon(_reap_sessions, manager)
            nursery.start_soon(watch_event_loop, services.metrics)
            nursery.start_soon(rescan_voices, services)
            task_status.started(running)
            await _first(running._shutdown.wait, running._drain.wait)
            drain_s = config.server.drain_timeout_s
            if running._drain.is_set() and not running._shutdown.is_set() and drain_s > 0:
                await _drain(drain_s, state, connections, running)

            log.info("shutting down: closing %d connection(s)", connections.count)
            with trio.move_on_after(config.server.shutdown_timeout_s):
                connections.close_all(CloseCode.GOING_AWAY, "server shutting down")
                http_stop.set()
                await connections.wait_closed()
            # The deadline is hard: HTTP responses whose clients stopped reading are
            # cut (their writes are shielded, so only closing the socket ends them).
            aborted = hconfig.abort_all()
            if aborted:
                log.warning("shutdown: cut %d HTTP connection(s) still open", aborted)
            nursery.cancel_scope.cancel()
    log.info("stopped")
    running.stopped.set()
