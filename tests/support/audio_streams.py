"""Test helpers for the audio stage: signals, independent parsers and decoders.

The parsers here follow the specs (RFC 3533 Ogg, RFC 7845 Ogg Opus, ADTS) and share no
code with the encoders they check.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

Pcm = npt.NDArray[np.float32]

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def sine(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> Pcm:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def speech_like(seconds: float, rate: int, seed: int = 0) -> Pcm:
    """Voiced harmonics with a wandering pitch and syllable envelopes (as bench_audio)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    noise = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 1.3 * t) > 0.6)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = envelope * (0.25 * voiced + 0.08 * noise)
    return (0.6 * signal / np.max(np.abs(signal))).astype(np.float32)


def decode_streamed(audio: bytes) -> tuple[Pcm, int]:
    """A streamed mono file's samples (float32) and sample rate.

    A stream's header carries an unknown total length, so the blocks are read until the
    data ends instead of trusting the header's frame count."""
    with sf.SoundFile(io.BytesIO(audio)) as f:
        blocks = list(f.blocks(blocksize=4096, dtype="float32"))
        return np.concatenate(blocks), f.samplerate


# -- Ogg -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OggPage:
    header_type: int
    granule: int
    serial: int
    sequence: int
    crc: int
    lacing: bytes
    body: bytes
    raw: bytes

    @property
    def continued(self) -> bool:
        return bool(self.header_type & 0x01)

    @property
    def bos(self) -> bool:
        return bool(self.header_type & 0x02)

    @property
    def eos(self) -> bool:
        return bool(self.header_type & 0x04)


def parse_ogg(data: bytes) -> list[OggPage]:
    """Every page of an Ogg stream; the stream must be whole pages end to end."""
    pages = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS", f"no page at {offset}"
        version, header_type, granule, serial, sequence, crc, segments = struct.unpack_from(
            "<BBqIIIB", data, offset + 4
        )
        assert version == 0
        lacing = data[offset + 27 : offset + 27 + segments]
        end = offset + 27 + segments + sum(lacing)
        assert end <= len(data), "stream ends inside a page"
        body = data[offset + 27 + segments : end]
        pages.append(
            OggPage(header_type, granule, serial, sequence, crc, lacing, body, data[offset:end])
        )
        offset = end
    return pages


def ogg_packets(pages: list[OggPage]) -> list[tuple[bytes, int]]:
    """(packet, granule of the page it completes on) for every complete packet."""
    packets = []
    current = b""
    for page in pages:
        assert page.continued == bool(current), "continued flag disagrees with the lacing"
        position = 0
        for value in page.lacing:
            current += page.body[position : position + value]
            position += value
            if value < 255:
                packets.append((current, page.granule))
                current = b""
    assert not current, "the last packet is unfinished"
    return packets


def crc32_ogg_reference(data: bytes) -> int:
    """Bit by bit, as RFC 3533 describes it: polynomial 0x04C11DB7, MSB first, init 0."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def opus_head(data: bytes) -> dict[str, int]:
    head = parse_ogg(data)[0].body
    magic, version, channels, pre_skip, rate, gain, mapping = struct.unpack_from("<8sBBHIhB", head)
    assert magic == b"OpusHead"
    return {
        "version": version,
        "channels": channels,
        "pre_skip": pre_skip,
        "input_rate": rate,
        "gain": gain,
        "mapping": mapping,
    }


def opus_decodable(data: bytes, rate: int) -> int:
    """Input-rate samples decodable from a stream's first bytes (granule minus pre-skip)."""
    pages = parse_ogg(data)
    pre_skip = opus_head(data)["pre_skip"]
    granule = max((p.granule for p in pages[2:]), default=0)
    return max(0, granule - pre_skip) * rate // 48000


# -- ADTS ----------------------------------------------------------------------------------

ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


@dataclass(frozen=True)
class AdtsFrame:
    mpeg2: bool
    profile: int  # audio object type - 1
    sample_rate: int
    channels: int
    length: int  # header included
    fullness: int
    payload: bytes


def parse_adts(data: bytes) -> list[AdtsFrame]:
    """Every ADTS frame; the stream must be whole frames end to end."""
    frames = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 7, "stream ends inside a header"
        bits = int.from_bytes(data[offset : offset + 7], "big")
        assert bits >> 44 == 0xFFF, f"no sync word at {offset}"
        assert (bits >> 41) & 3 == 0, "layer must be 0"
        protection_absent = (bits >> 40) & 1
        length = (bits >> 13) & 0x1FFF
        header = 7 if protection_absent else 9
        assert offset + length <= len(data), "stream ends inside a frame"
        assert bits & 3 == 0, "one raw data block per frame"
        frames.append(
            AdtsFrame(
                mpeg2=bool((bits >> 43) & 1),
                profile=(bits >> 38) & 3,
                sample_rate=ADTS_RATES[(bits >> 34) & 0xF],
                channels=(bits >> 30) & 7,
                length=length,
                fullness=(bits >> 2) & 0x7FF,
                payload=data[offset + header : offset + length],
            )
        )
        offset += length
    return frames


# -- decoding ------------------------------------------------------------------------------


def ffmpeg_decode(
    data: bytes, rate: int, input_format: str | None = None
) -> npt.NDArray[np.float64]:
    """Mono float samples at ``rate`` as ffmpeg decodes ``data``; fails on any message."""
    assert FFMPEG is not None
    command = [FFMPEG, "-v", "error"]
    if input_format is not None:
        command += ["-f", input_format]
    command += ["-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(rate), "pipe:1"]
    done = subprocess.run(command, input=data, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode(errors="replace")
    return np.frombuffer(done.stdout, "<f4").astype(np.float64)


def best_lag(decoded: npt.NDArray[np.float64], reference: Pcm, max_lag: int) -> int:
    """The shift of ``decoded`` against ``reference`` with the highest correlation."""
    span = min(decoded.size, reference.size) - 2 * max_lag
    ref = reference[max_lag : max_lag + span].astype(np.float64)
    scores = [
        float(np.dot(decoded[max_lag + lag : max_lag + lag + span], ref))
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def correlation(a: npt.NDArray[np.float64], b: Pcm) -> float:
    size = min(a.size, b.size)
    return float(np.corrcoef(a[:size], b[:size].astype(np.float64))[0, 1])
