"""Encoders: output-rate float samples in, binary WebSocket frames out.

One encoder lives for one request's stream and is fed in order; the concatenation of the
frames it returns is a valid stream of its format.

Raw formats (pcm, pcm_f32, wav, mulaw, alaw) are cut into frames of exactly
``chunk_size`` samples, the last one shorter; the WAV header rides in the first frame.

Compressed formats hand out bytes as soon as the codec produces them. Input is fed to the
codec ``chunk_size`` samples (at least one codec frame) at a time and whatever came out
after each slice becomes a frame, so frames follow the pacing unit without waiting for
it. How much each codec holds back, measured with the libraries pinned here (libsndfile
1.2.2, lameenc 1.9, PyAV 18.1 with its bundled FFmpeg and libopus):

- MP3 (LAME): the first frame appears after about 1.5 MP3 frames of input (576 samples
  per frame below 32 kHz, 1152 above): the MDCT look-ahead plus LAME's encoder delay.
  After that each frame leaves as soon as it is complete.
- Ogg Opus (libopus through PyAV, our own Ogg muxer; see _opus.py): each 20 ms
  packet is its own Ogg page, sent as soon as its frame is complete, so at any moment
  less than one frame plus the codec's 6.5 ms look-ahead is not yet decodable. (The
  libsndfile path it replaced held up to 80 ms: its pages cannot be shorter than 50 ms,
  and it runs libopus at complexity 10: 3.5x the CPU, 33 ms per second of audio.)
- AAC-LC in ADTS (FFmpeg's aac through PyAV; see _aac.py): the encoder works one
  1024-sample frame behind and starts with a frame of priming, so the first audio is
  decodable once 3 frames are in (128 ms at 24 kHz); after that at most 2 frames plus
  the partial one are held.
- Ogg Vorbis (libsndfile): pages are cut by libogg's ogg_stream_pageout, which waits for
  4 KiB of packets; libsndfile has no page-latency control for Vorbis. Headers go out on
  the first write, but audio only in 4 KiB pages: 0.35 s of dense, 3 s of sparse audio.
  Not a low-latency format; opus is the one to use.
- FLAC (libFLAC via libsndfile): one frame is one block; presets 0-2 use 1152-sample
  blocks (3-8 use 4096), and a block is encoded when the sample after it arrives. Preset
  0: at most one block plus one sample is held. At close libsndfile seeks back to patch
  STREAMINFO (length, MD5); bytes already sent cannot change, so those patches are
  dropped and the stream keeps its "length unknown" header. Browsers and ffmpeg play
  it; libsndfile's own reader (1.2.2) cannot, it needs the length.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Iterator
from typing import Final, Protocol

import lameenc
import numpy as np
import numpy.typing as npt
import soundfile as sf

from ._aac import AdtsAacWriter
from ._g711 import alaw_encode, ulaw_encode
from ._opus import OggOpusWriter
from ._spec import StreamFormat

Pcm = npt.NDArray[np.float32]

#: Full-scale factor from [-1, 1] floats to int16: symmetric, so +1.0 cannot overflow.
_INT16_SCALE: Final = 32767.0

#: LAME quality 2 ("near-best, not too slow"): ~5 ms CPU per second of 22 kHz speech
#: here, three times quality 7's cost but still ~190x real time.
MP3_QUALITY: Final = 2

#: MPEG-1 (32 kHz and up) frames hold 1152 samples; MPEG-2 and 2.5 frames hold 576.
_MPEG1_MIN_RATE: Final = 32000
_MP3_FRAME_MPEG1: Final = 1152
_MP3_FRAME_LSF: Final = 576

#: Vorbis blocks vary in length; 20 ms (1/50 s) is a fair pacing floor for them.
_VORBIS_PACING_PER_SECOND: Final = 50

#: libsndfile compression level 0 = libFLAC preset 0: 1152-sample blocks (one frame of
#: hold-back, 52 ms at 22 kHz). Presets up to 2 differ only in stereo coding, so for mono
#: they compress the same; presets 3+ use 4096-sample blocks (186 ms at 22 kHz).
FLAC_COMPRESSION_LEVEL: Final = 0.0
#: The block size of those presets, announced in the header of an empty stream.
_FLAC_BLOCK_SIZE: Final = 1152

#: Canonical 44-byte WAV header; RIFF and data sizes 0xFFFFFFFF mean "unknown length".
_WAV_UNKNOWN_SIZE: Final = 0xFFFFFFFF
_WAV_FMT_CHUNK_SIZE: Final = 16
_WAV_PCM: Final = 1
_WAV_BITS: Final = 16


def mp3_frame_samples(sample_rate: int) -> int:
    """Samples per MP3 frame at ``sample_rate``."""
    return _MP3_FRAME_MPEG1 if sample_rate >= _MPEG1_MIN_RATE else _MP3_FRAME_LSF


def to_int16(samples: Pcm) -> npt.NDArray[np.int16]:
    """Round float samples in [-1, 1] to little-endian int16."""
    scaled = np.multiply(samples, _INT16_SCALE, dtype=np.float32)
    np.rint(scaled, out=scaled)
    return scaled.astype("<i2")


def wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A RIFF/WAVE PCM16 header for a stream whose length is not known yet."""
    block_align = channels * _WAV_BITS // 8
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        _WAV_UNKNOWN_SIZE,
        b"WAVE",
        b"fmt ",
        _WAV_FMT_CHUNK_SIZE,
        _WAV_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        _WAV_BITS,
        b"data",
        _WAV_UNKNOWN_SIZE,
    )


class AudioEncoder(abc.ABC):
    """One request's encoder: feed float samples in [-1, 1] at the output rate, in order.

    ``samples_out`` counts the samples the returned frames are committed to: for raw
    formats those inside frames already returned; for compressed formats those handed
    to the codec (its bytes may lag by the hold-back described in the module docstring).
    After :meth:`finish` it is the whole stream's length.
    """

    samples_out: int

    @abc.abstractmethod
    def iter_encode(self, samples: Pcm) -> Iterator[bytes]:
        """The frames that are complete after adding ``samples``, each as soon as it is.

        Consume it to the end before the next call: the stream continues from where
        the iteration stopped.
        """

    def encode(self, samples: Pcm) -> list[bytes]:
        """The frames that are complete after adding ``samples``."""
        return list(self.iter_encode(samples))

    @abc.abstractmethod
    def finish(self) -> list[bytes]:
        """The remaining frames, ending the stream. Call once; then only close()."""

    def close(self) -> None:  # noqa: B027 - optional hook, most encoders hold nothing
        """Release native resources without ending the stream; idempotent."""


class _RawEncoder(AudioEncoder):
    """Fixed-size frames of ``chunk_size`` samples, optionally after a header."""

    def __init__(self, chunk_size: int, bytes_per_sample: int, header: bytes = b"") -> None:
        self.samples_out = 0
        self._bytes_per_sample = bytes_per_sample
        self._frame_bytes = chunk_size * bytes_per_sample
        self._pending = bytearray(header)
        #: Header bytes still at the front of ``_pending`` (they ride in the first frame).
        self._header_len = len(header)
        self._header_sent = not header

    @abc.abstractmethod
    def _convert(self, samples: Pcm) -> npt.NDArray[np.generic]:
        """The samples in this format's wire representation."""

    def iter_encode(self, samples: Pcm) -> Iterator[bytes]:
        # Converting is cheap: all frames at once.
        if samples.size:
            self._pending += self._convert(samples).data.cast("B")  # no intermediate bytes
        return iter(self._cut(final=False))

    def finish(self) -> list[bytes]:
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[bytes]:
        frames: list[bytes] = []
        pending = self._pending
        offset = 0
        while True:
            size = self._frame_bytes + (0 if self._header_sent else self._header_len)
            remaining = len(pending) - offset
            if remaining < size and not (final and (remaining or not self._header_sent)):
                break
            frame = bytes(pending[offset : offset + size])
            offset += len(frame)
            audio_bytes = len(frame) - (0 if self._header_sent else self._header_len)
            self._header_sent = True
            self.samples_out += audio_bytes // self._bytes_per_sample
            frames.append(frame)
        if offset:
            del pending[:offset]
        return frames


class Pcm16Encoder(_RawEncoder):
    """``pcm``: signed 16-bit little-endian; ``wav`` when given a header."""

    def __init__(self, chunk_size: int, header: bytes = b"") -> None:
        super().__init__(chunk_size, 2, header)

    def _convert(self, samples: Pcm) -> npt.NDArray[np.generic]:
        return to_int16(samples)


class Float32Encoder(_RawEncoder):
    """``pcm_f32``: 32-bit float little-endian."""

    def __init__(self, chunk_size: int) -> None:
        super().__init__(chunk_size, 4)

    def _convert(self, samples: Pcm) -> npt.NDArray[np.generic]:
        return np.ascontiguousarray(samples, dtype="<f4")


class G711Encoder(_RawEncoder):
    """``mulaw`` / ``alaw``: one G.711 code byte per sample."""

    def __init__(self, chunk_size: int, law: str) -> None:
        super().__init__(chunk_size, 1)
        self._encode = ulaw_encode if law == "mulaw" else alaw_encode

    def _convert(self, samples: Pcm) -> npt.NDArray[np.generic]:
        return self._encode(to_int16(samples))


class _PacedEncoder(AudioEncoder):
    """A compressed format: bytes leave as soon as the codec gives them.

    Input is fed ``chunk_size`` samples at a time, but never less than one codec frame
    (smaller slices cannot release bytes sooner, they only add calls: at 64 samples
    FLAC costs 7x more); the bytes that came out after each slice make one frame, so a
    long push yields frames along the way instead of one large one at its end, and the
    first frame waits for nothing but the codec.
    """

    def __init__(self, chunk_size: int, codec_frame: int) -> None:
        self.samples_out = 0
        self._chunk_size = max(chunk_size, codec_frame)

    @abc.abstractmethod
    def _feed(self, samples: Pcm) -> bytes:
        """Give ``samples`` to the codec; the bytes it produced meanwhile."""

    @abc.abstractmethod
    def _drain(self) -> bytes:
        """End the codec's stream; its last bytes."""

    def iter_encode(self, samples: Pcm) -> Iterator[bytes]:
        step = self._chunk_size
        for start in range(0, samples.size, step):
            piece = samples[start : start + step]
            data = self._feed(piece)
            self.samples_out += piece.size
            if data:
                yield data

    def finish(self) -> list[bytes]:
        data = self._drain()
        return [data] if data else []


class Mp3Encoder(_PacedEncoder):
    """``mp3``: CBR MP3 through LAME, at the stream's exact rate (no LAME resampling)."""

    def __init__(self, sample_rate: int, bitrate_kbps: int, chunk_size: int) -> None:
        super().__init__(chunk_size, mp3_frame_samples(sample_rate))
        self._lame = lameenc.Encoder()
        self._lame.set_channels(1)
        self._lame.set_in_sample_rate(sample_rate)
        # Without this LAME picks its own output rate for low bitrates (e.g. 22050 Hz for
        # 32 kbit/s at 48 kHz) and audio_start would announce the wrong rate.
        self._lame.set_out_sample_rate(sample_rate)
        self._lame.set_bit_rate(bitrate_kbps)
        self._lame.set_quality(MP3_QUALITY)

    def _feed(self, samples: Pcm) -> bytes:
        # lameenc accepts only read-only bytes, hence the copy.
        return bytes(self._lame.encode(to_int16(samples).tobytes()))

    def _drain(self) -> bytes:
        if not self.samples_out:
            return b""  # LAME refuses to flush a stream that never started: 0 frames
        return bytes(self._lame.flush())


class StreamWriter(Protocol):
    """A codec and its container writing one stream (see _opus.py, _aac.py)."""

    @property
    def frame_size(self) -> int:
        """Samples per codec frame: nothing leaves before a frame is complete."""
        ...

    def write(self, samples: Pcm) -> bytes:
        """Encode ``samples``; the stream bytes completed meanwhile."""
        ...

    def finish(self) -> bytes:
        """End the stream; its last bytes."""
        ...

    def close(self) -> None:
        """Drop the stream unfinished; idempotent."""
        ...


class WriterEncoder(_PacedEncoder):
    """``ogg``/``opus`` (Ogg Opus) and ``aac`` (ADTS): a :class:`StreamWriter`, paced."""

    def __init__(self, writer: StreamWriter, chunk_size: int) -> None:
        super().__init__(chunk_size, writer.frame_size)
        self._writer = writer

    def _feed(self, samples: Pcm) -> bytes:
        return self._writer.write(samples)

    def _drain(self) -> bytes:
        return self._writer.finish()

    def close(self) -> None:
        self._writer.close()


class _ByteSink:
    """The file libsndfile writes into: keeps what it wrote until :meth:`take`.

    Positions are absolute stream offsets. Bytes already taken are gone (sent), so a
    write that lands before them (libsndfile patching a header at close) is dropped for
    that part; bytes not yet taken are patched in place.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._base = 0  # stream offset of _buffer[0]
        self._position = 0

    def write(self, data: bytes) -> int:
        size = len(data)
        end = self._base + len(self._buffer)
        if self._position == end:
            self._buffer += data
        else:
            skip = max(0, self._base - self._position)
            if skip < size:
                start = self._position + skip - self._base
                if start > len(self._buffer):  # a seek past the end: zero-fill, as files do
                    self._buffer += bytes(start - len(self._buffer))
                self._buffer[start : start + size - skip] = data[skip:]
        self._position += size
        return size

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._position = offset
        elif whence == 1:
            self._position += offset
        else:
            self._position = self._base + len(self._buffer) + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        return b""  # write-only; libsndfile never reads back what it encodes

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._base += len(self._buffer)
        self._buffer.clear()
        return data


class SoundFileEncoder(_PacedEncoder):
    """``ogg_vorbis`` and ``flac`` through libsndfile."""

    def __init__(
        self,
        container: str,
        codec: str,
        sample_rate: int,
        chunk_size: int,
        compression_level: float | None = None,
        as_int16: bool = False,
        codec_frame: int | None = None,
    ) -> None:
        super().__init__(chunk_size, codec_frame or sample_rate // _VORBIS_PACING_PER_SECOND)
        self._sink = _ByteSink()
        self._as_int16 = as_int16
        self._file = sf.SoundFile(
            self._sink,
            mode="w",
            samplerate=sample_rate,
            channels=1,
            format=container,
            subtype=codec,
            compression_level=compression_level,
        )
        self._closed = False

    def _feed(self, samples: Pcm) -> bytes:
        # FLAC gets the same int16 as wav/pcm, so every 16-bit format carries the
        # same samples (libsndfile's own float conversion rounds differently).
        self._file.write(to_int16(samples) if self._as_int16 else samples)
        return self._sink.take()

    def _drain(self) -> bytes:
        self.close()
        return self._sink.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()


class FlacEncoder(SoundFileEncoder):
    """``flac``: 16-bit FLAC through libsndfile, 1152-sample blocks."""

    def __init__(self, sample_rate: int, chunk_size: int) -> None:
        super().__init__(
            "FLAC",
            "PCM_16",
            sample_rate,
            chunk_size,
            compression_level=FLAC_COMPRESSION_LEVEL,
            as_int16=True,
            codec_frame=_FLAC_BLOCK_SIZE,
        )
        self._sample_rate = sample_rate

    def _drain(self) -> bytes:
        data = super()._drain()
        if not self.samples_out:
            # libsndfile writes nothing for a FLAC file without samples; a client still
            # expects a decodable stream, so send the bare header: zero samples.
            return empty_flac_stream(self._sample_rate)
        return data


def empty_flac_stream(sample_rate: int) -> bytes:
    """``fLaC`` and a lone STREAMINFO block for 16-bit mono with no samples."""
    block = _FLAC_BLOCK_SIZE.to_bytes(2, "big") * 2  # min and max block size
    block += bytes(6)  # min and max frame size: unknown
    # 20-bit rate, 3-bit channels - 1 (mono: 0), 5-bit bits - 1 (15), 36-bit total (0).
    packed = (sample_rate << 44) | (0 << 41) | (15 << 36) | 0
    block += packed.to_bytes(8, "big")
    block += bytes(16)  # MD5 of no samples: unknown (zero)
    last_streaminfo = 0x80  # last-metadata-block flag, block type 0
    return b"fLaC" + bytes([last_streaminfo]) + len(block).to_bytes(3, "big") + block


def make_encoder(stream: StreamFormat, chunk_size: int) -> AudioEncoder:
    """A fresh encoder for ``stream`` (already resolved) framing by ``chunk_size``."""
    name = stream.format
    rate = stream.sample_rate
    if name == "pcm":
        return Pcm16Encoder(chunk_size)
    if name == "wav":
        return Pcm16Encoder(chunk_size, header=wav_header(rate, stream.channels))
    if name == "pcm_f32":
        return Float32Encoder(chunk_size)
    if name in ("mulaw", "alaw"):
        return G711Encoder(chunk_size, name)
    if name == "mp3":
        assert stream.bitrate is not None
        return Mp3Encoder(rate, stream.bitrate, chunk_size)
    if name in ("ogg", "opus"):
        assert stream.bitrate is not None
        return WriterEncoder(OggOpusWriter(rate, stream.bitrate), chunk_size)
    if name == "aac":
        assert stream.bitrate is not None
        return WriterEncoder(AdtsAacWriter(rate, stream.bitrate), chunk_size)
    if name == "ogg_vorbis":
        return SoundFileEncoder("OGG", "VORBIS", rate, chunk_size)
    if name == "flac":
        return FlacEncoder(rate, chunk_size)
    raise ValueError(f"no encoder for format {name!r}")
