"""Word timing helpers shared by engines: the estimated default, and the mapping from an
engine's phoneme words back to the words of the text.

- ``timed`` is an engine's stream with word timings: its own ``stream_with_timings``
  (``timings.TimedEngine``), else ``estimated_stream``: one segment per ``next()``,
  its words spread over its speech (``timings.estimate_word_timings``). That costs a
  whole segment before its first chunk, which is what clause-at-a-time engines spend
  anyway.
- ``assign_groups`` maps the words of a text onto the *phoneme words* a phonemizer made
  of it. espeak-ng (Piper's and Kokoro's front end) reads "$3.50" as four words and may
  run "Hmm... OK" into one, so the counts differ; phonemizing each word alone (about
  12 µs a word) says how many phoneme words it became, and when those counts add up
  the mapping is exact. When they do not, each word gets the phoneme words whose
  middle falls in its share of the phoneme text, in proportion to its own phonemes'
  length, and the timing is flagged estimated.
- ``word_spans`` finds ``timings.words_of``' words in a text, for callers that index
  the text (character offsets in timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import numpy as np

from streamer.engines.base import Pcm, SynthesisOptions, Voice, engine_errors
from streamer.engines.text import split_for_streaming
from streamer.engines.timings import (
    TimedChunk,
    TimedEngine,
    WordTiming,
    estimate_word_timings,
    speech_bounds,
    words_of,
)

if TYPE_CHECKING:
    from streamer.engines.base import Engine

__all__ = [
    "PUNCTUATION_PHONEMES",
    "assign_groups",
    "attach_to_chunks",
    "estimated_stream",
    "phoneme_groups",
    "timed",
    "word_spans",
]

#: Phoneme symbols espeak-ng writes for punctuation: they make a pause, not a sound of
#: the word they follow, so a word's time ends before them.
PUNCTUATION_PHONEMES: Final = frozenset(',.;:!?¡¿—…"«»“”()-')

_TOKEN: Final = re.compile(r"\S+")
_SPOKEN: Final = re.compile(r"\w", re.UNICODE)


def word_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each word of ``timings.words_of(text)``, in order."""
    return [m.span() for m in _TOKEN.finditer(text) if _SPOKEN.search(m.group())]


# --- the estimated default -------------------------------------------------------------


def timed(
    engine: Engine, voice: Voice, text: str, options: SynthesisOptions
) -> Iterator[TimedChunk]:
    """``engine``'s audio for ``text`` with every word timed: by the engine when it can
    (``TimedEngine``), else estimated. Raises as ``Engine.stream`` does, at the call."""
    if isinstance(engine, TimedEngine):
        return engine.stream_with_timings(voice, text, options)
    return estimated_stream(engine, voice, text, options)


def estimated_stream(
    engine: Engine, voice: Voice, text: str, options: SynthesisOptions
) -> Iterator[TimedChunk]:
    """``engine``'s audio for ``text``, one segment per ``next()``, each word attached to
    the chunk its estimated start falls in. Validates now (``engine.stream`` of the
    first segment is called before returning)."""
    segments = split_for_streaming(text)
    first = engine.stream(voice, segments[0] if segments else text, options)
    return engine_errors(
        _estimate(engine, voice, segments, options, first), f"{engine.name} {voice.id}"
    )


def _estimate(
    engine: Engine,
    voice: Voice,
    segments: list[str],
    options: SynthesisOptions,
    first: Iterator[Pcm],
) -> Iterator[TimedChunk]:
    rate = voice.sample_rate
    later = replace(options, quick_start=False)  # only the stream's start is quick
    offset = 0.0
    try:
        if not segments:
            for chunk in first:
                yield TimedChunk(chunk)
            return
        for index, segment in enumerate(segments):
            stream = first if index == 0 else engine.stream(voice, segment, later)
            chunks = [chunk for chunk in stream if chunk.size]
            if not chunks:
                continue
            audio = np.concatenate(chunks)
            start_s, end_s = speech_bounds(audio, rate)
            words = estimate_word_timings(words_of(segment), offset + start_s, offset + end_s)
            yield from attach_to_chunks(chunks, words, offset, rate)
            offset += audio.size / rate
    finally:
        close = getattr(first, "close", None)
        if close is not None:
            close()


def attach_to_chunks(
    chunks: Sequence[Pcm], words: Sequence[WordTiming], offset: float, rate: int
) -> Iterator[TimedChunk]:
    """``chunks`` (starting at ``offset`` seconds of the stream) with each word on the
    chunk its start falls in (the first chunk for a word that starts before it, the
    last for one that starts after)."""
    pending = list(words)
    position = offset
    for index, chunk in enumerate(chunks):
        position += chunk.size / rate
        last = index == len(chunks) - 1
        mine = [w for w in pending if last or w.start_s < position]
        pending = pending[len(mine) :]
        yield TimedChunk(chunk, tuple(mine))


# --- phoneme words to text words -----------------------------------------------------------


def phoneme_groups(phonemes: Sequence[str]) -> list[tuple[int, int]]:
    """The phoneme words of one phonemized sentence: ``[first, end)`` indexes into
    ``phonemes`` of each run between spaces that holds a sound, ``end`` before any
    trailing punctuation (its pause is not the word's)."""
    groups: list[tuple[int, int]] = []
    start: int | None = None
    last_sound = -1
    for index, phoneme in enumerate([*phonemes, " "]):
        if phoneme == " ":
            if start is not None and last_sound >= start:
                groups.append((start, last_sound + 1))
            start = None
            continue
        if start is None:
            start = index
        if phoneme not in PUNCTUATION_PHONEMES:
            last_sound = index
    return groups


def assign_groups(
    word_counts: Sequence[int], word_lengths: Sequence[int], group_lengths: Sequence[int]
) -> tuple[list[tuple[int, int]], bool]:
    """Which phoneme words (``[first, end)`` into the sequence) each text word became.

    ``word_counts``: phoneme words each text word makes alone; ``word_lengths`` its
    phonemes' length alone; ``group_lengths`` the length of each phoneme word of the
    whole text. Exact (second value True) when the counts add up; else proportional.
    A word may get an empty range (it made no sound of its own).
    """
    if sum(word_counts) == len(group_lengths):
        ranges = []
        first = 0
        for count in word_counts:
            ranges.append((first, first + count))
            first += count
        return ranges, True
    total_words = sum(max(1, n) for n in word_lengths) or 1
    total_groups = sum(group_lengths) or 1
    # Each phoneme word goes to the text word whose share holds the phoneme word's middle.
    bounds = np.cumsum([max(1, n) for n in word_lengths]) / total_words
    middles = (np.cumsum(group_lengths) - np.asarray(group_lengths) / 2) / total_groups
    owners = np.minimum(np.searchsorted(bounds, middles, side="right"), len(word_lengths) - 1)
    ranges = []
    for word in range(len(word_lengths)):
        mine = np.flatnonzero(owners == word)
        ranges.append((int(mine[0]), int(mine[-1]) + 1) if mine.size else (0, 0))
    return ranges, False
