"""Our two changes to Hypercorn 0.18 (the HTTP server under the Quart app), applied once
by ``apply()`` when the server starts, guarded by the version they were written for.

1. **Error bodies.** Hypercorn answers a request it cannot parse (oversized headers:
   431, a malformed request line: 400) itself, with an empty body. Every error of ours
   is JSON ``{"error": {"code", "message"}}``; so is this one now.
2. **Connections that end.** Hypercorn's ``_close`` shuts the socket down with an
   ``await`` first; when the closing task is being cancelled (as the app's task is,
   right after a ``Connection: close`` response) the socket is never closed and the
   client waits for an end that does not come. Ours closes it whatever happens. And
   its keep-alive timer is cancelled with the app task that starts it, so an idle
   keep-alive connection lived for ever; ``_read_data`` is replaced by a loop that
   enforces the idle timeout itself: with no request in progress, a connection that
   sends nothing for ``keep_alive_timeout`` is closed, and a request head must
   complete within ``read_timeout`` of its first byte, and each part of a request
   body within ``read_timeout`` of the last. (Hypercorn's own
   ``read_timeout`` bounds every read, also while a long response streams to a client
   that has nothing to send, so it is not used as such.)
3. **A hard end to shutdown.** Hypercorn writes response bytes inside a shielded cancel
   scope, so a client that stops reading a streamed response holds its connection task
   — and the server's shutdown — for as long as it likes. ``HttpConnections`` records
   each connection's stream (through a ``TrackedConfig``); ``abort_all`` closes their
   sockets, which wakes the blocked write with ``ClosedResourceError`` (a close, not a
   cancellation, so the shield does not stop it).

On another Hypercorn version nothing is patched and a warning is logged: shutdown is
then bounded only by the clients, and parse errors keep empty bodies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from itertools import chain
from typing import Any, Final

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer

from ..runtime import apply_once
from ._errors import framework_code

WRITTEN_FOR: Final = "0.18.0"
#: Set on each replaced function (tests check the patch is in place).
PATCH_MARKER: Final = "__streamer_patch__"



class TrackedConfig(HypercornConfig):
    """A Hypercorn config whose connections' streams are recorded while they live."""

    def __init__(self) -> None:
        super().__init__()
        self.open_streams: set[trio.abc.Stream] = set()

    def abort_all(self) -> int:
        """Close every open connection's socket at once; returns how many."""
        streams = list(self.open_streams)
        for stream in streams:
            transport = getattr(stream, "transport_stream", stream)  # under TLS
            socket = getattr(transport, "socket", None)
            if socket is not None:
                socket.close()
        return len(streams)


def _error_body(status_code: int) -> bytes:
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "HTTP error"
    code = framework_code(status_code)
    return json.dumps({"error": {"code": code, "message": phrase}}).encode()


async def _send_error_response(self: H11Protocol, status_code: int) -> None:
    body = _error_body(status_code)
    await self._send_h11_event(
        h11.Response(
            status_code=status_code,
            headers=list(
                chain(
                    [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                    self.config.response_headers("h11"),
                )
            ),
        )
    )
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


_Run = Callable[[TCPServer], Coroutine[Any, Any, None]]


def _tracking(run: _Run) -> _Run:
    async def tracked_run(self: TCPServer) -> None:
        streams: set[Any] | None = getattr(self.config, "open_streams", None)
        if streams is None:
            await run(self)
            return
        streams.add(self.stream)
        try:
            await run(self)
        finally:
            streams.discard(self.stream)

    setattr(tracked_run, PATCH_MARKER, "track_streams")
    return tracked_run


def _socket_of(stream: object) -> Any:
    transport = getattr(stream, "transport_stream", stream)  # under TLS
    return getattr(transport, "socket", None)


def _closing(close: _Run) -> _Run:
    async def close_surely(self: TCPServer) -> None:
        try:
            await close(self)
        finally:
            socket = _socket_of(self.stream)
            if socket is not None and socket.fileno() != -1:
                socket.close()  # the original was cancelled before it got there

    setattr(close_surely, PATCH_MARKER, "close_surely")
    return close_surely


#: Largest read per receive (Hypercorn's own ``MAX_RECV``).
_MAX_RECV: Final = 2**16


def _busy(server: TCPServer) -> bool:
    """A request is being received or answered on this connection."""
    protocol = getattr(server.protocol, "protocol", None)
    return getattr(protocol, "stream", None) is not None


def _receiving_body(server: TCPServer) -> bool:
    """The client is still sending a request body (h11: its state is SEND_BODY)."""
    protocol = getattr(server.protocol, "protocol", None)
    connection = getattr(protocol, "connection", None)
    return getattr(connection, "their_state", None) is h11.SEND_BODY


async def _read_data(self: TCPServer) -> None:
    config = self.config
    idle_since = trio.current_time()
    head_started: float | None = None
    while True:
        now = trio.current_time()
        if _busy(self) and _receiving_body(self):
            # Each part of a body must come within the read timeout: a client that
            # stops half-way through its body must not hold the connection.
            deadline, head_started = now + (config.read_timeout or math.inf), None
        elif _busy(self):
            deadline, head_started = math.inf, None
        elif head_started is not None:
            deadline = head_started + (config.read_timeout or math.inf)
        else:
            deadline = max(idle_since, getattr(self, "_streamer_idle_since", idle_since))
            deadline += config.keep_alive_timeout
        with trio.move_on_at(deadline) as wait:
            self._streamer_wait = wait  # type: ignore[attr-defined]
            try:
                data = await self.stream.receive_some(_MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
        if wait.cancelled_caught:
            if trio.current_time() >= deadline:
                break  # idle too long, or a request head too slow
            continue  # woken: the connection went idle; re-read the deadline
        if not _busy(self) and head_started is None and data:
            head_started = now
        await self.protocol.handle(RawData(bytes(data)))
        if data == b"":
            break
    await self.protocol.handle(Closed())


def _waking_on_idle(send: Callable[[TCPServer, Any], Coroutine[Any, Any, None]]) -> Any:
    async def protocol_send(self: TCPServer, event: Any) -> None:
        if isinstance(event, Updated) and event.idle:
            # The response is done: the reader waits with no deadline; wake it so the
            # keep-alive timeout runs from now. (First: the call below may be cancelled
            # with the app task that makes it.)
            self._streamer_idle_since = trio.current_time()  # type: ignore[attr-defined]
            wait = getattr(self, "_streamer_wait", None)
            if wait is not None:
                wait.cancel()
        await send(self, event)

    setattr(protocol_send, PATCH_MARKER, "wake_on_idle")
    return protocol_send


def _patch() -> None:
    setattr(_send_error_response, PATCH_MARKER, "json_error_body")
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
    TCPServer.run = _tracking(TCPServer.run)  # type: ignore[method-assign,assignment]
    TCPServer._close = _closing(TCPServer._close)  # type: ignore[method-assign,assignment]
    TCPServer._read_data = _read_data  # type: ignore[method-assign]
    TCPServer.protocol_send = _waking_on_idle(  # type: ignore[method-assign]
        TCPServer.protocol_send
    )


def apply() -> bool:
    """Patch the installed Hypercorn once; True if the patches are in effect."""
    return apply_once(
        "hypercorn-connections",
        "hypercorn",
        WRITTEN_FOR,
        _patch,
        unpatched="shutdown is then bounded only by clients; idle connections stay open",
    )
