"""Python client for the MIT-TTS-Streamer WebSocket API.

- :class:`TTSStreamingClient` for Trio; ``streamer.client.asyncio_client`` has
  :class:`~streamer.client.asyncio_client.AsyncioTTSStreamingClient` with the same API
  for asyncio (it needs the ``websockets`` package).
- ``synthesize()`` streams one request's frames (``bytes``) and events (the dataclasses
  below); ``interrupt()`` may be called while iterating.
- ``synthesize_and_play()`` plays through a :class:`PlaybackSink`: the sound card
  (:class:`SoundDeviceSink`) or a :class:`RecordingSink`.
- ``tts-streamer say|voices|status`` is the command line (``streamer.client.cli``).
"""

from ._base import BaseStreamingClient, SynthesisResult, SynthesisStream
from ._client import TTSStreamingClient
from ._events import (
    AudioEnd,
    AudioOptions,
    AudioStart,
    Connected,
    ErrorEvent,
    Event,
    Interrupted,
    Queued,
    StreamItem,
    TTSClientError,
    TTSConnectionError,
    TTSServerError,
    TTSTimeoutError,
    UnknownEvent,
)
from ._protocol import ClientProtocol, Delivery
from .playback import (
    PcmFormat,
    PlaybackSink,
    PlaybackUnavailableError,
    RecordingSink,
    SoundDeviceSink,
    check_output_device,
)

__all__ = [
    "AudioEnd",
    "AudioOptions",
    "AudioStart",
    "BaseStreamingClient",
    "ClientProtocol",
    "Connected",
    "Delivery",
    "ErrorEvent",
    "Event",
    "Interrupted",
    "PcmFormat",
    "PlaybackSink",
    "PlaybackUnavailableError",
    "Queued",
    "RecordingSink",
    "SoundDeviceSink",
    "StreamItem",
    "SynthesisResult",
    "SynthesisStream",
    "TTSClientError",
    "TTSConnectionError",
    "TTSServerError",
    "TTSStreamingClient",
    "TTSTimeoutError",
    "UnknownEvent",
    "check_output_device",
]
