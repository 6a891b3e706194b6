"""What the framework adapters ask of the server for a context: one place, so that
Pipecat and LiveKit map their constructor arguments to the protocol the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from streamer.client import AudioOptions

#: Where a server started with its defaults listens for WebSocket clients.
DEFAULT_URL: Final = "ws://127.0.0.1:8081"
#: Raw 16-bit PCM: what both frameworks carry between their processors, so the audio
#: needs no decoding on the way (the server resamples it to the pipeline's rate).
PCM_FORMAT: Final = "pcm"
#: Word timings are what both frameworks consume (Pipecat's word timestamps, LiveKit's
#: ``TimedString``); per-character arrays would only cost bytes.
TIMESTAMPS: Final = "word"


def voice_id(voice: int | str | None) -> int | str | None:
    """A voice as the protocol takes it: an index in the language's list (0 = best) or
    a voice id from ``GET /api/v1/voices``. A string of digits is an index, since
    framework settings hold voices as strings."""
    if isinstance(voice, str) and voice.isdecimal():
        return int(voice)
    return voice


@dataclass(frozen=True, slots=True)
class VoiceOptions:
    """The voice settings an adapter was built with (None: the server's default)."""

    voice: int | str | None = None
    language: str | None = None
    speed: float | None = None

    def audio_options(self, sample_rate: int) -> AudioOptions:
        """The ``config`` of a context: PCM at ``sample_rate`` with word timestamps."""
        options = AudioOptions(format=PCM_FORMAT, sample_rate=sample_rate, timestamps=TIMESTAMPS)
        voice = voice_id(self.voice)
        if voice is not None:
            options["voice_id"] = voice
        if self.language is not None:
            options["language"] = self.language
        if self.speed is not None:
            options["speed"] = self.speed
        return options


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The handshake header that carries an API key (protocol_docs/security.md)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
