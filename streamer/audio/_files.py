"""Exact length headers for a stream that has ended: a streamed WAV or FLAC made a file.

A stream's header goes out before its length is known, so the server writes "unknown"
there: WAV sizes 0xFFFFFFFF, FLAC STREAMINFO total samples 0. Browsers, ffmpeg and
players cope; strict readers do not (``wave`` reports 2147483647 frames, libsndfile
refuses the FLAC). Once the whole stream is at hand, the length is patched in place:

- WAV: the RIFF size is the file size less 8, the ``data`` size what follows its
  chunk header (rounded down to whole sample frames).
- FLAC: the total is the first sample of the last frame plus its block size. The last
  frame is found by scanning the tail backwards for a frame header whose CRC-8 holds and
  whose CRC-16, taken from there to the end, equals the file's last two bytes; a false
  sync inside audio data passes both with odds of about 1 in 2^24 * 2^16. MD5 and the
  frame-size bounds stay 0, which FLAC defines as "unknown" (decoders skip the check).

Other formats need nothing: raw PCM and G.711 have no header, Ogg pages carry granule
positions, MP3 and ADTS AAC frames are self-delimiting.
"""

from __future__ import annotations

import io
import os
import struct
from typing import IO, Final

#: Formats whose streamed header leaves the length unknown and is patched here.
PATCHED_FORMATS: Final = ("wav", "flac")

#: RIFF sizes are 32-bit: beyond this the file keeps its "unknown" sizes.
_MAX_RIFF_SIZE: Final = 0xFFFFFFFF
_RIFF_HEADER: Final = struct.Struct("<4sI4s")
_CHUNK_HEADER: Final = struct.Struct("<4sI")
#: Bytes per sample frame when a WAV has no readable ``fmt `` chunk: our PCM16 mono.
_DEFAULT_BLOCK_ALIGN: Final = 2

_FLAC_MARKER: Final = b"fLaC"
_FLAC_STREAMINFO: Final = 0
_FLAC_LAST_BLOCK: Final = 0x80
_STREAMINFO_LENGTH: Final = 34
#: Offset of the 8 bytes holding rate, channels, bits and the 36-bit total: after the
#: marker (4), the block header (4) and the block and frame size bounds (10).
_TOTAL_FIELD_OFFSET: Final = 4 + 4 + 10
_TOTAL_SAMPLES_MASK: Final = (1 << 36) - 1
#: Largest frame header: 2 sync/flags + 2 codes + 7 coded number + 2 block size +
#: 2 sample rate + 1 CRC-8.
_MAX_FRAME_HEADER: Final = 16
#: A frame never exceeds its samples stored verbatim plus headers and padding, so the
#: last frame starts within this many bytes of the end (FLAC's 65535-sample blocks at
#: 32 bits and 8 channels are the worst case; our 1152 mono 16-bit blocks need ~2.3 kB).
_FRAME_OVERHEAD: Final = 64


class StreamHeaderError(ValueError):
    """The data is not a stream of the format it was said to be (or is truncated)."""


def complete_header(file: IO[bytes], fmt: str) -> None:
    """Write the exact length into the header of the whole ``fmt`` stream in ``file``.

    ``file`` is seekable and readable (``open(path, "r+b")``) and holds the complete
    stream; nothing is done for formats not in :data:`PATCHED_FORMATS`. The position is
    left at the end. Raises :class:`StreamHeaderError` for data that is not ``fmt``.
    """
    if fmt == "wav":
        _complete_wav(file)
    elif fmt == "flac":
        _complete_flac(file)
    file.seek(0, os.SEEK_END)


def complete_file(fmt: str, data: bytes) -> bytes:
    """``data``, a whole ``fmt`` stream as the encoders produce it, as a file whose
    header states its exact length (a copy; ``data`` itself for formats that need no
    patch). For a response that is sent only once the audio is complete."""
    if fmt not in PATCHED_FORMATS:
        return data
    buffer = io.BytesIO(data)
    complete_header(buffer, fmt)
    return buffer.getvalue()


# --- WAV --------------------------------------------------------------------------------


def _complete_wav(file: IO[bytes]) -> None:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    head = file.read(_RIFF_HEADER.size)
    if len(head) < _RIFF_HEADER.size:
        raise StreamHeaderError("not a WAV file: shorter than a RIFF header")
    riff, _, wave = _RIFF_HEADER.unpack(head)
    if riff != b"RIFF" or wave != b"WAVE":
        raise StreamHeaderError("not a WAV file: no RIFF/WAVE header")
    block_align = _DEFAULT_BLOCK_ALIGN
    position = _RIFF_HEADER.size
    while True:
        file.seek(position)
        chunk = file.read(_CHUNK_HEADER.size)
        if len(chunk) < _CHUNK_HEADER.size:
            raise StreamHeaderError("WAV file without a data chunk")
        name, length = _CHUNK_HEADER.unpack(chunk)
        if name == b"fmt " and length >= 14:
            (block_align,) = struct.unpack("<H", file.read(14)[12:14])
            block_align = max(block_align, 1)
        if name == b"data":
            break
        position += _CHUNK_HEADER.size + length + (length & 1)  # chunks are word-aligned
    data_start = position + _CHUNK_HEADER.size
    data_size = (size - data_start) // block_align * block_align
    if size - 8 > _MAX_RIFF_SIZE:
        return  # too long for RIFF's 32-bit sizes: "unknown" is the best there is
    file.seek(4)
    file.write(struct.pack("<I", size - 8))
    file.seek(position + 4)
    file.write(struct.pack("<I", data_size))


# --- FLAC -------------------------------------------------------------------------------


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


#: FLAC's frame checksums: CRC-8 (x^8+x^2+x+1) over the header, CRC-16 (x^16+x^15+x^2+1)
#: over the whole frame; both MSB-first, initial value 0.
_CRC8: Final = _crc8_table()
_CRC16: Final = _crc16_table()


def flac_crc8(data: bytes | memoryview) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def flac_crc16(data: bytes | memoryview) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def _complete_flac(file: IO[bytes]) -> None:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    head = file.read(4 + 4 + _STREAMINFO_LENGTH)
    if len(head) < 4 + 4 + _STREAMINFO_LENGTH or head[:4] != _FLAC_MARKER:
        raise StreamHeaderError("not a FLAC stream: no fLaC marker and STREAMINFO")
    if head[4] & 0x7F != _FLAC_STREAMINFO:
        raise StreamHeaderError("FLAC stream whose first metadata block is not STREAMINFO")
    info = head[8:]
    max_block = int.from_bytes(info[2:4], "big")
    fields = int.from_bytes(info[10:18], "big")
    channels = ((fields >> 41) & 0x7) + 1
    bits = ((fields >> 36) & 0x1F) + 1
    audio_start = _after_metadata(file, size)
    if audio_start == size:
        total = 0  # no frames: zero samples, exactly
    else:
        window = max_block * channels * (bits + 7) // 8 + _FRAME_OVERHEAD
        tail_start = max(audio_start, size - window)
        file.seek(tail_start)
        tail = file.read(size - tail_start)
        total = _samples_through_last_frame(tail, max_block)
    fields = (fields & ~_TOTAL_SAMPLES_MASK) | total
    file.seek(_TOTAL_FIELD_OFFSET)
    file.write(fields.to_bytes(8, "big"))


def _after_metadata(file: IO[bytes], size: int) -> int:
    """The offset of the first frame: after the metadata block marked last."""
    position = len(_FLAC_MARKER)
    while True:
        file.seek(position)
        header = file.read(4)
        if len(header) < 4:
            raise StreamHeaderError("FLAC stream truncated inside its metadata")
        position += 4 + int.from_bytes(header[1:4], "big")
        if header[0] & _FLAC_LAST_BLOCK:
            if position > size:
                raise StreamHeaderError("FLAC stream truncated inside its metadata")
            return position


def _samples_through_last_frame(tail: bytes, fixed_block: int) -> int:
    """The sample count up to the end of the last frame, which ends ``tail``."""
    view = memoryview(tail)
    want_crc16 = int.from_bytes(tail[-2:], "big") if len(tail) >= 2 else -1
    for start in range(len(tail) - 2, -1, -1):
        if tail[start] != 0xFF or tail[start + 1] & 0xFE != 0xF8:
            continue
        parsed = _frame_header(view[start : start + _MAX_FRAME_HEADER], fixed_block)
        if parsed is None:
            continue
        first_sample, block_size = parsed
        if flac_crc16(view[start:-2]) == want_crc16:
            return first_sample + block_size
    raise StreamHeaderError("no complete FLAC frame at the end of the stream")


#: Block sizes by the 4-bit code of a frame header (6 and 7: stored after the number).
_BLOCK_SIZES: Final = {
    1: 192,
    **{code: 576 << (code - 2) for code in range(2, 6)},
    **{code: 256 << (code - 8) for code in range(8, 16)},
}


def _frame_header(header: memoryview, fixed_block: int) -> tuple[int, int] | None:
    """(first sample, block size) of the frame header at the start of ``header``, or
    None when those bytes are no valid header (reserved values, bad CRC-8)."""
    if len(header) < 6:
        return None
    variable = header[1] & 0x01
    block_code = header[2] >> 4
    rate_code = header[2] & 0x0F
    channel_code = header[3] >> 4
    if block_code == 0 or rate_code == 15 or channel_code > 10 or header[3] & 0x01:
        return None
    if (header[3] >> 1) & 0x07 == 3:  # sample size 011 is reserved
        return None
    # The frame (or sample) number, UTF-8-style: the lead byte's high ones say how many
    # continuation bytes (10xxxxxx) follow.
    lead = header[4]
    if lead < 0x80:
        extra, number = 0, lead
    elif lead < 0xC0 or lead == 0xFF:
        return None
    else:
        extra = 1
        while lead & (0x40 >> extra):
            extra += 1
        number = lead & (0x3F >> extra)
    position = 5
    for _ in range(extra):
        if position >= len(header) or header[position] & 0xC0 != 0x80:
            return None
        number = (number << 6) | (header[position] & 0x3F)
        position += 1
    if block_code == 6:
        block_size = header[position] + 1 if position < len(header) else 0
        position += 1
    elif block_code == 7:
        block_size = int.from_bytes(header[position : position + 2], "big") + 1
        position += 2
    else:
        block_size = _BLOCK_SIZES[block_code]
    position += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if position >= len(header) or block_size == 0:
        return None
    if flac_crc8(header[:position]) != header[position]:
        return None
    return (number if variable else number * fixed_block), block_size
