"""One synthesis job: engine chunks → audio pipeline → frames, paced to real time.

Shared by WebSocket sessions and the HTTP speech endpoints. The job itself owns no
socket: it hands each encoded frame to an ``emit`` callback (the session's outbox, or
an HTTP response channel) and returns when the text is spoken, raising ``Cancelled``
when its scope is cancelled. Cancellation waits for at most the one chunk of
inference already running in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final

import trio

from ..audio import AudioPipeline, OutputSpec, StreamFormat
from ..engines.base import Engine, Pcm, SynthesisOptions, Voice
from ..protocol import Priority
from ._admission import Admission
from ._inference import InferenceScheduler
from .metrics import Metrics

log = logging.getLogger(__name__)

#: A frame this late is not yet an underrun: timer and scheduling noise.
UNDERRUN_TOLERANCE_S: Final = 0.001

#: Called with each encoded frame; returns False when the consumer no longer wants
#: frames of this job (it was interrupted), which ends the job early.
Emit = Callable[[bytes], Awaitable[bool]]


@dataclass(slots=True, eq=False)  # identity: admission keeps running jobs in a set
class SynthesisJob:
    """What to say, how, and the figures gathered while saying it."""

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
    #: trio clock until which the listener still plays the session's earlier audio
    #: (a request queued behind another); this job's audio plays after it, so its
    #: clock starts there, not at its own first frame. None: the listener is idle.
    listener_busy_until: float | None = None
    # Filled in while running:
    pipeline: AudioPipeline | None = None
    first_audio_at: float | None = None
    #: The listener's clock: when it starts (or would have started) playing this
    #: job's first sample. Moves on by any underrun's gap.
    playback_start: float | None = None
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
    def voice_id(self) -> str:
        return self.voice.id

    @property
    def playback_end(self) -> float | None:
        """When the listener will have played everything sent so far (None before)."""
        if self.playback_start is None:
            return None
        return self.playback_start + self.audio_seconds

    @property
    def duration_ms(self) -> int:
        if self.pipeline is None:
            return 0
        return round(self.pipeline.samples_out * 1000 / self.pipeline.stream_format.sample_rate)


def _timed_next(generator: object) -> tuple[Pcm | None, float, float]:
    """(chunk, wall seconds, CPU seconds) of one ``next()``. Runs in a worker thread:
    times only the inference, not the wait for a slot; CPU time is this thread's, so
    it does not grow when chunks share a core (admission's cost estimate)."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    chunk: Pcm | None = next(generator, None)  # type: ignore[call-overload]
    return chunk, time.perf_counter() - started, time.thread_time() - cpu_started


async def run_job(
    job: SynthesisJob,
    emit: Emit,
    inference: InferenceScheduler,
    metrics: Metrics,
    admission: Admission,
) -> bool:
    """Speak ``job`` through ``emit``. Returns True if every frame was delivered,
    False if ``emit`` refused one (the consumer dropped the request).

    A real-time job counts in ``admission``'s load while it runs, and every job's
    chunks teach it what its voice costs."""
    pipeline = job.pipeline
    if pipeline is None:
        job.open()
        pipeline = job.pipeline
        assert pipeline is not None
    options = job.options
    if job.listener_busy_until is None and inference.idle:
        # Nothing else computes, so the second chunk will not queue behind other work:
        # the engine may make the first one as small as it can (lowest first audio).
        # Under load the default first chunk is larger, to cover the next one's wait.
        options = replace(options, quick_start=True)
    generator = job.engine.stream(job.voice, job.text, options)
    rate = job.voice.sample_rate
    paced = job.realtime_lead > 0
    carried = job.listener_busy_until if paced else None

    def count_underrun() -> None:
        job.underruns += 1
        metrics.count_underrun()

    async def send(frames: Iterable[bytes]) -> bool:
        """Emit one engine chunk's frames (they leave together: only the first can be
        late for the listener; ``job.audio_seconds`` still excludes this chunk)."""
        first_of_chunk = True
        for frame in frames:
            if not frame:
                continue
            now = trio.current_time()
            if job.playback_start is None:
                job.first_audio_at = now
                metrics.observe_ttfa(now - job.received_at)
                job.playback_start = now
                if carried is not None:
                    # Played right after the session's previous request: late only if
                    # the listener ran out of that one's audio first.
                    if now > carried + UNDERRUN_TOLERANCE_S:
                        count_underrun()
                    else:
                        job.playback_start = carried
            elif (
                first_of_chunk
                and paced
                and now > job.playback_start + job.audio_seconds + UNDERRUN_TOLERANCE_S
            ):
                # The listener has played everything sent so far before this chunk:
                # audible silence. Its player resumes with this chunk, so its clock
                # (and our pacing and deadlines) moves on by the gap: one underrun per
                # gap, not one per frame after it. (Real-time consumers only.)
                count_underrun()
                job.playback_start = now - job.audio_seconds
            first_of_chunk = False
            if not await emit(frame):
                return False
            job.chunks += 1
            job.bytes += len(frame)
        return True

    if paced:
        admission.started(job)
    try:
        while True:
            # Earliest-deadline-first: the moment the listener runs out of audio. Before
            # the first audio that is its arrival ("now"), or the end of the audio it is
            # still playing from the session's previous request.
            deadline = job.playback_end
            if deadline is None:
                deadline = max(job.received_at, carried or job.received_at)
            chunk, seconds, cpu_seconds = await inference.run(
                lambda: _timed_next(generator), priority=job.priority, deadline=deadline
            )
            if chunk is None:
                break
            job.compute_seconds += seconds
            admission.observe(job.voice_id, cpu_seconds, len(chunk) / rate)
            # push_iter encodes lazily: the first frame leaves after one slice of
            # encoding, not after the whole chunk (matters for Opus and MP3).
            if not await send(pipeline.push_iter(chunk)):
                pipeline.close()
                return False
            job.audio_seconds += len(chunk) / rate
            playback_end = job.playback_end
            if paced and playback_end is not None:
                # Stay no more than ``realtime_lead`` ahead of the listener.
                await trio.sleep_until(playback_end - job.realtime_lead)
        if not await send(pipeline.finish()):
            return False
    except BaseException:
        pipeline.close()  # interrupted mid-chunk: drop encoder state
        raise
    finally:
        admission.ended(job)
        # Safe: no next() is running (the scheduler waits for its thread on cancel).
        close = getattr(generator, "close", None)
        if close is not None:
            close()
    if job.audio_seconds > 0:
        metrics.observe_rtf(job.compute_seconds / job.audio_seconds)
    return True
