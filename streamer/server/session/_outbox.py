"""The queue between a session and the one task that writes its socket.

A plain memory channel cannot take back what was put in it, but an interrupt must
guarantee that no byte of the interrupted request follows the ``interrupted`` reply.
So the outbox tags every frame with its request id and can drop a request's frames
(and refuse its later ones) in one synchronous step.

A client that sends messages faster than it reads the replies fills the outbox with
events. At ``MAX_QUEUED_EVENTS`` the outbox closes itself with 1008
``too_many_messages``: every producer (reader, session tasks, REST) then sees
``OutboxClosed``, which always means the connection is ending, never "full for now".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from ...protocol import CloseCode, ErrorCode

#: Audio bytes a session may have queued for its writer before synthesis waits. About
#: 10 s of 22 kHz PCM16: ample for real-time playback, bounded for a client that stalls.
MAX_QUEUED_AUDIO_BYTES: Final = 512 * 1024
#: Text events bypass the byte budget (they are tiny and must never block a reply), but
#: a client that stops reading cannot make us queue them without end.
MAX_QUEUED_EVENTS: Final = 1024


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """Queued last: the writer closes the socket with this code after what precedes it."""

    code: int
    reason: str


Payload = str | bytes | CloseRequest


class OutboxClosed(Exception):
    """The connection is gone; nothing more will be written."""


def _ignore_overflow() -> None:
    pass


class Outbox:
    """Frames waiting for the writer, in order, each tagged with a request id or None."""

    def __init__(self, on_overflow: Callable[[], None] = _ignore_overflow) -> None:
        """``on_overflow`` is called once, synchronously, when the event limit closes
        the outbox (to log and count the client's fault)."""
        self._on_overflow = on_overflow
        self._items: deque[tuple[str | None, Payload]] = deque()
        self._dead: set[str] = set()
        self._audio_bytes = 0
        #: Audio bytes queued per request id (what an interrupt finds still unsent).
        self._audio_by_request: dict[str, int] = {}
        self._events = 0
        self._closed = False
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()
        #: Frames the writer has taken and not yet reported sent (``sent``).
        self._in_flight = 0
        self._flushed = trio.lowlevel.ParkingLot()

    @property
    def queued_bytes(self) -> int:
        return self._audio_bytes

    @property
    def closed(self) -> bool:
        """True once nothing more may be queued (the writer may still be draining)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put_event(self, text: str, request_id: str | None = None) -> None:
        """Queue a text event now (never blocks). Dropped if ``request_id`` is dead.

        Raises ``OutboxClosed`` once closed; the event that would pass
        ``MAX_QUEUED_EVENTS`` is not queued and closes the outbox with 1008 instead.
        """
        if self._closed:
            raise OutboxClosed
        if request_id is not None and request_id in self._dead:
            return
        if self._events >= MAX_QUEUED_EVENTS:
            # The replies already queued stay, so a client that reads late learns what
            # happened to each message before the close frame tells it why it ends.
            self.close_with(
                CloseCode.POLICY_VIOLATION, ErrorCode.TOO_MANY_MESSAGES, drop_audio=True
            )
            self._on_overflow()
            raise OutboxClosed("client is not reading its events")
        self._events += 1
        self._items.append((request_id, text))
        self._readable.unpark()

    async def put_audio(self, frame: bytes, request_id: str) -> bool:
        """Queue an audio frame, waiting while the byte budget is spent.

        Returns False (and queues nothing) once ``request_id`` has been dropped.
        Cancellable while waiting; nothing is half-queued.
        """
        while not self._closed and self._audio_bytes >= MAX_QUEUED_AUDIO_BYTES:
            if request_id in self._dead:
                return False
            await self._writable.park()
        if self._closed:
            raise OutboxClosed
        if request_id in self._dead:
            return False
        self._audio_bytes += len(frame)
        self._audio_by_request[request_id] = self._audio_by_request.get(request_id, 0) + len(frame)
        self._items.append((request_id, frame))
        self._readable.unpark()
        return True

    def queued_audio(self, request_id: str) -> int:
        """Audio bytes of ``request_id`` queued and not yet taken by the writer."""
        return self._audio_by_request.get(request_id, 0)

    def drop(self, request_id: str) -> int:
        """Remove every queued frame of ``request_id`` and refuse its future ones.

        Synchronous: a reply queued right after it is guaranteed to be the last thing
        the client hears about that request. Returns the number of frames dropped.
        """
        self._dead.add(request_id)
        kept: deque[tuple[str | None, Payload]] = deque()
        dropped = 0
        for item in self._items:
            if item[0] == request_id:
                dropped += 1
                self._account_removed(item)
            else:
                kept.append(item)
        self._items = kept
        self._writable.unpark_all()
        return dropped

    def forget(self, request_id: str) -> None:
        """The request is over; stop remembering it as dead (bounded memory)."""
        self._dead.discard(request_id)

    def _account_removed(self, item: tuple[str | None, Payload]) -> None:
        request_id, payload = item
        if isinstance(payload, bytes):
            self._audio_bytes -= len(payload)
            if request_id is not None:
                left = self._audio_by_request.get(request_id, 0) - len(payload)
                if left > 0:
                    self._audio_by_request[request_id] = left
                else:
                    self._audio_by_request.pop(request_id, None)
        elif isinstance(payload, str):
            self._events -= 1

    async def get(self) -> Payload:
        """The next frame for the socket. Raises ``OutboxClosed`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise OutboxClosed
            await self._readable.park()
        item = self._items.popleft()
        payload = item[1]
        self._account_removed(item)
        self._in_flight += 1
        self._writable.unpark_all()
        return payload

    def sent(self) -> None:
        """The writer has written the frame it last took from ``get``."""
        self._in_flight = max(0, self._in_flight - 1)
        if not self._items and not self._in_flight:
            self._flushed.unpark_all()

    async def wait_flushed(self) -> None:
        """Until everything queued so far is written (or the outbox closes)."""
        while (self._items or self._in_flight) and not self._closed:
            await self._flushed.park()

    def close_with(self, code: int, reason: str, *, drop_audio: bool) -> None:
        """Ask the writer to close the socket after the queued frames (or, with
        ``drop_audio``, after the queued text events only). Nothing is queued after."""
        if self._closed:
            return
        if drop_audio:
            self._items = deque(i for i in self._items if not isinstance(i[1], bytes))
            self._audio_bytes = 0
            self._audio_by_request.clear()
        self._items.append((None, CloseRequest(code, reason)))
        self._closed = True
        self._readable.unpark_all()
        self._writable.unpark_all()
        self._flushed.unpark_all()

    def close(self) -> None:
        """Idempotent. The writer drains what is queued, then sees ``OutboxClosed``."""
        self._closed = True
        self._readable.unpark_all()
        self._writable.unpark_all()
        self._flushed.unpark_all()
