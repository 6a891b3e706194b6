"""PicoEngine against the real SVOX Pico built by ``ttspico``: what is Pico's own (the
contract every engine keeps is in test_engine_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.engines import pico as pico_module
from streamer.engines.base import EngineError, SynthesisOptions
from streamer.engines.pico import LANGUAGES, SAMPLE_RATE, PicoEngine, pico_rate, sanitize
from tests.support.engine_streams import voice_of, whole

SPANISH_LONG = (
    "El tren de alta velocidad salió de Madrid a las ocho de la mañana, y llegó a "
    "Barcelona poco antes de las once. Los pasajeros bajaron con prisa hacia la reunión."
)


def test_voices_and_languages(pico_engine: PicoEngine) -> None:
    voices = {voice.id: voice for voice in pico_engine.voices()}
    assert set(voices) == {f"pico-{language}" for language in LANGUAGES}
    spanish = voices["pico-es-ES"]
    assert spanish.language == "es-ES"
    assert spanish.name == "SVOX Pico Spanish (Spain)"
    assert spanish.sample_rate == SAMPLE_RATE == 16000
    assert spanish.quality == "standard" and not spanish.neural and spanish.speakers == ()


@pytest.mark.parametrize("voice_id", [f"pico-{language}" for language in LANGUAGES])
def test_every_language_speaks_without_clipping(pico_engine: PicoEngine, voice_id: str) -> None:
    voice = voice_of(pico_engine, voice_id)
    audio = whole(pico_engine.stream(voice, "Hello, one two three.", SynthesisOptions()))
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert 0.8 < audio.size / SAMPLE_RATE < 6.0
    # Real speech at a level that leaves headroom: Pico's default volume clips.
    assert 0.1 < float(np.abs(audio).max()) < 0.99


def test_one_chunk_per_segment_first_clause_alone(pico_engine: PicoEngine) -> None:
    voice = voice_of(pico_engine, "pico-es-ES")
    chunks = list(pico_engine.stream(voice, SPANISH_LONG, SynthesisOptions()))
    # "El tren ... mañana," / "y llegó ... once." / "Los pasajeros ... reunión."
    assert len(chunks) == 3
    assert all(chunk.size > 0 and chunk.dtype == np.float32 for chunk in chunks)


def test_rate_mapping() -> None:
    assert pico_rate(1.0) == 100
    assert pico_rate(0.5) == 50
    assert pico_rate(2.0) == 200
    assert pico_rate(0.01) == 20
    assert pico_rate(9.0) == 500


def test_markup_in_client_text_is_never_read(pico_engine: PicoEngine) -> None:
    assert sanitize("a <play file='/etc/passwd'> b\x00c") == "a  play file='/etc/passwd'  b c"
    voice = voice_of(pico_engine, "pico-en-US")
    plain = whole(pico_engine.stream(voice, "Hello there.", SynthesisOptions()))
    # A rate tag in the text would make this far shorter, and a closing tag longer.
    tagged = whole(
        pico_engine.stream(voice, "<speed level='500'>Hello there.</speed>", SynthesisOptions())
    )
    assert tagged.size > 0.8 * plain.size


def test_punctuation_alone_yields_nothing(pico_engine: PicoEngine) -> None:
    voice = voice_of(pico_engine, "pico-en-US")
    # Pico makes a pause of it, which would only delay what follows.
    assert list(pico_engine.stream(voice, "... !!", SynthesisOptions())) == []
    # Characters no Pico language reads do not fail the stream.
    assert all(c.size > 0 for c in pico_engine.stream(voice, "漢字 😀 ok", SynthesisOptions()))


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


def test_timed_stream_uses_picos_estimates(pico_engine: PicoEngine) -> None:
    from streamer.engines.timings import TimedEngine, timed_stream

    assert isinstance(pico_engine, TimedEngine)
    voice = voice_of(pico_engine, "pico-it-IT")
    chunks = list(timed_stream(pico_engine, voice, "Ciao a tutti.", SynthesisOptions()))
    assert [w.word for c in chunks for w in c.words] == ["Ciao", "a", "tutti."]
