"""The WebSocket protocol, sans-IO: text in, typed messages out; events in, text out.

Nothing here imports Trio or touches a socket, so every rule is testable without an
event loop. See protocol_docs/websocket.md for the wire format.

Whatever a client sends, ``ServerProtocol.receive`` returns a typed message or raises
``ClientError`` with an ``ErrorCode``, and ``render`` returns text that encodes as UTF-8.
The HTTP surfaces share the same rules through ``parse_json_object`` (bodies),
``parse_interrupt_reason``, ``parse_synthesis_text`` and ``parse_audio_config``.
"""

from ._errors import ClientError, CloseCode, ErrorCode, ProtocolError, ServerError, utf8_safe
from ._events import (
    AudioEnd,
    AudioStart,
    Connected,
    Error,
    Interrupted,
    Queued,
    ServerEvent,
    event_to_json,
    render,
)
from ._json import (
    MAX_JSON_DEPTH,
    MAX_NUMBER_CHARS,
    check_message_size,
    decode_json,
    parse_json_object,
    quote,
    utf8_length,
)
from ._messages import (
    DEFAULT_INTERRUPT_REASON,
    MAX_CONFIG_STRING_CHARS,
    MAX_REASON_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_SESSION_ID_CHARS,
    MAX_SPEED,
    MIN_SPEED,
    AudioConfig,
    ClientMessage,
    Connect,
    Interrupt,
    Priority,
    Synthesize,
    parse_audio_config,
    parse_client_message,
    parse_interrupt_reason,
    parse_request_id,
    parse_session_id,
    parse_speed,
    parse_synthesis_text,
)
from ._state import (
    REQUEST_TRANSITIONS,
    ConnectionState,
    LocalProtocolError,
    RequestState,
    ServerProtocol,
    check_request_transition,
)

__all__ = [
    "DEFAULT_INTERRUPT_REASON",
    "MAX_CONFIG_STRING_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_NUMBER_CHARS",
    "MAX_REASON_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_SESSION_ID_CHARS",
    "MAX_SPEED",
    "MIN_SPEED",
    "REQUEST_TRANSITIONS",
    "AudioConfig",
    "AudioEnd",
    "AudioStart",
    "ClientError",
    "ClientMessage",
    "CloseCode",
    "Connect",
    "Connected",
    "ConnectionState",
    "Error",
    "ErrorCode",
    "Interrupt",
    "Interrupted",
    "LocalProtocolError",
    "Priority",
    "ProtocolError",
    "Queued",
    "RequestState",
    "ServerError",
    "ServerEvent",
    "ServerProtocol",
    "Synthesize",
    "check_message_size",
    "check_request_transition",
    "decode_json",
    "event_to_json",
    "parse_audio_config",
    "parse_client_message",
    "parse_interrupt_reason",
    "parse_json_object",
    "parse_request_id",
    "parse_session_id",
    "parse_speed",
    "parse_synthesis_text",
    "quote",
    "render",
    "utf8_length",
    "utf8_safe",
]
