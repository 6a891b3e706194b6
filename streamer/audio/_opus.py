"""Ogg Opus (RFC 7845) written as it is encoded: every 20 ms packet leaves at once.

Stream layout:

1. ``OpusHead`` alone on the first page (BOS, granule 0): version 1, one channel,
   the pre-skip, the input sample rate (decoders that can play it use it; Opus itself
   always runs at 48 kHz), output gain 0, channel mapping family 0.
2. ``OpusTags`` alone on the second page (granule 0): vendor string, no comments.
3. One page per Opus packet. A page's granule position is the number of 48 kHz samples
   decodable from every packet up to and including its own: packet k (1-based) ends at
   ``k * 960`` for 20 ms packets, at any input rate.

Pre-skip: libopus delays its output by its look-ahead (6.5 ms for the voip/audio
applications: 312 samples at 48 kHz), so the first ``pre-skip`` decoded samples are
not ours; the decoder drops them. We take the value from the OpusHead that FFmpeg's
libopus wrapper builds from ``OPUS_GET_LOOKAHEAD`` and fall back to 312 only if that
header is missing or malformed.

End trimming: the last page carries EOS and granule ``pre-skip + n * 48000 / rate``
for ``n`` input samples; decoders drop whatever the last packet decodes beyond it, so
the decoded length equals the input length exactly. To have the input's last sample
inside some packet despite the look-ahead, :meth:`OggOpusWriter.finish` pads the
partial frame with zeros and adds silent frames until ``n + look-ahead`` samples are
encoded (at least one packet, so the EOS page always carries one).

Hold-back: a packet is encoded the moment its 20 ms frame is complete, and FFmpeg's
libopus wrapper returns it from the same call, so at any moment the audio not yet
decodable from the bytes out is the partial frame (< 20 ms) plus the look-ahead.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from ._avcodec import FrameCutter, open_encoder
from ._ogg import OggStream

Pcm = npt.NDArray[np.float32]

#: Ogg Opus granule positions and the pre-skip count samples at 48 kHz (RFC 7845 §4).
OPUS_GRANULE_RATE: Final = 48000
#: 20 ms frames: the hold-back target, and the frame size libopus is tuned for; shorter
#: frames spend more of the bitrate and CPU on per-frame overhead.
OPUS_FRAME_MS: Final = 20
#: "voip" tells libopus the input is speech without running its speech/music analysis
#: (which only runs at complexity >= 7 and costs ~1 ms CPU per second of audio). With
#: "audio" and no analysis libopus assumes music and picks CELT-only, which overshoots a
#: 32 kbit/s target by 35-50% on TTS speech and scores lower (PESQ-WB 3.9 vs 4.2).
OPUS_APPLICATION: Final = "voip"
#: libopus complexity (0-10), measured on TTS speech at 24 kHz, 32 kbit/s, voip: 6 costs
#: ~8.7 ms CPU per second of audio (115x real time) for PESQ-WB 4.16; 5 costs the same
#: for 4.01, 3 costs 7.3 ms for 3.57, and 7-10 (analysis on) cost 9.8-11 ms for 4.16-4.25.
OPUS_COMPLEXITY: Final = 6
#: libopus's look-ahead for the voip and audio applications, 2.5 + 4 ms, at 48 kHz:
#: the pre-skip when the codec's own header cannot be read.
DEFAULT_PRE_SKIP: Final = 312

#: OpusHead fields (RFC 7845 §5.1): magic, version, channels, pre-skip, input rate,
#: output gain (Q7.8 dB), channel mapping family.
_OPUS_HEAD: Final = struct.Struct("<8sBBHIhB")
_OPUS_HEAD_MAGIC: Final = b"OpusHead"
_OPUS_VERSION: Final = 1
_PRE_SKIP_OFFSET: Final = 10
_MAPPING_MONO_STEREO: Final = 0
_OPUS_TAGS_MAGIC: Final = b"OpusTags"
#: Identifies the writer in OpusTags; the comment list stays empty.
OPUS_VENDOR: Final = b"MIT-TTS-Streamer (libopus via FFmpeg)"


def opus_head(pre_skip: int, input_rate: int) -> bytes:
    """The identification header for one channel."""
    return _OPUS_HEAD.pack(
        _OPUS_HEAD_MAGIC, _OPUS_VERSION, 1, pre_skip, input_rate, 0, _MAPPING_MONO_STEREO
    )


def opus_tags(vendor: bytes = OPUS_VENDOR) -> bytes:
    """The comment header: ``vendor`` and no user comments."""
    return _OPUS_TAGS_MAGIC + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)


def _pre_skip(extradata: bytes | None) -> int:
    # FFmpeg's libopus wrapper puts a ready OpusHead in extradata, pre-skip included.
    if extradata and extradata.startswith(_OPUS_HEAD_MAGIC) and len(extradata) >= 12:
        return int(struct.unpack_from("<H", extradata, _PRE_SKIP_OFFSET)[0])
    return DEFAULT_PRE_SKIP


class OggOpusWriter:
    """One mono Ogg Opus stream: float samples in [-1, 1] in, Ogg pages out.

    :meth:`write` returns the bytes that are complete after the samples given (the two
    header pages ride with the first call), :meth:`finish` the last ones; their
    concatenation is a complete stream that decodes to exactly the samples written.
    ``sample_rate`` must be one Opus takes (8, 12, 16, 24 or 48 kHz).
    """

    def __init__(
        self,
        sample_rate: int,
        bitrate_kbps: int,
        *,
        complexity: int = OPUS_COMPLEXITY,
        application: str = OPUS_APPLICATION,
        serial: int | None = None,
    ) -> None:
        self._codec = open_encoder(
            "libopus",
            sample_rate,
            bitrate_kbps * 1000,
            "flt",
            {
                "application": application,
                "frame_duration": str(OPUS_FRAME_MS),
                "compression_level": str(complexity),
            },
        )
        self.sample_rate: Final = sample_rate
        self.frame_size: Final = self._codec.frame_size
        #: Granule (48 kHz) units per input sample: an integer for every Opus rate.
        self._scale = OPUS_GRANULE_RATE // sample_rate
        #: Pre-skip at 48 kHz, as OpusHead announces it.
        self.pre_skip: Final = _pre_skip(self._codec.extradata)
        self._lookahead = math.ceil(self.pre_skip / self._scale)  # in input samples
        self._cutter = FrameCutter(self.frame_size, sample_rate, "flt")
        self._ogg = OggStream(serial if serial is not None else random.getrandbits(32))
        self._headers = self._ogg.packet(opus_head(self.pre_skip, sample_rate), 0)
        self._headers += self._ogg.packet(opus_tags(), 0)
        #: Input samples written; packets (20 ms each) out.
        self.samples_in = 0
        self.packets_out = 0
        self._closed = False

    def write(self, samples: Pcm) -> bytes:
        """Encode ``samples``; the pages of every packet they complete."""
        if self._closed:
            raise RuntimeError("OggOpusWriter.write() after finish() or close()")
        out = bytearray(self._take_headers())
        self.samples_in += samples.size
        for frame in self._cutter.frames(samples):
            for packet in self._codec.encode(frame):
                self.packets_out += 1
                out += self._ogg.packet(bytes(packet), self.packets_out * self._granule_step)
        return bytes(out)

    def finish(self) -> bytes:
        """Encode the rest, padded to cover the look-ahead; the last pages, EOS included."""
        if self._closed:
            raise RuntimeError("OggOpusWriter.finish() after finish() or close()")
        out = bytearray(self._take_headers())
        needed = max(
            math.ceil((self.samples_in + self._lookahead) / self.frame_size),
            self.packets_out + 1,
        )
        packets: list[bytes] = []
        tail = self._cutter.padded_tail()
        if tail is not None:
            packets += (bytes(p) for p in self._codec.encode(tail))
        while self.packets_out + len(packets) < needed:
            packets += (bytes(p) for p in self._codec.encode(self._cutter.silence()))
        end = self.pre_skip + self.samples_in * self._scale
        for index, packet in enumerate(packets):
            self.packets_out += 1
            last = index == len(packets) - 1
            granule = end if last else self.packets_out * self._granule_step
            out += self._ogg.packet(packet, granule, eos=last)
        self.close()
        return bytes(out)

    def close(self) -> None:
        """Drop the encoder without ending the stream; idempotent."""
        self._closed = True

    @property
    def _granule_step(self) -> int:
        return self.frame_size * self._scale

    def _take_headers(self) -> bytes:
        headers, self._headers = self._headers, b""
        return headers
