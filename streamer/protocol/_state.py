"""State machines of a connection and of a synthesis request.

All legal transitions live in one table each; anything else is a bug on our side
(``LocalProtocolError``) or a client message out of order (``ClientError``).
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

from ._errors import ClientError, ErrorCode
from ._json import check_message_size
from ._messages import (
    Cancel,
    ClientMessage,
    Close,
    Connect,
    Flush,
    Interrupt,
    Keepalive,
    Synthesize,
    Text,
    parse_client_message,
)


class LocalProtocolError(Exception):
    """We tried a transition the table forbids: a server bug, never the client's fault."""


class ConnectionState(Enum):
    #: Socket open; no ``connect`` yet. A ``synthesize`` here connects with defaults.
    AWAITING_CONNECT = auto()
    #: Session established; requests flow.
    READY = auto()
    #: Closed by either side; nothing more is read or written.
    CLOSED = auto()


class RequestState(Enum):
    #: Accepted and waiting in the session's priority queue.
    QUEUED = auto()
    #: Being synthesized and streamed (one per session at a time).
    PLAYING = auto()
    #: Every byte sent and ``audio_end`` queued.
    FINISHED = auto()
    #: Stopped while playing (interrupt or pre-emption); ``interrupted`` sent.
    INTERRUPTED = auto()
    #: Removed from the queue by an interrupt before it played.
    DROPPED = auto()
    #: The engine failed; ``error`` sent.
    FAILED = auto()
    #: Waited for room to start and found none within ``max_start_delay_ms``;
    #: ``error`` ``busy`` sent.
    REFUSED = auto()


REQUEST_TRANSITIONS: Final[dict[RequestState, frozenset[RequestState]]] = {
    RequestState.QUEUED: frozenset({RequestState.PLAYING, RequestState.DROPPED}),
    # A pre-empted request goes back to nothing: it is INTERRUPTED, not re-queued, so
    # that a barge-in never replays half a sentence.
    RequestState.PLAYING: frozenset(
        {
            RequestState.FINISHED,
            RequestState.INTERRUPTED,
            RequestState.FAILED,
            RequestState.REFUSED,
        }
    ),
    RequestState.FINISHED: frozenset(),
    RequestState.INTERRUPTED: frozenset(),
    RequestState.DROPPED: frozenset(),
    RequestState.FAILED: frozenset(),
    RequestState.REFUSED: frozenset(),
}


def check_request_transition(old: RequestState, new: RequestState) -> RequestState:
    """Return ``new`` if the table allows ``old → new``; raise ``LocalProtocolError``."""
    if new not in REQUEST_TRANSITIONS[old]:
        raise LocalProtocolError(f"request cannot go from {old.name} to {new.name}")
    return new


class ContextState(Enum):
    """The input side of a context (its audio side is its ``RequestState``)."""

    #: Takes ``text``, ``flush`` and ``close``.
    OPEN = auto()
    #: Input ended (``close``, or ``context_idle``): what was buffered is spoken, then
    #: ``audio_end``; more text is ``context_closed``.
    CLOSED = auto()
    #: Over: finished, cancelled, interrupted, dropped or failed.
    ENDED = auto()


CONTEXT_TRANSITIONS: Final[dict[ContextState, frozenset[ContextState]]] = {
    ContextState.OPEN: frozenset({ContextState.CLOSED, ContextState.ENDED}),
    ContextState.CLOSED: frozenset({ContextState.ENDED}),
    ContextState.ENDED: frozenset(),
}


def check_context_transition(old: ContextState, new: ContextState) -> ContextState:
    """Return ``new`` if the table allows ``old → new``; raise ``LocalProtocolError``."""
    if new not in CONTEXT_TRANSITIONS[old]:
        raise LocalProtocolError(f"context cannot go from {old.name} to {new.name}")
    return new


# (state, message type) → next state. A missing pair is a client error.
_CONNECTION_TRANSITIONS: Final[dict[tuple[ConnectionState, type], ConnectionState]] = {
    (ConnectionState.AWAITING_CONNECT, Connect): ConnectionState.READY,
    (ConnectionState.AWAITING_CONNECT, Synthesize): ConnectionState.READY,
    (ConnectionState.AWAITING_CONNECT, Interrupt): ConnectionState.AWAITING_CONNECT,
    (ConnectionState.READY, Synthesize): ConnectionState.READY,
    (ConnectionState.READY, Interrupt): ConnectionState.READY,
    # A context's first ``text`` opens a session with defaults, like ``synthesize``.
    (ConnectionState.AWAITING_CONNECT, Text): ConnectionState.READY,
    # The rest name a context, and there is none yet: the session layer answers
    # ``unknown_context`` (``keepalive`` only resets the idle timer).
    (ConnectionState.AWAITING_CONNECT, Flush): ConnectionState.AWAITING_CONNECT,
    (ConnectionState.AWAITING_CONNECT, Close): ConnectionState.AWAITING_CONNECT,
    (ConnectionState.AWAITING_CONNECT, Cancel): ConnectionState.AWAITING_CONNECT,
    (ConnectionState.AWAITING_CONNECT, Keepalive): ConnectionState.AWAITING_CONNECT,
    (ConnectionState.READY, Text): ConnectionState.READY,
    (ConnectionState.READY, Flush): ConnectionState.READY,
    (ConnectionState.READY, Close): ConnectionState.READY,
    (ConnectionState.READY, Cancel): ConnectionState.READY,
    (ConnectionState.READY, Keepalive): ConnectionState.READY,
}


class ServerProtocol:
    """The server side of one WebSocket connection, without I/O.

    Feed it each text/binary message with ``receive``; it returns the typed message
    and advances the connection state, or raises ``ClientError`` (state unchanged).
    """

    def __init__(self, *, max_text_length: int, max_message_bytes: int | None = None) -> None:
        """``max_message_bytes``: ``server.max_message_bytes``; ``None`` checks no size
        (the transport then enforces it)."""
        self.state = ConnectionState.AWAITING_CONNECT
        self._max_text_length = max_text_length
        self._max_message_bytes = max_message_bytes

    def receive(self, data: str | bytes) -> ClientMessage:
        """The typed message in ``data``, whatever ``data`` holds, or ``ClientError``
        with a code of ``ErrorCode`` (no other exception is the client's fault).

        A ``ClientError`` with ``close_code`` set (``message_too_big``: 1009) asks for
        the connection to be closed with that code and ``code`` as the reason instead
        of an ``error`` event.
        """
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("receive() after close")
        if self._max_message_bytes is not None:
            check_message_size(data, self._max_message_bytes)
        message = parse_client_message(data, max_text_length=self._max_text_length)
        next_state = _CONNECTION_TRANSITIONS.get((self.state, type(message)))
        if next_state is None:
            # The only missing pair for an open connection is a second ``connect``.
            raise ClientError(
                ErrorCode.ALREADY_CONNECTED,
                "this connection already has a session; open a new connection for another",
            )
        self.state = next_state
        return message

    def session_refused(self) -> None:
        """The server could not open a session for the first message (bad voice, say):
        go back to awaiting ``connect`` so the client can retry on this connection."""
        if self.state is ConnectionState.READY:
            self.state = ConnectionState.AWAITING_CONNECT

    def close(self) -> None:
        """Idempotent."""
        self.state = ConnectionState.CLOSED
