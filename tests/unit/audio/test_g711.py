"""G.711 companding against the standard's fixed points and an independent decoder."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from streamer.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_INT16 = np.arange(-32768, 32768).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
LAWS = [
    pytest.param(ulaw_encode, ulaw_decode, id="mulaw"),
    pytest.param(alaw_encode, alaw_decode, id="alaw"),
]


@pytest.mark.parametrize(
    ("encode", "value", "code"),
    [
        # Silence is not a run of zero bytes: mu-law inverts all bits, A-law the even ones.
        (ulaw_encode, 0, 0xFF),
        (ulaw_encode, 32767, 0x80),
        (ulaw_encode, -32768, 0x00),
        (ulaw_encode, -1, 0x7F),
        (alaw_encode, 0, 0xD5),
        (alaw_encode, 32767, 0xAA),
        (alaw_encode, -32768, 0x2A),
        (alaw_encode, -1, 0x55),
    ],
)
def test_encode_fixed_points(encode: object, value: int, code: int) -> None:
    assert callable(encode)
    assert int(encode(np.array([value], dtype=np.int16))[0]) == code


@pytest.mark.parametrize(
    ("decode", "code", "value"),
    [
        (ulaw_decode, 0xFF, 0),
        (ulaw_decode, 0x80, 32124),
        (ulaw_decode, 0x00, -32124),
        (alaw_decode, 0xD5, 8),
        (alaw_decode, 0xAA, 32256),
        (alaw_decode, 0x2A, -32256),
    ],
)
def test_decode_fixed_points(decode: object, code: int, value: int) -> None:
    assert callable(decode)
    assert int(decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(("encode", "decode"), LAWS)
def test_round_trip_error_is_within_half_a_step(encode: object, decode: object) -> None:
    assert callable(encode)
    assert callable(decode)
    restored = decode(encode(ALL_INT16)).astype(np.int64)
    error = np.abs(restored - ALL_INT16)
    # Steps grow with the segment: half a step is at most 1/28 of the value (mu-law's
    # worst case, at a segment start) and 16 in the first segments.
    assert np.all(error <= np.maximum(16, np.abs(ALL_INT16.astype(np.int64)) / 26))
    assert np.all(np.diff(restored) >= 0), "companding must be monotonic"


@pytest.mark.parametrize(("encode", "decode"), LAWS)
def test_codes_survive_decode_encode(encode: object, decode: object) -> None:
    assert callable(encode)
    assert callable(decode)
    again = encode(decode(ALL_CODES))
    changed = set(np.flatnonzero(again != ALL_CODES).tolist())
    # mu-law has two zeros (0xFF and 0x7F); everything else is its own reconstruction.
    assert changed <= {0x7F}


def test_rejects_float_input() -> None:
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(4, dtype=np.float32))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize(
    ("name", "encode", "decode"),
    [("mulaw", ulaw_encode, ulaw_decode), ("alaw", alaw_encode, alaw_decode)],
)
def test_matches_ffmpeg(name: str, encode: object, decode: object) -> None:
    assert callable(encode)
    assert callable(decode)
    base = ["ffmpeg", "-v", "error", "-ar", "8000", "-ac", "1"]
    decoded = subprocess.run(
        [*base, "-f", name, "-i", "pipe:0", "-f", "s16le", "pipe:1"],
        input=ALL_CODES.tobytes(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert np.array_equal(np.frombuffer(decoded, dtype="<i2"), decode(ALL_CODES))

    encoded = subprocess.run(
        [*base, "-f", "s16le", "-i", "pipe:0", "-f", name, "pipe:1"],
        input=ALL_INT16.astype("<i2").tobytes(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    theirs = np.frombuffer(encoded, dtype=np.uint8)
    ours = encode(ALL_INT16)
    # ffmpeg places the decision levels a hair differently (it rounds where G.191
    # truncates): the codes may differ, exactly at a decision level, by one level.
    differ = theirs != ours
    assert differ.mean() < 0.02
    levels = np.unique(decode(ALL_CODES))
    rank_theirs = np.searchsorted(levels, decode(theirs))
    rank_ours = np.searchsorted(levels, decode(ours))
    assert np.abs(rank_theirs - rank_ours).max() <= 1
