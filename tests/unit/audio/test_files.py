"""A finished WAV or FLAC stream made a file with an exact header (streamer.audio._files).

Streams are produced by the real encoders, as the server sends them (length unknown),
then completed and read back by libsndfile, Python's ``wave`` and ffprobe.
"""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import (
    OutputSpec,
    StreamHeaderError,
    complete_file,
    complete_header,
    make_encoder,
    resolve_stream_format,
)
from tests.support.audio_files import ffprobe_seconds, needs_ffprobe, soundfile_frames, wave_frames
from tests.support.audio_streams import speech_like

RATE = 22050


def stream(fmt: str, samples: np.ndarray, rate: int = RATE, chunk: int = 1024) -> bytes:
    """What the server sends for ``samples``: frames of one request, concatenated."""
    encoder = make_encoder(resolve_stream_format(OutputSpec(fmt, sample_rate=rate), rate), chunk)
    frames = []
    for start in range(0, samples.size, 777):  # irregular pushes, as synthesis gives them
        frames += encoder.encode(samples[start : start + 777])
    frames += encoder.finish()
    encoder.close()
    return b"".join(frames)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_streamed_header_leaves_the_length_unknown(fmt: str) -> None:
    data = stream(fmt, speech_like(0.5, RATE))
    if fmt == "wav":
        with wave.open(io.BytesIO(data)) as reader:
            assert reader.getnframes() == 0x7FFFFFFF  # what issue #19 saw
    else:
        assert int.from_bytes(data[18:26], "big") & ((1 << 36) - 1) == 0


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("count", [1, 3, 1151, 1152, 1153, 22050, 100_003])
def test_completed_file_states_its_exact_length_to_every_reader(
    fmt: str, count: int, tmp_path: Path
) -> None:
    samples = speech_like(count / RATE + 0.01, RATE)[:count]
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(complete_file(fmt, stream(fmt, samples)))
    assert soundfile_frames(path) == count
    if fmt == "wav":
        assert wave_frames(path) == count


@needs_ffprobe
@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_ffprobe_agrees(fmt: str, rate: int, tmp_path: Path) -> None:
    samples = speech_like(0.7, rate)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(complete_file(fmt, stream(fmt, samples, rate)))
    assert ffprobe_seconds(path) == Fraction(samples.size, rate)
    assert soundfile_frames(path) == samples.size


def test_empty_streams_say_zero_samples(tmp_path: Path) -> None:
    empty = np.zeros(0, dtype=np.float32)
    wav = tmp_path / "empty.wav"
    wav.write_bytes(complete_file("wav", stream("wav", empty)))
    assert wave_frames(wav) == 0 and soundfile_frames(wav) == 0
    flac = complete_file("flac", stream("flac", empty))
    assert int.from_bytes(flac[18:26], "big") & ((1 << 36) - 1) == 0


@pytest.mark.parametrize("seed", range(12))
def test_flac_of_white_noise_finds_the_last_frame(seed: int, tmp_path: Path) -> None:
    # Noise is stored verbatim, so frame data is full of byte pairs that look like a
    # frame sync: only the CRCs tell the real last frame from them.
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2_000, 40_000))
    samples = rng.uniform(-1, 1, count).astype(np.float32)
    path = tmp_path / "noise.flac"
    path.write_bytes(complete_file("flac", stream("flac", samples)))
    assert soundfile_frames(path) == count


def test_complete_header_patches_a_file_in_place(tmp_path: Path) -> None:
    samples = speech_like(0.3, RATE)
    path = tmp_path / "x.wav"
    path.write_bytes(stream("wav", samples))
    with open(path, "r+b") as file:
        complete_header(file, "wav")
        assert file.tell() == path.stat().st_size
    assert wave_frames(path) == soundfile_frames(path) == samples.size


@pytest.mark.parametrize("fmt", ["mp3", "opus", "pcm", "aac"])
def test_other_formats_are_left_as_they_are(fmt: str) -> None:
    data = stream(fmt, speech_like(0.2, 24000), 24000)
    assert complete_file(fmt, data) is data


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("wav", b"RIFX\0\0\0\0WAVE"),
        ("wav", b"RIFF\xff\xff\xff\xffWAVEfmt \x10\0\0\0" + bytes(16)),
        ("flac", b"OggS" + bytes(60)),
        ("flac", b"fLaC\x80\0\0\x22" + bytes(34) + b"\xff\xf8 not a frame"),
    ],
)
def test_data_that_is_not_the_format_is_refused(fmt: str, data: bytes) -> None:
    with pytest.raises(StreamHeaderError):
        complete_file(fmt, data)
