"""EspeakEngine against the real libespeak-ng shipped by espeakng-loader: what is
espeak-ng's own (the contract every engine keeps is in test_engine_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.engines import espeak as espeak_module
from streamer.engines.base import (
    EngineError,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.espeak import SAMPLE_RATE, EspeakEngine, espeak_rate
from tests.support.engine_streams import voice_of, whole

SPANISH_LONG = (
    "El tren de alta velocidad salió de Madrid a las ocho de la mañana, y llegó a "
    "Barcelona poco antes de las once. Los pasajeros bajaron con prisa hacia la reunión."
)


def test_sample_rate_is_the_librarys(espeak_engine: EspeakEngine) -> None:
    assert voice_of(espeak_engine, "espeak-es").sample_rate == SAMPLE_RATE == 22050


def test_long_sentence_arrives_in_many_chunks(espeak_engine: EspeakEngine) -> None:
    voice = voice_of(espeak_engine, "espeak-es")
    chunks = list(espeak_engine.stream(voice, SPANISH_LONG, SynthesisOptions()))
    assert len(chunks) > 10
    assert all(chunk.size > 0 and chunk.dtype == np.float32 for chunk in chunks)
    # Chunks are the library's callback buffers, not whole segments.
    assert max(chunk.size for chunk in chunks) < SAMPLE_RATE // 2


def test_rate_mapping() -> None:
    assert espeak_rate(1.0) == 175
    assert espeak_rate(2.0) == 350
    assert espeak_rate(0.1) == 80
    assert espeak_rate(5.0) == 450


def test_errors_name_espeaks_speakers_and_voices(espeak_engine: EspeakEngine) -> None:
    voice = voice_of(espeak_engine, "espeak-es")
    with pytest.raises(UnknownSpeakerError) as speaker:
        espeak_engine.stream(voice, "Hola.", SynthesisOptions(speaker="nobody"))
    assert speaker.value.available == ["male", "female"]
    stranger = Voice("espeak-nope", "espeak", "xx", "x", SAMPLE_RATE, "fallback", False)
    with pytest.raises(UnknownVoiceError, match="unknown espeak voice") as unknown:
        espeak_engine.stream(stranger, "Hola.", SynthesisOptions())
    assert "espeak-es" in unknown.value.available


def test_female_speaker_differs(espeak_engine: EspeakEngine) -> None:
    voice = voice_of(espeak_engine, "espeak-es")
    assert voice.speakers == ("male", "female")
    male = whole(espeak_engine.stream(voice, "Hola a todos.", SynthesisOptions()))
    female = whole(espeak_engine.stream(voice, "Hola a todos.", SynthesisOptions(speaker="female")))
    assert male.size != female.size or not np.array_equal(male, female)


def test_callback_failure_aborts_and_recovers(
    espeak_engine: EspeakEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice = voice_of(espeak_engine, "espeak-es")
    calls = 0

    def failing_add(self: object, address: int, count: int) -> None:
        nonlocal calls
        calls += 1
        raise MemoryError("fake")

    with monkeypatch.context() as patch:
        patch.setattr(espeak_module._Collector, "add", failing_add)
        with pytest.raises(EngineError, match="callback failed"):
            list(espeak_engine.stream(voice, SPANISH_LONG, SynthesisOptions()))
    # Returning 1 stopped the synthesis at the first buffer.
    assert calls == 1
    assert whole(espeak_engine.stream(voice, "Todo bien.", SynthesisOptions())).size > 0


def test_voices_cover_main_languages(espeak_engine: EspeakEngine) -> None:
    voices = espeak_engine.voices()
    languages = {voice.language for voice in voices}
    assert {"es", "es-419", "en-US", "en-GB", "fr-FR", "de", "pt", "pt-BR", "zh"} <= languages
    assert len(voices) > 100
    for voice in voices:
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
def test_bcp47_mapping(espeak_engine: EspeakEngine, voice_id: str, language: str) -> None:
    assert voice_of(espeak_engine, voice_id).language == language


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
