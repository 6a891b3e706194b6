"""Client → server messages, parsed from JSON text frames into frozen dataclasses.

Parsing checks shape and types and the ranges that need no knowledge of the server
(priority names, speed, id syntax). Whether a language, voice or format exists is the
session's business: it knows the voice registry and the audio formats.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Final

from ._errors import ClientError, ErrorCode

#: Speaking-rate bounds (1.0 = natural). Outside this, engines distort badly.
MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0
#: Client-chosen request ids are echoed in every event; keep them short and printable.
MAX_REQUEST_ID_CHARS: Final = 128
_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:\-]+$")
#: Interrupt reasons are echoed back; bound them like ids.
MAX_REASON_CHARS: Final = 128


class Priority(IntEnum):
    """Request priority; a larger value plays first. ``critical`` pre-empts playback."""

    NORMAL = 0
    HIGH = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Session settings or per-request overrides. ``None`` means "not given here"."""

    language: str | None = None
    voice_id: int | str | None = None
    speaker: str | None = None
    format: str | None = None
    sample_rate: int | None = None
    chunk_size: int | None = None
    bitrate: int | None = None
    speed: float | None = None
    volume: float | None = None
    trim_silence: bool | None = None
    #: Pace synthesis to real-time playback (default on); off for file downloads.
    realtime: bool | None = None

    def merged(self, override: AudioConfig) -> AudioConfig:
        """This config with every field ``override`` sets replaced."""
        return AudioConfig(
            **{
                f.name: getattr(override, f.name)
                if getattr(override, f.name) is not None
                else getattr(self, f.name)
                for f in fields(AudioConfig)
            }
        )

    def to_json(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(AudioConfig)}


@dataclass(frozen=True, slots=True)
class Connect:
    config: AudioConfig
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Synthesize:
    text: str
    priority: Priority
    request_id: str | None
    config: AudioConfig


@dataclass(frozen=True, slots=True)
class Interrupt:
    reason: str


ClientMessage = Connect | Synthesize | Interrupt


def _fail(code: ErrorCode, message: str, request_id: str | None = None) -> ClientError:
    return ClientError(code, message, request_id=request_id)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


# Expected JSON type of each AudioConfig field, and the code for a wrong one.
_FIELD_RULES: Final[dict[str, tuple[str, ErrorCode]]] = {
    "language": ("str", ErrorCode.UNKNOWN_LANGUAGE),
    "voice_id": ("int|str", ErrorCode.UNKNOWN_VOICE),
    "speaker": ("str", ErrorCode.UNKNOWN_SPEAKER),
    "format": ("str", ErrorCode.UNKNOWN_FORMAT),
    "sample_rate": ("int", ErrorCode.UNSUPPORTED_SAMPLE_RATE),
    "chunk_size": ("int", ErrorCode.INVALID_CHUNK_SIZE),
    "bitrate": ("int", ErrorCode.INVALID_BITRATE),
    "speed": ("number", ErrorCode.INVALID_SPEED),
    "volume": ("number", ErrorCode.INVALID_VOLUME),
    "trim_silence": ("bool", ErrorCode.INVALID_CONFIG),
    "realtime": ("bool", ErrorCode.INVALID_CONFIG),
}

_TYPE_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    "str": lambda v: isinstance(v, str) and v.strip() != "",
    "int": _is_int,
    "int|str": lambda v: _is_int(v) or (isinstance(v, str) and v.strip() != ""),
    "number": _is_number,
    "bool": lambda v: isinstance(v, bool),
}


def parse_audio_config(raw: object, request_id: str | None = None) -> AudioConfig:
    """Validate the ``config`` object of connect/synthesize."""
    if raw is None:
        return AudioConfig()
    if not isinstance(raw, dict):
        raise _fail(ErrorCode.INVALID_CONFIG, "'config' must be an object", request_id)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        rule = _FIELD_RULES.get(key)
        if rule is None:
            known = ", ".join(_FIELD_RULES)
            raise _fail(
                ErrorCode.INVALID_CONFIG, f"unknown config key '{key}' (known: {known})", request_id
            )
        if value is None:
            continue
        kind, code = rule
        if not _TYPE_CHECKS[kind](value):
            raise _fail(code, f"config.{key} must be a {kind.replace('|', ' or ')}", request_id)
        values[key] = float(value) if kind == "number" else value
    speed = values.get("speed")
    if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
        raise _fail(
            ErrorCode.INVALID_SPEED,
            f"config.speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}",
            request_id,
        )
    if _is_int(values.get("voice_id")) and values["voice_id"] < 0:
        raise _fail(ErrorCode.UNKNOWN_VOICE, "config.voice_id must be >= 0", request_id)
    return AudioConfig(**values)


def _parse_connect(obj: dict[str, Any]) -> Connect:
    session_id = obj.get("session_id")
    if session_id is not None and not (isinstance(session_id, str) and session_id):
        raise _fail(ErrorCode.INVALID_MESSAGE, "'session_id' must be a non-empty string")
    return Connect(config=parse_audio_config(obj.get("config")), session_id=session_id)


def _parse_synthesize(obj: dict[str, Any], max_text_length: int) -> Synthesize:
    request_id = obj.get("request_id")
    if request_id is not None:
        if not (
            isinstance(request_id, str)
            and 0 < len(request_id) <= MAX_REQUEST_ID_CHARS
            and _REQUEST_ID_RE.match(request_id)
        ):
            raise _fail(
                ErrorCode.INVALID_REQUEST_ID,
                f"'request_id' must be 1-{MAX_REQUEST_ID_CHARS} characters of "
                "letters, digits and . _ : -",
            )
    if "text" not in obj or obj["text"] is None:
        raise _fail(ErrorCode.MISSING_TEXT, "'text' is required", request_id)
    text = obj["text"]
    if not isinstance(text, str):
        raise _fail(ErrorCode.INVALID_MESSAGE, "'text' must be a string", request_id)
    if not text.strip():
        raise _fail(ErrorCode.EMPTY_TEXT, "'text' is empty", request_id)
    if len(text) > max_text_length:
        raise _fail(
            ErrorCode.TEXT_TOO_LONG,
            f"'text' has {len(text)} characters; the limit is {max_text_length}",
            request_id,
        )
    raw_priority = obj.get("priority", "normal")
    try:
        priority = Priority[raw_priority.upper()] if isinstance(raw_priority, str) else None
    except KeyError:
        priority = None
    if priority is None:
        raise _fail(
            ErrorCode.UNKNOWN_PRIORITY,
            f"'priority' must be one of normal, high, critical; got {json.dumps(raw_priority)}",
            request_id,
        )
    return Synthesize(
        text=text,
        priority=priority,
        request_id=request_id,
        config=parse_audio_config(obj.get("config"), request_id),
    )


def _parse_interrupt(obj: dict[str, Any]) -> Interrupt:
    reason = obj.get("reason", "user_request")
    if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON_CHARS:
        raise _fail(
            ErrorCode.INVALID_MESSAGE, f"'reason' must be a string of 1-{MAX_REASON_CHARS} chars"
        )
    return Interrupt(reason=reason)


def parse_client_message(data: str | bytes, *, max_text_length: int) -> ClientMessage:
    """Parse one WebSocket message. Raises ``ClientError`` with a stable code."""
    if isinstance(data, bytes):
        raise _fail(ErrorCode.BINARY_NOT_SUPPORTED, "send JSON text frames, not binary")
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise _fail(ErrorCode.INVALID_JSON, f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise _fail(ErrorCode.INVALID_JSON, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise _fail(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    kind = obj.get("type")
    if kind == "synthesize":
        return _parse_synthesize(obj, max_text_length)
    if kind == "interrupt":
        return _parse_interrupt(obj)
    if kind == "connect":
        return _parse_connect(obj)
    raise _fail(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown message type {json.dumps(kind)}; expected connect, synthesize or interrupt",
    )
