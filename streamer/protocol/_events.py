"""Server → client events, rendered to compact JSON text frames.

Audio itself travels as binary frames between ``audio_start`` and ``audio_end``; these
dataclasses are only the text events around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ._errors import ErrorCode


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    config: dict[str, object]


@dataclass(frozen=True, slots=True)
class Queued:
    request_id: str
    position: int


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


@dataclass(frozen=True, slots=True)
class AudioEnd:
    request_id: str
    chunks: int
    bytes: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Interrupted:
    request_id: str | None
    reason: str
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str
    request_id: str | None = None
    details: dict[str, object] = field(default_factory=dict)


ServerEvent = Connected | Queued | AudioStart | AudioEnd | Interrupted | Error

_TYPE_NAMES: dict[type, str] = {
    Connected: "connected",
    Queued: "queued",
    AudioStart: "audio_start",
    AudioEnd: "audio_end",
    Interrupted: "interrupted",
    Error: "error",
}


def event_to_json(event: ServerEvent) -> dict[str, object]:
    """The event as a JSON-ready dict with its ``type`` first; ``None`` optionals dropped."""
    out: dict[str, object] = {"type": _TYPE_NAMES[type(event)]}
    for name in event.__slots__:
        value = getattr(event, name)
        if value is None or (name == "details" and not value):
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def render(event: ServerEvent) -> str:
    """Serialize an event as one WebSocket text frame."""
    return json.dumps(event_to_json(event), separators=(",", ":"), ensure_ascii=False)
