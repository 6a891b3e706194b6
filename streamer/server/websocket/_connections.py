"""The open WebSocket connections of the server, for the cap and for shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ..session import Outbox


@dataclass(slots=True)
class Connections:
    """The outbox of every open connection (with or without a session), so shutdown can
    close each with 1001 through its own writer, and the cap can count them."""

    #: ``server.max_connections``: open connections plus handshakes in progress.
    limit: int
    _outboxes: set[Outbox] = field(default_factory=set)
    #: Slots taken by handshakes not yet accepted. Counted against ``limit``: otherwise
    #: a burst of simultaneous handshakes all pass the check before any is accepted.
    _reserved: int = 0
    #: Woken whenever a connection ends (graceful shutdown waits on it).
    _ended: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    #: Set when the server drains: new handshakes are refused (503 ``draining``) and
    #: each connection closes (1001) once its session has nothing left to say.
    draining: trio.Event = field(default_factory=trio.Event)

    @property
    def count(self) -> int:
        """Open connections, handshakes in progress included."""
        return len(self._outboxes) + self._reserved

    def reserve(self) -> bool:
        """Take a slot for a handshake about to be accepted (synchronously, so no other
        handshake can take it meanwhile); False when the server is full."""
        if self.count >= self.limit:
            return False
        self._reserved += 1
        return True

    def unreserve(self) -> None:
        """The reserved handshake failed before it became a connection."""
        self._reserved -= 1
        self._ended.unpark_all()

    def add(self, outbox: Outbox) -> None:
        """The reserved handshake is now a connection whose writer drains ``outbox``."""
        self._reserved -= 1
        self._outboxes.add(outbox)

    def discard(self, outbox: Outbox) -> None:
        self._outboxes.discard(outbox)
        self._ended.unpark_all()

    def close_all(self, code: int, reason: str) -> None:
        """Ask every connection's writer to close with ``code`` after its queued events
        (queued audio is dropped)."""
        for outbox in list(self._outboxes):
            outbox.close_with(code, reason, drop_audio=True)

    async def wait_closed(self) -> None:
        """Until every connection (and handshake) has ended."""
        while self.count:
            await self._ended.park()
