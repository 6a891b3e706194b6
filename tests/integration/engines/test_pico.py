"""PicoEngine against the real SVOX Pico built by ``ttspico``."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np
import pytest

from streamer.engines import pico as pico_module
from streamer.engines.base import (
    EngineError,
    Pcm,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.pico import LANGUAGES, SAMPLE_RATE, PicoEngine, pico_rate, sanitize

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
def engine() -> PicoEngine:
    engine = PicoEngine()
    if not engine.status().available:
        pytest.skip(engine.status().reason)
    engine.load()
    return engine


def _voice(engine: PicoEngine, voice_id: str) -> Voice:
    return next(voice for voice in engine.voices() if voice.id == voice_id)


def _audio(chunks: Iterator[Pcm]) -> Pcm:
    return np.concatenate(list(chunks))


def test_status_voices_and_languages(engine: PicoEngine) -> None:
    status = engine.status()
    assert status.available and status.loaded and status.name == "pico"
    voices = {voice.id: voice for voice in engine.voices()}
    assert set(voices) == {f"pico-{language}" for language in LANGUAGES}
    spanish = voices["pico-es-ES"]
    assert spanish.language == "es-ES"
    assert spanish.name == "SVOX Pico Spanish (Spain)"
    assert spanish.sample_rate == SAMPLE_RATE == 16000
    assert spanish.quality == "standard" and not spanish.neural and spanish.speakers == ()


@pytest.mark.parametrize("voice_id", [f"pico-{language}" for language in LANGUAGES])
def test_every_language_speaks_without_clipping(engine: PicoEngine, voice_id: str) -> None:
    audio = _audio(
        engine.stream(_voice(engine, voice_id), "Hello, one two three.", SynthesisOptions())
    )
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert 0.8 < audio.size / SAMPLE_RATE < 6.0
    # Real speech at a level that leaves headroom: Pico's default volume clips.
    assert 0.1 < float(np.abs(audio).max()) < 0.99


def test_one_chunk_per_segment_first_clause_alone(engine: PicoEngine) -> None:
    chunks = list(engine.stream(_voice(engine, "pico-es-ES"), SPANISH_LONG, SynthesisOptions()))
    # "El tren ... mañana," / "y llegó ... once." / "Los pasajeros ... reunión."
    assert len(chunks) == 3
    assert all(chunk.size > 0 and chunk.dtype == np.float32 for chunk in chunks)


def test_speed_changes_duration_not_pitch_by_resampling(engine: PicoEngine) -> None:
    voice = _voice(engine, "pico-es-ES")
    normal = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions(speed=1.0)))
    fast = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions(speed=2.0)))
    slow = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions(speed=0.5)))
    assert fast.size < 0.8 * normal.size
    assert slow.size > 1.3 * normal.size


def test_rate_mapping() -> None:
    assert pico_rate(1.0) == 100
    assert pico_rate(0.5) == 50
    assert pico_rate(2.0) == 200
    assert pico_rate(0.01) == 20
    assert pico_rate(9.0) == 500


def test_markup_in_client_text_is_never_read(engine: PicoEngine) -> None:
    assert sanitize("a <play file='/etc/passwd'> b\x00c") == "a  play file='/etc/passwd'  b c"
    voice = _voice(engine, "pico-en-US")
    plain = _audio(engine.stream(voice, "Hello there.", SynthesisOptions()))
    # A rate tag in the text would make this far shorter, and a closing tag longer.
    tagged = _audio(
        engine.stream(voice, "<speed level='500'>Hello there.</speed>", SynthesisOptions())
    )
    assert tagged.size > 0.8 * plain.size


def test_invalid_requests_raise_at_call(engine: PicoEngine) -> None:
    voice = _voice(engine, "pico-es-ES")
    with pytest.raises(ValueError, match="speed"):
        engine.stream(voice, "Hola.", SynthesisOptions(speed=3.0))
    with pytest.raises(UnknownSpeakerError):
        engine.stream(voice, "Hola.", SynthesisOptions(speaker="female"))
    stranger = Voice("pico-xx-XX", "pico", "xx-XX", "x", SAMPLE_RATE, "standard", False)
    with pytest.raises(UnknownVoiceError) as unknown:
        engine.stream(stranger, "Hola.", SynthesisOptions())
    assert "pico-es-ES" in unknown.value.available


def test_nothing_speakable_yields_nothing(engine: PicoEngine) -> None:
    voice = _voice(engine, "pico-en-US")
    assert list(engine.stream(voice, "... !!", SynthesisOptions())) == []
    assert list(engine.stream(voice, "", SynthesisOptions())) == []
    # Characters no Pico language reads do not fail the stream.
    assert all(c.size > 0 for c in engine.stream(voice, "漢字 😀 ok", SynthesisOptions()))


def test_close_midway_leaves_nothing_held(engine: PicoEngine) -> None:
    voice = _voice(engine, "pico-es-ES")
    stream = engine.stream(voice, SPANISH_LONG, SynthesisOptions())
    assert isinstance(stream, Generator)
    assert next(stream).size > 0
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


def test_concurrent_streams_match_sequential(engine: PicoEngine) -> None:
    jobs = {
        "es": (_voice(engine, "pico-es-ES"), SPANISH_LONG),
        "en": (_voice(engine, "pico-en-US"), ENGLISH_LONG),
        "es2": (_voice(engine, "pico-es-ES"), SPANISH_LONG),
    }
    expected = {k: _audio(engine.stream(v, t, SynthesisOptions())) for k, (v, t) in jobs.items()}
    results: dict[str, Pcm] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(key: str) -> None:
        voice, text = jobs[key]
        try:
            start.wait()
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
    # Pico's timing is deterministic (its excitation phases are not, so samples differ
    # from run to run): a thread that used another's instance mid-synthesis would get
    # another length or another level.
    for key in jobs:
        assert results[key].size == expected[key].size
        rms = float(np.sqrt(np.mean(results[key] ** 2)))
        assert rms == pytest.approx(float(np.sqrt(np.mean(expected[key] ** 2))), rel=0.1)


def test_word_timings_are_estimated_and_ordered(engine: PicoEngine) -> None:
    voice = _voice(engine, "pico-es-ES")
    chunks = list(engine.stream_with_timings(voice, SPANISH_LONG, SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert [w.word for w in words] == SPANISH_LONG.split()
    assert all(w.estimated for w in words)
    total = sum(chunk.pcm.size for chunk in chunks) / SAMPLE_RATE
    starts = [w.start_s for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] and words[-1].end_s <= total
    assert all(w.end_s > w.start_s for w in words)
    # Each chunk carries the words that start in it.
    offset = 0.0
    for chunk in chunks:
        duration = chunk.pcm.size / SAMPLE_RATE
        assert all(offset <= w.start_s < offset + duration for w in chunk.words)
        offset += duration
    # As long as the plain stream (the samples differ from run to run: random phases).
    plain = _audio(engine.stream(voice, SPANISH_LONG, SynthesisOptions()))
    assert sum(c.pcm.size for c in chunks) == plain.size


def test_missing_language_files_report_unavailable(tmp_path: Path) -> None:
    engine = PicoEngine(language_dir=tmp_path)
    status = engine.status()
    assert not status.available and str(tmp_path) in status.reason
    assert engine.voices() == []
    with pytest.raises(EngineError, match="no language files"):
        engine.load()


def test_missing_library_reports_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pico_module.importlib.util, "find_spec", lambda name: None)
    status = PicoEngine().status()
    assert not status.available and "ttspico is not installed" in status.reason


def test_timed_stream_uses_picos_estimates(engine: PicoEngine) -> None:
    from streamer.engines.timings import TimedEngine, timed_stream

    assert isinstance(engine, TimedEngine)
    chunks = list(
        timed_stream(engine, _voice(engine, "pico-it-IT"), "Ciao a tutti.", SynthesisOptions())
    )
    assert [w.word for c in chunks for w in c.words] == ["Ciao", "a", "tutti."]
