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
import math
import time
from collections.abc import Sequence
from typing import Final

import trio

from ...audio import StreamFormat
from ...protocol import (
    AudioConfig,
    AudioEnd,
    AudioStart,
    BufferPolicy,
    Cancel,
    ClientError,
    Close,
    Connected,
    Error,
    ErrorCode,
    Flush,
    Flushed,
    Interrupted,
    Keepalive,
    Priority,
    Queued,
    RequestState,
    ServerEvent,
    StreamedText,
    Synthesize,
    Text,
    Timestamps,
    WordTimestamp,
    char_alignment,
    heard_char_end,
    render,
)
from ..runtime import RequestOutcome, Services
from ..security import ANONYMOUS, Caller
from ._outbox import Outbox, OutboxClosed
from ._player import ListenerClock, SegmentFeed, SynthesisJob, run_job
from ._queue import RECENT_REQUEST_IDS, RequestQueue, SynthesisRequest
from ._resolve import resolve_config
from ._start import check_can_start, extend, new_job, release, wait_to_start

log = logging.getLogger(__name__)

#: Longest a request's first inference waits for the writer to send what is queued
#: before it (its ``queued`` and ``audio_start``). Started together, the worker thread's
#: Python (phonemizing) and the event loop's syscalls traded the GIL and delayed
#: ``queued`` by 3-5 ms for ~1 in 10 requests (BENCHMARKS.md); the sends take ~0.2 ms.
#: Bounded so that a slow reader's backlog of audio never holds up synthesis.
REPLY_FLUSH_WAIT_S: Final = 0.005
#: The ``reason`` of the ``interrupted`` that answers a ``cancel``.
CANCEL_REASON: Final = "cancel"


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
        #: trio clock of the last change (submit, interrupt, a request's end): idle
        #: timeouts count from it.
        self.activity_at = trio.current_time()
        self.requests_total = 0
        self.closed = False
        #: Who created it: only that key (or an admin) sees it, and its text is charged
        #: to that key's ``chars_per_minute``.
        self.owner: Caller = ANONYMOUS
        #: Streamed-text contexts not yet over, by id (also in the queue or playing).
        self._contexts: dict[str, SynthesisRequest] = {}
        #: Contexts over lately, or refused when they opened, with why: their ids
        #: answer ``context_closed``, not "unknown", and do not open again.
        self._ended_contexts: dict[str, str] = {}
        self._timers_changed = trio.lowlevel.ParkingLot()

    # --- views -----------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self.outbox is not None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def idle_since(self) -> float:
        """When this session last did anything: a request or interrupt arrived, a
        request ended, or its listener's player ran dry (whichever is latest)."""
        dry_at = self.clock.dry_at
        return max(self.activity_at, dry_at if dry_at is not None else self.activity_at)

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
            "timestamps": r.timestamps,
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
        request_id = message.request_id or f"{self.id}-{next(self._ids)}"
        request = self._admit(
            request_id, message.text, message.priority, message.config, received_at
        )
        return self._enqueue(request, received_at)

    def _admit(
        self,
        request_id: str,
        text: str,
        priority: Priority,
        config: AudioConfig,
        received_at: float,
        *,
        text_to_come: bool = False,
    ) -> SynthesisRequest:
        """A request that may be queued now: its id unused, room in the queue, its
        config resolved, and the start policy's consent (``text_to_come``: a context's
        opening, see ``check_can_start``). Raises ``ClientError``."""
        services = self._services
        if (
            self._queue.used(request_id)
            or (self.playing and self.playing.id == request_id)
            or request_id in self._ended_contexts
        ):
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
        resolved = resolve_config(services, self.config.merged(config), request_id, text)
        # A request behind this session's own (playing, queued, or still in its
        # listener's player) continues that stream; only a silent session starts one.
        continues = self.active(trio.current_time())
        decision = check_can_start(
            services,
            resolved,
            priority,
            request_id,
            text,
            new_stream=not continues,
            text_to_come=text_to_come,
        )
        try:
            services.security.quotas.charge(
                self.owner, len(text), trio.current_time(), request_id=request_id
            )
        except BaseException:
            release(services, decision)  # refused by the key's quota: no claim kept
            raise
        return SynthesisRequest(
            id=request_id,
            text=text,
            priority=priority,
            resolved=resolved,
            received_at=received_at,
            start=decision,
        )

    def _enqueue(self, request: SynthesisRequest, received_at: float) -> Queued:
        self.requests_total += 1
        self.activity_at = trio.current_time()
        if self.playing is not None and request.preempts(self.playing):
            self._stop_playing(self.playing, "preempted")
        position = self._queue.push(request) + (self.playing is not None)
        context_id = request.id if request.context is not None else None
        queued = Queued(
            request_id=request.id,
            position=position,
            context_id=context_id,
            admission_wait_ms=request.start.wait_ms,
        )
        self._send(queued)
        self._services.metrics.observe_first_response(trio.current_time() - received_at)
        self._changed.unpark_all()
        return queued

    # --- streamed-text contexts ------------------------------------------------------
    def text(self, message: Text, received_at: float) -> Queued | None:
        """Append to a context, opening it on its first ``text`` (then its ``queued``
        is returned). Raises ``ClientError`` (``context_closed``, ``too_many_contexts``,
        and what ``synthesize`` can raise for the opening one)."""
        request = self._contexts.get(message.context_id)
        queued = None
        if request is None:
            ended = self._ended_contexts.get(message.context_id)
            if ended is not None:
                raise ClientError(
                    ErrorCode.CONTEXT_CLOSED,
                    f"context {message.context_id} {ended}; open a new one",
                    request_id=message.context_id,
                )
            try:
                request = self._open_context(message, received_at)
            except ClientError as error:
                if error.code is not ErrorCode.DUPLICATE_REQUEST_ID:
                    # Spent: the text that follows an opening the client has not seen
                    # refused yet must not open the context anew with other settings.
                    self._remember_ended(message.context_id, f"was refused ({error.code})")
                raise
            queued = self._enqueue(request, received_at)
        elif request.context is not None and request.context.open and message.text:
            # Every piece counts against the key's chars_per_minute, as a synthesize's
            # text does (the opening one was counted with the rest of its admission);
            # refused (rate_limited), it is not appended and the context goes on.
            self._services.security.quotas.charge(
                self.owner, len(message.text), trio.current_time(), request_id=request.id
            )
            extend(self._services, request.start, request.resolved, message.text)
        context, feed = self._context_parts(request)
        segments = context.append(message.text, received_at, flush=message.flush)
        feed.put(segments)
        self._timers_changed.unpark_all()
        return queued

    def _open_context(self, message: Text, received_at: float) -> SynthesisRequest:
        limit = self._services.config.tts.max_open_contexts
        if len(self._contexts) >= limit:
            raise ClientError(
                ErrorCode.TOO_MANY_CONTEXTS,
                f"this session has {len(self._contexts)} contexts open; the limit is "
                f"tts.max_open_contexts = {limit}: close one first",
                request_id=message.context_id,
                details={"limit": limit},
            )
        policy = BufferPolicy.from_config(message.buffer, message.context_id)
        request = self._admit(
            message.context_id,
            message.text,
            message.priority or Priority.NORMAL,
            message.config or AudioConfig(),
            received_at,
            text_to_come=True,
        )
        request.context = StreamedText(
            message.context_id,
            policy,
            idle_s=self._services.config.tts.context_idle_s,
            now=received_at,
        )
        request.feed = SegmentFeed()
        if request.start.reservation is not None:
            # Nothing is due until its first text is cut (``wait_to_start``).
            request.start.reservation.idle = True
        self._contexts[request.id] = request
        return request

    def _context(self, context_id: str) -> SynthesisRequest:
        """The open context ``context_id``; raises ``context_closed`` for one over,
        ``unknown_context`` for one never opened."""
        request = self._contexts.get(context_id)
        if request is not None:
            return request
        ended = self._ended_contexts.get(context_id)
        if ended is not None:
            raise ClientError(
                ErrorCode.CONTEXT_CLOSED, f"context {context_id} {ended}", request_id=context_id
            )
        raise ClientError(
            ErrorCode.UNKNOWN_CONTEXT,
            f"no context {context_id} in this session; a text message opens one",
            request_id=context_id,
        )

    @staticmethod
    def _context_parts(request: SynthesisRequest) -> tuple[StreamedText, SegmentFeed]:
        assert request.context is not None and request.feed is not None
        return request.context, request.feed

    def flush(self, message: Flush, received_at: float) -> None:
        """Speak what the context buffered; ``flushed`` follows its audio."""
        context, feed = self._context_parts(self._context(message.context_id))
        feed.put(context.flush(message.flush_id, received_at))
        self._timers_changed.unpark_all()

    def close_context(self, message: Close, received_at: float) -> None:
        """End of the context's input: the rest is spoken, then ``audio_end``."""
        context, feed = self._context_parts(self._context(message.context_id))
        feed.put(context.close(received_at))
        feed.close()
        self._timers_changed.unpark_all()

    def keepalive(self, message: Keepalive, received_at: float) -> None:
        """Reset the idle timer of one context, or of every open one."""
        if message.context_id is not None:
            requests = [self._context(message.context_id)]
        else:
            requests = list(self._contexts.values())
        for request in requests:
            context, _ = self._context_parts(request)
            context.keepalive(received_at)
        self._timers_changed.unpark_all()

    def cancel(self, message: Cancel, received_at: float) -> Interrupted:
        """Barge-in on one context, queued or playing: it ends here, and the reply says
        what was heard of it. Synchronous, like ``interrupt``: nothing of the context
        follows the reply."""
        request = self._context(message.context_id)
        if request is self.playing:
            report = self._listener_report(request, message.played_ms)
            self._cancel(request)
        else:
            self._queue.remove(request)
            request.advance(RequestState.DROPPED)
            release(self._services, request.start)
            self._services.metrics.count_request(RequestOutcome.DROPPED)
            self._ended(request)
            report = _NOTHING_PLAYED
        self.activity_at = trio.current_time()
        event = Interrupted(request.id, CANCEL_REASON, (), *report)
        self._send(event)
        self._services.metrics.observe_interrupt(trio.current_time() - received_at)
        self._changed.unpark_all()
        return event

    def _ended(self, request: SynthesisRequest) -> None:
        """``request`` is over: if a context, it takes no more text, and its id is
        remembered a while (``context_closed``)."""
        if request.context is None:
            return
        assert request.feed is not None
        request.context.end()
        request.feed.close()
        if self._contexts.pop(request.id, None) is not None:
            self._remember_ended(request.id, "has ended")
        self._timers_changed.unpark_all()

    def _remember_ended(self, context_id: str, why: str) -> None:
        self._ended_contexts[context_id] = why
        if len(self._ended_contexts) > RECENT_REQUEST_IDS:
            del self._ended_contexts[next(iter(self._ended_contexts))]

    def _listener_report(
        self, request: SynthesisRequest, client_played_ms: int | None
    ) -> tuple[int | None, int | None, str | None, int | None, str | None]:
        """What the listener got of ``request``, playing now: ``audio_sent_ms``,
        ``played_ms``, ``heard_text``, ``heard_char_end`` and ``basis``.

        All None for a request without word timings whose client said nothing (the
        ``interrupted`` of a plain ``synthesize`` keeps its original shape); heard text
        None whenever the words were not timed.
        """
        job = request.job
        timed = request.context is not None or (job is not None and job.timed)
        if not timed and client_played_ms is None:
            return None, None, None, None, None
        sent_ms = played_ms = 0.0
        basis = "client" if client_played_ms is not None else "sent"
        if job is not None and job.first_audio_at is not None:
            unsent = self.outbox.queued_audio(request.id) if self.outbox is not None else 0
            sent_ms = job.sent_seconds(unsent) * 1000
            if client_played_ms is not None:
                played_ms = min(float(client_played_ms), sent_ms)
            elif job.paced:
                played_ms = min(job.played_seconds(trio.current_time()) * 1000, sent_ms)
                basis = "clock"
            else:
                played_ms = sent_ms
        if not timed:
            return round(sent_ms), round(played_ms), None, None, basis
        end = heard_char_end(job.words, played_ms) if job is not None else 0
        text = request.context.text if request.context is not None else request.text
        return round(sent_ms), round(played_ms), text[:end], end, basis

    async def _timers(self) -> None:
        """Release what contexts' clocks release: text held past ``max_delay_ms``, and
        contexts idle for ``tts.context_idle_s`` (closed, with ``context_idle``)."""
        while True:
            deadline = min(
                (
                    d
                    for r in self._contexts.values()
                    if r.context is not None and (d := r.context.deadline) is not None
                ),
                default=math.inf,
            )
            with trio.move_on_at(deadline):
                await self._timers_changed.park()
            now = trio.current_time()
            for request in list(self._contexts.values()):
                context, feed = self._context_parts(request)
                segments, idle = context.tick(now)
                feed.put(segments)
                if idle:
                    feed.close()
                    self._send(
                        Error(
                            code=ErrorCode.CONTEXT_IDLE,
                            message=(
                                f"context {request.id} got no text for "
                                f"{self._services.config.tts.context_idle_s:g} s "
                                "(tts.context_idle_s): closed, what it held is spoken"
                            ),
                            request_id=request.id,
                        ),
                        request.id,
                    )

    def interrupt(
        self, reason: str, received_at: float | None = None, played_ms: int | None = None
    ) -> Interrupted:
        """Barge-in: stop the playing request and drop every queued one.

        Synchronous: when this returns, the ``interrupted`` reply is queued behind
        everything already sent and no frame of the dropped requests can follow it.
        ``played_ms`` is how much of the playing request the client says it played.
        """
        dropped: list[str] = []
        for request in self._queue.drain():
            request.advance(RequestState.DROPPED)
            release(self._services, request.start)
            dropped.append(request.id)
            self._services.metrics.count_request(RequestOutcome.DROPPED)
            self._ended(request)
        playing = self.playing
        report: tuple[int | None, int | None, str | None, int | None, str | None] = (
            (None,) * 5
        )
        if playing is not None:
            report = self._listener_report(playing, played_ms)
            self._cancel(playing)
        self.clock.reset()  # the client stops its player on interrupt
        self.activity_at = trio.current_time()
        event = Interrupted(
            playing.id if playing else None, reason, tuple(dropped), *report
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
    def _send(self, event: ServerEvent, request_id: str | None = None) -> None:
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
        self._ended(request)

    def _stop_playing(self, request: SynthesisRequest, reason: str) -> None:
        report = self._listener_report(request, None)
        self._cancel(request)
        self._send(Interrupted(request.id, reason, (), *report))

    # --- tasks ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler: start the best queued request whenever nothing plays.

        Runs until cancelled (the connection closing). Each request plays in its own
        task and cancel scope inside this task's nursery.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._timers)
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
        finally:
            # The connection went away: what is still queued will never play, so its
            # claims on the workers (admitted when it arrived) are given back.
            for request in self._queue.ordered():
                release(self._services, request.start)

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
            request.text if request.feed is None else "",
            request.priority,
            request.received_at,
            clock=self.clock if realtime else None,
            feed=request.feed,
            reservation=request.start.reservation,
        )
        request.job = job
        job.session_id, job.request_id = self.id, request.id  # for the underrun log
        timestamps = request.resolved.timestamps

        async def emit(frame: bytes) -> bool:
            return await outbox.put_audio(frame, request.id)

        def on_words(words: Sequence[WordTimestamp], estimated: bool) -> None:
            if timestamps == "none" or request.state is not RequestState.PLAYING:
                return
            self._send(_timestamps_event(request, words, estimated, timestamps), request.id)

        def on_flushed(flush_ids: tuple[str, ...]) -> None:
            if request.state is RequestState.PLAYING:
                for flush_id in flush_ids:
                    self._send(Flushed(request.id, flush_id), request.id)

        try:
            with trio.CancelScope() as scope:
                request.scope = scope
                task_status.started()
                if request.state is not RequestState.PLAYING:
                    return  # interrupted before it could start
                if request.feed is not None:
                    # A context starts its audio with its first text (or its end).
                    await request.feed.wait_ready()
                    if job.carried is not None:
                        # The audio it was to follow may have played out meanwhile: then
                        # it starts a stream of its own (admission judges it as one).
                        job.carried = self.clock.playing_until(trio.current_time())
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
                        job,
                        emit,
                        services.inference,
                        services.metrics,
                        services.admission,
                        on_words=on_words,
                        on_flushed=on_flushed,
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
            self.activity_at = trio.current_time()
            outbox.forget(request.id)
            if request.context is not None and request.state is RequestState.PLAYING:
                # Left without an outcome (the connection is closing): over all the same.
                self._ended(request)
            self._changed.unpark_all()

    def _refused(self, request: SynthesisRequest, refusal: ClientError) -> None:
        """No room within ``max_start_delay_ms``: ``busy``, and the session goes on (a
        context refused so is over: its id takes no more text)."""
        request.advance(RequestState.REFUSED)
        self._ended(request)
        self._services.metrics.count_request(RequestOutcome.REFUSED)
        self.send_error(refusal)

    def _failed(self, request: SynthesisRequest) -> None:
        if request.state is not RequestState.PLAYING:
            return  # interrupted meanwhile: its reply already said so
        request.advance(RequestState.FAILED)
        self._ended(request)
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
            request_id=request.id,
            chunks=job.chunks,
            bytes=job.bytes,
            duration_ms=job.duration_ms,
            context_id=request.id if request.context is not None else None,
        )
        self._send(end, request.id)
        request.advance(RequestState.FINISHED)
        self._ended(request)
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
        context_id=request.id if request.context is not None else None,
    )


#: The listener report of a context cancelled before it played.
_NOTHING_PLAYED: Final = (0, 0, "", 0, "sent")


def _timestamps_event(
    request: SynthesisRequest, words: Sequence[WordTimestamp], estimated: bool, mode: str
) -> Timestamps:
    if mode != "char":
        return Timestamps(request.id, tuple(words), estimated or None)
    text = request.context.text if request.context is not None else request.text
    alignment = char_alignment(text, words)
    return Timestamps(
        request.id,
        tuple(words),
        estimated or None,
        alignment.chars,
        alignment.char_start_ms,
        alignment.char_dur_ms,
    )
