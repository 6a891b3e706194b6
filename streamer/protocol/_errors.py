"""Errors of the WebSocket protocol, typed by who is at fault.

``ClientError`` is the peer's fault: the session answers it with an ``error`` event and
keeps going. ``ServerError`` is ours: logged with its traceback, reported to the client
with a generic code. Codes are stable strings clients may switch on.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


def utf8_safe(text: str) -> str:
    """``text`` with every lone surrogate written as a ``\\udxxx`` escape, so that it
    encodes as UTF-8. Strings from JSON escapes (``"\\ud800"``) can hold them."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ErrorCode(StrEnum):
    """Every ``error.code`` the server sends. Never rename a member: clients match on it."""

    #: Not JSON, or JSON outside the subset the server reads (RFC 7493 I-JSON and our
    #: limits): see ``decode_json``.
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    MISSING_TEXT = "missing_text"
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    UNKNOWN_PRIORITY = "unknown_priority"
    INVALID_REQUEST_ID = "invalid_request_id"
    DUPLICATE_REQUEST_ID = "duplicate_request_id"
    INVALID_CONFIG = "invalid_config"
    UNKNOWN_FORMAT = "unknown_format"
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    INVALID_CHUNK_SIZE = "invalid_chunk_size"
    INVALID_BITRATE = "invalid_bitrate"
    INVALID_VOLUME = "invalid_volume"
    INVALID_SPEED = "invalid_speed"
    UNKNOWN_LANGUAGE = "unknown_language"
    UNKNOWN_VOICE = "unknown_voice"
    UNKNOWN_SPEAKER = "unknown_speaker"
    ALREADY_CONNECTED = "already_connected"
    UNKNOWN_SESSION = "unknown_session"
    SESSION_IN_USE = "session_in_use"
    QUEUE_FULL = "queue_full"
    BUSY = "busy"
    SYNTHESIS_FAILED = "synthesis_failed"
    #: ``flush``/``close``/``cancel``/``keepalive`` for a context this session never
    #: opened (or forgot long ago).
    UNKNOWN_CONTEXT = "unknown_context"
    #: ``text``/``flush``/``close`` for a context whose input has ended (``close``,
    #: ``context_idle``) or that has ended altogether.
    CONTEXT_CLOSED = "context_closed"
    #: A ``text`` would open more contexts than ``performance.max_open_contexts``.
    TOO_MANY_CONTEXTS = "too_many_contexts"
    #: An open context got no text for ``tts.context_idle_s``: it is closed (what was
    #: buffered is spoken) and ends with ``audio_end``. Not the end of the context.
    CONTEXT_IDLE = "context_idle"
    #: Sent as the reason of close 1008, not as an ``error`` event: the client is not
    #: reading its events, so one more would wait behind the ones it already ignores.
    TOO_MANY_MESSAGES = "too_many_messages"
    #: Over ``server.max_message_bytes`` (UTF-8 bytes on the wire). On a WebSocket the
    #: reason of close 1009 (``ClientError.close_code``), not an ``error`` event; over
    #: HTTP a 413 reply.
    MESSAGE_TOO_BIG = "message_too_big"
    INTERNAL_ERROR = "internal_error"
    # The HTTP surfaces (REST and the OpenAI API) add these.
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_READY = "not_ready"
    MISSING_MODEL = "missing_model"
    MODEL_NOT_FOUND = "model_not_found"
    MISSING_VOICE = "missing_voice"
    INVALID_INSTRUCTIONS = "invalid_instructions"
    INVALID_STREAM_FORMAT = "invalid_stream_format"
    #: HTTP: request headers over 16 KiB (status 431).
    HEADERS_TOO_LARGE = "headers_too_large"
    #: HTTP: a refusal by the HTTP framework of a status we do not otherwise use.
    HTTP_ERROR = "http_error"
    # Security (protocol_docs/security.md): refusals at the handshake or on a route,
    # except ``rate_limited``, which inside a WebSocket session is an ``error`` event.
    #: No credential, an unknown key, or a token that is expired or tampered with.
    UNAUTHORIZED = "unauthorized"
    #: A browser page from an origin not in ``security.allowed_origins``.
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    #: The key already holds its ``max_sessions`` (connections and speech requests).
    TOO_MANY_SESSIONS = "too_many_sessions"
    #: The key went over its ``chars_per_minute``; ``details.retry_after_ms`` says when
    #: the text fits again.
    RATE_LIMITED = "rate_limited"
    # Many replicas (README "Scaling out"): HTTP replies only.
    #: The shared directory (Redis/Valkey) cannot be reached: the request needs it
    #: (finding another replica's session, creating one any replica may attach).
    CONTROL_PLANE_UNAVAILABLE = "control_plane_unavailable"
    #: The replica holding the session did not answer within ``cluster.route_timeout_ms``.
    ROUTE_TIMEOUT = "route_timeout"
    #: The replica is draining (shutting down): it takes no new session; retry, and a
    #: load balancer sends you to another.
    DRAINING = "draining"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    POLICY_VIOLATION = 1008  # the client broke a limit (reason: an ErrorCode)
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # our bug: logged with traceback, other sessions unaffected
    TRY_AGAIN_LATER = 1013  # overloaded


class ProtocolError(Exception):
    """Base class: carries the stable code and a human-readable message."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        details: dict[str, object] | None = None,
        close_code: CloseCode | None = None,
    ) -> None:
        # Made safe here, once: a message may quote client input, and every surface
        # (WebSocket event, REST body, log line) must be able to encode it.
        message = utf8_safe(message)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = None if request_id is None else utf8_safe(request_id)
        self.details = details or {}
        #: Set when the answer is to close the WebSocket with this code (and ``code``
        #: as the reason) instead of sending an ``error`` event; HTTP surfaces ignore it.
        self.close_code = close_code


class ClientError(ProtocolError):
    """The client sent something we cannot accept. Reply with ``error``; keep the session."""


class ServerError(ProtocolError):
    """We failed on valid input. Log the cause; tell the client without internals."""
