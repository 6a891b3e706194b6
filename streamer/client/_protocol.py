"""The client side of the WebSocket protocol, sans-IO: messages out, routed items in.

The server sends every request's events tagged with its ``request_id`` but audio frames
untagged: frames belong to the request whose ``audio_start`` came last, until its
``audio_end``, ``interrupted`` or ``error`` (one request plays at a time per session,
and nothing of an interrupted request follows the ``interrupted`` reply). So one
reader can route everything by request id into per-request inboxes; the client always
sends a ``request_id`` (it makes one up when the caller gives none) so that even the
``queued``/``error`` reply to a ``synthesize`` finds its inbox.

Nothing here does I/O or imports an event loop: the Trio client and the asyncio client
are thin shells around it, and the routing rules are testable without sockets.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._events import (
    AudioEnd,
    AudioStart,
    Connected,
    ErrorEvent,
    Event,
    Interrupted,
    StreamItem,
    TTSClientError,
    parse_event,
)

#: The server's rule for request ids (they are echoed in every event).
REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: The server's bound on interrupt reasons.
MAX_REASON_CHARS: Final = 128
#: The priorities the server knows.
PRIORITIES: Final = ("normal", "high", "critical")
#: Unread audio one request may hold before the reader waits for its consumer: about
#: 24 s of 22 kHz PCM16, far more than real-time playback ever buffers (the server
#: stays ~2 s ahead), yet a consumer that stalls on a download cannot exhaust memory.
#: Events are not counted: each request gets at most four.
MAX_BUFFERED_AUDIO_BYTES: Final = 1 << 20


class Waitable:
    """Something a task waits on. The loop-specific shell subscribes a wake-up callback
    (``trio.Event.set``, an asyncio future's ``set_result``) and re-checks on wake-up;
    every change notifies and forgets all subscribers."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class Inbox(Waitable):
    """Items routed to one request, in arrival order, until its terminal event.

    Both sides wait on it: the consumer for an item, the reader for room (audio beyond
    :data:`MAX_BUFFERED_AUDIO_BYTES`). After :meth:`discard_audio` (an interrupt, or a
    consumer that stopped reading) audio is dropped on arrival, so the reader never
    waits on a request nobody listens to.
    """

    def __init__(self, request_id: str) -> None:
        super().__init__()
        self.request_id = request_id
        self._items: deque[StreamItem] = deque()
        self._audio_bytes = 0
        self.terminated = False
        self.discarding = False
        self.error: TTSClientError | None = None

    @property
    def has_room(self) -> bool:
        return self.discarding or self._audio_bytes < MAX_BUFFERED_AUDIO_BYTES

    def put(self, item: StreamItem, *, terminal: bool = False) -> None:
        if self.terminated:
            return
        if isinstance(item, bytes):
            if self.discarding:
                return
            self._audio_bytes += len(item)
        self._items.append(item)
        self.terminated = terminal
        self.notify()

    def fail(self, error: TTSClientError) -> None:
        """The connection is gone: the stream ends with ``error`` after what is queued."""
        if not self.terminated:
            self.error = error
            self.terminated = True
            self.notify()

    def discard_audio(self) -> None:
        """Drop buffered audio now and any that still arrives; events are kept."""
        self.discarding = True
        self._items = deque(item for item in self._items if not isinstance(item, bytes))
        self._audio_bytes = 0
        self.notify()

    def take(self) -> StreamItem | Literal["wait", "end"]:
        """The next item; ``"wait"`` when none is there yet; ``"end"`` after the last
        (raise :attr:`error` then, if set)."""
        if self._items:
            item = self._items.popleft()
            if isinstance(item, bytes):
                self._audio_bytes -= len(item)
                self.notify()  # the reader may be waiting for room
            return item
        return "end" if self.terminated else "wait"


class Reply(Waitable):
    """A connection-level answer awaited by ``connect`` or ``interrupt``."""

    def __init__(self, kind: Literal["connect", "interrupt"], reason: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.reason = reason
        self.event: Event | None = None
        self.error: TTSClientError | None = None

    @property
    def done(self) -> bool:
        return self.event is not None or self.error is not None

    def matches(self, event: Event) -> bool:
        if self.kind == "connect":
            return isinstance(event, Connected) or (
                isinstance(event, ErrorEvent) and event.request_id is None
            )
        return isinstance(event, Interrupted) and event.reason == self.reason

    def resolve(self, event: Event) -> None:
        self.event = event
        self.notify()

    def fail(self, error: TTSClientError) -> None:
        if not self.done:
            self.error = error
            self.notify()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one received item goes: a request's inbox, or (``request_id`` None) the
    connection's replies. ``terminal`` marks the last item of that request."""

    request_id: str | None
    item: StreamItem
    terminal: bool = False


def _compact(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def check_request_id(request_id: str) -> None:
    """Raise ``ValueError`` for an id the server would refuse (refused ids come back
    untagged, so they could not be routed)."""
    if not REQUEST_ID_RE.match(request_id):
        raise ValueError(
            f"request_id {request_id!r} must be 1-128 characters of letters, digits and . _ : -"
        )


class ClientProtocol:
    """Builds client messages and routes server messages (see the module docstring)."""

    def __init__(self) -> None:
        # A random prefix keeps generated ids unique across reconnects to one session.
        self._prefix = "c" + secrets.token_hex(3)
        self._ids = itertools.count(1)
        #: The request whose audio frames are arriving now.
        self.playing: str | None = None

    def new_request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    @staticmethod
    def connect_message(config: Mapping[str, Any], session_id: str | None) -> str:
        message: dict[str, Any] = {"type": "connect", "config": dict(config)}
        if session_id is not None:
            message["session_id"] = session_id
        return _compact(message)

    @staticmethod
    def synthesize_message(
        text: str, priority: str, request_id: str, config: Mapping[str, Any]
    ) -> str:
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        check_request_id(request_id)
        message: dict[str, Any] = {
            "type": "synthesize",
            "text": text,
            "priority": priority,
            "request_id": request_id,
        }
        if config:
            message["config"] = dict(config)
        return _compact(message)

    @staticmethod
    def interrupt_message(reason: str) -> str:
        if not 0 < len(reason) <= MAX_REASON_CHARS:
            raise ValueError(f"reason must be 1-{MAX_REASON_CHARS} characters")
        return _compact({"type": "interrupt", "reason": reason})

    def receive(self, data: str | bytes) -> list[Delivery]:
        """Route one WebSocket message; returns where each resulting item goes."""
        if isinstance(data, bytes):
            # Untagged audio: the playing request's (None when no request plays: a
            # frame of a request this client already gave up, dropped by the caller).
            return [Delivery(self.playing, data)] if self.playing is not None else []
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            return []
        if not isinstance(obj, dict):
            return []
        event = parse_event(obj)
        if isinstance(event, AudioStart):
            self.playing = event.request_id
            return [Delivery(event.request_id, event)]
        if isinstance(event, AudioEnd):
            self._stopped(event.request_id)
            return [Delivery(event.request_id, event, terminal=True)]
        if isinstance(event, Interrupted):
            # To the interrupted request, to each dropped one, and to the connection
            # (the ``interrupt()`` call waiting for its acknowledgement).
            out = [Delivery(None, event)]
            for request_id in (event.request_id, *event.dropped):
                if request_id is not None:
                    self._stopped(request_id)
                    out.append(Delivery(request_id, event, terminal=True))
            return out
        if isinstance(event, ErrorEvent):
            if event.request_id is None:
                return [Delivery(None, event)]
            self._stopped(event.request_id)
            return [Delivery(event.request_id, event, terminal=True)]
        request_id = getattr(event, "request_id", None)
        return [Delivery(request_id if isinstance(request_id, str) else None, event)]

    def _stopped(self, request_id: str) -> None:
        if self.playing == request_id:
            self.playing = None
