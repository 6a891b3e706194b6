"""The client side of the WebSocket protocol, sans-IO: messages out, routed items in.

The server sends every request's events tagged with its ``request_id`` but audio frames
untagged: frames belong to the request whose ``audio_start`` came last, until its
``audio_end``, ``interrupted`` or ``error`` (one request plays at a time per session,
and nothing of an interrupted request follows the ``interrupted`` reply). So one
reader can route everything by request id into per-request inboxes; the client always
sends a ``request_id`` (it makes one up when the caller gives none) so that even the
``queued``/``error`` reply to a ``synthesize`` finds its inbox.

A streamed-text *context* is routed the same way (its id is a request id). One rule
differs: an ``error`` about a context that is open (its ``queued`` has come) concerns
one message (``context_closed`` after ``close``, ``context_idle``…) and does not end it;
only ``synthesis_failed`` does. An error before ``queued`` means it never opened.

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
    Queued,
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
#: Events are not counted: each request gets at most four (a context a few per
#: sentence: its timestamps and flushes).
MAX_BUFFERED_AUDIO_BYTES: Final = 1 << 20
#: The errors that end an open context (every other error concerns one message): its
#: synthesis failed, or admission found no room for it by the time its first text was
#: ready (``busy`` after ``queued``; the server takes no more text for it).
CONTEXT_ENDING_CODES: Final = frozenset({"synthesis_failed", "busy"})
#: The reason of the ``interrupted`` that answers a ``cancel``.
CANCEL_REASON: Final = "cancel"
#: The errors that answer a ``cancel`` of a context that had already ended.
CANCEL_TOO_LATE: Final = frozenset({"context_closed", "unknown_context"})


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
        #: The item put as the request's last (its ``audio_end``, ``interrupted``…).
        self.terminal_item: StreamItem | None = None
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
        if terminal:
            self.terminal_item = item
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
    """A connection-level answer awaited by ``connect``, ``interrupt`` or ``cancel``
    (``reason`` is the interrupt's reason; for ``cancel`` the context's id)."""

    def __init__(
        self, kind: Literal["connect", "interrupt", "cancel"], reason: str | None = None
    ) -> None:
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
        if self.kind == "cancel":
            if isinstance(event, ErrorEvent):  # it ended before the cancel arrived
                return event.request_id == self.reason and event.code in CANCEL_TOO_LATE
            return (
                isinstance(event, Interrupted)
                and event.reason == CANCEL_REASON
                and event.request_id == self.reason
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
        #: Ids this client streams text to (``context``), and those the server opened.
        self._contexts: set[str] = set()
        self._open_contexts: set[str] = set()

    def context(self, context_id: str) -> None:
        """``context_id`` is a streamed-text context of this client (see the module
        docstring for how its errors are routed)."""
        check_request_id(context_id)
        self._contexts.add(context_id)

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
    def interrupt_message(reason: str, played_ms: int | None = None) -> str:
        if not 0 < len(reason) <= MAX_REASON_CHARS:
            raise ValueError(f"reason must be 1-{MAX_REASON_CHARS} characters")
        message: dict[str, Any] = {"type": "interrupt", "reason": reason}
        if played_ms is not None:
            message["played_ms"] = _played_ms(played_ms)
        return _compact(message)

    @staticmethod
    def text_message(
        context_id: str,
        text: str,
        *,
        flush: bool = False,
        priority: str | None = None,
        config: Mapping[str, Any] | None = None,
        buffer: Mapping[str, Any] | None = None,
    ) -> str:
        """A ``text`` for a context; ``priority``, ``config`` and ``buffer`` count on
        the one that opens it."""
        check_request_id(context_id)
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        message: dict[str, Any] = {"type": "text", "context_id": context_id, "text": text}
        if flush:
            message["flush"] = True
        if priority is not None:
            message["priority"] = priority
        if config:
            message["config"] = dict(config)
        if buffer:
            message["buffer"] = dict(buffer)
        return _compact(message)

    @staticmethod
    def flush_message(context_id: str, flush_id: str | None = None) -> str:
        message: dict[str, Any] = {"type": "flush", "context_id": context_id}
        if flush_id is not None:
            check_request_id(flush_id)
            message["flush_id"] = flush_id
        return _compact(message)

    @staticmethod
    def close_message(context_id: str) -> str:
        return _compact({"type": "close", "context_id": context_id})

    @staticmethod
    def cancel_message(context_id: str, played_ms: int | None = None) -> str:
        message: dict[str, Any] = {"type": "cancel", "context_id": context_id}
        if played_ms is not None:
            message["played_ms"] = _played_ms(played_ms)
        return _compact(message)

    @staticmethod
    def keepalive_message(context_id: str | None = None) -> str:
        message: dict[str, Any] = {"type": "keepalive"}
        if context_id is not None:
            message["context_id"] = context_id
        return _compact(message)

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
            if (
                event.request_id in self._open_contexts
                and event.code not in CONTEXT_ENDING_CODES
            ):
                return [Delivery(event.request_id, event)]
            self._stopped(event.request_id)
            return [Delivery(event.request_id, event, terminal=True)]
        if isinstance(event, Queued) and event.request_id in self._contexts:
            self._open_contexts.add(event.request_id)
        request_id = getattr(event, "request_id", None)
        return [Delivery(request_id if isinstance(request_id, str) else None, event)]

    def _stopped(self, request_id: str) -> None:
        if self.playing == request_id:
            self.playing = None
        self._contexts.discard(request_id)
        self._open_contexts.discard(request_id)


def _played_ms(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"played_ms must be a non-negative integer, got {value!r}")
    return value
