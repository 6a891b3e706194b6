"""The audio output stage of one request: engine PCM in, binary frames out.

Stages, in order: silence trimming (at the voice's rate, so the decision does not depend
on resampling), gain, streaming resampling to the output rate, clipping to [-1, 1], and
the format's encoder. Every stage keeps its state across chunks, so chunk boundaries
leave no trace in the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from ._encoders import AudioEncoder, make_encoder
from ._spec import OutputSpec, StreamFormat, resolve_stream_format, validate_spec
from ._trim import SilenceTrimmer

Pcm = npt.NDArray[np.float32]

#: soxr "HQ" (20-bit precision, > 120 dB stop-band) is far beyond the 16-bit output and
#: costs 0.1-0.3 ms CPU per second of audio here; "VHQ" costs up to 2x that and, for some
#: ratios, holds back more input (100 ms measured at 22050 -> 8000 Hz vs 33 ms for HQ).
RESAMPLE_QUALITY: Final = "HQ"

_EMPTY: Final[Pcm] = np.zeros(0, dtype=np.float32)


class AudioPipeline:
    """Encodes one request's audio for the client, chunk by chunk, in the spec's format.

    Construct it when the request starts (it validates ``spec`` and raises
    :class:`AudioSpecError` for the client), announce :attr:`stream_format` in
    ``audio_start``, then call :meth:`push` for every engine chunk and :meth:`finish`
    once. The concatenation of every frame returned is one valid stream of the format.

    :meth:`push` and :meth:`finish` are synchronous CPU work, cheap enough to run in the
    Trio task itself. CPU per second of 22050 Hz speech on the 2-core runner
    (scripts.bench_audio): pcm/wav/pcm_f32 0.05 ms, G.711 0.2 ms, resampled to
    48 kHz 0.4 ms, flac 0.6 ms, ogg_vorbis 2.6 ms, mp3 5.3 ms, aac 8 ms (12 ms at
    48 kHz), opus 9.6 ms (libopus at complexity 6; 10 ms at 48 kHz). A 0.3 s clause
    thus blocks for up to ~3.5 ms (aac at 48 kHz); :meth:`push_iter` hands out the first
    frame after one slice (~0.5 ms) so a sender that awaits between frames is not held
    up by the rest.
    If a request is abandoned (interrupt), call :meth:`close` instead of :meth:`finish`.
    """

    def __init__(self, spec: OutputSpec, source_rate: int) -> None:
        validate_spec(spec)
        self.stream_format: StreamFormat = resolve_stream_format(spec, source_rate)
        #: Bytes in every frame returned so far.
        self.bytes_out = 0
        self._gain = float(spec.volume)
        self._trimmer = SilenceTrimmer(source_rate) if spec.trim_silence else None
        out_rate = self.stream_format.sample_rate
        self._resampler = (
            soxr.ResampleStream(source_rate, out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
            if out_rate != source_rate
            else None
        )
        self._encoder: AudioEncoder = make_encoder(self.stream_format, spec.chunk_size)
        self._finished = False

    @property
    def samples_out(self) -> int:
        """Output-rate samples committed to the stream so far; the total after finish().

        For raw formats these are the samples inside the frames already returned; for
        compressed formats those given to the codec (whose bytes may lag by one codec
        frame or page). ``samples_out / stream_format.sample_rate`` is the duration.
        """
        return self._encoder.samples_out

    def push(self, pcm: npt.ArrayLike) -> list[bytes]:
        """Add one engine chunk (mono float samples in [-1, 1] at the source rate).

        Returns the frames ready to send now, possibly none (raw formats wait for a full
        ``chunk_size``; codecs for their frame). ``pcm`` is not modified or kept.
        """
        return list(self.push_iter(pcm))

    def push_iter(self, pcm: npt.ArrayLike) -> Iterator[bytes]:
        """Like :meth:`push`, but yields each frame as soon as it is encoded.

        Trimming, gain and resampling happen at the call; encoding happens as the
        iterator is consumed, ``chunk_size`` samples at a time. A sender that awaits
        between frames gets the first one out after one slice of encoding instead of
        the whole chunk's (for opus: ~0.4 ms instead of ~3 ms for a 0.3 s clause).
        Consume it to the end before the next push/finish, or close() the pipeline.
        """
        if self._finished:
            raise RuntimeError("AudioPipeline.push() after finish() or close()")
        samples = _as_mono_float32(pcm)
        if self._trimmer is not None:
            samples = self._trimmer.push(samples)
        samples = self._condition(samples, last=False)
        return self._count(self._encoder.iter_encode(samples) if samples.size else iter(()))

    def _count(self, frames: Iterator[bytes]) -> Iterator[bytes]:
        for frame in frames:
            self.bytes_out += len(frame)
            yield frame

    def finish(self) -> list[bytes]:
        """Flush every stage and end the stream; returns its last frames. Call once."""
        if self._finished:
            raise RuntimeError("AudioPipeline.finish() called twice or after close()")
        self._finished = True
        tail = self._trimmer.finish() if self._trimmer is not None else _EMPTY
        tail = self._condition(tail, last=True)
        frames = self._encoder.encode(tail) if tail.size else []
        frames += self._encoder.finish()
        self.bytes_out += sum(len(frame) for frame in frames)
        return frames

    def close(self) -> None:
        """Drop the stream without ending it (the request was abandoned); idempotent."""
        self._finished = True
        self._encoder.close()

    def _condition(self, samples: Pcm, last: bool) -> Pcm:
        # Gain, resampling and clipping; each copy made is reused in place by the next
        # stage, so a chunk is copied once (twice when resampled).
        owned = False
        if self._gain != 1.0 and samples.size:
            samples = np.multiply(samples, np.float32(self._gain), dtype=np.float32)
            owned = True
        if self._resampler is not None and (samples.size or last):
            samples = self._resampler.resample_chunk(samples, last=last)
            owned = True
        if not samples.size:
            return _EMPTY
        # Clipping after gain and resampling: both can push peaks past full scale.
        if owned:
            return np.clip(samples, -1.0, 1.0, out=samples)
        return np.clip(samples, -1.0, 1.0)


def _as_mono_float32(pcm: npt.ArrayLike) -> Pcm:
    array = np.asarray(pcm)
    if not np.issubdtype(array.dtype, np.floating):
        # Integer PCM has another scale; converting it silently would be full-scale noise.
        raise TypeError(f"engine PCM must be floating point in [-1, 1], got {array.dtype}")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"engine PCM must be mono (1-D), got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)
