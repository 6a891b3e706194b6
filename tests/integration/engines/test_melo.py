"""MeloEngine against melo's own ``TTS`` with a tiny random-weight checkpoint.

The checkpoint, tokenizers and NLTK data are built once per session by
``streamer.testing`` (see its ``_tiny_melo.py`` for what stands in for what). Random
weights make noise, not speech: these tests check the plumbing (front-end, model,
streaming, speed, cancellation), not intelligibility.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Generator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.engines.base import (
    EngineError,
    Pcm,
    SynthesisOptions,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.melo import MeloEngine, speaker_language
from streamer.engines.patches.melotts import TorchaudioStandIn
from streamer.engines.text import split_for_streaming
from streamer.testing import TINY_SAMPLE_RATE, checkpoint_dir

ENGLISH = "Hello there, my good friend. The weather is lovely today. Shall we walk?"
SPANISH = "Hola, mi buen amigo. Hoy hace un tiempo precioso. ¿Damos un paseo?"
#: A failed hub load must be reported this fast, not after network time-outs.
HUB_FAILURE_BUDGET_S = 5.0

pytestmark = [
    # melo uses torch's old weight_norm and jit.script, and its Japanese front-end (imported
    # whatever the language) pykakasi's old API; neither is ours to fix.
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:melo.*"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]


def _voice(engine: MeloEngine, voice_id: str) -> Voice:
    return {voice.id: voice for voice in engine.voices()}[voice_id]


def _synthesize(engine: MeloEngine, voice_id: str, text: str, speed: float = 1.0) -> list[Pcm]:
    return list(engine.stream(_voice(engine, voice_id), text, SynthesisOptions(speed=speed)))


# --- no melo needed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("speaker", "model_language", "expected"),
    [
        ("EN-US", "EN", "en-US"),
        ("EN-BR", "EN", "en-GB"),
        ("EN_INDIA", "EN", "en-IN"),
        ("EN-INDIA", "EN", "en-IN"),
        ("EN-AU", "EN", "en-AU"),
        ("EN-Default", "EN", "en"),
        ("ES", "ES", "es"),
        ("FR", "FR", "fr"),
        ("FR-FR", "FR", "fr-FR"),
        ("ZH", "ZH", "zh"),
        ("JP", "JP", "ja"),
        ("KR", "KR", "ko"),
    ],
)
def test_speaker_language_is_bcp47(speaker: str, model_language: str, expected: str) -> None:
    assert speaker_language(speaker, model_language) == expected


def test_status_without_melo_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A None entry makes find_spec report the module missing and any import fail.
    monkeypatch.setitem(sys.modules, "melo", None)
    engine = MeloEngine(languages=("EN",), checkpoint_dir=tmp_path)
    status = engine.status()
    assert not status.available
    assert not status.loaded
    assert "No module named 'melo'" in status.reason
    with pytest.raises(EngineError, match="not installed"):
        engine.load()
    assert "No module named 'melo'" in engine.status().reason


def test_bad_requests_raise_before_load() -> None:
    engine = MeloEngine(languages=("ES",), checkpoint_dir=None)
    voice = _voice(engine, "melo-es")
    with pytest.raises(ValueError, match="speed"):
        engine.stream(voice, "Hola.", SynthesisOptions(speed=2.5))
    with pytest.raises(EngineError, match="not loaded"):
        engine.stream(voice, "Hola.", SynthesisOptions())


def test_hub_voices_are_listed_before_load() -> None:
    engine = MeloEngine(languages=("EN", "ES"), checkpoint_dir=None)
    voices = {voice.id: voice for voice in engine.voices()}
    assert set(voices) == {
        "melo-en-us",
        "melo-en-br",
        "melo-en-india",
        "melo-en-au",
        "melo-en-default",
        "melo-es",
    }
    assert all(voice.sample_rate == 44100 for voice in voices.values())


# --- with melo and the tiny checkpoint --------------------------------------------


@pytest.mark.melo
def test_voices_come_from_the_config(tiny_melo_root: Path) -> None:
    engine = MeloEngine(languages=("EN", "ES"), checkpoint_dir=checkpoint_dir(tiny_melo_root))
    voices = {voice.id: voice for voice in engine.voices()}  # before load: config only
    assert {vid: voice.language for vid, voice in voices.items()} == {
        "melo-en-us": "en-US",
        "melo-en-br": "en-GB",
        "melo-en-india": "en-IN",
        "melo-en-au": "en-AU",
        "melo-en-default": "en",
        "melo-es": "es",
    }
    for voice in voices.values():
        assert voice.engine == "melo"
        assert voice.quality == "high"
        assert voice.neural
        assert voice.sample_rate == TINY_SAMPLE_RATE
    status = engine.status()
    assert status.available
    assert not status.loaded


@pytest.mark.melo
def test_missing_checkpoint_is_reported(tiny_melo_root: Path, tmp_path: Path) -> None:
    engine = MeloEngine(languages=("ES",), checkpoint_dir=tmp_path)
    assert not engine.status().available
    assert "checkpoint.pth" in engine.status().reason or "config.json" in engine.status().reason
    with pytest.raises(EngineError):
        engine.load()


@pytest.mark.melo
def test_hub_load_fails_fast_offline(melo_engine: MeloEngine) -> None:
    """No network, no cached hub model: load says so at once and status keeps the reason.

    Uses ``melo_engine`` only so that melo is already imported and the time measured is
    the hub's, not the import's."""
    engine = MeloEngine(languages=("ES",), checkpoint_dir=None)
    started = time.monotonic()
    with pytest.raises(EngineError, match="hub"):
        engine.load()
    assert time.monotonic() - started < HUB_FAILURE_BUDGET_S
    status = engine.status()
    assert not status.available
    assert "hub" in status.reason


@pytest.mark.melo
def test_loaded_status(melo_engine: MeloEngine) -> None:
    status = melo_engine.status()
    assert status.available
    assert status.loaded
    assert status.device == "cpu"
    melo_engine.load()  # idempotent


@pytest.mark.melo
@pytest.mark.parametrize(("voice_id", "text"), [("melo-en-us", ENGLISH), ("melo-es", SPANISH)])
def test_streams_one_chunk_per_segment(melo_engine: MeloEngine, voice_id: str, text: str) -> None:
    chunks = _synthesize(melo_engine, voice_id, text)
    assert len(chunks) == len(split_for_streaming(text))
    for chunk in chunks:
        assert chunk.dtype == np.float32
        assert chunk.ndim == 1
        assert chunk.size > 0
        assert np.all(np.isfinite(chunk))
        assert float(np.max(np.abs(chunk))) <= 1.0
        assert float(np.max(np.abs(chunk))) > 0.0
    assert _voice(melo_engine, voice_id).sample_rate == TINY_SAMPLE_RATE


@pytest.mark.melo
@pytest.mark.parametrize(
    ("voice_id", "short", "long"),
    [
        ("melo-en-au", "Good morning.", "Good morning to you and to everyone in this room."),
        ("melo-es", "Buenos días.", "Buenos días a usted y a todas las personas de esta sala."),
    ],
)
def test_longer_text_gives_longer_audio(
    melo_engine: MeloEngine, voice_id: str, short: str, long: str
) -> None:
    short_samples = sum(c.size for c in _synthesize(melo_engine, voice_id, short))
    long_samples = sum(c.size for c in _synthesize(melo_engine, voice_id, long))
    assert long_samples > 2 * short_samples


@pytest.mark.melo
def test_speed_changes_duration(melo_engine: MeloEngine) -> None:
    text = "This sentence is spoken slowly and then quickly."
    slow = sum(c.size for c in _synthesize(melo_engine, "melo-en-br", text, speed=0.5))
    fast = sum(c.size for c in _synthesize(melo_engine, "melo-en-br", text, speed=2.0))
    assert fast * 2 < slow


@pytest.mark.melo
def test_closing_after_first_chunk_stops_inference(
    melo_engine: MeloEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from melo import utils

    calls: list[str] = []
    front_end = utils.get_text_for_tts_infer

    def counting(text: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(text)
        return front_end(text, *args, **kwargs)

    monkeypatch.setattr(utils, "get_text_for_tts_infer", counting)
    voice = _voice(melo_engine, "melo-en-us")
    assert len(split_for_streaming(ENGLISH)) == 4

    stream = melo_engine.stream(voice, ENGLISH, SynthesisOptions())
    assert isinstance(stream, Generator)
    assert next(stream).size > 0
    stream.close()
    assert len(calls) == 1

    calls.clear()
    list(melo_engine.stream(voice, ENGLISH, SynthesisOptions()))
    assert len(calls) == 4


@pytest.mark.melo
def test_concurrent_streams_in_threads(melo_engine: MeloEngine) -> None:
    errors: list[BaseException] = []
    sizes: list[int] = []

    def run(voice_id: str, text: str) -> None:
        try:
            sizes.append(sum(c.size for c in _synthesize(melo_engine, voice_id, text)))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    jobs = [("melo-en-us", ENGLISH), ("melo-en-india", ENGLISH), ("melo-es", SPANISH)]
    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(sizes) == len(jobs)
    assert all(size > 0 for size in sizes)


@pytest.mark.melo
def test_inference_needs_no_torchaudio(melo_engine: MeloEngine) -> None:
    """melo imports torchaudio but must not use it to synthesize: with the stand-in in
    place (no torchaudio installed), any use would raise ImportError."""
    try:
        metadata.version("torchaudio")
    except metadata.PackageNotFoundError:
        pass
    else:
        pytest.skip("a torchaudio distribution is installed")
    stand_in = sys.modules["torchaudio"]
    assert isinstance(stand_in, TorchaudioStandIn)
    with pytest.raises(ImportError, match="torchaudio"):
        stand_in.load  # noqa: B018 - the attribute access is the test
    assert _synthesize(melo_engine, "melo-es", "Una frase más.")[0].size > 0


@pytest.mark.melo
def test_unknown_voice_is_the_callers_error(melo_engine: MeloEngine) -> None:
    stranger = Voice("melo-xx", "melo", "xx", "nobody", TINY_SAMPLE_RATE, "high", True)
    with pytest.raises(UnknownVoiceError) as caught:
        melo_engine.stream(stranger, "Hello.", SynthesisOptions())
    assert "melo-es" in caught.value.available


@pytest.mark.melo
def test_front_end_failure_mid_stream_is_an_engine_error(
    melo_engine: MeloEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice = _voice(melo_engine, "melo-es")
    stream = melo_engine.stream(voice, "Hola. Adiós.", SynthesisOptions())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fake splitter failure")

    from melo.api import TTS

    monkeypatch.setattr(TTS, "split_sentences_into_pieces", broken)
    with pytest.raises(EngineError, match="fake splitter failure") as caught:
        next(stream)
    assert isinstance(caught.value.__cause__, RuntimeError)
