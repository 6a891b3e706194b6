"""Our two changes to Hypercorn 0.18 (the HTTP server under the Quart app), applied once
by ``apply()`` when the server starts, guarded by the version they were written for.

1. **Error bodies.** Hypercorn answers a request it cannot parse (oversized headers:
   431, a malformed request line: 400) itself, with an empty body. Every error of ours
   is JSON ``{"error": {"code", "message"}}``; so is this one now.
2. **A hard end to shutdown.** Hypercorn writes response bytes inside a shielded cancel
   scope, so a client that stops reading a streamed response holds its connection task
   — and the server's shutdown — for as long as it likes. ``HttpConnections`` records
   each connection's stream (through a ``TrackedConfig``); ``abort_all`` closes their
   sockets, which wakes the blocked write with ``ClosedResourceError`` (a close, not a
   cancellation, so the shield does not stop it).

On another Hypercorn version nothing is patched and a warning is logged: shutdown is
then bounded only by the clients, and parse errors keep empty bodies.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from itertools import chain
from typing import Any, Final

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger(__name__)

WRITTEN_FOR: Final = "0.18.0"
#: Set on each replaced function (tests check the patch is in place).
PATCH_MARKER: Final = "__streamer_patch__"

_applied: bool | None = None


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
    code = phrase.lower().replace(" ", "_")
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


def apply() -> bool:
    """Patch the installed Hypercorn once; True if the patches are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    installed = importlib.metadata.version("hypercorn")
    if installed != WRITTEN_FOR:
        log.warning(
            "hypercorn %s is installed; our fixes were written for %s and are not applied "
            "(shutdown is then bounded only by clients; parse errors get empty bodies)",
            installed,
            WRITTEN_FOR,
        )
        _applied = False
        return False
    setattr(_send_error_response, PATCH_MARKER, "json_error_body")
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
    TCPServer.run = _tracking(TCPServer.run)  # type: ignore[method-assign,assignment]
    _applied = True
    return True
