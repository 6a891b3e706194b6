"""Starting a synthesis: the one admission rule and the one way a job is built, shared
by WebSocket sessions (``synthesize`` and streamed-text contexts) and the HTTP speech
routes (one policy, one place).

A start is decided in two steps. ``check_can_start`` runs where the request arrives,
synchronously, before its ``queued`` reply: it refuses at once what can never start
soon (inference already late, or the line of waiting starts full), admits a new
real-time stream that fits now, and otherwise says the request will wait for room
(the reply carries ``admission_wait_ms``). ``wait_to_start`` runs where the request
starts playing: it waits in admission's line for a request that must, for at most
``performance.max_start_delay_ms``, then refuses it with ``busy``; it admits
``critical`` requests and those that continue a stream its listener still plays
without asking, so that their work counts; and a request that was queued behind its
session's own but finds its listener silent when it starts is judged as a new stream
then. A streamed-text context opens with a piece of its first sentence and has nothing
to say until that sentence is cut: it is judged as a new stream when its first segment
is ready (``text_to_come``), on the text it has then, not at its opening. Its later
text grows its claim (``extend``) without being judged again.
Whoever holds a decision gives its claim back (``release``, idempotent) however the
request ends: finished, refused, interrupted, cancelled, failed, or its connection gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ...protocol import ClientError, ErrorCode, Priority
from ..runtime import Refusal, Reservation, Services
from ._player import ListenerClock, SegmentFeed, SynthesisJob
from ._resolve import ResolvedConfig


@dataclass(frozen=True, slots=True)
class StartDecision:
    """What ``check_can_start`` decided for one request."""

    #: The request's claim on the workers; None for a download (not admitted here).
    reservation: Reservation | None = None
    #: Admitted when it starts, without asking: it is ``critical``.
    critical: bool = False
    #: Its session was not silent when it arrived: if its listener still plays when it
    #: starts, it continues that stream and is admitted without asking; if not (what
    #: was before it ended, or was refused), it is judged as a new stream then.
    continues: bool = False
    #: It did not fit: it waits for room when it starts, this long at most.
    wait_ms: int | None = None
    #: A context opened on a silent session: judged as a new stream when its first
    #: segment is ready (unless its listener plays by then: it continues that stream).
    at_first_segment: bool = False


def check_can_start(
    services: Services,
    resolved: ResolvedConfig,
    priority: Priority,
    request_id: str | None,
    text: str,
    *,
    new_stream: bool,
    text_to_come: bool = False,
) -> StartDecision:
    """Decide how this request may start; raise ``ClientError(busy)`` (with
    ``retry_after_ms``) when the server cannot take it now.

    Refused at once: the inference scheduler already runs late (every new request
    would be late too), or a new real-time stream does not fit and the line of those
    waiting for room is full. A new real-time stream (``new_stream``: its listener is
    silent) that fits is admitted now; one that does not will wait. A real-time
    request that continues its session's stream, or a ``critical`` one, is admitted
    when it starts. Downloads (``realtime`` false) are not admitted here.
    ``text_to_come``: a context's opening, judged when its first segment is ready
    (refused now only if the line of those waiting is full).
    """
    lateness = services.inference.lateness()
    if lateness * 1000 > services.config.performance.busy_lateness_ms:
        raise ClientError(
            ErrorCode.BUSY,
            "the server is overloaded and cannot keep new requests real-time; retry",
            request_id=request_id,
            details={"retry_after_ms": round(lateness * 1000)},
        )
    if not resolved.realtime:
        return StartDecision()
    admission = services.admission
    reservation = Reservation(
        resolved.voice.id, admission.estimate(resolved.voice.id, text, resolved.options.speed)
    )
    if priority is Priority.CRITICAL:
        return StartDecision(reservation, critical=True)
    if not new_stream:
        return StartDecision(reservation, continues=True)
    now = trio.current_time()
    if text_to_come:
        # Judged at its opening, it would be judged on one token, with a first chunk
        # "due now" that is a second away (measured: 12 voice agents on 2 cores, two
        # of 24 answers queued ~0.5 s behind other answers' first chunks).
        if admission.line_full():
            raise _busy(admission.refusal(now, reservation), request_id)
        return StartDecision(reservation, at_first_segment=True)
    if admission.try_admit(reservation, now):
        return StartDecision(reservation)
    patience_ms = services.config.performance.max_start_delay_ms
    if patience_ms == 0 or admission.line_full():
        raise _busy(admission.refusal(now, reservation), request_id)
    # The workers are saturated: when it starts, it asks for whole segments (the least
    # work), and its demand is judged at that chunking's cost.
    reservation.whole_segments = True
    return StartDecision(reservation, wait_ms=patience_ms)


async def wait_to_start(
    services: Services, decision: StartDecision, request_id: str, job: SynthesisJob
) -> None:
    """Make ``decision`` good as ``job`` starts: admit a critical request or one that
    continues a stream its listener still plays, or wait in line for room (raising
    ``ClientError(busy)`` after ``max_start_delay_ms``). Cancellation gives the place
    up."""
    reservation = decision.reservation
    if reservation is None:
        return
    reservation.idle = False  # it has something to say now
    admission = services.admission
    judged_now = decision.continues or decision.at_first_segment
    if decision.critical or (judged_now and job.carried is not None):
        reservation.carried = job.carried
        admission.force(reservation)
        return
    if admission.admitted(reservation):
        return
    if judged_now:
        # A context whose first segment is ready, or a request queued behind one that
        # ended (or was refused) before its listener had audio: a new stream, judged
        # as one now.
        if admission.try_admit(reservation, trio.current_time()):
            job.admitted_at = trio.current_time()
            return
        reservation.whole_segments = True
    patience_s = services.config.performance.max_start_delay_ms / 1000
    refusal = await admission.wait(reservation, patience_s)
    if refusal is not None:
        raise _busy(refusal, request_id)
    job.admitted_at = trio.current_time()


def extend(
    services: Services, decision: StartDecision, resolved: ResolvedConfig, text: str
) -> None:
    """More text for a request already decided (a streamed-text context's next
    pieces): its claim grows by what ``text`` will make. Counted, not judged again:
    the stream was admitted, and what follows it is its own, as a continuation is."""
    reservation = decision.reservation
    if reservation is not None and text:
        reservation.expected_audio_s += services.admission.estimate(
            resolved.voice.id, text, resolved.options.speed
        )


def release(services: Services, decision: StartDecision) -> None:
    """The request ends or never starts: its claim is given back (idempotent)."""
    if decision.reservation is not None:
        services.admission.ended(decision.reservation)


def _busy(refusal: Refusal, request_id: str | None) -> ClientError:
    return ClientError(
        ErrorCode.BUSY,
        "the server cannot keep another real-time stream real-time now; retry",
        request_id=request_id,
        details={
            "retry_after_ms": round(refusal.retry_after_s * 1000),
            "waited_ms": round(refusal.waited_s * 1000),
            "load": round(refusal.load, 3),
            "capacity": round(refusal.capacity, 3),
        },
    )


def new_job(
    services: Services,
    resolved: ResolvedConfig,
    text: str,
    priority: Priority,
    received_at: float,
    *,
    clock: ListenerClock | None = None,
    feed: SegmentFeed | None = None,
    reservation: Reservation | None = None,
) -> SynthesisJob:
    """The job that speaks ``text`` (or, for a context, the segments ``feed`` brings)
    as ``resolved`` says.

    A real-time job plays to ``clock`` (the session's listener; a new clock when None):
    it is paced ``realtime_lead_ms`` ahead of the listener and, if the listener still
    plays earlier audio, starts after it. A download (``realtime`` false) runs as fast
    as the scheduler allows. ``reservation``: its claim on the workers, which the
    player keeps up to date.

    The job is timed (asks the engine for word timings) for a context, when the client
    asked for timestamps, or when the engine knows them at no cost (``word_timing``
    ``aligned``): an interrupt can then say which words were heard.
    """
    clock = clock or ListenerClock()
    lead = services.config.performance.realtime_lead_ms / 1000 if resolved.realtime else 0.0
    engine = services.registry.engine_for(resolved.voice)
    timed = (
        feed is not None
        or resolved.timestamps != "none"
        or getattr(engine, "word_timing", "estimated") == "aligned"
    )
    return SynthesisJob(
        voice=resolved.voice,
        engine=engine,
        text=text,
        options=resolved.options,
        spec=resolved.spec,
        priority=priority,
        received_at=received_at,
        realtime_lead=lead,
        clock=clock,
        carried=clock.playing_until(trio.current_time()) if resolved.realtime else None,
        feed=feed,
        timed=timed,
        reservation=reservation,
    )
