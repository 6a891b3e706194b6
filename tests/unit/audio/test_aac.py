"""AAC-LC in ADTS: headers frame by frame, ffmpeg decodes it, hold-back, bitrate cap.

libsndfile does not read AAC, so ffmpeg is the decoder here. ADTS carries no priming or
length information: decoders play the encoder's 1024 priming samples first and the
last frame's zero padding at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio import AAC_SAMPLE_RATES, AudioPipeline, OutputSpec, resolve_stream_format
from streamer.audio._aac import AdtsAacWriter, adts_header
from tests.support.audio_streams import (
    Pcm,
    best_lag,
    correlation,
    ffmpeg_decode,
    needs_ffmpeg,
    parse_adts,
    sine,
    speech_like,
)

FRAME = 1024
PRIMING = 1024


def encode(signal: Pcm, rate: int, kbps: int = 64, step: int = 777) -> tuple[AdtsAacWriter, bytes]:
    writer = AdtsAacWriter(rate, kbps)
    data = b"".join(writer.write(signal[i : i + step]) for i in range(0, signal.size, step))
    return writer, data + writer.finish()


def test_adts_header_fields() -> None:
    frame = parse_adts(adts_header(100, rate_index=6) + bytes(100))
    assert len(frame) == 1
    (only,) = frame
    assert (only.mpeg2, only.profile, only.sample_rate, only.channels) == (False, 1, 24000, 1)
    assert (only.length, only.fullness, len(only.payload)) == (107, 0x7FF, 100)
    with pytest.raises(ValueError, match="ADTS"):
        adts_header(8192, rate_index=6)


@pytest.mark.parametrize("rate", AAC_SAMPLE_RATES)
def test_every_frame_has_a_consistent_header(rate: int) -> None:
    signal = speech_like(0.5, rate)
    writer, data = encode(signal, rate, kbps=min(64, 6 * rate // 1000))
    frames = parse_adts(data)
    assert {(f.profile, f.sample_rate, f.channels, f.mpeg2) for f in frames} == {
        (1, rate, 1, False)
    }
    # Priming frame + the input rounded up to whole frames.
    assert len(frames) == writer.packets_out == 1 + -(-signal.size // FRAME)


@needs_ffmpeg
@pytest.mark.parametrize("rate", AAC_SAMPLE_RATES)
def test_ffmpeg_decodes_the_input_after_the_priming(rate: int) -> None:
    signal = speech_like(1.3, rate)
    _, data = encode(signal, rate, kbps=min(64, 6 * rate // 1000))
    decoded = ffmpeg_decode(data, rate, input_format="aac")
    # Priming first, then the input, then padding to a whole frame.
    assert PRIMING <= decoded.size - signal.size < PRIMING + FRAME
    audio = decoded[PRIMING:]
    assert best_lag(audio, signal, 40) == 0
    assert correlation(audio, signal) > 0.95


@needs_ffmpeg
def test_ffmpeg_probes_adts_without_being_told() -> None:
    _, data = encode(sine(1.0, 24000), 24000)
    decoded = ffmpeg_decode(data, 24000)
    body = decoded[PRIMING + 2400 : PRIMING + 21600]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(body.size)))
    assert abs(np.argmax(spectrum) * 24000 / body.size - 440.0) < 2.0
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_empty_stream_is_empty() -> None:
    assert AdtsAacWriter(24000, 64).finish() == b""


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_first_audio_leaves_after_three_frames(rate: int) -> None:
    writer = AdtsAacWriter(rate, min(64, 6 * rate // 1000))
    signal = speech_like(0.5, rate)
    assert writer.write(signal[:FRAME]) == b""  # the encoder works one frame behind
    assert len(parse_adts(writer.write(signal[FRAME : 2 * FRAME]))) == 1  # priming only
    assert writer.write(signal[2 * FRAME : 3 * FRAME - 1]) == b""
    # The third frame completes: the frame carrying input 0..1023 leaves.
    assert len(parse_adts(writer.write(signal[3 * FRAME - 1 : 3 * FRAME]))) == 1


def test_at_most_three_frames_are_held_at_any_moment() -> None:
    rate = 24000
    writer = AdtsAacWriter(rate, 64)
    signal = speech_like(1.0, rate)
    frames = 0
    rng = np.random.default_rng(4)
    start = 0
    while start < signal.size:
        size = int(rng.integers(1, 3000))
        frames += len(parse_adts(writer.write(signal[start : start + size])))
        start = min(start + size, signal.size)
        decodable = max(0, frames - 1) * FRAME  # the first frame is priming
        assert start - decodable < 3 * FRAME


def test_bitrate_is_applied() -> None:
    rng = np.random.default_rng(3)
    noise = (0.3 * rng.standard_normal(48000)).astype(np.float32)
    sizes = {}
    for kbps in (32, 96):
        _, data = encode(noise, 48000, kbps=kbps)
        sizes[kbps] = sum(len(f.payload) for f in parse_adts(data)[1:])
    assert sizes[32] * 8 / 1000 == pytest.approx(32, rel=0.35)
    assert sizes[96] * 8 / 1000 == pytest.approx(96, rel=0.35)


@pytest.mark.parametrize(
    ("rate", "asked", "sent"), [(8000, 64, 48), (11025, 96, 66), (16000, 96, 96), (48000, 256, 256)]
)
def test_bitrate_is_capped_by_the_rate(rate: int, asked: int, sent: int) -> None:
    fmt = resolve_stream_format(OutputSpec("aac", sample_rate=rate, bitrate=asked), 22050)
    assert fmt.bitrate == sent
    assert (fmt.note is not None) == (asked != sent)
    # The encoder takes the announced value as it is (FFmpeg would clamp a higher one).
    assert AdtsAacWriter(rate, sent).bitrate_kbps == sent


def test_pipeline_defaults() -> None:
    pipeline = AudioPipeline(OutputSpec("aac"), 22050)
    fmt = pipeline.stream_format
    assert (fmt.sample_rate, fmt.bitrate, fmt.mime_type, fmt.note) == (22050, 64, "audio/aac", None)
    snapped = AudioPipeline(OutputSpec("aac", sample_rate=20000), 22050).stream_format
    assert snapped.sample_rate == 22050 and snapped.note is not None


def test_writer_misuse() -> None:
    writer = AdtsAacWriter(16000, 32)
    writer.write(sine(0.2, 16000))
    writer.finish()
    with pytest.raises(RuntimeError):
        writer.write(sine(0.05, 16000))
    with pytest.raises(RuntimeError):
        writer.finish()
    writer.close()
