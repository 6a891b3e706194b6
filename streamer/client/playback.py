"""Where played audio goes: the speakers (``sounddevice``), or a recording for tests.

A :class:`PlaybackSink` receives raw PCM of one request: ``start`` with its format,
``write`` for each frame (may block while the device buffer is full, so clients call it
from a worker thread), then ``drain`` (play what is buffered, then close) at the end, or
``abort`` (silence now, drop what is buffered) on an interrupt. ``abort`` may be called
from another thread while ``write`` or ``drain`` blocks, and more than once.

``sounddevice`` needs the PortAudio library (Debian: ``libportaudio2``) and an output
device; without either, :class:`SoundDeviceSink` raises :class:`PlaybackUnavailableError`
with a message saying which.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from ._events import TTSClientError

SampleFormat = Literal["int16", "float32"]

#: Stream formats a sink can play as they are, and their sample type.
PCM_FORMATS: Final[dict[str, SampleFormat]] = {"pcm": "int16", "pcm_f32": "float32"}


class PlaybackUnavailableError(TTSClientError):
    """Audio cannot be played here. Codes: ``portaudio_missing`` (install
    ``libportaudio2``), ``sounddevice_missing`` (``pip install sounddevice``),
    ``no_output_device`` (no sound card / default output)."""


@dataclass(frozen=True, slots=True)
class PcmFormat:
    sample_rate: int
    channels: int
    sample_format: SampleFormat

    @property
    def frame_bytes(self) -> int:
        return self.channels * (2 if self.sample_format == "int16" else 4)


class PlaybackSink(Protocol):
    def start(self, fmt: PcmFormat) -> None: ...

    def write(self, pcm: bytes) -> None: ...

    def drain(self) -> None: ...

    def abort(self) -> None: ...


@dataclass
class RecordingSink:
    """A sink that keeps everything it is given (tests, or capturing what would play)."""

    formats: list[PcmFormat] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    drained: int = 0
    aborted: int = 0

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)

    def start(self, fmt: PcmFormat) -> None:
        self.formats.append(fmt)

    def write(self, pcm: bytes) -> None:
        self.chunks.append(pcm)

    def drain(self) -> None:
        self.drained += 1

    def abort(self) -> None:
        self.aborted += 1


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise PlaybackUnavailableError(
            "sounddevice_missing",
            "playback needs the sounddevice package: pip install 'mit-tts-streamer[client]'",
        ) from exc
    except OSError as exc:
        # sounddevice raises OSError at import when libportaudio is not installed.
        raise PlaybackUnavailableError(
            "portaudio_missing",
            f"the PortAudio library is missing ({exc}); install it "
            "(Debian/Ubuntu: apt-get install libportaudio2)",
        ) from exc
    return sounddevice


def check_output_device(device: int | str | None = None) -> str:
    """The name of the output device that would play; raises
    :class:`PlaybackUnavailableError` when there is none (or no PortAudio)."""
    sd = _import_sounddevice()
    try:
        info = sd.query_devices(device, kind="output")
    except Exception as exc:  # PortAudioError or ValueError, by sounddevice version
        raise PlaybackUnavailableError(
            "no_output_device",
            f"no audio output device found ({exc}); use -o FILE to save the audio instead",
        ) from exc
    return str(info["name"])


class SoundDeviceSink:
    """Plays through PortAudio's default (or the given) output device."""

    #: PortAudio latency hint: "low" keeps an interrupt audible-at-once (~10-50 ms of
    #: device buffer); the server's frames arrive ahead of playback anyway.
    LATENCY: Final = "low"

    def __init__(self, device: int | str | None = None) -> None:
        self._device = device
        self._stream: Any = None
        self._lock = threading.Lock()
        self._remainder = b""
        self._frame_bytes = 2

    def start(self, fmt: PcmFormat) -> None:
        sd = _import_sounddevice()
        check_output_device(self._device)
        stream = sd.RawOutputStream(
            samplerate=fmt.sample_rate,
            channels=fmt.channels,
            dtype=fmt.sample_format,
            device=self._device,
            latency=self.LATENCY,
        )
        stream.start()
        with self._lock:
            self._stream = stream
            self._frame_bytes = fmt.frame_bytes
            self._remainder = b""

    def write(self, pcm: bytes) -> None:
        # PortAudio takes whole sample frames; keep a split sample for the next write.
        data = self._remainder + pcm
        cut = len(data) - len(data) % self._frame_bytes
        self._remainder = data[cut:]
        stream = self._stream
        if stream is not None and cut:
            stream.write(data[:cut])

    def drain(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()  # returns once the buffered audio has played
            stream.close()

    def abort(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()  # drops the buffered audio at once
            stream.close()


#: Set to ``record`` to play into a :class:`RecordingSink` instead of the sound card
#: wherever no sink is given (headless machines, CI, the docs' examples).
PLAYBACK_ENV: Final = "TTS_STREAMER_PLAYBACK"


def default_sink() -> PlaybackSink:
    """The sink ``synthesize_and_play`` uses when none is given: the output device, or a
    recording when ``$TTS_STREAMER_PLAYBACK`` is ``record``. Raises
    :class:`PlaybackUnavailableError` when there is no output device."""
    if os.environ.get(PLAYBACK_ENV, "").strip().lower() == "record":
        return RecordingSink()
    check_output_device()  # fail before asking the server for anything
    return SoundDeviceSink()
