"""FFmpeg audio encoders (through PyAV) fed a sample stream in whole codec frames.

Codecs such as Opus and AAC take a fixed number of samples per frame. The stream that
reaches us comes in chunks of any length, so :class:`FrameCutter` keeps the remainder
of each chunk until the next one completes a frame; at most ``frame_size - 1`` samples
wait there. PyAV would re-frame on its own (through a filter graph), but then the
encoder, not we, would decide when a partial frame is flushed, and the end of the
stream could not be padded the way the container needs (see _opus.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

Pcm = npt.NDArray[np.float32]

#: The encoders used here; PyAV's stubs type these names as audio codecs.
EncoderName = Literal["libopus", "aac"]
#: Every stream here is mono.
_LAYOUT: Final = "mono"


def open_encoder(
    codec: EncoderName,
    sample_rate: int,
    bit_rate: int,
    sample_format: str,
    options: dict[str, str],
) -> AudioCodecContext:
    """An opened mono encoder context; ``options`` are the codec's AVOptions."""
    context = av.CodecContext.create(codec, "w")
    context.sample_rate = sample_rate
    context.layout = _LAYOUT
    context.format = sample_format
    context.bit_rate = bit_rate
    context.options = options
    context.open()
    return context


class FrameCutter:
    """Turns a mono float stream into the encoder's frames of ``frame_size`` samples.

    Frames carry consecutive ``pts`` in samples, so the encoder sees one unbroken
    timeline. ``sample_format`` is the encoder's: packed ``flt`` or planar ``fltp``
    (identical memory for mono).
    """

    def __init__(self, frame_size: int, sample_rate: int, sample_format: str) -> None:
        self.frame_size: Final = frame_size
        self._rate = sample_rate
        self._format = sample_format
        self._partial = np.zeros(frame_size, dtype=np.float32)
        #: Samples at the front of ``_partial`` waiting for the rest of their frame.
        self.pending = 0
        #: Frames handed out so far.
        self.frames_out = 0

    def frames(self, samples: Pcm) -> Iterator[av.AudioFrame]:
        """Every frame that ``samples`` completes, in order; keeps the remainder."""
        size = self.frame_size
        start = 0
        if self.pending:
            take = min(size - self.pending, samples.size)
            self._partial[self.pending : self.pending + take] = samples[:take]
            self.pending += take
            start = take
            if self.pending < size:
                return
            self.pending = 0
            yield self._frame(self._partial)
        while samples.size - start >= size:
            yield self._frame(samples[start : start + size])
            start += size
        rest = samples.size - start
        if rest:
            self._partial[:rest] = samples[start:]
            self.pending = rest

    def padded_tail(self) -> av.AudioFrame | None:
        """The waiting samples as a last frame, zero-padded to full size; None if none."""
        if not self.pending:
            return None
        self._partial[self.pending :] = 0.0
        self.pending = 0
        return self._frame(self._partial)

    def silence(self) -> av.AudioFrame:
        """One frame of zeros, next on the timeline (to flush a codec's look-ahead)."""
        return self._frame(np.zeros(self.frame_size, dtype=np.float32))

    def _frame(self, samples: Pcm) -> av.AudioFrame:
        # from_ndarray copies, so the caller's buffer (or _partial) may be reused at once.
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format=self._format, layout=_LAYOUT
        )
        frame.sample_rate = self._rate
        frame.pts = self.frames_out * self.frame_size
        self.frames_out += 1
        return frame
