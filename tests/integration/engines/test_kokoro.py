"""KokoroEngine against the real Kokoro-82M model that `make install` fetches
(deploy/install_kokoro.py); skipped, with the reason, where it is not installed. What is
Kokoro's own: the contract every engine keeps is in test_engine_contract.py."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.engines import kokoro as kokoro_module
from streamer.engines.base import EngineError, Pcm, SynthesisOptions, UnknownVoiceError, Voice
from streamer.engines.kokoro import (
    FIRST_AUDIO_TARGET_S,
    MIN_STREAMS_PER_CORE,
    SAMPLE_RATE,
    Calibration,
    KokoroEngine,
)
from streamer.engines.text import split_for_streaming
from tests.support import REPO_ROOT
from tests.support.engine_streams import voice_of, whole

pytestmark = pytest.mark.slow

MODEL_DIR = REPO_ROOT / "models" / "kokoro"
SPANISH = "Hola, ¿cómo estás? El tren de alta velocidad sale de Madrid por la mañana."


def _snr_db(reference: Pcm, other: Pcm) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def test_status_after_load_carries_the_measured_rule(kokoro_engine: KokoroEngine) -> None:
    status = kokoro_engine.status()
    calibration = kokoro_engine.calibration
    assert calibration is not None
    assert status.realtime == calibration.realtime
    assert "measured here" in status.reason and f"{FIRST_AUDIO_TARGET_S:.2f} s" in status.reason
    assert kokoro_engine.has_timings


def test_rule() -> None:
    assert Calibration(0.25, 0.3).realtime
    assert not Calibration(0.35, 0.3).realtime  # first audio too late
    assert not Calibration(0.2, 1 / (MIN_STREAMS_PER_CORE - 0.5)).realtime  # too dear
    assert "ranked after SVOX Pico" in Calibration(0.6, 0.3).describe()


def test_voices_languages_and_quality(kokoro_engine: KokoroEngine) -> None:
    voices = {voice.id: voice for voice in kokoro_engine.voices()}
    assert {v.language for v in voices.values()} == {
        "en-US", "en-GB", "es", "fr-FR", "hi", "it", "pt-BR",
    }  # fmt: skip
    assert {"kokoro-ef_dora", "kokoro-em_alex", "kokoro-em_santa"} <= set(voices)
    assert not any(voice_id.startswith(("kokoro-j", "kokoro-z")) for voice_id in voices)
    dora = voices["kokoro-ef_dora"]
    assert dora.name == "Kokoro Dora (Spanish, female)"
    assert dora.sample_rate == SAMPLE_RATE == 24000 and dora.neural
    assert voices["kokoro-af_heart"].quality == "high"
    assert voices["kokoro-af_alloy"].quality == "medium"


def test_one_call_per_segment_identical_to_the_whole_call(kokoro_engine: KokoroEngine) -> None:
    # Each chunk is exactly what one call of the unmodified graph gives for its segment
    # (the streamed audio is the whole-call audio: SNR infinite, not just > 60 dB).
    voice = voice_of(kokoro_engine, "kokoro-ef_dora")
    chunks = list(kokoro_engine.stream(voice, SPANISH, SynthesisOptions()))
    segments = split_for_streaming(SPANISH)
    assert len(chunks) == len(segments) == 2
    session = kokoro_engine._model.session  # type: ignore[union-attr]
    for chunk, segment in zip(chunks, segments, strict=True):
        tokens = kokoro_engine._phonemes(kokoro_engine._table()[voice.id], segment)
        ids = [0, *(kokoro_engine._model.vocab[t] for t in tokens), 0]  # type: ignore[union-attr]
        style = kokoro_engine._style(kokoro_engine._table()[voice.id])[len(tokens) - 1]
        one_call = session.run(
            ["audio"],
            {
                "tokens": np.asarray([ids], dtype=np.int64),
                "style": style,
                "speed": np.asarray([1.0], dtype=np.float32),
            },
        )[0]
        assert _snr_db(np.clip(one_call, -1, 1), chunk) == float("inf")
    # Deterministic from run to run.
    np.testing.assert_array_equal(
        np.concatenate(chunks), whole(kokoro_engine.stream(voice, SPANISH, SynthesisOptions()))
    )


def test_voice_of_an_unsupported_language_is_refused(kokoro_engine: KokoroEngine) -> None:
    # Kokoro has Japanese voices; this engine offers none (no Japanese phonemizer).
    stranger = Voice("kokoro-jf_alpha", "kokoro", "ja", "x", SAMPLE_RATE, "medium", True)
    with pytest.raises(UnknownVoiceError) as unknown:
        kokoro_engine.stream(stranger, "Hola.", SynthesisOptions())
    assert "kokoro-ef_dora" in unknown.value.available


def test_without_preloading_the_first_stream_loads_the_model() -> None:
    engine = KokoroEngine(MODEL_DIR, device="cpu", calibrate=False)
    if not engine.status().available:
        pytest.skip(engine.status().reason)
    assert not engine.status().loaded
    voice = voice_of(engine, "kokoro-ff_siwis")
    assert (
        whole(engine.stream(voice, "Bonjour à tous.", SynthesisOptions())).size > SAMPLE_RATE // 2
    )
    status = engine.status()
    # Loaded, but never measured: not claimed to be real-time.
    assert status.loaded and not status.realtime and "not measured" in status.reason


def test_a_model_that_does_not_load_makes_the_engine_unavailable(tmp_path: Path) -> None:
    for name in (kokoro_module.MODEL_FILE, kokoro_module.VOCAB_FILE):
        (tmp_path / name).write_bytes(b"not a model")
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "ef_dora.bin").write_bytes(b"")
    engine = KokoroEngine(tmp_path, device="cpu")
    assert engine.status().available
    with pytest.raises(EngineError, match="cannot load Kokoro"):
        engine.load()
    status = engine.status()
    assert not status.available and "cannot load Kokoro" in status.reason


def test_word_timings_from_the_predicted_durations(kokoro_engine: KokoroEngine) -> None:
    # What every engine's timings keep is in test_engine_contract.py; the model's
    # durations also keep words apart and each whole within its segment's chunk.
    voice = voice_of(kokoro_engine, "kokoro-ef_dora")
    chunks = list(kokoro_engine.stream_with_timings(voice, SPANISH, SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert not any(w.estimated for w in words)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(words))
    offset = 0.0
    for chunk in chunks:
        duration = chunk.pcm.size / SAMPLE_RATE
        assert all(offset <= w.start_s and w.end_s <= offset + duration for w in chunk.words)
        offset += duration
    # The comma's pause is not in "Hola,": the next word starts after a gap.
    assert words[1].start_s - words[0].end_s > 0.03


def test_word_timings_estimated_where_words_do_not_line_up(kokoro_engine: KokoroEngine) -> None:
    # espeak-ng reads "1234" as several words: that segment's times are estimated.
    voice = voice_of(kokoro_engine, "kokoro-ef_dora")
    text = "Tengo 1234 libros."
    chunks = list(kokoro_engine.stream_with_timings(voice, text, SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert [w.word for w in words] == ["Tengo", "1234", "libros."]
    assert all(w.estimated for w in words)


def test_close_after_the_first_chunk_runs_no_more_calls(
    kokoro_engine: KokoroEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    run = kokoro_engine._run

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return run(*args)

    monkeypatch.setattr(kokoro_engine, "_run", counting)
    voice = voice_of(kokoro_engine, "kokoro-ef_dora")
    stream = kokoro_engine.stream(voice, SPANISH * 3, SynthesisOptions())
    assert next(stream).size > 0
    stream.close()  # type: ignore[attr-defined]
    assert calls == 1


def test_missing_voices_report_npm(tmp_path: Path) -> None:
    for name in (kokoro_module.MODEL_FILE, kokoro_module.VOCAB_FILE):
        (tmp_path / name).write_bytes(b"")
    status = KokoroEngine(tmp_path).status()
    assert not status.available and "npm" in status.reason
    assert KokoroEngine(tmp_path).voices() == []
    with pytest.raises(EngineError, match="voices not installed"):
        KokoroEngine(tmp_path).load()


def test_missing_model_reports_make_install(tmp_path: Path) -> None:
    status = KokoroEngine(tmp_path / "nowhere").status()
    assert not status.available and "make install" in status.reason


def test_unsupported_voice_files_are_not_offered(tmp_path: Path) -> None:
    for name in (kokoro_module.MODEL_FILE, kokoro_module.VOCAB_FILE):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "voices").mkdir()
    for name in ("jf_alpha.bin", "zf_xiaobei.bin", "README.bin"):
        (tmp_path / "voices" / name).write_bytes(b"")
    status = KokoroEngine(tmp_path).status()
    assert not status.available and "supported language" in status.reason
    shutil.rmtree(tmp_path / "voices")
