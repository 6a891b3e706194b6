"""The WebSocket transport: one nursery per connection (reader, writer, the session's
scheduler and synthesis tasks), the connection cap and the close handshakes."""

from ._connection import CLOSE_TIMEOUT_S, serve_connection
from ._connections import Connections
from ._trio_websocket import apply as apply_trio_websocket_fixes

__all__ = [
    "CLOSE_TIMEOUT_S",
    "Connections",
    "apply_trio_websocket_fixes",
    "serve_connection",
]
