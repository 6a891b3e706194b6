"""Admission control: pure unit tests of the load arithmetic, and the ``busy`` reply of a
session (fake engine, real worker threads)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import trio

from streamer.protocol import AudioConfig, ClientError, ErrorCode, Priority, Synthesize
from streamer.server.runtime import (
    COST_HALF_LIFE_AUDIO_S,
    FULL_RETRY_S,
    STARTUP_BUFFER_S,
    STARTUP_FACTOR,
    STARTUP_RETRY_S,
    Admission,
)
from streamer.server.session import Outbox, SessionManager
from tests.support.fake_engine import FakeEngine
from tests.support.polling import wait_until
from tests.support.services import make_services, session_config

#: Bound on each wait: far above what any step takes.
WAIT = 10.0


@dataclass(eq=False)
class Stream:
    voice_id: str
    playback_end: float | None


def test_cost_is_an_audio_weighted_average_per_voice() -> None:
    admission = Admission()
    assert admission.cost("piper") == 0.0
    admission.observe("piper", 0.08, 1.0)
    assert admission.cost("piper") == pytest.approx(0.08)
    # A short dear chunk counts for the audio it made: (0.08 k + 0.03) / (1 k + 0.1).
    admission.observe("piper", 0.03, 0.1)
    keep = 0.5 ** (0.1 / COST_HALF_LIFE_AUDIO_S)
    assert admission.cost("piper") == pytest.approx((0.08 * keep + 0.03) / (keep + 0.1))
    # Old audio fades: after many seconds at 0.05 CPU-s per s the average is 0.05.
    for _ in range(100):
        admission.observe("piper", 0.1, 2.0)
    assert admission.cost("piper") == pytest.approx(0.05, rel=1e-3)
    admission.observe("piper", 1.0, 0.0)  # no audio: nothing learned
    assert admission.cost("piper") == pytest.approx(0.05, rel=1e-3)
    assert admission.cost("espeak") == 0.0


def test_starting_streams_count_extra_until_buffered() -> None:
    admission = Admission()
    admission.observe("v", 0.5, 1.0)
    now = 100.0
    admission.started(Stream("v", None))  # no audio yet
    admission.started(Stream("v", now + STARTUP_BUFFER_S / 2))  # little buffered
    admission.started(Stream("v", now + STARTUP_BUFFER_S + 1))  # coasting
    full, steady = admission.load(now)
    assert steady == pytest.approx(1.5)
    assert full == pytest.approx(0.5 * STARTUP_FACTOR * 2 + 0.5)


def test_refusal_and_retry_hints() -> None:
    admission = Admission()
    admission.observe("v", 0.4, 1.0)
    now = 0.0
    streams = [Stream("v", None)]
    admission.started(streams[0])
    assert admission.check("v", now, capacity=1.8) is None  # 0.8 + 0.8 fits
    streams.append(Stream("v", None))
    admission.started(streams[1])
    refusal = admission.check("v", now, capacity=1.8)  # 1.6 + 0.8 does not
    assert refusal is not None
    assert refusal.load == pytest.approx(2.4) and refusal.capacity == 1.8
    assert refusal.retry_after_s == STARTUP_RETRY_S  # steady 1.2 would fit
    streams += [Stream("v", now + 10), Stream("v", now + 10)]
    admission.started(streams[2])
    admission.started(streams[3])
    refusal = admission.check("v", now, capacity=1.8)  # steady 1.6 + 0.4 > 1.8
    assert refusal is not None and refusal.retry_after_s == FULL_RETRY_S
    for stream in streams:
        admission.ended(stream)
    assert admission.streams == 0
    assert admission.check("v", now, capacity=1.8) is None


def test_alone_or_unmeasured_is_always_admitted() -> None:
    admission = Admission()
    admission.observe("slow", 5.0, 1.0)  # slower than real time even alone
    assert admission.check("slow", 0.0, capacity=1.8) is None
    admission.started(Stream("slow", None))
    assert admission.check("slow", 0.0, capacity=1.8) is not None
    assert admission.check("never-measured", 0.0, capacity=1.8) is None


async def test_a_new_stream_the_cores_cannot_carry_is_busy_and_nothing_is_lost() -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()  # hold the first stream before its first chunk
    config = session_config(realtime_lead_ms=2000, max_inference_load=0.9)
    services = make_services(config, engine)
    services.admission.observe("fake-en", 10.0, 10.0)  # pretend: one core per stream
    manager = SessionManager(services)
    first, second = manager.create(AudioConfig()), manager.create(AudioConfig())
    first.outbox, second.outbox = Outbox(), Outbox()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            await nursery.start(second.run)
            first.submit(Synthesize("One. Two.", Priority.NORMAL, "a1", AudioConfig()), 0.0)
            with trio.fail_after(WAIT):
                await wait_until(lambda: services.admission.streams)
            # 2.0 (starting) + 2.0 > 2 workers x 0.9
            with pytest.raises(ClientError) as info:
                second.submit(
                    Synthesize("Hi.", Priority.NORMAL, "b1", AudioConfig()), trio.current_time()
                )
            assert info.value.code is ErrorCode.BUSY
            assert info.value.details["retry_after_ms"] == FULL_RETRY_S * 1000
            assert info.value.details["capacity"] == pytest.approx(1.8)
            # Not counted as new streams: a download, a critical alert, and a request
            # queued behind the session's own playing one.
            second.submit(
                Synthesize("Hi.", Priority.NORMAL, "b2", AudioConfig(realtime=False)),
                trio.current_time(),
            )
            first.submit(Synthesize("Three.", Priority.NORMAL, "a2", AudioConfig()), 0.0)
            third = manager.create(AudioConfig())
            third.outbox = Outbox()
            await nursery.start(third.run)
            third.submit(
                Synthesize("Alert.", Priority.CRITICAL, "c1", AudioConfig()), trio.current_time()
            )
            engine.gate.set()
            with trio.fail_after(WAIT):
                await wait_until(
                    lambda: not (services.admission.streams or first.playing or second.playing)
                )
            # Every stream ended: a new one is admitted again.
            assert services.admission.load(trio.current_time()) == (0.0, 0.0)
            second.submit(
                Synthesize("Again.", Priority.NORMAL, "b3", AudioConfig()), trio.current_time()
            )
            nursery.cancel_scope.cancel()
    finally:
        engine.gate.set()


async def test_a_request_sent_while_its_listener_still_plays_continues_its_stream() -> None:
    engine = FakeEngine(chunk_seconds=1.0)  # "One." = 2 s of audio, made at once
    config = session_config(realtime_lead_ms=2000, max_inference_load=1.0)
    services = make_services(config, engine)
    services.admission.observe("fake-en", 10.0, 10.0)
    manager = SessionManager(services)
    session = manager.create(AudioConfig())
    session.outbox = Outbox()
    crowd = [Stream("fake-en", None), Stream("fake-en", None)]  # 4.0 > 2 workers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain, session.outbox)
        await nursery.start(session.run)
        session.submit(Synthesize("One.", Priority.NORMAL, "r1", AudioConfig()), 0.0)
        with trio.fail_after(WAIT):
            await wait_until(
                lambda: engine.chunks_made == 2 and not session.playing and not session.queue_depth
            )
        for stream in crowd:
            services.admission.started(stream)
        # r1's audio still plays for ~2 s: r2 continues the session's stream.
        session.submit(
            Synthesize("Two.", Priority.NORMAL, "r2", AudioConfig()), trio.current_time()
        )
        other = manager.create(AudioConfig())
        other.outbox = Outbox()
        with pytest.raises(ClientError) as info:  # a new stream is still refused
            other.submit(
                Synthesize("Hi.", Priority.NORMAL, "o1", AudioConfig()), trio.current_time()
            )
        assert info.value.code is ErrorCode.BUSY
        nursery.cancel_scope.cancel()


async def _drain(outbox: Outbox) -> None:
    while True:
        await outbox.get()
