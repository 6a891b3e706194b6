"""What a client receives, as typed values, and the errors it raises.

The client keeps its own event types instead of importing the server's
(``streamer.protocol``): it must read events from a newer server without failing, so
unknown fields are ignored, unknown event types become :class:`UnknownEvent`, and error
codes stay plain strings (a new code is not a parse error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


class AudioOptions(TypedDict, total=False):
    """The ``config`` of ``connect`` and ``synthesize`` (protocol_docs/websocket.md).

    Every key is optional; a request's options override the session's. The server
    validates them and answers bad ones with an error event (``unknown_format``…).
    """

    language: str
    voice_id: int | str
    speaker: str
    format: str
    sample_rate: int
    chunk_size: int
    bitrate: int
    speed: float
    volume: float
    trim_silence: bool
    #: Pace synthesis to real-time playback (server default); ``False`` for downloads.
    realtime: bool
    #: ``timestamps`` events: ``none`` (default), ``word`` or ``char``.
    timestamps: str


class BufferOptions(TypedDict, total=False):
    """How the server cuts a context's streamed text (``buffer`` of its first ``text``)."""

    mode: str  # "auto" (default) or "none"
    max_delay_ms: int
    first_min_chars: int
    max_chars: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The session is ready; ``config`` is its effective configuration."""

    session_id: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Queued:
    """The request was accepted; ``position`` requests play before it.
    ``admission_wait_ms``: set when it waits for room to start, at most this long
    (then it plays, or an ``error`` ``busy`` for it follows)."""

    request_id: str
    position: int
    context_id: str | None = None
    admission_wait_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AudioStart:
    """The request starts playing; binary frames of this format follow."""

    request_id: str
    format: str
    sample_rate: int
    channels: int
    priority: str
    voice: str
    bitrate: int | None = None
    mime_type: str | None = None
    note: str | None = None
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class AudioEnd:
    """Every frame of the request has been received (the request is done)."""

    request_id: str
    chunks: int
    bytes: int
    duration_ms: int
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The request stopped before its end: ``reason`` says why (``preempted``, the
    reason given to ``interrupt``, ``cancel``…). Nothing more of it will arrive.

    For a context, or a request with word timings: ``heard_text`` is its text up to
    the last word the listener heard (at least half played), ``heard_char_end`` where
    that ends, ``played_ms`` of ``audio_sent_ms`` were played by ``basis`` (``client``:
    as this client said; ``clock``: the server's pacing; ``sent``: an upper bound).
    Keep ``heard_text`` as what the assistant said in the chat history."""

    request_id: str | None
    reason: str
    dropped: tuple[str, ...] = ()
    audio_sent_ms: int | None = None
    played_ms: int | None = None
    heard_text: str | None = None
    heard_char_end: int | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class Word:
    """A word and when it is spoken: ms from the request's (context's) first sample;
    ``char_start``/``char_end`` index the text as sent (code points)."""

    word: str
    start_ms: int
    end_ms: int
    char_start: int
    char_end: int


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Words of the request about to be heard (sent before the audio they time)."""

    request_id: str
    words: tuple[Word, ...]
    estimated: bool = False
    chars: tuple[str, ...] = ()
    char_start_ms: tuple[int, ...] = ()
    char_dur_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Flushed:
    """The audio of the text a ``flush`` covered has all been sent."""

    request_id: str
    flush_id: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An ``error`` event. Requests end with :class:`TTSServerError` carrying it."""

    code: str
    message: str
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type this client does not know (a newer server); passed on as is."""

    type: str
    data: dict[str, Any]


Event = (
    Connected
    | Queued
    | AudioStart
    | AudioEnd
    | Interrupted
    | ErrorEvent
    | Timestamps
    | Flushed
    | UnknownEvent
)
#: One item of a request's stream: a binary audio frame or an event.
StreamItem = bytes | Event


class TTSClientError(Exception):
    """Base of every error the client raises; ``code`` is stable, ``message`` for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TTSConnectionError(TTSClientError):
    """The connection could not be opened or was lost.

    Codes: ``connection_refused`` (nothing listens there), ``handshake_rejected``
    (HTTP ``status`` instead of a WebSocket, e.g. 503 at ``max_connections``),
    ``connection_closed`` (``close_code`` 1001 when the server shuts down),
    ``invalid_url``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        close_code: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(code, message)
        self.close_code = close_code
        self.status = status


class TTSTimeoutError(TTSClientError):
    """The server did not answer within the client's bound (code ``timeout``)."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


class TTSServerError(TTSClientError):
    """The server answered with an ``error`` event: ``code`` is the server's code
    (``unknown_voice``, ``busy``…), ``details`` what it added (``available``…)."""

    def __init__(self, event: ErrorEvent) -> None:
        super().__init__(event.code, event.message)
        self.event = event
        self.request_id = event.request_id
        self.details = event.details


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _word(obj: dict[str, Any]) -> Word:
    return Word(
        word=str(obj.get("word", "")),
        start_ms=_int_or_none(obj.get("start_ms")) or 0,
        end_ms=_int_or_none(obj.get("end_ms")) or 0,
        char_start=_int_or_none(obj.get("char_start")) or 0,
        char_end=_int_or_none(obj.get("char_end")) or 0,
    )


def parse_event(obj: dict[str, Any]) -> Event:
    """A decoded JSON text frame as an event. Missing fields get neutral values, so a
    malformed event from a buggy server is still routed rather than crashing the reader."""
    kind = obj.get("type")
    if kind == "connected":
        config = obj.get("config")
        return Connected(str(obj.get("session_id", "")), config if isinstance(config, dict) else {})
    if kind == "queued":
        return Queued(
            str(obj.get("request_id", "")),
            _int_or_none(obj.get("position")) or 0,
            _str_or_none(obj.get("context_id")),
            _int_or_none(obj.get("admission_wait_ms")),
        )
    if kind == "audio_start":
        return AudioStart(
            request_id=str(obj.get("request_id", "")),
            format=str(obj.get("format", "")),
            sample_rate=_int_or_none(obj.get("sample_rate")) or 0,
            channels=_int_or_none(obj.get("channels")) or 1,
            priority=str(obj.get("priority", "normal")),
            voice=str(obj.get("voice", "")),
            bitrate=_int_or_none(obj.get("bitrate")),
            mime_type=_str_or_none(obj.get("mime_type")),
            note=_str_or_none(obj.get("note")),
            context_id=_str_or_none(obj.get("context_id")),
        )
    if kind == "audio_end":
        return AudioEnd(
            request_id=str(obj.get("request_id", "")),
            chunks=_int_or_none(obj.get("chunks")) or 0,
            bytes=_int_or_none(obj.get("bytes")) or 0,
            duration_ms=_int_or_none(obj.get("duration_ms")) or 0,
            context_id=_str_or_none(obj.get("context_id")),
        )
    if kind == "interrupted":
        dropped = obj.get("dropped")
        return Interrupted(
            request_id=_str_or_none(obj.get("request_id")),
            reason=str(obj.get("reason", "")),
            dropped=tuple(str(d) for d in dropped) if isinstance(dropped, list) else (),
            audio_sent_ms=_int_or_none(obj.get("audio_sent_ms")),
            played_ms=_int_or_none(obj.get("played_ms")),
            heard_text=_str_or_none(obj.get("heard_text")),
            heard_char_end=_int_or_none(obj.get("heard_char_end")),
            basis=_str_or_none(obj.get("basis")),
        )
    if kind == "timestamps":
        return Timestamps(
            request_id=str(obj.get("request_id", "")),
            words=tuple(_word(w) for w in _list(obj.get("words")) if isinstance(w, dict)),
            estimated=obj.get("estimated") is True,
            chars=tuple(str(c) for c in _list(obj.get("chars"))),
            char_start_ms=tuple(_int_or_none(v) or 0 for v in _list(obj.get("char_start_ms"))),
            char_dur_ms=tuple(_int_or_none(v) or 0 for v in _list(obj.get("char_dur_ms"))),
        )
    if kind == "flushed":
        return Flushed(str(obj.get("request_id", "")), _str_or_none(obj.get("flush_id")))
    if kind == "error":
        details = obj.get("details")
        return ErrorEvent(
            code=str(obj.get("code", "unknown")),
            message=str(obj.get("message", "")),
            request_id=_str_or_none(obj.get("request_id")),
            details=details if isinstance(details, dict) else {},
        )
    return UnknownEvent(str(kind), obj)
