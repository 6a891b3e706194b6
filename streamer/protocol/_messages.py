"""Client → server messages, parsed from JSON text frames into frozen dataclasses.

Parsing checks shape and types and the ranges that need no knowledge of the server
(priority names, speed, id syntax). Whether a language, voice or format exists is the
session's business: it knows the voice registry and the audio formats.

Every string that the server may echo (ids, reasons, config strings) is bounded and
printable here, so that no reply can carry a megabyte or a control character back.
``null`` is the same as an absent field everywhere. ``text`` is the one field that is
normalised instead of refused: control characters have no sound, and engines written
in C stop at the first NUL, so each becomes a space (tab and newlines are kept).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Final, TypeGuard

from ._errors import ClientError, ErrorCode
from ._json import decode_json, quote

#: Speaking-rate bounds (1.0 = natural). Outside this, engines distort badly.
MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0
#: Client-chosen request ids are echoed in every event; keep them short and printable.
MAX_REQUEST_ID_CHARS: Final = 128
#: Request and session ids: the characters of our own ids (``s-`` + URL-safe base64).
_ID_RE: Final = re.compile(r"[A-Za-z0-9._:\-]+")
#: Session ids are ours (``s-`` and 12 characters); a longer one cannot exist.
MAX_SESSION_ID_CHARS: Final = 128
#: Interrupt reasons are echoed back; bound them like ids.
MAX_REASON_CHARS: Final = 128
#: The reason of an ``interrupt`` that gives none (WebSocket or REST).
DEFAULT_INTERRUPT_REASON: Final = "user_request"
#: Language, voice, speaker and format names are echoed in errors; ours are short.
MAX_CONFIG_STRING_CHARS: Final = 128
# C0 and C1 control characters but tab, LF and CR.
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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


def _is_name(value: object, max_chars: int) -> TypeGuard[str]:
    """A string of 1-``max_chars`` printable characters, not all spaces."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_chars
        and value.isprintable()
        and value.strip() != ""
    )


def _is_config_string(value: object) -> bool:
    return _is_name(value, MAX_CONFIG_STRING_CHARS)


_STRING_RULE: Final = f"string of 1-{MAX_CONFIG_STRING_CHARS} printable characters"

# Expected JSON type of each AudioConfig field (as said in errors), and the code for a
# wrong one.
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

_TYPE_CHECKS: Final[dict[str, tuple[Callable[[object], bool], str]]] = {
    "str": (_is_config_string, _STRING_RULE),
    "int": (_is_int, "integer"),
    "int|str": (lambda v: _is_int(v) or _is_config_string(v), f"integer or {_STRING_RULE}"),
    "number": (_is_number, "number"),
    "bool": (lambda v: isinstance(v, bool), "boolean"),
}


def parse_audio_config(raw: object, request_id: str | None = None) -> AudioConfig:
    """Validate the ``config`` object of connect/synthesize (or a REST body's)."""
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
                ErrorCode.INVALID_CONFIG,
                f"unknown config key {quote(key)} (known: {known})",
                request_id,
            )
        if value is None:
            continue
        kind, code = rule
        check, described = _TYPE_CHECKS[kind]
        if not check(value):
            raise _fail(code, f"config.{key} must be a {described}", request_id)
        values[key] = float(value) if kind == "number" else value
    if "speed" in values:
        values["speed"] = parse_speed(values["speed"], field="config.speed", request_id=request_id)
    if _is_int(values.get("voice_id")) and values["voice_id"] < 0:
        raise _fail(ErrorCode.UNKNOWN_VOICE, "config.voice_id must be >= 0", request_id)
    return AudioConfig(**values)


def parse_session_id(value: object) -> str | None:
    """A client-given session id: ``None`` when absent, else the id (syntax only;
    whether it exists is the session manager's business). Raises
    ``ClientError(invalid_message)``."""
    if value is None:
        return None
    if not (
        isinstance(value, str)
        and 0 < len(value) <= MAX_SESSION_ID_CHARS
        and _ID_RE.fullmatch(value)
    ):
        raise _fail(
            ErrorCode.INVALID_MESSAGE,
            f"'session_id' must be 1-{MAX_SESSION_ID_CHARS} characters of "
            "letters, digits and . _ : -",
        )
    return value


def parse_request_id(value: object) -> str | None:
    """A client-chosen request id, or ``None`` when absent (the server makes one).
    Raises ``ClientError(invalid_request_id)``."""
    if value is None:
        return None
    if not (
        isinstance(value, str)
        and 0 < len(value) <= MAX_REQUEST_ID_CHARS
        and _ID_RE.fullmatch(value)
    ):
        raise _fail(
            ErrorCode.INVALID_REQUEST_ID,
            f"'request_id' must be 1-{MAX_REQUEST_ID_CHARS} characters of "
            "letters, digits and . _ : -",
        )
    return value


def parse_synthesis_text(
    value: object, *, max_chars: int, request_id: str | None = None, field: str = "text"
) -> str:
    """The text to speak, with control characters made spaces (see the module doc).

    ``field`` names it in messages (``input`` for the OpenAI API). Raises
    ``ClientError``: ``missing_text`` (absent or null), ``invalid_message`` (not a
    string), ``empty_text`` (nothing but whitespace), ``text_too_long`` (over
    ``max_chars`` characters).
    """
    if value is None:
        raise _fail(ErrorCode.MISSING_TEXT, f"'{field}' is required", request_id)
    if not isinstance(value, str):
        raise _fail(ErrorCode.INVALID_MESSAGE, f"'{field}' must be a string", request_id)
    text = _CONTROL_RE.sub(" ", value)
    if not text.strip():
        raise _fail(ErrorCode.EMPTY_TEXT, f"'{field}' is empty", request_id)
    if len(text) > max_chars:
        raise _fail(
            ErrorCode.TEXT_TOO_LONG,
            f"'{field}' has {len(text)} characters; the limit is {max_chars}",
            request_id,
        )
    return text


def parse_speed(value: object, *, field: str = "speed", request_id: str | None = None) -> float:
    """A speaking rate (1.0 natural) within ``MIN_SPEED``-``MAX_SPEED``; the one check
    every surface uses. Raises ``ClientError(invalid_speed)``."""
    if not _is_number(value):
        raise _fail(ErrorCode.INVALID_SPEED, f"{field} must be a number", request_id)
    speed = float(value)  # type: ignore[arg-type]
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise _fail(
            ErrorCode.INVALID_SPEED,
            f"{field} must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}",
            request_id,
        )
    return speed


def parse_interrupt_reason(value: object) -> str:
    """The ``reason`` of an interrupt (WebSocket message or REST body), echoed in the
    ``interrupted`` event: ``user_request`` when absent, else 1-``MAX_REASON_CHARS``
    printable characters. Raises ``ClientError(invalid_message)``."""
    if value is None:
        return DEFAULT_INTERRUPT_REASON
    if not _is_name(value, MAX_REASON_CHARS):
        raise _fail(
            ErrorCode.INVALID_MESSAGE,
            f"'reason' must be a string of 1-{MAX_REASON_CHARS} printable characters",
        )
    return value


def _parse_priority(value: object, request_id: str | None) -> Priority:
    if value is None:
        return Priority.NORMAL
    # ASCII only: "hıgh".upper() is "HIGH", and no client means that.
    if isinstance(value, str) and value.isascii():
        found = Priority.__members__.get(value.upper())
        if found is not None:
            return found
    raise _fail(
        ErrorCode.UNKNOWN_PRIORITY,
        f"'priority' must be one of normal, high, critical; got {quote(value)}",
        request_id,
    )


def _parse_connect(obj: dict[str, Any]) -> Connect:
    session_id = parse_session_id(obj.get("session_id"))
    return Connect(config=parse_audio_config(obj.get("config")), session_id=session_id)


def _parse_synthesize(obj: dict[str, Any], max_text_length: int) -> Synthesize:
    request_id = parse_request_id(obj.get("request_id"))
    text = parse_synthesis_text(obj.get("text"), max_chars=max_text_length, request_id=request_id)
    return Synthesize(
        text=text,
        priority=_parse_priority(obj.get("priority"), request_id),
        request_id=request_id,
        config=parse_audio_config(obj.get("config"), request_id),
    )


def _parse_interrupt(obj: dict[str, Any]) -> Interrupt:
    return Interrupt(reason=parse_interrupt_reason(obj.get("reason")))


def parse_client_message(data: str | bytes, *, max_text_length: int) -> ClientMessage:
    """Parse one WebSocket message. Raises ``ClientError`` with a stable code, and no
    other exception whatever ``data`` holds."""
    if isinstance(data, bytes):
        raise _fail(ErrorCode.BINARY_NOT_SUPPORTED, "send JSON text frames, not binary")
    obj = decode_json(data)
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
        f"unknown message type {quote(kind)}; expected connect, synthesize or interrupt",
    )
