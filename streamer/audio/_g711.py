"""G.711 companding (mu-law and A-law), vectorised with numpy.

ITU-T G.711 maps linear PCM to 8-bit codes in eight segments (chords) of 16 steps each,
the step doubling from one segment to the next, so that quiet sounds keep more relative
precision than loud ones. mu-law works on 14-bit magnitudes with a bias of 33 that makes
the segment boundaries fall on powers of two; A-law works on 13-bit magnitudes, its
first two segments sharing one step size. Both invert their code bits on the wire
(mu-law all bits, A-law the even bits, 0x55) so that silence is not a run of zeros.

Encoding is a single gather: every int16 value is encoded once, at import, into a
65536-entry table indexed by the sample's bit pattern; decoding uses a 256-entry table.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
CodeArray = npt.NDArray[np.uint8]

#: mu-law bias (in 14-bit units): makes segment s span magnitudes [2**(s+5), 2**(s+6)).
_ULAW_BIAS: Final = 33
#: 14-bit magnitude at which mu-law saturates: with the bias it reaches 2**13, past the
#: last segment, and maps to the top code.
_ULAW_CLIP: Final = 8159
#: Upper ends of the eight segments: mu-law on biased 14-bit, A-law on 13-bit magnitudes.
_ULAW_SEGMENT_ENDS: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
#: A-law inverts the even bits on the wire.
_ALAW_XOR: Final = 0x55


def _build_ulaw_encode_table() -> CodeArray:
    linear = np.arange(-32768, 32768, dtype=np.int64)
    negative = linear < 0
    # One's complement for negatives (-1 -> 0), then 14 bits, as in ITU-T G.191's
    # reference coder: symmetric around zero, unlike shifting the signed value.
    magnitude = np.where(negative, ~linear, linear) >> 2
    magnitude = np.minimum(magnitude, _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude, side="left")
    saturated = segment >= 8  # past the last segment: the largest code
    segment = np.minimum(segment, 7)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(saturated, 0x7F, code)
    # mu-law transmits the one's complement; the sign bit is set for positive values.
    code = np.where(negative, code ^ 0x7F, code ^ 0xFF)
    return _by_bit_pattern(code.astype(np.uint8))


def _build_alaw_encode_table() -> CodeArray:
    linear = np.arange(-32768, 32768, dtype=np.int64)
    negative = linear < 0
    magnitude = np.where(negative, ~linear, linear) >> 3  # one's complement, 13 bits
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude, side="left")
    saturated = segment >= 8
    segment = np.minimum(segment, 7)
    shift = np.maximum(segment, 1)  # segments 0 and 1 share the same step size
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(saturated, 0x7F, code)
    sign = np.where(negative, 0x00, 0x80)
    code = (code | sign) ^ _ALAW_XOR
    return _by_bit_pattern(code.astype(np.uint8))


def _by_bit_pattern(table: CodeArray) -> CodeArray:
    # Built in signed order (-32768 first); reorder so the uint16 view of a sample indexes
    # it directly: bit pattern 0x0000 is 0, 0x8000 is -32768.
    return np.ascontiguousarray(np.roll(table, -32768))


def _build_ulaw_decode_table() -> Int16Array:
    code = ~np.arange(256, dtype=np.int64) & 0xFF
    segment = (code & 0x70) >> 4
    magnitude = ((((code & 0x0F) << 3) + (_ULAW_BIAS << 2)) << segment) - (_ULAW_BIAS << 2)
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode_table() -> Int16Array:
    code = np.arange(256, dtype=np.int64) ^ _ALAW_XOR
    segment = (code & 0x70) >> 4
    # Reconstruct at the middle of the step: +half a step in 13-bit units, scaled by 8.
    magnitude = ((code & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW_ENCODE: Final = _build_ulaw_encode_table()
_ALAW_ENCODE: Final = _build_alaw_encode_table()
_ULAW_DECODE: Final = _build_ulaw_decode_table()
_ALAW_DECODE: Final = _build_alaw_decode_table()


def _as_int16(samples: npt.ArrayLike) -> Int16Array:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise TypeError(f"G.711 encodes int16 samples, got {array.dtype}")
    return array


def ulaw_encode(samples: npt.ArrayLike) -> CodeArray:
    """mu-law codes (one byte per sample) for int16 samples."""
    return _ULAW_ENCODE[_as_int16(samples).view(np.uint16)]


def alaw_encode(samples: npt.ArrayLike) -> CodeArray:
    """A-law codes (one byte per sample) for int16 samples."""
    return _ALAW_ENCODE[_as_int16(samples).view(np.uint16)]


def ulaw_decode(codes: bytes | npt.ArrayLike) -> Int16Array:
    """int16 samples for mu-law codes (bytes or a uint8 array)."""
    return _ULAW_DECODE[_as_codes(codes)]


def alaw_decode(codes: bytes | npt.ArrayLike) -> Int16Array:
    """int16 samples for A-law codes (bytes or a uint8 array)."""
    return _ALAW_DECODE[_as_codes(codes)]


def _as_codes(codes: bytes | npt.ArrayLike) -> CodeArray:
    if isinstance(codes, (bytes, bytearray, memoryview)):
        return np.frombuffer(codes, dtype=np.uint8)
    return np.asarray(codes, dtype=np.uint8)
