"""A deterministic fake engine for session and server tests (never the server default).

Each text segment becomes ``chunks_per_segment`` chunks of a sine tone of
``chunk_seconds`` each. A test can hold inference inside a worker thread with
``gate`` (a ``threading.Event`` the engine waits on before every chunk) to interrupt
at a known point, and make a text fail by containing ``FAIL``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from streamer.engines.base import Engine, EngineError, EngineStatus, Pcm, SynthesisOptions, Voice
from streamer.engines.text import split_for_streaming

FAKE_RATE = 16000


class FakeEngineFailure(EngineError):
    """The fake engine failing as the Engine contract says engines fail."""


class FakeEngine(Engine):
    name = "fake"

    def __init__(
        self,
        *,
        chunks_per_segment: int = 2,
        chunk_seconds: float = 0.05,
        delay: float = 0.0,
        voices: Sequence[Voice] | None = None,
    ) -> None:
        self.chunks_per_segment = chunks_per_segment
        self.chunk_seconds = chunk_seconds
        self.delay = delay
        self.gate: threading.Event | None = None
        self.chunks_made = 0
        self.texts: list[str] = []
        self.options: list[SynthesisOptions] = []
        self._voices = list(
            voices
            or [
                Voice("fake-en", "fake", "en-US", "Fake English", FAKE_RATE, "high", True),
                Voice(
                    "fake-es",
                    "fake",
                    "es",
                    "Fake Spanish",
                    FAKE_RATE,
                    "medium",
                    True,
                    speakers=("ana", "luis"),
                ),
            ]
        )
        self._lock = threading.Lock()

    def status(self) -> EngineStatus:
        return EngineStatus(self.name, available=True, loaded=True)

    def load(self) -> None:
        pass

    def voices(self) -> Sequence[Voice]:
        return self._voices

    def stream(self, voice: Voice, text: str, options: SynthesisOptions) -> Iterator[Pcm]:
        self.texts.append(text)
        self.options.append(options)
        if "FAIL" in text:
            raise FakeEngineFailure("fake engine asked to fail")
        samples = int(voice.sample_rate * self.chunk_seconds / options.speed)
        t = np.arange(samples, dtype=np.float32) / voice.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        for _segment in split_for_streaming(text):
            for _ in range(self.chunks_per_segment):
                if self.gate is not None:
                    self.gate.wait(timeout=10)
                if self.delay:
                    time.sleep(self.delay)
                with self._lock:
                    self.chunks_made += 1
                yield tone.copy()
