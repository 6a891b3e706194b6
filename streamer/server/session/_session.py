"""Sessions: one listener's settings, request queue and playing request.

A ``Session`` takes messages from its connection (``configure``, ``submit``,
``interrupt``), keeps them in its ``RequestQueue`` (ordering and pre-emption rules are
in ``_queue.py``), runs one scheduler task that plays the best waiting request (each in
its own cancel scope, through ``_player.py``) and puts every reply in its ``Outbox``,
which the connection's writer drains. All state changes are synchronous, so a reply
(``queued``, ``interrupted``) is queued in the same step as the change it reports —
that is what makes "nothing of the interrupted request follows the reply" hold without
locks. Its ``ListenerClock`` is when its listener runs out of audio.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Final

import trio

from ...audio import StreamFormat
from ...protocol import (
    AudioConfig,
    AudioEnd,
    AudioStart,
    ClientError,
    Connected,
    Error,
    ErrorCode,
    Interrupted,
    Queued,
    RequestState,
    Synthesize,
    render,
)
from ..runtime import RequestOutcome, Services
from ._outbox import Outbox, OutboxClosed
from ._player import ListenerClock, SynthesisJob, run_job
from ._queue import RequestQueue, SynthesisRequest
from ._resolve import resolve_config
from ._start import check_can_start, new_job, release, wait_to_start

log = logging.getLogger(__name__)

#: Longest a request's first inference waits for the writer to send what is queued
#: before it (its ``queued`` and ``audio_start``). Started together, the worker thread's
#: Python (phonemizing) and the event loop's syscalls traded the GIL and delayed
#: ``queued`` by 3-5 ms for ~1 in 10 requests (BENCHMARKS.md); the sends take ~0.2 ms.
#: Bounded so that a slow reader's backlog of audio never holds up synthesis.
REPLY_FLUSH_WAIT_S: Final = 0.005


class Session:
    """One listener. Created by a WebSocket ``connect`` (or REST), freed on disconnect."""

    def __init__(self, session_id: str, services: Services, config: AudioConfig) -> None:
        self.id = session_id
        self.created_at = time.time()
        self._services = services
        self.config = config
        self._resolved = resolve_config(services, config, None)
        self._queue = RequestQueue()
        self._ids = itertools.count(1)
        self.playing: SynthesisRequest | None = None
        self._changed = trio.lowlevel.ParkingLot()
        self.outbox: Outbox | None = None
        #: When the listener runs dry; the next real-time request plays after it.
        self.clock = ListenerClock()
        self.requests_total = 0
        self.closed = False

    # --- views -----------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self.outbox is not None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def active(self, now: float) -> bool:
        """Something is playing, queued, or still in the listener's player at ``now``."""
        return (
            self.playing is not None
            or bool(self._queue)
            or self.clock.playing_until(now) is not None
        )

    def effective_config(self) -> dict[str, object]:
        r = self._resolved
        return self.config.to_json() | {
            "language": r.voice.language,
            "voice_id": self.config.voice_id if self.config.voice_id is not None else 0,
            "voice": r.voice.id,
            "engine": r.voice.engine,
            "format": r.spec.format,
            "sample_rate": r.spec.sample_rate or r.voice.sample_rate,
            "chunk_size": r.spec.chunk_size,
            "speed": r.options.speed,
            "volume": r.spec.volume,
            "trim_silence": r.spec.trim_silence,
            "realtime": r.realtime,
        }

    def to_json(self) -> dict[str, object]:
        playing = self.playing
        return {
            "session_id": self.id,
            "created_at": self.created_at,
            "attached": self.attached,
            "config": self.effective_config(),
            "playing": None
            if playing is None
            else {"request_id": playing.id, "priority": playing.priority.label},
            "queued": [
                {"request_id": r.id, "priority": r.priority.label} for r in self._queue.ordered()
            ],
            "requests_total": self.requests_total,
        }

    # --- messages ------------------------------------------------------------------
    def configure(self, config: AudioConfig) -> Connected:
        """Apply ``connect`` settings over the session's; raises ``ClientError``."""
        merged = self.config.merged(config)
        self._resolved = resolve_config(self._services, merged, None)
        self.config = merged
        return Connected(session_id=self.id, config=self.effective_config())

    def close(self, code: int, reason: str) -> None:
        """Stop everything and close the attached connection (REST delete, shutdown)."""
        if self.playing is not None or self._queue:
            self.interrupt("session_closed")
        if self.outbox is not None:
            self.outbox.close_with(code, reason, drop_audio=True)

    def submit(self, message: Synthesize, received_at: float) -> Queued:
        """Queue a request (and pre-empt for ``critical``). Raises ``ClientError``."""
        services = self._services
        request_id = message.request_id or f"{self.id}-{next(self._ids)}"
        if self._queue.used(request_id) or (self.playing and self.playing.id == request_id):
            raise ClientError(
                ErrorCode.DUPLICATE_REQUEST_ID,
                f"request_id {request_id!r} was already used in this session",
                request_id=request_id,
            )
        if len(self._queue) >= services.config.performance.max_queue_size:
            raise ClientError(
                ErrorCode.QUEUE_FULL,
                f"{len(self._queue)} requests are already queued in this session",
                request_id=request_id,
            )
        resolved = resolve_config(
            services, self.config.merged(message.config), request_id, message.text
        )
        # A request behind this session's own (playing, queued, or still in its
        # listener's player) continues that stream; only a silent session starts one.
        continues = self.active(trio.current_time())
        decision = check_can_start(
            services, resolved, message.priority, request_id, message.text,
            new_stream=not continues,
        )
        request = SynthesisRequest(
            id=request_id,
            text=message.text,
            priority=message.priority,
            resolved=resolved,
            received_at=received_at,
            start=decision,
        )
        self.requests_total += 1
        if self.playing is not None and request.preempts(self.playing):
            self._stop_playing(self.playing, "preempted")
        position = self._queue.push(request) + (self.playing is not None)
        queued = Queued(
            request_id=request_id, position=position, admission_wait_ms=decision.wait_ms
        )
        self._send(queued)
        services.metrics.observe_first_response(trio.current_time() - received_at)
        self._changed.unpark_all()
        return queued

    def interrupt(self, reason: str, received_at: float | None = None) -> Interrupted:
        """Barge-in: stop the playing request and drop every queued one.

        Synchronous: when this returns, the ``interrupted`` reply is queued behind
        everything already sent and no frame of the dropped requests can follow it.
        """
        dropped: list[str] = []
        for request in self._queue.drain():
            request.advance(RequestState.DROPPED)
            release(self._services, request.start)
            dropped.append(request.id)
            self._services.metrics.count_request(RequestOutcome.DROPPED)
        playing = self.playing
        if playing is not None:
            self._cancel(playing)
        self.clock.reset()  # the client stops its player on interrupt
        event = Interrupted(
            request_id=playing.id if playing else None, reason=reason, dropped=tuple(dropped)
        )
        self._send(event)
        if received_at is not None:
            self._services.metrics.observe_interrupt(trio.current_time() - received_at)
        self._changed.unpark_all()
        return event

    def send_error(self, error: ClientError) -> None:
        self._services.metrics.count_error(error.code)
        self._send(
            Error(
                code=error.code,
                message=error.message,
                request_id=error.request_id,
                details=error.details,
            )
        )

    # --- internals -----------------------------------------------------------------
    def _send(
        self,
        event: Connected | Queued | AudioStart | AudioEnd | Interrupted | Error,
        request_id: str | None = None,
    ) -> None:
        if self.outbox is not None:
            try:
                self.outbox.put_event(render(event), request_id)
            except OutboxClosed:
                pass  # the connection is ending: nobody will read the event

    def _cancel(self, request: SynthesisRequest) -> None:
        request.advance(RequestState.INTERRUPTED)
        if request.scope is not None:
            request.scope.cancel()
        if self.outbox is not None:
            self.outbox.drop(request.id)
        self.playing = None
        self.clock.reset()
        self._services.metrics.count_request(RequestOutcome.INTERRUPTED)

    def _stop_playing(self, request: SynthesisRequest, reason: str) -> None:
        self._cancel(request)
        self._send(Interrupted(request_id=request.id, reason=reason))

    # --- tasks ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler: start the best queued request whenever nothing plays.

        Runs until cancelled (the connection closing). Each request plays in its own
        task and cancel scope inside this task's nursery.
        """
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                while not self._queue or self.playing is not None:
                    await self._changed.park()
                request = self._queue.pop()
                request.advance(RequestState.PLAYING)
                self.playing = request
                self._services.metrics.observe_queue_wait(
                    request.priority, trio.current_time() - request.received_at
                )
                await nursery.start(self._play, request)

    async def _play(self, request: SynthesisRequest, *, task_status: trio.TaskStatus[None]) -> None:
        """Play ``request`` in a cancel scope of its own (the interrupt cancels it).

        Its events (``audio_start``, frames, ``audio_end``) are tagged with its id, so an
        interrupt drops what is still queued of them; a synthesis failure is reported as
        ``synthesis_failed`` and the session goes on.
        """
        outbox = self.outbox
        assert outbox is not None, "a session plays only while attached"
        services = self._services
        realtime = request.resolved.realtime
        job = new_job(
            services,
            request.resolved,
            request.text,
            request.priority,
            request.received_at,
            clock=self.clock if realtime else None,
            reservation=request.start.reservation,
        )
        request.job = job

        async def emit(frame: bytes) -> bool:
            return await outbox.put_audio(frame, request.id)

        try:
            with trio.CancelScope() as scope:
                request.scope = scope
                task_status.started()
                if request.state is not RequestState.PLAYING:
                    return  # interrupted before it could start
                try:
                    # Admission: may wait for room (``queued`` said how long at most).
                    await wait_to_start(services, request.start, request.id, job)
                except ClientError as refusal:
                    self._refused(request, refusal)
                    return
                self._send(_audio_start(request, job.open()), request.id)
                with trio.move_on_after(REPLY_FLUSH_WAIT_S):
                    await outbox.wait_flushed()
                try:
                    completed = await run_job(
                        job, emit, services.inference, services.metrics, services.admission
                    )
                except (OutboxClosed, trio.Cancelled):
                    raise
                except Exception:  # EngineError, or a bug of ours: logged, reported
                    log.exception("session %s: synthesis of %s failed", self.id, request.id)
                    self._failed(request)
                    return
                if completed and request.state is RequestState.PLAYING:
                    self._finished(request, job)
        except OutboxClosed:
            pass  # the connection is closing; its nursery ends us all
        finally:
            release(services, request.start)
            if not realtime:
                # A download does not play in real time: nothing for the next to follow.
                self.clock.reset()
            if self.playing is request:
                self.playing = None
            outbox.forget(request.id)
            self._changed.unpark_all()

    def _refused(self, request: SynthesisRequest, refusal: ClientError) -> None:
        """No room within ``max_start_delay_ms``: ``busy``, and the session goes on."""
        request.advance(RequestState.REFUSED)
        self._services.metrics.count_request(RequestOutcome.REFUSED)
        self.send_error(refusal)

    def _failed(self, request: SynthesisRequest) -> None:
        if request.state is not RequestState.PLAYING:
            return  # interrupted meanwhile: its reply already said so
        request.advance(RequestState.FAILED)
        metrics = self._services.metrics
        metrics.count_request(RequestOutcome.FAILED)
        metrics.count_error(ErrorCode.SYNTHESIS_FAILED)
        self._send(
            Error(
                code=ErrorCode.SYNTHESIS_FAILED,
                message="synthesis failed; the session continues",
                request_id=request.id,
            )
        )

    def _finished(self, request: SynthesisRequest, job: SynthesisJob) -> None:
        end = AudioEnd(
            request_id=request.id, chunks=job.chunks, bytes=job.bytes, duration_ms=job.duration_ms
        )
        self._send(end, request.id)
        request.advance(RequestState.FINISHED)
        self._services.metrics.count_request(RequestOutcome.FINISHED)


def _audio_start(request: SynthesisRequest, fmt: StreamFormat) -> AudioStart:
    return AudioStart(
        request_id=request.id,
        format=fmt.format,
        sample_rate=fmt.sample_rate,
        channels=fmt.channels,
        priority=request.priority.label,
        voice=request.resolved.voice.id,
        bitrate=fmt.bitrate,
        mime_type=fmt.mime_type,
        note=fmt.note,
    )
