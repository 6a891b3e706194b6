"""What can go wrong on a Wyoming connection, typed by blame, each with a stable code.

A Wyoming ``error`` event carries ``text`` and ``code``. Codes the WebSocket protocol
already defines keep their meaning here (``invalid_json``, ``text_too_long``,
``unknown_voice``, ``busy``...: ``streamer.protocol.ErrorCode``); ``WyomingCode`` adds
the few that only Wyoming needs. Never rename a member: clients match on it.
"""

from __future__ import annotations

from enum import StrEnum

from ...protocol import ClientError, ErrorCode, utf8_safe


class WyomingCode(StrEnum):
    """Codes of ``error`` events only the Wyoming surface sends."""

    #: ``synthesize-chunk`` or ``synthesize-stop`` with no stream open.
    NO_STREAM = "no_stream"
    #: ``synthesize-start`` while the connection's stream is still open.
    STREAM_OPEN = "stream_open"
    #: ``text_format`` other than ``text`` (no engine here reads SSML).
    UNSUPPORTED_TEXT_FORMAT = "unsupported_text_format"
    #: ``select-program`` naming a program this server does not offer.
    UNKNOWN_PROGRAM = "unknown_program"
    #: An event began but did not arrive whole within ``EVENT_TIMEOUT_S``.
    EVENT_TIMEOUT = "event_timeout"
    #: No event and nothing to send for ``IDLE_TIMEOUT_S``: the connection is closed.
    IDLE_TIMEOUT = "idle_timeout"
    #: The server already holds its limit of Wyoming connections.
    TOO_MANY_CONNECTIONS = "too_many_connections"


class WyomingError(Exception):
    """The client's fault: answered with an ``error`` event. ``fatal``: the byte stream
    can no longer be trusted (a length we cannot honour, an event cut short), so the
    connection is closed after the error; otherwise the connection goes on."""

    def __init__(self, code: str, text: str, *, fatal: bool = False) -> None:
        # Safe once, here: the text may quote client input and must encode as UTF-8.
        text = utf8_safe(text)
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.fatal = fatal

    @classmethod
    def from_client_error(cls, error: ClientError) -> WyomingError:
        """A refusal by the shared rules (text, voice, admission) in Wyoming's shape. A
        Wyoming error has no details field: the retry hint goes into the text."""
        text = error.message
        retry = error.details.get("retry_after_ms")
        if error.code is ErrorCode.BUSY and isinstance(retry, int):
            text = f"{text} (retry after {retry} ms)"
        available = error.details.get("available")
        if isinstance(available, list) and available:
            shown = ", ".join(str(a) for a in available[:20])
            if shown not in text:
                text = f"{text}; available: {shown}"
        return cls(error.code, text)
