"""What the process knows about itself, for the surfaces that report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ...protocol import ClientError, ErrorCode

#: Retry hint of a draining replica's refusal: a load balancer has another by then.
DRAINING_RETRY_MS: Final = 1000


def draining_refusal() -> ClientError:
    """A draining replica's refusal of a new session (503: retry, elsewhere)."""
    return ClientError(
        ErrorCode.DRAINING,
        "this replica is shutting down and takes no new sessions; retry",
        details={"retry_after_ms": DRAINING_RETRY_MS},
    )


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
    #: Draining (SIGTERM with ``server.drain_timeout_s``): no new sessions, ``/health``
    #: answers 503 so that a load balancer sends them elsewhere.
    draining: bool = False

    @property
    def connections(self) -> int:
        return self.connection_count()
