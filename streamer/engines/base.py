"""The engine contract: what every text-to-speech engine gives the server.

An engine owns models and turns text into mono float32 PCM. It knows nothing of
sessions, sockets or Trio: the server drives it from worker threads, one chunk at a
time, so that an interrupt waits for at most one chunk of inference.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: What every engine yields: mono samples in [-1.0, 1.0] at the voice's sample rate.
Pcm = npt.NDArray[np.float32]

#: Speaking-rate bounds shared by every engine (1.0 = the voice's natural rate).
MIN_SPEED = 0.5
MAX_SPEED = 2.0


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
    #: ``high`` / ``medium`` / ``low`` / ``x_low`` for neural voices, ``fallback`` for
    #: formant synthesis; resolution prefers neural voices over fallbacks.
    quality: str
    neural: bool
    speakers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "engine": self.engine,
            "language": self.language,
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
    """

    speed: float = 1.0
    speaker: str | None = None
    quick_start: bool = False


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """Whether an engine can run here, and why not when it cannot."""

    name: str
    available: bool
    loaded: bool
    reason: str = ""
    device: str = "cpu"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "available": self.available,
            "loaded": self.loaded,
            "reason": self.reason,
            "device": self.device,
        }


class EngineError(Exception):
    """An engine failed on input it accepted (our fault or the model's, not the client's)."""


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
        """Availability without loading anything heavy; never raises."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load models (blocking, idempotent). Raises ``EngineError`` if it cannot."""

    @abc.abstractmethod
    def voices(self) -> Sequence[Voice]:
        """The voices this engine offers; cheap, callable before ``load``."""

    @abc.abstractmethod
    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        """Synthesize ``text`` lazily.

        Each ``next()`` does one bounded unit of inference (a clause, a sentence or a
        decoder window) and returns its samples, so the caller can stop between chunks
        by simply not asking for more (and calling ``close()``). Chunks are non-empty.
        """

    def warm_up(self, voice: Voice) -> None:
        """Run one short synthesis so the first real request is as fast as later ones."""
        for _ in self.stream(voice, "Hello.", SynthesisOptions()):
            pass
