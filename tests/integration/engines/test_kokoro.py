"""KokoroEngine against the real Kokoro-82M model that `make install` fetches
(deploy/install_kokoro.py); skipped, with the reason, where it is not installed."""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.engines import kokoro as kokoro_module
from streamer.engines.base import (
    EngineError,
    Pcm,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.kokoro import (
    FIRST_AUDIO_TARGET_S,
    MIN_STREAMS_PER_CORE,
    SAMPLE_RATE,
    Calibration,
    KokoroEngine,
)
from streamer.engines.text import split_for_streaming

pytestmark = pytest.mark.slow

MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "kokoro"
SPANISH = "Hola, ¿cómo estás? El tren de alta velocidad sale de Madrid por la mañana."
THREAD_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    engine = KokoroEngine(MODEL_DIR, device="cpu")
    if not engine.status().available:
        pytest.skip(engine.status().reason)
    engine.load()
    return engine


def _voice(engine: KokoroEngine, voice_id: str) -> Voice:
    return next(voice for voice in engine.voices() if voice.id == voice_id)


def _audio(chunks: Iterator[Pcm]) -> Pcm:
    return np.concatenate(list(chunks))


def _snr_db(reference: Pcm, other: Pcm) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def test_status_after_load_carries_the_measured_rule(engine: KokoroEngine) -> None:
    status = engine.status()
    assert status.available and status.loaded and status.device == "cpu"
    calibration = engine.calibration
    assert calibration is not None
    assert status.realtime == calibration.realtime
    assert "measured here" in status.reason and f"{FIRST_AUDIO_TARGET_S:.2f} s" in status.reason
    assert engine.has_timings


def test_rule() -> None:
    assert Calibration(0.25, 0.3).realtime
    assert not Calibration(0.35, 0.3).realtime  # first audio too late
    assert not Calibration(0.2, 1 / (MIN_STREAMS_PER_CORE - 0.5)).realtime  # too dear
    assert "ranked after SVOX Pico" in Calibration(0.6, 0.3).describe()


def test_voices_languages_and_quality(engine: KokoroEngine) -> None:
    voices = {voice.id: voice for voice in engine.voices()}
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


def test_one_call_per_segment_identical_to_the_whole_call(engine: KokoroEngine) -> None:
    # Each chunk is exactly what one call of the unmodified graph gives for its segment
    # (the streamed audio is the whole-call audio: SNR infinite, not just > 60 dB).
    voice = _voice(engine, "kokoro-ef_dora")
    chunks = list(engine.stream(voice, SPANISH, SynthesisOptions()))
    segments = split_for_streaming(SPANISH)
    assert len(chunks) == len(segments) == 2
    session = engine._model.session  # type: ignore[union-attr]
    for chunk, segment in zip(chunks, segments, strict=True):
        tokens = engine._phonemes(engine._table()[voice.id], segment)
        ids = [0, *(engine._model.vocab[t] for t in tokens), 0]  # type: ignore[union-attr]
        style = engine._style(engine._table()[voice.id])[len(tokens) - 1]
        whole = session.run(
            ["audio"],
            {
                "tokens": np.asarray([ids], dtype=np.int64),
                "style": style,
                "speed": np.asarray([1.0], dtype=np.float32),
            },
        )[0]
        assert _snr_db(np.clip(whole, -1, 1), chunk) == float("inf")
    # Deterministic from run to run.
    np.testing.assert_array_equal(
        np.concatenate(chunks), _audio(engine.stream(voice, SPANISH, SynthesisOptions()))
    )


def test_speed_changes_duration(engine: KokoroEngine) -> None:
    voice = _voice(engine, "kokoro-em_alex")
    normal = _audio(engine.stream(voice, SPANISH, SynthesisOptions()))
    fast = _audio(engine.stream(voice, SPANISH, SynthesisOptions(speed=1.6)))
    assert fast.size < 0.8 * normal.size
    assert np.abs(normal).max() <= 1.0 and np.isfinite(normal).all()


def test_invalid_requests_raise_at_call(engine: KokoroEngine) -> None:
    voice = _voice(engine, "kokoro-ef_dora")
    with pytest.raises(ValueError, match="speed"):
        engine.stream(voice, "Hola.", SynthesisOptions(speed=3.0))
    with pytest.raises(UnknownSpeakerError):
        engine.stream(voice, "Hola.", SynthesisOptions(speaker="x"))
    stranger = Voice("kokoro-jf_alpha", "kokoro", "ja", "x", SAMPLE_RATE, "medium", True)
    with pytest.raises(UnknownVoiceError) as unknown:
        engine.stream(stranger, "Hola.", SynthesisOptions())
    assert "kokoro-ef_dora" in unknown.value.available


def test_without_preloading_the_first_stream_loads_the_model() -> None:
    engine = KokoroEngine(MODEL_DIR, device="cpu", calibrate=False)
    if not engine.status().available:
        pytest.skip(engine.status().reason)
    assert not engine.status().loaded
    voice = _voice(engine, "kokoro-ff_siwis")
    assert (
        _audio(engine.stream(voice, "Bonjour à tous.", SynthesisOptions())).size > SAMPLE_RATE // 2
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


def test_nothing_speakable_yields_nothing(engine: KokoroEngine) -> None:
    voice = _voice(engine, "kokoro-af_heart")
    assert list(engine.stream(voice, "", SynthesisOptions())) == []
    assert all(chunk.size > 0 for chunk in engine.stream(voice, "... !!", SynthesisOptions()))


def test_word_timings_from_the_predicted_durations(engine: KokoroEngine) -> None:
    voice = _voice(engine, "kokoro-ef_dora")
    chunks = list(engine.stream_with_timings(voice, SPANISH, SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert [w.word for w in words] == SPANISH.split()
    assert not any(w.estimated for w in words)
    assert all(w.end_s > w.start_s for w in words)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(words))
    offset = 0.0
    for chunk in chunks:
        duration = chunk.pcm.size / SAMPLE_RATE
        assert all(offset <= w.start_s and w.end_s <= offset + duration for w in chunk.words)
        offset += duration
    # The comma's pause is not in "Hola,": the next word starts after a gap.
    assert words[1].start_s - words[0].end_s > 0.03


def test_word_timings_estimated_where_words_do_not_line_up(engine: KokoroEngine) -> None:
    # espeak-ng reads "1234" as several words: that segment's times are estimated.
    voice = _voice(engine, "kokoro-ef_dora")
    chunks = list(engine.stream_with_timings(voice, "Tengo 1234 libros.", SynthesisOptions()))
    words = [word for chunk in chunks for word in chunk.words]
    assert [w.word for w in words] == ["Tengo", "1234", "libros."]
    assert all(w.estimated for w in words)


def test_close_after_the_first_chunk_runs_no_more_calls(
    engine: KokoroEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    run = engine._run

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return run(*args)

    monkeypatch.setattr(engine, "_run", counting)
    stream = engine.stream(_voice(engine, "kokoro-ef_dora"), SPANISH * 3, SynthesisOptions())
    assert next(stream).size > 0
    stream.close()  # type: ignore[attr-defined]
    assert calls == 1


def test_concurrent_streams_match_sequential(engine: KokoroEngine) -> None:
    jobs = {
        "es": (_voice(engine, "kokoro-ef_dora"), "Buenos días a todos."),
        "en": (_voice(engine, "kokoro-af_heart"), "Good morning, everybody."),
    }
    expected = {k: _audio(engine.stream(v, t, SynthesisOptions())) for k, (v, t) in jobs.items()}
    results: dict[str, Pcm] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(key: str) -> None:
        voice, text = jobs[key]
        try:
            start.wait()
            results[key] = _audio(engine.stream(voice, text, SynthesisOptions()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(key,)) for key in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT_S)
    assert not errors
    for key in jobs:
        np.testing.assert_array_equal(results[key], expected[key])


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
