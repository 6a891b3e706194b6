"""A Wyoming protocol server (Home Assistant's voice services) in front of our engines.

``tts-streamer wyoming --uri tcp://127.0.0.1:10200`` runs it alone; ``server.wyoming_port``
runs it inside ``tts-streamer serve``, sharing the engines, the inference scheduler and
admission with the WebSocket and HTTP servers. See protocol_docs/wyoming.md.

Imported only by those two paths: the ``wyoming`` package (the ``[wyoming]`` extra) is
needed only when Wyoming is served.
"""

from ._errors import WyomingCode, WyomingError
from ._info import PROGRAM_NAME, info_event
from ._protocol import (
    MAX_PENDING_REQUESTS,
    STREAM_TRANSITIONS,
    Action,
    EndStream,
    OpenStream,
    SendInfo,
    SendPong,
    Speak,
    StreamSegments,
    StreamState,
    VoiceChoice,
    WyomingProtocol,
)
from ._run import (
    DEFAULT_PORT,
    DEFAULT_URI,
    WyomingAddress,
    check_wyoming_exposure,
    parse_uri,
    run_wyoming,
)
from ._server import (
    CLOSE_FLUSH_S,
    EVENT_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    OUTGOING_EVENTS,
    RECEIVE_BYTES,
    serve_wyoming,
)
from ._wire import MAX_DATA_BYTES, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, EventReader, encode_event

__all__ = [
    "CLOSE_FLUSH_S",
    "DEFAULT_PORT",
    "DEFAULT_URI",
    "EVENT_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "MAX_DATA_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PENDING_REQUESTS",
    "OUTGOING_EVENTS",
    "PROGRAM_NAME",
    "RECEIVE_BYTES",
    "STREAM_TRANSITIONS",
    "Action",
    "EndStream",
    "EventReader",
    "OpenStream",
    "SendInfo",
    "SendPong",
    "Speak",
    "StreamSegments",
    "StreamState",
    "VoiceChoice",
    "WyomingAddress",
    "WyomingCode",
    "WyomingError",
    "WyomingProtocol",
    "check_wyoming_exposure",
    "encode_event",
    "info_event",
    "parse_uri",
    "run_wyoming",
    "serve_wyoming",
]
