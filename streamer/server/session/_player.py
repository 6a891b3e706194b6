"""The player of one request: engine chunks → audio pipeline → frames, paced to the
listener's real-time clock.

Shared by WebSocket sessions and the HTTP speech routes. A job owns no socket: it hands
each encoded frame to an ``emit`` callback (the session's outbox, or an HTTP response
channel) and returns when the text is spoken, raising ``Cancelled`` when its scope is
cancelled. Cancellation waits for at most the one chunk of inference already running in
a worker thread.

``ListenerClock`` is the one owner of "when does this listener run dry": a session keeps
one for all its requests (the next request plays after the audio the listener still
holds), and every job reads and moves it as it sends audio.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

import trio

from ...audio import AudioPipeline, OutputSpec, StreamFormat
from ...engines.base import Engine, Pcm, SynthesisOptions, Voice
from ...protocol import Priority
from ..runtime import Admission, InferenceScheduler, Metrics, Reservation, cost_key

log = logging.getLogger(__name__)

#: A frame this late is not yet an underrun: timer and scheduling noise.
UNDERRUN_TOLERANCE_S: Final = 0.001

#: Called with each encoded frame; returns False when the consumer no longer wants
#: frames of this job (it was interrupted), which ends the job early.
Emit = Callable[[bytes], Awaitable[bool]]


class ListenerClock:
    """When a listener will have played every sample sent to it (trio clock).

    The listener's player starts a request's first sample as soon as it arrives, or
    right after the audio it still holds; when a chunk arrives after the player ran dry
    (an underrun) it resumes with that chunk. So one number describes it: ``dry_at``,
    None while nothing is buffered (never started, or emptied by an interrupt).
    """

    __slots__ = ("_dry_at",)

    def __init__(self) -> None:
        self._dry_at: float | None = None

    @property
    def dry_at(self) -> float | None:
        return self._dry_at

    def playing_until(self, now: float) -> float | None:
        """``dry_at`` if the listener still plays at ``now``, else None."""
        dry_at = self._dry_at
        return dry_at if dry_at is not None and dry_at > now else None

    def start(self, now: float, carried: float | None, audio_before: float) -> bool:
        """The first frame of a request leaves at ``now``, with ``audio_before`` seconds
        of its audio already synthesized (an encoder may hold early chunks back);
        ``carried`` is when the listener's earlier audio ran out as seen when the
        request was created (None: it was idle then). Returns True for an underrun (the
        earlier audio ran out first); the clock then runs from ``now``."""
        underrun = carried is not None and now > carried + UNDERRUN_TOLERANCE_S
        start = carried if carried is not None and not underrun else now
        self._dry_at = start + audio_before
        return underrun

    def resume(self, now: float) -> bool:
        """A later chunk's first frame leaves at ``now``. Returns True if the listener
        had played everything before it (audible silence): its clock then moves on by
        the gap, so one gap counts once, not once per frame after it."""
        dry_at = self._dry_at
        if dry_at is not None and now > dry_at + UNDERRUN_TOLERANCE_S:
            self._dry_at = now
            return True
        return False

    def add(self, audio_seconds: float) -> None:
        """``audio_seconds`` more audio was sent (before ``start``, the job counts it
        and passes it to ``start``)."""
        if self._dry_at is not None:
            self._dry_at += audio_seconds

    def reset(self) -> None:
        """The listener dropped what it held (an interrupt stops its player)."""
        self._dry_at = None


@dataclass(slots=True, eq=False)
class SynthesisJob:
    """What to say, how, to which listener, and the figures gathered while saying it."""

    voice: Voice
    engine: Engine
    text: str
    options: SynthesisOptions
    spec: OutputSpec
    priority: Priority
    #: trio clock when the request arrived; time to first audio counts from here.
    received_at: float
    #: Synthesize at most this many seconds ahead of playback; 0 = as fast as possible.
    realtime_lead: float
    #: The listener's clock, shared with the session's other requests.
    clock: ListenerClock = field(default_factory=ListenerClock)
    #: When the listener's earlier audio runs out, as seen at creation (None: idle).
    #: This job's audio plays after it, so its clock starts there.
    carried: float | None = None
    #: Its claim on the workers (real-time jobs), kept up to date as audio is made and
    #: given back when synthesis ends.
    reservation: Reservation | None = None
    #: When admission let it start, if it waited for room: its first chunk's deadline
    #: (None: it started as it arrived).
    admitted_at: float | None = None
    # Filled in while running:
    pipeline: AudioPipeline | None = None
    first_audio_at: float | None = None
    chunks: int = 0
    bytes: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    underruns: int = 0

    def open(self) -> StreamFormat:
        """Create the audio pipeline (cheap) and return the effective stream format."""
        self.pipeline = AudioPipeline(self.spec, self.voice.sample_rate)
        return self.pipeline.stream_format

    @property
    def paced(self) -> bool:
        return self.realtime_lead > 0

    @property
    def voice_id(self) -> str:
        return self.voice.id

    @property
    def playback_end(self) -> float | None:
        """When the listener will have played everything sent so far (None before the
        first frame)."""
        return self.clock.dry_at if self.first_audio_at is not None else None

    @property
    def duration_ms(self) -> int:
        if self.pipeline is None:
            return 0
        return round(self.pipeline.samples_out * 1000 / self.pipeline.stream_format.sample_rate)


def _next_chunk(generator: object) -> Pcm | None:
    """One ``next()`` of an engine's generator (in a worker); None at its end."""
    chunk: Pcm | None = next(generator, None)  # type: ignore[call-overload]
    return chunk


async def run_job(
    job: SynthesisJob,
    emit: Emit,
    inference: InferenceScheduler,
    metrics: Metrics,
    admission: Admission,
) -> bool:
    """Speak ``job`` through ``emit``. Returns True if every frame was delivered,
    False if ``emit`` refused one (the consumer dropped the request).

    A real-time job's chunks teach ``admission`` what its voice costs (wall time per
    chunk, as the scheduler measured it), its progress keeps its reservation up to
    date, an underrun tells admission it was too generous, and the reservation is
    given back when synthesis ends, however it ends."""
    pipeline = job.pipeline
    if pipeline is None:
        job.open()
        pipeline = job.pipeline
        assert pipeline is not None
    options = job.options
    reservation = job.reservation
    if reservation is not None and not admission.streaming_safe(
        job.voice_id, trio.current_time(), idle=inference.idle
    ):
        # Here growing windows of this voice come too close to running dry (a slow
        # CPU): whole segments, whose first covers the decoding of the next.
        reservation.whole_segments = True
    whole = reservation is not None and reservation.whole_segments
    if whole:
        # It waited for room (the workers are saturated, and whole segments cost
        # least), or streaming would not keep ahead.
        options = replace(options, whole_segments=True)
    elif job.carried is None and inference.idle and admission.quick_start_safe(job.voice_id):
        # Nothing else computes, so the second chunk will not queue behind other work:
        # the engine may make the first one as small as it can (lowest first audio),
        # if the voice is cheap enough here that the next is ready in time even if a
        # burst of others arrives meanwhile. Under load the default first chunk is
        # larger, to cover the next one's wait.
        options = replace(options, quick_start=True)
    key = cost_key(job.voice_id, whole)
    generator = job.engine.stream(job.voice, job.text, options)
    rate = job.voice.sample_rate
    paced = job.paced
    clock = job.clock

    def count_underrun() -> None:
        job.underruns += 1
        metrics.count_underrun()
        admission.underrun(trio.current_time())

    async def send(frames: Iterable[bytes]) -> bool:
        """Emit one engine chunk's frames (they leave together: only the first can be
        late for the listener; the clock counts the chunk once it is all sent)."""
        first_of_chunk = True
        for frame in frames:
            if not frame:
                continue
            now = trio.current_time()
            if job.first_audio_at is None:
                job.first_audio_at = now
                metrics.observe_ttfa(now - job.received_at)
                if clock.start(now, job.carried if paced else None, job.audio_seconds):
                    count_underrun()
            elif first_of_chunk and paced and clock.resume(now):
                # Audible silence before this chunk (real-time consumers only).
                count_underrun()
            first_of_chunk = False
            if not await emit(frame):
                return False
            job.chunks += 1
            job.bytes += len(frame)
        return True

    completed = False
    previous_audio = 0.0
    try:
        while True:
            # Earliest-deadline-first: the moment the listener runs out of audio. Before
            # the first audio that is its start ("now"), or the end of the audio it is
            # still playing from the session's previous request.
            deadline = job.playback_end
            if deadline is None:
                # A request that waited for room must not take its place in the
                # scheduler from its arrival: it would go before chunks of the streams
                # admitted while it waited, which admission counted on going first.
                start = job.admitted_at if job.admitted_at is not None else job.received_at
                deadline = max(start, job.carried or start)
            timed = await inference.run_timed(
                lambda: _next_chunk(generator),
                priority=job.priority,
                deadline=deadline,
                background=not paced,  # a download takes what real-time streams leave
            )
            chunk = timed.value
            if chunk is None:
                break
            job.compute_seconds += timed.seconds
            if paced and not whole and 0 < previous_audio < job.realtime_lead:
                # Getting ahead: the listener holds about the previous chunk's audio.
                admission.observe_chain(key, timed.seconds, previous_audio, trio.current_time())
            previous_audio = len(chunk) / rate
            if paced:
                # Only real-time chunks teach the cost: a download's run in the
                # background at a low OS priority, their wall time says little.
                admission.observe_chunk(
                    key, timed.seconds, len(chunk) / rate, first=job.audio_seconds == 0
                )
            # push_iter encodes lazily: the first frame leaves after one slice of
            # encoding, not after the whole chunk (matters for Opus and MP3).
            if not await send(pipeline.push_iter(chunk)):
                pipeline.close()
                return False
            job.audio_seconds += len(chunk) / rate
            clock.add(len(chunk) / rate)
            playback_end = job.playback_end
            if reservation is not None:
                reservation.produced_s = job.audio_seconds
                reservation.playback_end = playback_end
            if paced and playback_end is not None:
                # Stay no more than ``realtime_lead`` ahead of the listener.
                await trio.sleep_until(playback_end - job.realtime_lead)
        if not await send(pipeline.finish()):
            return False
        completed = True
    except BaseException:
        pipeline.close()  # interrupted mid-chunk: drop encoder state
        raise
    finally:
        if reservation is not None:
            admission.ended(reservation)
        # Safe: no next() is running (the scheduler waits for its thread on cancel).
        close = getattr(generator, "close", None)
        if close is not None:
            close()
    if completed and job.audio_seconds > 0:
        metrics.observe_rtf(job.compute_seconds / job.audio_seconds)
        admission.observe_text(job.voice_id, len(job.text), job.audio_seconds, options.speed)
    return True
