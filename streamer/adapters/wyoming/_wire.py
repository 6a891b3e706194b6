"""The Wyoming wire format, sans-IO: bytes in, ``wyoming.event.Event`` out, and back.

An event on the wire (the ``wyoming`` package's README, "Format"):

1. a header: one line of UTF-8 JSON, an object with ``type`` (string), optional
   ``data`` (object), ``data_length`` and ``payload_length`` (byte counts), then ``\\n``;
2. ``data_length`` bytes of UTF-8 JSON, an object merged over the header's ``data``;
3. ``payload_length`` bytes of payload (PCM audio, for audio events).

``EventReader`` takes bytes as they arrive and hands out whole events; it never reads a
socket or a clock, so every rule below is a plain function call in the tests. Rules, by
what a hostile or broken client can do:

- a header line longer than ``MAX_HEADER_BYTES`` (or bytes without a newline past it),
  or a length over ``MAX_DATA_BYTES`` / ``MAX_PAYLOAD_BYTES``, or a length that is not a
  non-negative integer: *fatal* (``WyomingError.fatal``). We cannot know where the next
  event starts, so the connection must end after the error;
- a header that is not JSON, not an object, or has no usable ``type``; a data part that
  is not a JSON object: the event is dropped with an error and reading goes on. The
  line's end (and the declared lengths, when they could be read) say where the next
  event starts;
- a payload length that lies short: the surplus is read as the next header (an
  ``invalid_json`` error, or a fatal oversized line); one that lies long: the reader
  waits for bytes that never come, and the connection's ``EVENT_TIMEOUT_S`` ends it.

JSON is read by the server's one strict decoder (``streamer.protocol.decode_json``:
I-JSON, bounded depth and numbers), so Wyoming accepts exactly what the WebSocket does.
Events are written by the ``wyoming`` package's own ``write_event``, so what we send is
byte for byte what its clients expect.
"""

from __future__ import annotations

import io
from enum import Enum
from typing import Any, Final

from wyoming.event import Event, write_event

from ...protocol import ClientError, ErrorCode, decode_json, quote
from ._errors import WyomingError

#: Longest header line. The ``wyoming`` package's writer puts ``data`` after the line, so
#: its headers are ~100 bytes; a client that inlines ``data`` still fits a synthesize of
#: 5000 characters escaped (``\\uXXXX``, 6 bytes each = 30 KB) with room to spare.
MAX_HEADER_BYTES: Final = 64 * 1024
#: Largest data part: a synthesize text at the largest ``tts.max_text_length`` the
#: config allows (100 000 characters) fits even fully escaped (600 KB).
MAX_DATA_BYTES: Final = 1024 * 1024
#: Largest payload. A TTS client sends none; a confused one (audio to the wrong
#: service) is refused for the event, not the connection, up to ~10 s of 48 kHz PCM.
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
#: Longest event type: the longest Wyoming type is ~25 characters.
MAX_TYPE_CHARS: Final = 64


class _Part(Enum):
    """What ``EventReader`` waits for."""

    #: A header line (nothing of the event read yet, or part of its line).
    HEADER = "header"
    #: The data part and payload of the header just read.
    BODY = "body"


class EventReader:
    """Whole events out of a byte stream (see the module docstring)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Bytes at the start of the buffer known to hold no newline: a header that
        #: arrives a byte at a time is scanned once, not once per byte.
        self._scanned = 0
        self._part = _Part.HEADER
        self._type = ""
        self._data: dict[str, Any] = {}
        self._data_length = 0
        self._payload_length = 0
        #: The header was unusable but its lengths were read: raised once its body has
        #: been skipped, so the next event is read from the right byte.
        self._dropped: WyomingError | None = None

    @property
    def mid_event(self) -> bool:
        """Part of an event has arrived (the connection's event timeout runs)."""
        return self._part is _Part.BODY or bool(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self) -> Event | None:
        """The next whole event, or None until more bytes arrive.

        Raises ``WyomingError`` for an event that cannot be read; call again after a
        non-fatal one for the events behind it.
        """
        while True:
            if self._part is _Part.HEADER:
                end = self._buffer.find(b"\n", self._scanned, MAX_HEADER_BYTES + 1)
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        raise _too_big("header line", MAX_HEADER_BYTES)
                    self._scanned = len(self._buffer)
                    return None
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                if not line.strip():
                    continue  # a blank line (a client's stray "\n") is no event
                self._read_header(line)
            need = self._data_length + self._payload_length
            if len(self._buffer) < need:
                return None
            data_part = bytes(self._buffer[: self._data_length])
            payload = bytes(self._buffer[self._data_length : need])
            del self._buffer[:need]
            self._part = _Part.HEADER
            dropped, self._dropped = self._dropped, None
            if dropped is not None:
                raise dropped
            data = self._data
            if data_part:
                data = {**data, **_json_object(data_part, "data part")}
            return Event(type=self._type, data=data, payload=payload or None)

    def _read_header(self, line: bytes) -> None:
        """Parse a header line; the reader then waits for its body. Raises for a header
        whose body we cannot skip (fatal) or that is not JSON (the line is skipped)."""
        header = _json_object(line, "header")
        self._data_length = _length(header, "data_length", MAX_DATA_BYTES)
        self._payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
        self._part = _Part.BODY
        self._type, self._data = "", {}
        kind = header.get("type")
        data = header.get("data")
        if not isinstance(kind, str) or not kind or len(kind) > MAX_TYPE_CHARS:
            self._dropped = WyomingError(
                ErrorCode.INVALID_MESSAGE,
                f"'type' must be a string of 1-{MAX_TYPE_CHARS} characters, got {quote(kind)}",
            )
        elif data is not None and not isinstance(data, dict):
            self._dropped = WyomingError(
                ErrorCode.INVALID_MESSAGE, f"{kind}: 'data' must be an object, got {quote(data)}"
            )
        else:
            self._type, self._data = kind, data or {}


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object; a non-fatal ``WyomingError`` otherwise."""
    try:
        value = decode_json(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WyomingError(
            ErrorCode.INVALID_JSON, f"the {what} is not UTF-8 (byte {exc.start})"
        ) from None
    except ClientError as exc:
        raise WyomingError(exc.code, f"the {what} is not valid JSON: {exc.message}") from None
    if not isinstance(value, dict):
        raise WyomingError(ErrorCode.INVALID_MESSAGE, f"the {what} must be a JSON object")
    return value


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    """A declared byte count (0 when absent or null); fatal when it cannot be honoured."""
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WyomingError(
            ErrorCode.INVALID_MESSAGE,
            f"'{key}' must be a non-negative integer, got {quote(value)}",
            fatal=True,
        )
    if value > limit:
        raise _too_big(key.removesuffix("_length").replace("_", " "), limit, value)
    return value


def _too_big(what: str, limit: int, size: int | None = None) -> WyomingError:
    has = f" of {size} bytes" if size is not None else ""
    return WyomingError(
        ErrorCode.MESSAGE_TOO_BIG, f"{what}{has} over the limit of {limit} bytes", fatal=True
    )


def encode_event(event: Event) -> bytes:
    """``event`` as the ``wyoming`` package writes it (header line, data, payload)."""
    buffer = io.BytesIO()
    write_event(event, buffer)
    return buffer.getvalue()
