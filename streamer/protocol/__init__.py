"""The WebSocket protocol, sans-IO: text in, typed messages out; events in, text out.

Nothing here imports Trio or touches a socket, so every rule is testable without an
event loop. See protocol_docs/websocket.md for the wire format.
"""

from ._errors import ClientError, CloseCode, ErrorCode, ProtocolError, ServerError
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
from ._messages import (
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
    "check_request_transition",
    "event_to_json",
    "parse_audio_config",
    "parse_client_message",
    "render",
]
