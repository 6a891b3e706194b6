"""Server → client events, rendered to compact JSON text frames.

Audio itself travels as binary frames between ``audio_start`` and ``audio_end``; these
dataclasses are only the text events around it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Final

from ._errors import ErrorCode
from ._timestamps import WordTimestamp

#: Nesting kept by the fallback rendering; our events are at most three levels deep.
_MAX_RENDER_DEPTH: Final = 8
#: Larger ints cannot be written (Python's int-to-str limit is 4300 digits).
_MAX_RENDER_INT_BITS: Final = 4096
_SEPARATORS: Final = (",", ":")


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    config: dict[str, object]


@dataclass(frozen=True, slots=True)
class Queued:
    request_id: str
    position: int
    #: Set (to ``request_id``) when the request is a streamed-text context.
    context_id: str | None = None
    #: Present when the request does not fit now: it waits for room to start at most
    #: this long (``performance.max_start_delay_ms``), then plays or gets ``busy``.
    admission_wait_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AudioStart:
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
    request_id: str
    chunks: int
    bytes: int
    duration_ms: int
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """``request_id`` stopped (or nothing played: None). For a request that played, or
    a context, what the listener heard: ``audio_sent_ms`` of its audio left the server,
    ``played_ms`` of it was played (by ``basis``: ``client`` as the client said,
    ``clock`` by the server's real-time pacing, ``sent`` an upper bound for a request
    that was not real-time), and ``heard_text`` is its text up to ``heard_char_end``,
    the end of the last word at least half played."""

    request_id: str | None
    reason: str
    dropped: tuple[str, ...] = ()
    audio_sent_ms: int | None = None
    played_ms: int | None = None
    heard_text: str | None = None
    heard_char_end: int | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class Timestamps:
    """When the words of ``request_id`` are spoken; sent before the audio frame that
    holds the first one's start. ``estimated``: the engine has no alignment and the
    times are spread over the audio in proportion to the words' lengths. With
    ``timestamps: "char"``, ``chars``/``char_start_ms``/``char_dur_ms`` time every
    character from the first word's start to the last word's end."""

    request_id: str
    words: tuple[WordTimestamp, ...]
    estimated: bool | None = None
    chars: tuple[str, ...] | None = None
    char_start_ms: tuple[int, ...] | None = None
    char_dur_ms: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Flushed:
    """Every byte of the audio of the text a ``flush`` covered has been queued."""

    request_id: str
    flush_id: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str
    request_id: str | None = None
    details: dict[str, object] = field(default_factory=dict)


ServerEvent = (
    Connected | Queued | AudioStart | AudioEnd | Interrupted | Error | Timestamps | Flushed
)

_TYPE_NAMES: dict[type, str] = {
    Connected: "connected",
    Queued: "queued",
    AudioStart: "audio_start",
    AudioEnd: "audio_end",
    Interrupted: "interrupted",
    Error: "error",
    Timestamps: "timestamps",
    Flushed: "flushed",
}


def event_to_json(event: ServerEvent) -> dict[str, object]:
    """The event as a JSON-ready dict with its ``type`` first; ``None`` optionals dropped."""
    out: dict[str, object] = {"type": _TYPE_NAMES[type(event)]}
    for name in event.__slots__:
        value = getattr(event, name)
        if value is None or (name == "details" and not value):
            continue
        if isinstance(value, tuple):
            value = [v.to_json() if isinstance(v, WordTimestamp) else v for v in value]
        out[name] = value
    return out


def _jsonable(value: object, depth: int = 0) -> object:
    """``value`` with everything JSON cannot carry replaced: non-finite floats and
    oversized ints by ``null``, unknown objects by their ``repr``, cycles cut."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _MAX_RENDER_INT_BITS else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_RENDER_DEPTH:
        return None
    if isinstance(value, dict):
        return {_key(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return _key(value)


def _key(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception:  # a broken __repr__ is no reason to lose the event
        return f"<{type(value).__name__}>"


def render(event: ServerEvent) -> str:
    """Serialize an event as one WebSocket text frame. Never raises, and the text
    always encodes as UTF-8.

    Client input echoed in an event (a reason, a quoted value) may hold lone surrogates,
    and a bug of ours may put NaN or a non-JSON object in ``details``; either would
    otherwise fail in the writer, after the event left the code that made it. Such an
    event is rendered with those values replaced (see ``_jsonable``) and, if it is not
    UTF-8, with ``\\u`` escapes instead of raw characters.
    """
    obj: object = event_to_json(event)
    try:
        text = json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        obj = _jsonable(obj)
        text = json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False, allow_nan=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(obj, separators=_SEPARATORS, ensure_ascii=True, allow_nan=False)
    return text
