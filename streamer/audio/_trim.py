"""Leading and trailing silence trimming for one request's audio, as it streams.

A sample is *sound* when its magnitude exceeds :data:`TRIM_THRESHOLD`, else silent.
Before the first sound everything is dropped except a short lead-in; after that,
silent samples are held back only while they are the latest samples seen: as soon as
a sound follows they are released unchanged, so nothing in the middle is ever lost. At
the end of the request the held silence is dropped except a short tail. The only delay
trimming adds is that of the held silence itself, which carries nothing audible.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.float32]

#: -50 dBFS: under the noise floor of the neural voices' pauses (about -60 dBFS), well
#: under quiet consonants; a lower threshold would keep breaths and decoder hiss.
TRIM_THRESHOLD: Final = 10 ** (-50 / 20)
#: Silence kept before the first and after the last sound, so soft onsets and decays
#: under the threshold are not cut into clicks.
TRIM_PAD_SECONDS: Final = 0.010

_EMPTY: Final[Pcm] = np.zeros(0, dtype=np.float32)


class SilenceTrimmer:
    """Streams one request's samples with leading and trailing silence removed.

    Feed every chunk to :meth:`push` in order, then call :meth:`finish` once. The
    concatenation of what they return equals the input with at most the pad of silence
    kept before the first and after the last sample above the threshold; if no sample
    is above the threshold, nothing at all.
    """

    def __init__(self, sample_rate: int, threshold: float = TRIM_THRESHOLD) -> None:
        self._threshold = threshold
        self._pad = max(1, round(sample_rate * TRIM_PAD_SECONDS))
        self._started = False
        #: Before the first sound: the latest silent samples, at most one pad long.
        #: After it: every silent sample since the last sound (held, not yet released).
        self._held: list[Pcm] = []
        self._held_len = 0

    def push(self, samples: Pcm) -> Pcm:
        """The samples that are certain to be kept, given everything seen so far."""
        if samples.size == 0:
            return _EMPTY
        loud = np.abs(samples) > self._threshold
        if not loud.any():
            if self._started:
                self._hold(samples)
            else:
                self._hold_lead_in(samples)
            return _EMPTY
        first = int(np.argmax(loud))
        last = samples.size - 1 - int(np.argmax(loud[::-1]))
        held = self._take_held()
        if not self._started:
            self._started = True
            # Keep one pad of silence before the first sound, reaching back into the
            # silence of earlier chunks when this chunk starts loud.
            start = first - self._pad
            if start >= 0:
                held, samples, last = _EMPTY, samples[start:], last - start
            else:
                held = held[max(0, held.size + start) :]
        out = samples[: last + 1]
        if held.size:
            out = np.concatenate((held, out))
        if last + 1 < samples.size:
            self._hold(samples[last + 1 :])
        return out

    def finish(self) -> Pcm:
        """The pad of trailing silence to end on; drops the rest of what was held."""
        if not self._started:
            self._held.clear()
            self._held_len = 0
            return _EMPTY
        tail = self._take_held()
        return tail[: self._pad]

    def _hold(self, samples: Pcm) -> None:
        # A copy: the caller may reuse its buffer once push() returns.
        self._held.append(samples.copy())
        self._held_len += samples.size

    def _hold_lead_in(self, samples: Pcm) -> None:
        # Only the last pad of leading silence can ever be sent; keep no more.
        self._hold(samples)
        while self._held and self._held_len - self._held[0].size >= self._pad:
            self._held_len -= self._held.pop(0).size

    def _take_held(self) -> Pcm:
        held = self._held
        self._held = []
        self._held_len = 0
        if not held:
            return _EMPTY
        return held[0] if len(held) == 1 else np.concatenate(held)
