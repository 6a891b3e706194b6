"""Our change to trio-websocket 0.12 (under the WebSocket transport), applied once by
``apply()`` when the server starts, guarded by the version it was written for.

**Close frames for protocol errors.** When a client's frame cannot be parsed (invalid
UTF-8 in a text frame, RSV bits, an unmasked frame, a reserved opcode, an oversized or
fragmented control frame, an invalid close code), wsproto reports it as a
``CloseConnection`` event carrying the code RFC 6455 prescribes (1007 for bad UTF-8,
1002 for the rest). trio-websocket treats that event like a close frame from the peer
but, as the peer sent none, it answers none: it drops the TCP connection and the client
sees 1006 with no reason. The RFC's "Fail the WebSocket Connection" sends the close
frame first; so do we now. A real close frame from the peer arrives in the
``REMOTE_CLOSING`` state (answered as before); only a parse failure leaves the
connection ``OPEN`` when the event arrives.

On another trio-websocket version nothing is patched and a warning is logged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

from ..runtime import apply_once

WRITTEN_FOR: Final = "0.12.2"
#: Set on the replaced method (tests check the patch is in place).
PATCH_MARKER: Final = "__streamer_patch__"

_Handler = Callable[[WebSocketConnection, CloseConnection], Coroutine[Any, Any, None]]


def _answering_parse_failures(handle: _Handler) -> _Handler:
    async def handle_close(self: WebSocketConnection, event: CloseConnection) -> None:
        if self._wsproto.state == ConnectionState.OPEN:  # our parser failed their frame
            try:
                await self._send(CloseConnection(code=event.code, reason=event.reason))
            except ConnectionClosed:
                pass  # they are gone already; closing the stream below is all that is left
        await handle(self, event)

    setattr(handle_close, PATCH_MARKER, "close_frame_on_parse_failure")
    return handle_close


def _patch() -> None:
    original = WebSocketConnection._handle_close_connection_event
    patched = _answering_parse_failures(original)
    WebSocketConnection._handle_close_connection_event = patched  # type: ignore[method-assign,assignment]


def apply() -> bool:
    """Patch the installed trio-websocket once; True if the patch is in effect."""
    return apply_once(
        "trio-websocket-close-frames",
        "trio-websocket",
        WRITTEN_FOR,
        _patch,
        unpatched="clients then see 1006 instead of 1002/1007 on protocol errors",
    )
