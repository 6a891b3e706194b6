"""EspeakEngine against the real libespeak-ng shipped by espeakng-loader."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator

import numpy as np
import pytest

from streamer.engines import espeak as espeak_module
from streamer.engines.base import (
    EngineError,
    Pcm,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.espeak import SAMPLE_RATE, EspeakEngine, espeak_rate

SPANISH_LONG = (
    "El tren de alta velocidad salió de Madrid a las ocho de la mañana, y llegó a "
    "Barcelona poco antes de las once. Los pasajeros bajaron con prisa hacia la reunión."
)
ENGLISH_LONG = (
    "The quick brown fox jumps over the lazy dog, and then it runs across the field "
    "towards the river. Nobody saw where it went after that."
)
#: Generous bound for threads that should finish in milliseconds.
THREAD_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    engine = EspeakEngine()
    if not engine.status().available:
        pytest.skip(engine.status().reason)
    engine.load()
    return engine


def _voice(engine: EspeakEngine, voice_id: str) -> Voice:
    return next(voice for voice in engine.voices() if voice.id == voice_id)


def _audio(chunks: Iterator[Pcm]) -> Pcm:
    return np.concatenate(list(chunks))


def test_status_and_load(engine: EspeakEngine) -> None:
    status = engine.status()
    assert status.available
    assert status.loaded
    assert status.name == "espeak"


def test_spanish_gives_finite_float32_audio(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-es")
    assert voice.sample_rate == SAMPLE_RATE == 22050
    audio = _audio(engine.stream(voice, "Hola, ¿cómo estás? Buenos días.", SynthesisOptions()))
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() <= 1.0
    # Real speech, not silence: about a second and a half, with energy.
    assert 0.8 < audio.size / SAMPLE_RATE < 4.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01


def test_long_sentence_arrives_in_many_chunks(engine: EspeakEngine) -> None:
    chunks = list(engine.stream(_voice(engine, "espeak-es"), SPANISH_LONG, SynthesisOptions()))
    assert len(chunks) > 10
    assert all(chunk.size > 0 and chunk.dtype == np.float32 for chunk in chunks)
    # Chunks are the library's callback buffers, not whole segments.
    assert max(chunk.size for chunk in chunks) < SAMPLE_RATE // 2


def test_speed_changes_duration(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-es")
    normal = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions(speed=1.0)))
    fast = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions(speed=2.0)))
    assert fast.size < 0.7 * normal.size


def test_rate_mapping() -> None:
    assert espeak_rate(1.0) == 175
    assert espeak_rate(2.0) == 350
    assert espeak_rate(0.1) == 80
    assert espeak_rate(5.0) == 450


def test_invalid_requests_raise_at_call(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-es")
    with pytest.raises(ValueError, match="speed"):
        engine.stream(voice, "Hola.", SynthesisOptions(speed=3.0))
    with pytest.raises(UnknownSpeakerError) as speaker:
        engine.stream(voice, "Hola.", SynthesisOptions(speaker="nobody"))
    assert speaker.value.available == ["male", "female"]
    stranger = Voice("espeak-nope", "espeak", "xx", "x", SAMPLE_RATE, "fallback", False)
    with pytest.raises(UnknownVoiceError, match="unknown espeak voice") as unknown:
        engine.stream(stranger, "Hola.", SynthesisOptions())
    assert "espeak-es" in unknown.value.available


def test_female_speaker_differs(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-es")
    assert voice.speakers == ("male", "female")
    male = _audio(engine.stream(voice, "Hola a todos.", SynthesisOptions()))
    female = _audio(engine.stream(voice, "Hola a todos.", SynthesisOptions(speaker="female")))
    assert male.size != female.size or not np.array_equal(male, female)


def test_close_after_first_chunk_releases_the_library(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-es")
    stream = engine.stream(voice, SPANISH_LONG, SynthesisOptions())
    assert isinstance(stream, Generator)
    first = next(stream)
    assert first.size > 0

    # While the generator is suspended, another thread synthesizes to the end: the
    # lock is not held across a yield.
    done = threading.Event()

    def other() -> None:
        _audio(engine.stream(voice, "Otra frase.", SynthesisOptions()))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(THREAD_TIMEOUT_S)
    assert done.is_set()

    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert _audio(engine.stream(voice, "Sigue funcionando.", SynthesisOptions())).size > 0


def test_callback_failure_aborts_and_recovers(
    engine: EspeakEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice = _voice(engine, "espeak-es")
    calls = 0

    def failing_add(self: object, address: int, count: int) -> None:
        nonlocal calls
        calls += 1
        raise MemoryError("fake")

    with monkeypatch.context() as patch:
        patch.setattr(espeak_module._Collector, "add", failing_add)
        with pytest.raises(EngineError, match="callback failed"):
            list(engine.stream(voice, SPANISH_LONG, SynthesisOptions()))
    # Returning 1 stopped the synthesis at the first buffer.
    assert calls == 1
    assert _audio(engine.stream(voice, "Todo bien.", SynthesisOptions())).size > 0


def test_concurrent_streams_complete_and_match_sequential(engine: EspeakEngine) -> None:
    # espeak-ng is not bit-exact from run to run (lengths vary by ~0.2 %), so the
    # comparison with a sequential run is by duration.
    jobs = {
        "es": (_voice(engine, "espeak-es"), SPANISH_LONG),
        "en": (_voice(engine, "espeak-en-US"), ENGLISH_LONG),
    }
    expected = {
        key: _audio(engine.stream(v, t, SynthesisOptions())) for key, (v, t) in jobs.items()
    }
    results: dict[str, Pcm] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(key: str) -> None:
        voice, text = jobs[key]
        try:
            start.wait()
            # Several rounds, so the two threads interleave segment by segment.
            for _ in range(3):
                results[key] = _audio(engine.stream(voice, text, SynthesisOptions()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(key,)) for key in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT_S)
    assert not errors
    # The lock keeps each synthesis whole: the voice never switches mid-segment.
    for key in jobs:
        assert results[key].size == pytest.approx(expected[key].size, rel=0.02)
        assert np.isfinite(results[key]).all()


def test_voices_cover_main_languages(engine: EspeakEngine) -> None:
    voices = engine.voices()
    languages = {voice.language for voice in voices}
    assert {"es", "es-419", "en-US", "en-GB", "fr-FR", "de", "pt", "pt-BR", "zh"} <= languages
    assert len(voices) > 100
    assert len({voice.id for voice in voices}) == len(voices)
    for voice in voices:
        assert voice.engine == "espeak"
        assert voice.id.startswith("espeak-")
        assert voice.quality == "fallback"
        assert not voice.neural
        assert voice.sample_rate == SAMPLE_RATE


@pytest.mark.parametrize(
    ("voice_id", "language"),
    [
        ("espeak-es", "es"),
        ("espeak-es-419", "es-419"),
        ("espeak-en-US", "en-US"),
        ("espeak-en", "en-GB"),
        ("espeak-pt-BR", "pt-BR"),
        ("espeak-cmn", "zh"),
        ("espeak-fr", "fr-FR"),
        ("espeak-ca-va", "ca-valencia"),
    ],
)
def test_bcp47_mapping(engine: EspeakEngine, voice_id: str, language: str) -> None:
    assert _voice(engine, voice_id).language == language


def test_warm_up_and_punctuation_only(engine: EspeakEngine) -> None:
    voice = _voice(engine, "espeak-en-US")
    engine.warm_up(voice)
    # Nothing speakable yields nothing, rather than an empty chunk.
    assert all(chunk.size > 0 for chunk in engine.stream(voice, "...", SynthesisOptions()))


def test_missing_library_reports_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> tuple[str, str]:
        raise ImportError("No module named 'espeakng_loader'")

    # A fresh process-wide state, as if the library had never been loaded here.
    monkeypatch.setattr(espeak_module, "_state", espeak_module._State())
    monkeypatch.setattr(espeak_module, "_library_paths", missing)
    engine = EspeakEngine()
    status = engine.status()
    assert not status.available
    assert "espeakng_loader" in status.reason
    assert engine.voices() == []
    with pytest.raises(EngineError, match="unavailable"):
        engine.load()
    assert not engine.status().available
