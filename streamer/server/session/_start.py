"""Starting a synthesis: the one admission rule and the one way a job is built, shared
by WebSocket sessions and the HTTP speech routes (one policy, one place)."""

from __future__ import annotations

import trio

from ...protocol import ClientError, ErrorCode, Priority
from ..runtime import Services
from ._player import ListenerClock, SegmentFeed, SynthesisJob
from ._resolve import ResolvedConfig


def check_can_start(
    services: Services,
    resolved: ResolvedConfig,
    priority: Priority,
    request_id: str | None,
    *,
    new_stream: bool,
) -> None:
    """Raise ``ClientError(busy)`` (with ``retry_after_ms``) when the server cannot take
    this request now.

    Two rules: the inference scheduler already runs late (every new request would be
    late too), or the request starts a new real-time stream (``new_stream``: its listener
    is silent) that admission control says the cores cannot keep real-time. ``critical``
    requests skip the second rule: an alert must get through.
    """
    lateness = services.inference.lateness()
    if lateness * 1000 > services.config.performance.busy_lateness_ms:
        raise ClientError(
            ErrorCode.BUSY,
            "the server is overloaded and cannot keep new requests real-time; retry",
            request_id=request_id,
            details={"retry_after_ms": round(lateness * 1000)},
        )
    if not (new_stream and resolved.realtime and priority is not Priority.CRITICAL):
        return
    refusal = services.admission.check(
        resolved.voice.id, trio.current_time(), services.admission_capacity()
    )
    if refusal is not None:
        raise ClientError(
            ErrorCode.BUSY,
            "the server cannot keep another real-time stream real-time now; retry",
            request_id=request_id,
            details={
                "retry_after_ms": round(refusal.retry_after_s * 1000),
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
) -> SynthesisJob:
    """The job that speaks ``text`` (or, for a context, the segments ``feed`` brings)
    as ``resolved`` says.

    A real-time job plays to ``clock`` (the session's listener; a new clock when None):
    it is paced ``realtime_lead_ms`` ahead of the listener and, if the listener still
    plays earlier audio, starts after it. A download (``realtime`` false) runs as fast
    as the scheduler allows.

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
    )
