"""The open WebSocket connections of the server, for the cap and for shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ..session import Outbox


@dataclass(slots=True)
class Connections:
    """The outbox of every open connection (with or without a session), so shutdown can
    close each with 1001 through its own writer, and the cap can count them."""

    _outboxes: set[Outbox] = field(default_factory=set)
    #: Woken whenever a connection ends (graceful shutdown waits on it).
    _ended: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    @property
    def count(self) -> int:
        return len(self._outboxes)

    def add(self, outbox: Outbox) -> None:
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
        """Until every connection has ended."""
        while self._outboxes:
            await self._ended.park()
