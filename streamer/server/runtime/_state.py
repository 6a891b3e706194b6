"""What the process knows about itself, for the surfaces that report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _none() -> int:
    return 0


@dataclass(slots=True)
class ServerState:
    """Readiness, the WebSocket port and the connection count, kept by the composition
    root and read at request time by the HTTP surfaces (health, status, metrics)."""

    #: True once models are loaded: ``/health`` answers 200 and speech is served.
    ready: bool = False
    #: The bound WebSocket port (known after binding; port 0 in tests).
    websocket_port: int | None = None
    #: Open WebSocket connections (handshakes in progress included).
    connection_count: Callable[[], int] = field(default=_none)

    @property
    def connections(self) -> int:
        return self.connection_count()
