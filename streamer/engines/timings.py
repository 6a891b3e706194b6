"""When each word of a stream is spoken: what engines can tell their caller beside audio.

An engine that knows (Kokoro predicts a duration for every phoneme) or can estimate
(SVOX Pico exposes no timing) where words fall offers ``stream_with_timings``: the same
chunks as ``stream``, each with the words that *start* in it. Times are seconds from
the start of that stream's audio, so a consumer adds the stream's own offset and needs
no per-chunk arithmetic. ``estimated`` says whether the times come from the model or
from the proportional guess below; a consumer (captions, barge-in bookkeeping) should
treat estimated times as good to a word or two, not to the phoneme.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np

from streamer.engines.base import Engine, Pcm, SynthesisOptions, Voice

__all__ = [
    "SILENCE_LEVEL",
    "TimedChunk",
    "TimedEngine",
    "WordTiming",
    "estimate_word_timings",
    "speech_bounds",
    "timed_stream",
    "words_of",
]

#: Peak amplitude below which a stretch of audio counts as silence when locating the
#: speech inside a segment: well under any voiced sound (which peaks at 0.1-0.9 here),
#: well over the codecs' and resamplers' dither.
SILENCE_LEVEL: Final = 0.01
#: Weight of a pause after a word ending a clause or a sentence, in characters: a comma
#: costs roughly the time of two or three letters in every engine measured here.
CLAUSE_PAUSE_CHARS: Final = 3.0
SENTENCE_PAUSE_CHARS: Final = 6.0

_WORD = re.compile(r"\S+")
_SPOKEN = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One word of the text and when it is spoken, in seconds from the stream's start."""

    word: str
    start_s: float
    end_s: float
    #: True when the times are a proportional guess, False when the model said so.
    estimated: bool

    def to_json(self) -> dict[str, object]:
        return {
            "word": self.word,
            "start_ms": round(self.start_s * 1000),
            "end_ms": round(self.end_s * 1000),
            "estimated": self.estimated,
        }


@dataclass(frozen=True, slots=True)
class TimedChunk:
    """A chunk of a stream and the words that start inside it (possibly none)."""

    pcm: Pcm
    words: tuple[WordTiming, ...] = ()


@runtime_checkable
class TimedEngine(Protocol):
    """An engine that says when words are spoken (Kokoro: from the model; Pico:
    estimated). Same contract as ``Engine.stream``, chunks with their words."""

    def stream_with_timings(
        self, voice: Voice, text: str, options: SynthesisOptions
    ) -> Iterator[TimedChunk]: ...


def timed_stream(
    engine: Engine, voice: Voice, text: str, options: SynthesisOptions
) -> Iterator[TimedChunk]:
    """``engine``'s stream of ``text`` with word timings where the engine gives them
    (``TimedEngine``), else the same chunks with no words. Raises and closes as
    ``Engine.stream`` does."""
    if isinstance(engine, TimedEngine):
        return engine.stream_with_timings(voice, text, options)
    return (TimedChunk(pcm) for pcm in engine.stream(voice, text, options))


def words_of(text: str) -> list[str]:
    """The words of ``text`` as a caption would show them: whitespace-separated, with
    their punctuation, keeping only those with something to say (a lone dash is not a
    word)."""
    return [word for word in _WORD.findall(text) if _SPOKEN.search(word)]


def speech_bounds(audio: Pcm, sample_rate: int) -> tuple[float, float]:
    """Where the speech in ``audio`` starts and ends, in seconds: the first and last
    sample louder than ``SILENCE_LEVEL`` (the whole span when all of it is quiet)."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL)
    if loud.size == 0:
        return 0.0, audio.size / sample_rate
    return float(loud[0]) / sample_rate, float(loud[-1] + 1) / sample_rate


def _weight(word: str) -> float:
    spoken = len(_SPOKEN.findall(word))
    pause = 0.0
    if word[-1] in ".!?…":
        pause = SENTENCE_PAUSE_CHARS
    elif word[-1] in ",;:":
        pause = CLAUSE_PAUSE_CHARS
    return max(1, spoken) + pause


def estimate_word_timings(
    words: Sequence[str], start_s: float, end_s: float
) -> tuple[WordTiming, ...]:
    """Spread ``words`` over ``[start_s, end_s]`` in proportion to their letters, with a
    pause after clause and sentence punctuation; every timing is marked estimated."""
    if not words or end_s <= start_s:
        return ()
    weights = [_weight(word) for word in words]
    # The pause after the last word is not speech: leave it out of the scale.
    last_spoken = max(1, len(_SPOKEN.findall(words[-1])))
    total = sum(weights) - weights[-1] + last_spoken
    scale = (end_s - start_s) / total
    timings: list[WordTiming] = []
    cursor = start_s
    for word, weight in zip(words, weights, strict=True):
        spoken = max(1, len(_SPOKEN.findall(word)))
        timings.append(WordTiming(word, cursor, min(end_s, cursor + spoken * scale), True))
        cursor += weight * scale
    return tuple(timings)
