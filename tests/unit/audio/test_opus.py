"""Ogg Opus as we write it: headers, granules, end trimming, hold-back, two decoders.

The stream is decoded by libsndfile (libopus + libogg) and by ffmpeg (its own Ogg
demuxer, which verifies every page checksum, and its own Opus decoder); both must give
back exactly as many samples as went in, aligned with the input.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import soundfile as sf

from streamer.audio import OPUS_SAMPLE_RATES, AudioPipeline, OutputSpec
from streamer.audio._opus import DEFAULT_PRE_SKIP, OggOpusWriter
from tests.support.audio_streams import (
    Pcm,
    best_lag,
    correlation,
    ffmpeg_decode,
    needs_ffmpeg,
    ogg_packets,
    opus_decodable,
    opus_head,
    parse_ogg,
    sine,
    speech_like,
)

GRANULE_RATE = 48000
FRAME_MS = 20
Signal = Callable[[float, int], Pcm]


def chunks(signal: Pcm, seed: int = 0, low: int = 1, high: int = 3000) -> Iterator[Pcm]:
    rng = np.random.default_rng(seed)
    start = 0
    while start < signal.size:
        size = int(rng.integers(low, high))
        yield signal[start : start + size]
        start += size


def encode(
    signal: Pcm, rate: int, kbps: int = 32, seed: int = 0, application: str = "voip"
) -> tuple[OggOpusWriter, bytes]:
    writer = OggOpusWriter(rate, kbps, application=application)
    data = b"".join(writer.write(chunk) for chunk in chunks(signal, seed))
    return writer, data + writer.finish()


# -- headers and pages ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
def test_headers(rate: int) -> None:
    writer = OggOpusWriter(rate, 32, serial=1234)
    data = writer.write(np.zeros(0, dtype=np.float32))
    pages = parse_ogg(data)
    assert len(pages) == 2, "OpusHead and OpusTags, each alone on its page"
    assert opus_head(data) == {
        "version": 1,
        "channels": 1,
        # libopus's look-ahead (voip): 6.5 ms, whatever the input rate.
        "pre_skip": DEFAULT_PRE_SKIP,
        "input_rate": rate,
        "gain": 0,
        "mapping": 0,
    }
    assert writer.pre_skip == DEFAULT_PRE_SKIP
    tags = pages[1].body
    assert tags.startswith(b"OpusTags")
    (vendor_len,) = struct.unpack_from("<I", tags, 8)
    assert struct.unpack_from("<I", tags, 12 + vendor_len) == (0,)  # no user comments
    assert len(tags) == 16 + vendor_len
    assert [(p.bos, p.eos, p.granule, p.sequence, p.serial) for p in pages] == [
        (True, False, 0, 0, 1234),
        (False, False, 0, 1, 1234),
    ]
    assert writer.frame_size == rate * FRAME_MS // 1000


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_granules_and_end_trimming(rate: int) -> None:
    signal = speech_like(1.23, rate)
    writer, data = encode(signal, rate)
    pages = parse_ogg(data)
    audio = pages[2:]
    step = FRAME_MS * GRANULE_RATE // 1000
    assert [p.granule for p in audio[:-1]] == [step * (k + 1) for k in range(len(audio) - 1)]
    # The last page trims the stream to exactly the input's length.
    scale = GRANULE_RATE // rate
    assert audio[-1].granule == writer.pre_skip + signal.size * scale
    assert audio[-2].granule < audio[-1].granule <= len(audio) * step
    assert [p.eos for p in pages] == [False] * (len(pages) - 1) + [True]
    assert [p.bos for p in pages] == [True] + [False] * (len(pages) - 1)
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert len({p.serial for p in pages}) == 1
    # One packet per page, none split.
    assert len(ogg_packets(pages)) == len(pages)
    assert not any(p.continued for p in pages)
    # Enough packets to cover the input and the look-ahead, and not one more.
    covered = len(audio) * writer.frame_size
    lookahead = writer.pre_skip // scale
    assert 0 <= covered - (signal.size + lookahead) < writer.frame_size


def test_serial_numbers_differ_between_streams() -> None:
    serials = {parse_ogg(OggOpusWriter(24000, 32).finish())[0].serial for _ in range(8)}
    assert len(serials) > 1


def test_speech_is_coded_with_silk() -> None:
    # application=voip: libopus treats the input as speech and codes it with SILK or
    # hybrid (TOC configs 0-15) rather than CELT-only (16-31) at this bitrate.
    _, data = encode(speech_like(1.0, 24000), 24000)
    tocs = [packet[0] >> 3 for packet, _ in ogg_packets(parse_ogg(data))[2:]]
    assert sum(config < 16 for config in tocs) >= 0.9 * len(tocs)


# -- decoders ------------------------------------------------------------------------------


def chirp(seconds: float, rate: int) -> Pcm:
    hz = np.linspace(100.0, 0.4 * rate, round(seconds * rate))
    return (0.5 * np.sin(2 * np.pi * np.cumsum(hz) / rate)).astype(np.float32)


# Alignment is checked with application "audio" (CELT at these bitrates), which keeps the
# waveform: any error in pre-skip or granules shows as a lag or a length difference.
# The default, "voip", high-passes the input and codes it with SILK, which keeps what is
# heard rather than the waveform; its streams get a looser check below.
@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
@pytest.mark.parametrize("make", [speech_like, chirp])
def test_libsndfile_decodes_exactly_the_input(rate: int, make: Signal) -> None:
    signal = make(1.3, rate)
    _, data = encode(signal, rate, kbps=64, application="audio")
    decoded, decoded_rate = sf.read(io.BytesIO(data), dtype="float64")
    assert decoded_rate == rate
    # Pre-skip and end trimming applied: not a sample more or less.
    assert decoded.size == signal.size
    assert best_lag(decoded, signal, 40) == 0
    assert correlation(decoded, signal) > 0.97


@needs_ffmpeg
@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
@pytest.mark.parametrize("make", [speech_like, chirp])
def test_ffmpeg_decodes_exactly_the_input(rate: int, make: Signal) -> None:
    signal = make(1.3, rate)
    _, data = encode(signal, rate, kbps=64, seed=1, application="audio")
    # ffmpeg decodes at 48 kHz; asking for 48 kHz keeps its resampler out of the length.
    assert ffmpeg_decode(data, GRANULE_RATE).size == signal.size * (GRANULE_RATE // rate)
    decoded = ffmpeg_decode(data, rate)
    assert decoded.size == signal.size
    assert best_lag(decoded, signal, 40) == 0
    assert correlation(decoded, signal) > 0.97


@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
def test_default_settings_keep_speech_in_place(rate: int) -> None:
    signal = speech_like(1.3, rate)
    _, data = encode(signal, rate)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float64")
    assert decoded.size == signal.size
    # SILK's resampling and voip's high-pass shift the waveform by a fraction of a ms.
    assert abs(best_lag(decoded, signal, 40)) <= rate // 10000 + 1
    assert correlation(decoded, signal) > 0.7


@needs_ffmpeg
def test_ffmpeg_checks_our_page_checksums() -> None:
    # The decode tests pass only if ffmpeg says nothing; a bad CRC is something it says.
    _, data = encode(sine(0.5, 24000), 24000)
    pages = parse_ogg(data)
    offset = sum(len(p.raw) for p in pages[:4])
    broken = bytearray(data)
    broken[offset + 22] ^= 0x01
    with pytest.raises(AssertionError, match="CRC mismatch"):
        ffmpeg_decode(bytes(broken), 24000)


@pytest.mark.parametrize("rate", [24000, 48000])
def test_a_sine_keeps_its_level_and_pitch(rate: int) -> None:
    signal = sine(1.0, rate, hz=440.0)
    _, data = encode(signal, rate, kbps=32)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float64")
    body = decoded[rate // 10 : -rate // 10]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(body.size)))
    assert abs(np.argmax(spectrum) * rate / body.size - 440.0) < 2.0
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_empty_stream_decodes_to_nothing() -> None:
    writer = OggOpusWriter(24000, 32)
    data = writer.finish()
    pages = parse_ogg(data)
    assert len(pages) == 3
    assert pages[-1].eos and pages[-1].granule == writer.pre_skip  # trims everything
    decoded, _ = sf.read(io.BytesIO(data), dtype="float64")
    assert decoded.size == 0


@needs_ffmpeg
def test_ffmpeg_decodes_the_empty_stream_to_nothing() -> None:
    assert ffmpeg_decode(OggOpusWriter(24000, 32).finish(), 48000).size == 0


# -- hold-back -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
def test_a_page_leaves_as_soon_as_its_frame_is_complete(rate: int) -> None:
    writer = OggOpusWriter(rate, 32)
    signal = sine(0.1, rate)
    frame = writer.frame_size
    data = writer.write(signal[: frame - 1])
    assert len(parse_ogg(data)) == 2, "headers only: the first frame is not complete"
    data += writer.write(signal[frame - 1 : frame])
    pages = parse_ogg(data)
    assert len(pages) == 3 and pages[2].granule == FRAME_MS * GRANULE_RATE // 1000


@pytest.mark.parametrize("rate", OPUS_SAMPLE_RATES)
def test_at_most_one_frame_and_the_look_ahead_are_held(rate: int) -> None:
    writer = OggOpusWriter(rate, 32)
    lookahead = -(-writer.pre_skip * rate // GRANULE_RATE)
    data = b""
    pushed = 0
    for chunk in chunks(speech_like(1.0, rate), seed=2, low=1, high=rate // 20):
        data += writer.write(chunk)
        pushed += chunk.size
        held = pushed - opus_decodable(data, rate)
        assert held < writer.frame_size + lookahead


@pytest.mark.parametrize("voice_rate", [22050, 24000])
def test_pipeline_first_push_of_100ms_yields_headers_and_audio(voice_rate: int) -> None:
    rate = 24000
    pipeline = AudioPipeline(OutputSpec("opus", chunk_size=256), voice_rate)
    data = b"".join(pipeline.push(speech_like(0.1, voice_rate)))
    pages = parse_ogg(data)
    assert pages[0].body.startswith(b"OpusHead") and pages[1].body.startswith(b"OpusTags")
    assert len(pages) >= 3 and opus_decodable(data, rate) > 0
    # Of what reached the encoder (the resampler keeps its own filter delay), less than
    # one 20 ms frame plus the 6.5 ms look-ahead is held.
    held = pipeline.samples_out - opus_decodable(data, rate)
    assert held < rate * (0.020 + 0.0065)
    if voice_rate == rate:
        assert pipeline.samples_out == round(0.1 * rate)


def test_writer_misuse() -> None:
    writer = OggOpusWriter(16000, 24)
    writer.write(sine(0.05, 16000))
    writer.finish()
    with pytest.raises(RuntimeError):
        writer.write(sine(0.05, 16000))
    with pytest.raises(RuntimeError):
        writer.finish()
    writer.close()  # idempotent
