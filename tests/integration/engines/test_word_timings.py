"""Word timings from the engines: the estimated default, phoneme words mapped back to
the text's words, and Piper's durations (real model; marked slow)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamer.engines.alignment import (
    assign_groups,
    attach_to_chunks,
    phoneme_groups,
    timed,
    word_spans,
)
from streamer.engines.base import Engine, SynthesisOptions
from streamer.engines.espeak import EspeakEngine
from streamer.engines.piper import PiperEngine
from streamer.engines.timings import TimedChunk, TimedEngine, WordTiming, words_of
from tests.support.fake_engine import FAKE_RATE, FakeEngine


def test_word_spans_match_words_of() -> None:
    text = "  Hello, — world! $3.50 it's…  "
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == words_of(text) == ["Hello,", "world!", "$3.50", "it's…"]


def test_phoneme_groups_leave_out_punctuation_and_empty_runs() -> None:
    phonemes = [*list("həlˈoʊ ðˈɛɹ, hˌaʊ ? "), " "]
    groups = phoneme_groups(phonemes)
    assert ["".join(phonemes[a:b]) for a, b in groups] == ["həlˈoʊ", "ðˈɛɹ", "hˌaʊ"]


def test_assign_groups_is_exact_when_the_counts_add_up() -> None:
    # "$3.50" alone made four phoneme words, "now" one.
    ranges, exact = assign_groups([1, 4, 1], [5, 20, 3], [5, 5, 5, 5, 5, 3])
    assert exact and ranges == [(0, 1), (1, 5), (5, 6)]


def test_assign_groups_falls_back_to_proportions() -> None:
    # Two words run together into one phoneme word, then two more.
    ranges, exact = assign_groups([1, 1, 1, 1], [3, 2, 6, 6], [5, 6, 6])
    assert not exact
    assert ranges[0] == (0, 1) and ranges[2] == (1, 2) and ranges[3] == (2, 3)
    assert ranges[1] == (0, 0)  # made no phoneme word of its own


def test_attach_to_chunks_puts_each_word_where_it_starts() -> None:
    chunks = [np.zeros(100, np.float32), np.zeros(100, np.float32)]
    words = [
        WordTiming("a", 0.5, 0.9, True),
        WordTiming("b", 1.2, 1.5, True),
        WordTiming("c", 9.0, 9.5, True),
    ]
    out = list(attach_to_chunks(chunks, words, offset=0.0, rate=100))
    assert [[w.word for w in c.words] for c in out] == [["a"], ["b", "c"]]


def test_the_default_estimates_each_segment_over_its_speech() -> None:
    engine = FakeEngine(chunks_per_segment=3, chunk_seconds=0.1)
    voice = engine.voices()[0]
    text = "Hello there, my good friend. How are you today?"
    assert not isinstance(engine, TimedEngine)  # no timings of its own: estimated
    chunks = list(timed(engine, voice, text, SynthesisOptions()))
    assert all(isinstance(c, TimedChunk) and c.pcm.size for c in chunks)
    words = [w for c in chunks for w in c.words]
    assert [w.word for w in words] == words_of(text)
    assert all(w.estimated for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(w.end_s >= w.start_s for w in words)
    total = sum(c.pcm.size for c in chunks) / FAKE_RATE
    assert words[-1].end_s <= total + 1e-9
    # Segments are the engine's (first clause, then sentences): 3 segments of 3 chunks.
    assert len(chunks) == 9 and engine.texts == [
        "Hello there,",
        "my good friend.",
        "How are you today?",
    ]


class _Refusing(FakeEngine):
    def stream(self, voice, text, options):  # type: ignore[no-untyped-def]
        raise ValueError("speed out of range")  # as Engine.stream raises, at the call


def test_the_default_validates_at_the_call() -> None:
    engine = _Refusing()
    with pytest.raises(ValueError, match="speed"):
        timed(engine, engine.voices()[0], "Hi.", SynthesisOptions())


def test_engines_declare_their_word_timing() -> None:
    assert Engine.word_timing == "estimated"
    assert EspeakEngine.word_timing in ("estimated", "aligned")
    assert PiperEngine.word_timing == "aligned"


@pytest.mark.slow
def test_piper_times_every_word_from_its_durations(piper_windowed_engine: PiperEngine) -> None:
    engine = piper_windowed_engine  # windowed: Piper's default mode
    voice = next(v for v in engine.voices() if v.id == "piper-en_US-joe-medium")
    text = (
        "Hello there, how are you today? Dr. Smith paid $3.50 for 1,000 apples at "
        "10:30 a.m. Hmm... OK!"
    )
    chunks = list(engine.stream_with_timings(voice, text, SynthesisOptions()))
    words = [w for c in chunks for w in c.words]
    assert [w.word for w in words] == words_of(text)
    assert not any(w.estimated for w in words)
    position = 0.0
    for chunk in chunks:
        end = position + chunk.pcm.size / voice.sample_rate
        for word in chunk.words:  # each word rides on the chunk where it starts
            assert word.start_s < end + 1e-6
        position = end
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(b.start_s >= a.end_s - 1e-6 for a, b in itertools.pairwise(words))
    assert words[-1].end_s <= position + 1e-6
    # "$3.50" is "dollar three point five zero": far longer than "for".
    by_word = {w.word: w.end_s - w.start_s for w in words}
    assert by_word["$3.50"] > 3 * by_word["for"]


def test_espeak_times_words_by_its_word_events(espeak_engine: EspeakEngine) -> None:
    engine = espeak_engine
    voice = next(v for v in engine.voices() if v.id == "espeak-en")
    text = "Héllo there, Dr. Smith paid $3.50 today. 😀 Good—bye! One more sentence here."
    chunks = list(engine.stream_with_timings(voice, text, SynthesisOptions()))
    words = [w for c in chunks for w in c.words]
    assert [w.word for w in words] == words_of(text)
    assert not any(w.estimated for w in words)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and all(w.end_s >= w.start_s for w in words)
    total = sum(c.pcm.size for c in chunks) / voice.sample_rate
    assert words[-1].end_s <= total
    by_word = {w.word: w.end_s - w.start_s for w in words}
    assert by_word["$3.50"] > 2 * by_word["paid"]  # "three dollars fifty"
    # The same audio as ``stream`` (espeak-ng is deterministic up to a few samples).
    plain = sum(c.size for c in engine.stream(voice, text, SynthesisOptions()))
    assert abs(plain - total * voice.sample_rate) < 0.01 * plain
