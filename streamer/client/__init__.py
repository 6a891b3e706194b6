"""Python client for the MIT-TTS-Streamer WebSocket API.

- :class:`TTSStreamingClient` for Trio; ``streamer.client.asyncio_client`` has
  :class:`~streamer.client.asyncio_client.AsyncioTTSStreamingClient` with the same API
  for asyncio (it needs the ``websockets`` package).
- ``synthesize()`` streams one request's frames (``bytes``) and events (the dataclasses
  below); ``interrupt()`` may be called while iterating.
- ``stream()`` opens a streamed-text context (:class:`ContextStream`): text in as an
  LLM writes it (``send_text``, ``flush``, ``close``, ``cancel``), audio, word
  ``Timestamps`` and the heard text of an :class:`Interrupted` out.
- ``synthesize_and_play()`` plays through a :class:`PlaybackSink`: the sound card
  (:class:`SoundDeviceSink`) or a :class:`RecordingSink`.
- ``tts-streamer say|voices|status`` is the command line (``streamer.client.cli``).
"""

from ._base import (
    BaseStreamingClient,
    ContextResult,
    ContextStream,
    SynthesisResult,
    SynthesisStream,
)
from ._client import TTSStreamingClient
from ._events import (
    AudioEnd,
    AudioOptions,
    AudioStart,
    BufferOptions,
    Connected,
    ErrorEvent,
    Event,
    Flushed,
    Interrupted,
    Queued,
    StreamItem,
    Timestamps,
    TTSClientError,
    TTSConnectionError,
    TTSServerError,
    TTSTimeoutError,
    UnknownEvent,
    Word,
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
    "BufferOptions",
    "ClientProtocol",
    "Connected",
    "ContextResult",
    "ContextStream",
    "Delivery",
    "ErrorEvent",
    "Event",
    "Flushed",
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
    "Timestamps",
    "UnknownEvent",
    "Word",
    "check_output_device",
]
