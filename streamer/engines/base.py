"""The engine contract: what every text-to-speech engine gives its caller.

An engine owns models and turns text into mono float32 PCM. It knows nothing of
sessions, sockets or Trio: its caller drives it from worker threads, one chunk at a
time, so that an interrupt waits for at most one chunk of inference.

Errors, by blame (what ``Engine.stream`` raises is spelt out there):

- ``VoiceSelectionError`` and its subclasses: the request named a language, voice or
  speaker that is not offered. The client's fault; each carries a stable protocol
  ``code`` and the list of what could be asked for instead.
- ``ValueError``: an argument its caller should have checked first (a speed outside
  ``MIN_SPEED``..``MAX_SPEED``, which every surface validates where the request
  arrives). A bug in the caller, not the client's fault.
- ``EngineError``: the engine or its library failed on a request it accepted. Ours;
  library exceptions are wrapped in it, the original chained as ``__cause__``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

# The speaking-rate bounds are the protocol's (what a client may ask for); engines
# honour exactly that range, so they take it from there rather than restate it.
from streamer.engines.languages import language_name
from streamer.protocol import MAX_SPEED, MIN_SPEED, ErrorCode

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "Engine",
    "EngineError",
    "EngineStatus",
    "Pcm",
    "SynthesisOptions",
    "UnknownLanguageError",
    "UnknownSpeakerError",
    "UnknownVoiceError",
    "Voice",
    "VoiceSelectionError",
    "check_speed",
    "engine_errors",
]

#: What every engine yields: mono samples in [-1.0, 1.0] at the voice's sample rate.
Pcm = npt.NDArray[np.float32]

#: A stream's item: ``Pcm``, or a chunk with its word timings (``timings.TimedChunk``).
_Chunk = TypeVar("_Chunk")


@dataclass(frozen=True, slots=True)
class Voice:
    """One voice an engine can speak with.

    ``id`` is stable across restarts and URL-safe (``piper-en_US-joe-medium``,
    ``espeak-es``); ``language`` is a BCP-47 tag (``es``, ``es-MX``, ``en-US``).
    """

    id: str
    engine: str
    language: str
    name: str
    sample_rate: int
    #: ``high`` / ``medium`` / ``low`` / ``x_low`` for neural voices, ``standard`` for
    #: natural-sounding non-neural synthesis (SVOX Pico), ``fallback`` for formant
    #: synthesis (espeak-ng); resolution ranks neural, then standard, then fallback.
    quality: str
    neural: bool
    speakers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "engine": self.engine,
            "language": self.language,
            # What a voice list shows instead of the bare tag ("Spanish (Spain)").
            "language_name": language_name(self.language),
            "name": self.name,
            "sample_rate": self.sample_rate,
            "quality": self.quality,
            "neural": self.neural,
            "speakers": list(self.speakers),
        }


@dataclass(frozen=True, slots=True)
class SynthesisOptions:
    """Per-request knobs every engine honours.

    ``speed`` > 1 speaks faster; engines change the rate in the model (length scale,
    words per minute), never by resampling, so pitch is kept.

    ``quick_start`` is a hint that the caller's inference is otherwise idle, so the
    engine may make its first chunk as small as it can for the lowest first audio (the
    next chunk's inference will not wait behind other work). It never changes the
    audio, only how it is chunked; engines without a cheaper small chunk ignore it.

    ``continuation`` is the opposite hint: this text continues a stream whose listener
    still holds audio (the next segment of a streamed-text context), so no chunk need
    be small: the engine may chunk as it does inside one long text, where that is
    cheaper (Piper's larger decoder windows). It never changes the audio either.

    ``whole_segments`` goes further: the caller's workers are saturated (the
    request waited for room to start), so total work matters more than how soon the
    first audio comes; the engine may make each text segment (clause or sentence) in
    as few chunks as it can, which costs least. It never changes the audio either, and
    wins over ``quick_start``.
    """

    speed: float = 1.0
    speaker: str | None = None
    quick_start: bool = False
    continuation: bool = False
    whole_segments: bool = False


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """Whether an engine can run here, and why not when it cannot.

    ``realtime`` False: the engine works but, measured on this machine, does not keep
    the server's real-time promises (first audio, streams per core); ``reason`` says by
    how much. Its voices are still offered, ranked after every voice that keeps them
    (``registry``), so a language's default is never a voice that cannot keep up.
    """

    name: str
    available: bool
    loaded: bool
    reason: str = ""
    device: str = "cpu"
    realtime: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "available": self.available,
            "loaded": self.loaded,
            "reason": self.reason,
            "device": self.device,
            "realtime": self.realtime,
        }


class EngineError(Exception):
    """An engine failed on input it accepted (our fault or the model's, not the client's)."""


class VoiceSelectionError(Exception):
    """A request named a language, voice or speaker that is not offered (the client's
    fault).

    ``code`` is the protocol's stable error code (clients switch on it); ``available``
    lists what could be asked for instead.
    """

    code: ClassVar[ErrorCode]

    def __init__(self, message: str, available: Sequence[str]) -> None:
        super().__init__(message)
        self.message = message
        self.available = list(available)

    def to_json(self) -> dict[str, object]:
        return {"code": str(self.code), "message": self.message, "available": self.available}


class UnknownLanguageError(VoiceSelectionError):
    """No available voice speaks the language; ``available`` lists language tags."""

    code = ErrorCode.UNKNOWN_LANGUAGE


class UnknownVoiceError(VoiceSelectionError):
    """No such voice (id or index), or not offered (any more) by the engine asked;
    ``available`` lists voice ids, where known."""

    code = ErrorCode.UNKNOWN_VOICE


class UnknownSpeakerError(VoiceSelectionError):
    """The speaker is not one of the voice's; ``available`` lists its speakers."""

    code = ErrorCode.UNKNOWN_SPEAKER

    def __init__(self, voice_id: str, speaker: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) if available else "none: single-speaker voice"
        super().__init__(
            f"unknown speaker {speaker!r} for voice {voice_id} (available: {listed})", available
        )
        self.voice_id = voice_id
        self.speaker = speaker


def check_speed(speed: float) -> float:
    """``speed`` itself when within ``MIN_SPEED``..``MAX_SPEED``; ``ValueError`` otherwise.

    Engines call this in ``stream`` so that none speaks outside the range the protocol
    promises. Surfaces validate speed where the request arrives, so a value out of range
    here is its caller's bug: an error, not a silent clamp.
    """
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed {speed} outside [{MIN_SPEED}, {MAX_SPEED}]")
    return speed


def engine_errors(chunks: Iterator[_Chunk], what: str) -> Iterator[_Chunk]:
    """``chunks``, with every exception of a ``next()`` other than ``EngineError`` raised
    as an ``EngineError`` (``what`` says whose synthesis, the original is its
    ``__cause__``): the one failure type the contract lets a stream raise.

    Closing the returned generator closes ``chunks`` at once (it never runs ahead: each
    ``next()`` advances ``chunks`` by exactly one).
    """
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class Engine(abc.ABC):
    """A text-to-speech engine.

    Threading contract: ``load`` and every ``next()`` of a ``stream`` generator run in
    worker threads. Different generators may advance concurrently in different
    threads; one generator is never advanced by two threads at once. An engine whose
    library is not thread-safe serialises internally with its own lock.
    """

    #: Short engine name used in voice ids and status (``piper``, ``espeak``, ``melo``).
    name: str

    @abc.abstractmethod
    def status(self) -> EngineStatus:
        """Availability without loading anything heavy; never raises. Cheap: after the
        first call it reads memory only (callers may ask on every health check)."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load models (blocking, idempotent). Raises ``EngineError`` if it cannot."""

    @abc.abstractmethod
    def voices(self) -> Sequence[Voice]:
        """The voices this engine offers, callable before ``load``.

        Reads memory only, once a first look has been taken (the first call may take
        it): what the last ``refresh_voices`` found. Voices that come and go on disk
        appear or disappear only through ``refresh_voices``.
        """

    def refresh_voices(self) -> None:
        """Look again for voices that may have come or gone since (blocking: it may
        touch the disk). Safe to call from any thread while others use the engine:
        ``voices()`` and ``stream`` see the old list or the new one, never a mix.

        Engines whose voices are fixed for the life of the process keep this default,
        which does nothing.
        """
        return

    @abc.abstractmethod
    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Synthesize ``text`` lazily.

        Each ``next()`` does one bounded unit of inference (a clause, a sentence or a
        decoder window) and returns its samples, so the caller can stop between chunks
        by simply not asking for more (and calling ``close()``). Chunks are non-empty.
        The call itself only validates, from memory (no file, no lock another thread
        holds while synthesizing): callers may make it on their event loop.

        Raises, from the call itself (before any inference):

        - ``UnknownVoiceError``: ``voice`` is not (or no longer) offered by this engine
          (a voice file removed after the caller resolved it);
        - ``UnknownSpeakerError``: ``options.speaker`` is not one of ``voice.speakers``;
        - ``ValueError``: ``options.speed`` outside ``MIN_SPEED``..``MAX_SPEED``
          (``check_speed``);
        - ``EngineError``: the engine cannot synthesize at all (not loaded).

        From any ``next()``: ``EngineError`` only, whatever failed underneath
        (``engine_errors`` wraps the library's exceptions).
        """

    #: Where this engine's word times come from: ``"aligned"``, from the model or the
    #: synthesizer itself (the engine has a ``stream_with_timings``, see
    #: ``timings.TimedEngine``); ``"estimated"``, spread over each segment's speech by
    #: word length (its own ``stream_with_timings`` does it, or ``alignment.timed``
    #: does for an engine without one). Chunks say it per word (``WordTiming.estimated``).
    word_timing: ClassVar[str] = "estimated"

    def warm_up(self, voice: Voice) -> None:
        """Run one short synthesis so the first real request is as fast as later ones."""
        for _ in self.stream(voice, "Hello.", SynthesisOptions()):
            pass
