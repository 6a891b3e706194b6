"""Admission: answer ``busy`` to a new real-time stream the cores cannot keep real-time.

The inference scheduler decides who runs next; it cannot create CPU. Once the streams
being synthesized need more CPU per second than the inference workers have, every one
of them falls behind together (underruns for everybody). Admission looks ahead instead:
before a session that is silent starts a new stream, it adds up what the streams
already admitted need and refuses the newcomer if the sum would pass
``performance.max_inference_load`` of the workers.

What a stream needs is measured, not configured: every chunk reports the CPU time its
inference took (thread time, so two chunks sharing a core do not look twice as
expensive) and the seconds of audio it made; their ratio, averaged per voice over the
last ~10 s of audio (weighted by audio), is the
CPU-seconds that voice needs per second of speech (~0.08 for the bundled Piper voice on
the 2-core test machine, ~0.001 for espeak-ng). A voice never measured counts as free
until its first chunk.

A stream that has just started needs more than that: its first windows are small (more
context per frame) and it must get ahead of its listener before it can coast. While its
listener has less than ``STARTUP_BUFFER_S`` of audio queued it counts
``STARTUP_FACTOR`` times. That is what spreads a burst of simultaneous starts (20
sessions starting within 2 s) over the few hundred milliseconds it takes the first ones
to settle, instead of letting all of them start and underrun together.

Only real-time streams count: a download (``realtime: false``) takes whatever CPU is
left and yields to them by deadline. A request queued behind the session's own playing
one, or sent while its listener still plays the previous one's audio, adds no stream
(it continues the session's), and ``critical`` requests
are always admitted (an alert must get through; it pre-empts its own session).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

#: A voice's cost is CPU over audio, both summed with weights halving every this many
#: seconds of audio: an average over the last paragraph or so, weighted by audio so the
#: small (dearer per second) first windows of a stream count for what they last.
COST_HALF_LIFE_AUDIO_S: Final = 10.0
#: A stream whose listener has less than this much audio queued is still starting.
STARTUP_BUFFER_S: Final = 1.0
#: ... and counts this many times its steady cost (small first windows, catching up).
STARTUP_FACTOR: Final = 2.0
#: Retry hint when only streams still starting make the load too high: they settle
#: within about this long.
STARTUP_RETRY_S: Final = 0.5
#: Retry hint when the steady load alone is too high: roughly one paragraph's
#: synthesis, after which some stream has likely finished.
FULL_RETRY_S: Final = 2.0


class Stream(Protocol):
    """What admission reads of a running synthesis job."""

    @property
    def voice_id(self) -> str: ...

    @property
    def playback_end(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new stream is refused, for the ``busy`` reply."""

    #: CPU-seconds per second the admitted streams need now, the newcomer included.
    load: float
    #: What the workers may be given (workers x ``max_inference_load``).
    capacity: float
    retry_after_s: float


@dataclass(slots=True)
class Admission:
    """Per-voice cost averages and the real-time streams being synthesized."""

    #: Per voice: (decayed CPU seconds, decayed audio seconds).
    _sums: dict[str, tuple[float, float]] = field(default_factory=dict)
    _streams: set[Stream] = field(default_factory=set)

    # --- what the synthesis jobs report ------------------------------------------------
    def observe(self, voice_id: str, cpu_seconds: float, audio_seconds: float) -> None:
        """One chunk of inference: ``cpu_seconds`` of CPU made ``audio_seconds`` of audio."""
        if audio_seconds <= 0:
            return
        cpu, audio = self._sums.get(voice_id, (0.0, 0.0))
        keep = 0.5 ** (audio_seconds / COST_HALF_LIFE_AUDIO_S)
        self._sums[voice_id] = (cpu * keep + cpu_seconds, audio * keep + audio_seconds)

    def started(self, stream: Stream) -> None:
        self._streams.add(stream)

    def ended(self, stream: Stream) -> None:
        self._streams.discard(stream)

    # --- views -------------------------------------------------------------------------
    @property
    def streams(self) -> int:
        return len(self._streams)

    def cost(self, voice_id: str) -> float:
        """CPU-seconds per second of speech for ``voice_id`` (0 until measured)."""
        cpu, audio = self._sums.get(voice_id, (0.0, 0.0))
        return cpu / audio if audio > 0 else 0.0

    def load(self, now: float) -> tuple[float, float]:
        """(load with start-up surcharges, steady load): CPU-seconds per second the
        admitted streams need."""
        full = steady = 0.0
        for stream in self._streams:
            cost = self.cost(stream.voice_id)
            steady += cost
            end = stream.playback_end
            starting = end is None or end - now < STARTUP_BUFFER_S
            full += cost * (STARTUP_FACTOR if starting else 1.0)
        return full, steady

    def to_json(self, now: float, capacity: float) -> dict[str, object]:
        load, steady = self.load(now)
        return {
            "streams": self.streams,
            "load": round(load, 3),
            "steady_load": round(steady, 3),
            "capacity": round(capacity, 3),
        }

    # --- the decision ------------------------------------------------------------------
    def check(self, voice_id: str, now: float, capacity: float) -> Refusal | None:
        """None if a new real-time stream of ``voice_id`` fits in ``capacity``
        CPU-seconds per second, else why not."""
        new = self.cost(voice_id) * STARTUP_FACTOR
        full, steady = self.load(now)
        # Alone, a stream is always admitted: refusing it would help nobody.
        if not self._streams or new == 0.0 or full + new <= capacity:
            return None
        settles = steady + self.cost(voice_id) <= capacity
        return Refusal(
            load=full + new,
            capacity=capacity,
            retry_after_s=STARTUP_RETRY_S if settles else FULL_RETRY_S,
        )
