"""Output spec validation, rate/bitrate resolution and the format table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer.audio import (
    AAC_SAMPLE_RATES,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_SAMPLE_RATE,
    MAX_VOLUME,
    MIN_CHUNK_SIZE,
    MIN_SAMPLE_RATE,
    MP3_SAMPLE_RATES,
    OPUS_SAMPLE_RATES,
    SUPPORTED_FORMATS,
    AudioSpecError,
    OutputSpec,
    format_info,
    resolve_stream_format,
    snap_sample_rate,
    validate_spec,
)


def test_supported_formats() -> None:
    assert set(SUPPORTED_FORMATS) == {
        "wav",
        "pcm",
        "pcm_f32",
        "mp3",
        "ogg",
        "opus",
        "ogg_vorbis",
        "flac",
        "mulaw",
        "alaw",
        "aac",
    }


@pytest.mark.parametrize("name", SUPPORTED_FORMATS)
def test_defaults_are_valid(name: str) -> None:
    validate_spec(OutputSpec(name))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"format": "m4a"}, "unknown_format"),
        ({"format": "WAV"}, "unknown_format"),
        ({"format": 3}, "unknown_format"),
        ({"sample_rate": MIN_SAMPLE_RATE - 1}, "unsupported_sample_rate"),
        ({"sample_rate": MAX_SAMPLE_RATE + 1}, "unsupported_sample_rate"),
        ({"sample_rate": 22050.0}, "unsupported_sample_rate"),
        ({"sample_rate": True}, "unsupported_sample_rate"),
        ({"chunk_size": MIN_CHUNK_SIZE - 1}, "invalid_chunk_size"),
        ({"chunk_size": MAX_CHUNK_SIZE + 1}, "invalid_chunk_size"),
        ({"chunk_size": 0}, "invalid_chunk_size"),
        ({"chunk_size": 1024.0}, "invalid_chunk_size"),
        ({"format": "mp3", "bitrate": 7}, "invalid_bitrate"),
        ({"format": "mp3", "bitrate": 321}, "invalid_bitrate"),
        ({"format": "mp3", "bitrate": 64.5}, "invalid_bitrate"),
        ({"format": "opus", "bitrate": 5}, "invalid_bitrate"),
        ({"format": "opus", "bitrate": 257}, "invalid_bitrate"),
        ({"format": "aac", "bitrate": 15}, "invalid_bitrate"),
        ({"format": "aac", "bitrate": 257}, "invalid_bitrate"),
        ({"format": "wav", "bitrate": 64}, "invalid_bitrate"),
        ({"format": "ogg_vorbis", "bitrate": 64}, "invalid_bitrate"),
        ({"volume": -0.1}, "invalid_volume"),
        ({"volume": MAX_VOLUME + 0.01}, "invalid_volume"),
        ({"volume": float("nan")}, "invalid_volume"),
        ({"volume": float("inf")}, "invalid_volume"),
        ({"volume": "1"}, "invalid_volume"),
        ({"volume": True}, "invalid_volume"),
    ],
)
def test_each_error_code(fields: dict[str, Any], code: str) -> None:
    spec = OutputSpec(**{"format": "pcm", **fields})
    with pytest.raises(AudioSpecError) as caught:
        validate_spec(spec)
    assert caught.value.code == code
    assert caught.value.message
    assert code in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"sample_rate": MIN_SAMPLE_RATE},
        {"sample_rate": MAX_SAMPLE_RATE},
        {"chunk_size": MIN_CHUNK_SIZE},
        {"chunk_size": MAX_CHUNK_SIZE},
        {"volume": 0.0},
        {"volume": MAX_VOLUME},
        {"volume": 2},
        {"format": "mp3", "bitrate": 8},
        {"format": "mp3", "bitrate": 320},
        {"format": "opus", "bitrate": 6},
        {"format": "ogg", "bitrate": 256},
        {"format": "aac", "bitrate": 16},
        {"format": "aac", "bitrate": 256},
    ],
)
def test_range_ends_are_accepted(fields: dict[str, Any]) -> None:
    validate_spec(OutputSpec(**{"format": "pcm", **fields}))


@pytest.mark.parametrize(
    ("rate", "opus", "mp3"),
    [
        (8000, 8000, 8000),
        (11025, 12000, 11025),
        (16000, 16000, 16000),
        (20000, 24000, 22050),
        (22050, 24000, 22050),
        (32000, 48000, 32000),
        (44100, 48000, 44100),
        (46000, 48000, 48000),
        (48000, 48000, 48000),
    ],
)
def test_rate_snaps_up_to_the_next_allowed_rate(rate: int, opus: int, mp3: int) -> None:
    assert snap_sample_rate(rate, OPUS_SAMPLE_RATES) == opus
    assert snap_sample_rate(rate, MP3_SAMPLE_RATES) == mp3
    # AAC's standard rates are MP3's.
    assert snap_sample_rate(rate, AAC_SAMPLE_RATES) == mp3
    assert snap_sample_rate(96000, OPUS_SAMPLE_RATES) == 48000


def test_opus_reports_the_effective_rate_and_why() -> None:
    for name in ("opus", "ogg"):
        native = resolve_stream_format(OutputSpec(name), 22050)
        assert native.sample_rate == 24000
        assert native.note is not None and "24000" in native.note
        assert native.mime_type == "audio/ogg;codecs=opus"
        assert native.bitrate == 32
        asked = resolve_stream_format(OutputSpec(name, sample_rate=44100), 22050)
        assert asked.sample_rate == 48000
        exact = resolve_stream_format(OutputSpec(name, sample_rate=16000), 22050)
        assert exact.sample_rate == 16000
        assert exact.note is None


def test_mp3_rate_and_bitrate() -> None:
    native = resolve_stream_format(OutputSpec("mp3"), 22050)
    assert (native.sample_rate, native.bitrate, native.note) == (22050, 64, None)
    # 128 kbit/s does not exist at 8 kHz (MPEG-2.5): LAME would write 64.
    low = resolve_stream_format(OutputSpec("mp3", sample_rate=8000, bitrate=128), 22050)
    assert (low.sample_rate, low.bitrate) == (8000, 64)
    assert low.note is not None and "64" in low.note
    # 8 kbit/s does not exist at 48 kHz (MPEG-1): the lowest is 32.
    high = resolve_stream_format(OutputSpec("mp3", sample_rate=48000, bitrate=8), 22050)
    assert high.bitrate == 32
    # Between two table entries: the nearest, the lower one on a tie.
    assert resolve_stream_format(OutputSpec("mp3", bitrate=100), 22050).bitrate == 96
    assert resolve_stream_format(OutputSpec("mp3", bitrate=36), 22050).bitrate == 32
    snapped = resolve_stream_format(OutputSpec("mp3", sample_rate=20000), 22050)
    assert snapped.sample_rate == 22050


def test_aac_rate_and_bitrate() -> None:
    native = resolve_stream_format(OutputSpec("aac"), 22050)
    assert (native.sample_rate, native.bitrate, native.note) == (22050, 64, None)
    assert native.mime_type == "audio/aac"
    assert resolve_stream_format(OutputSpec("aac"), 20000).sample_rate == 22050
    assert resolve_stream_format(OutputSpec("aac"), 96000).sample_rate == 48000
    # AAC-LC carries at most 6 bits per sample: 48 kbit/s at 8 kHz.
    low = resolve_stream_format(OutputSpec("aac", sample_rate=8000), 22050)
    assert low.bitrate == 48
    assert low.note is not None and "48" in low.note
    assert (
        resolve_stream_format(OutputSpec("aac", sample_rate=11025, bitrate=80), 22050).bitrate == 66
    )
    high = resolve_stream_format(OutputSpec("aac", sample_rate=48000, bitrate=256), 22050)
    assert (high.bitrate, high.note) == (256, None)


@pytest.mark.parametrize("name", ["mulaw", "alaw"])
def test_g711_defaults_to_8k_unless_asked(name: str) -> None:
    assert resolve_stream_format(OutputSpec(name), 22050).sample_rate == 8000
    assert resolve_stream_format(OutputSpec(name), 44100).sample_rate == 8000
    asked = resolve_stream_format(OutputSpec(name, sample_rate=16000), 22050)
    assert asked.sample_rate == 16000
    assert asked.bitrate is None


@pytest.mark.parametrize("name", ["wav", "pcm", "pcm_f32", "flac", "ogg_vorbis"])
def test_native_rate_by_default(name: str) -> None:
    assert resolve_stream_format(OutputSpec(name), 22050).sample_rate == 22050
    assert resolve_stream_format(OutputSpec(name), 44100).sample_rate == 44100
    # A voice outside the range is brought into it rather than refused.
    assert resolve_stream_format(OutputSpec(name), 96000).sample_rate == MAX_SAMPLE_RATE
    assert resolve_stream_format(OutputSpec(name, sample_rate=12345), 22050).sample_rate == 12345


def test_vorbis_warns_about_latency() -> None:
    note = resolve_stream_format(OutputSpec("ogg_vorbis"), 22050).note
    assert note is not None and "opus" in note


def test_rejects_a_bad_source_rate() -> None:
    with pytest.raises(ValueError, match="source_rate"):
        resolve_stream_format(OutputSpec("pcm"), 0)


def test_stream_format_json() -> None:
    fmt = resolve_stream_format(OutputSpec("wav"), 22050)
    assert fmt.to_json() == {
        "format": "wav",
        "sample_rate": 22050,
        "channels": 1,
        "bitrate": None,
        "mime_type": "audio/wav",
        "note": None,
    }


def test_format_info_lists_every_format() -> None:
    info = format_info()
    json.dumps(info)  # JSON-ready for the REST status endpoint
    assert [entry["name"] for entry in info] == list(SUPPORTED_FORMATS)
    by_name = {entry["name"]: entry for entry in info}
    assert by_name["opus"]["sample_rates"] == list(OPUS_SAMPLE_RATES)
    assert by_name["wav"]["sample_rates"] is None
    assert by_name["mulaw"]["default_sample_rate"] == 8000
    assert by_name["wav"]["default_sample_rate"] is None
    assert by_name["mp3"]["compressed"] is True
    assert by_name["pcm"]["compressed"] is False
    assert by_name["flac"]["lossless"] is True
    assert by_name["mp3"]["bitrate_kbps"] == {"default": 64, "min": 8, "max": 320}
    assert by_name["aac"]["bitrate_kbps"] == {"default": 64, "min": 16, "max": 256}
    assert by_name["aac"]["sample_rates"] == list(AAC_SAMPLE_RATES)
    assert by_name["aac"]["mime_type"] == "audio/aac"
    assert by_name["pcm"]["chunk_size"]["default"] == DEFAULT_CHUNK_SIZE
