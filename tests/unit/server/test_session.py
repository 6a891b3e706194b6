"""Session logic with the deterministic fake engine, no sockets.

Two kinds of test. Most run inference in the real worker threads (interrupting a chunk
that is inside the engine is the point of several); they use no autojump clock, since
virtual time would race ahead of the threads, and bound every wait with
``trio.fail_after``. The paced ones (``paced`` fixture: audio paced to the listener's
clock) assert that no audio reaches the listener late, which no wall clock can promise
on a machine that may stall; they run on ``trio.testing.MockClock`` (autojump) with
``InlineChunks`` running inference on the event loop, so only virtual time passes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import trio
import trio.testing

from streamer.protocol import (
    AudioConfig,
    ClientError,
    ErrorCode,
    Priority,
    Synthesize,
)
from streamer.server.session import Outbox, Session, SessionManager
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.inline_inference import InlineChunks
from tests.support.polling import wait_until
from tests.support.services import make_services, session_config

WAIT = 10.0


@dataclass
class Harness:
    engine: FakeEngine
    manager: SessionManager
    session: Session
    outbox: Outbox
    #: Runs inference inline (paced tests on a virtual clock); None: worker threads.
    chunks: InlineChunks | None = None
    received: list[dict[str, object] | bytes] = field(default_factory=list)
    _arrived: trio.Event = field(default_factory=trio.Event)

    def submit(
        self, text: str, priority: str = "normal", request_id: str | None = None, **config: object
    ) -> dict[str, object]:
        queued = self.session.submit(
            Synthesize(text, Priority[priority.upper()], request_id, AudioConfig(**config)),  # type: ignore[arg-type]
            trio.current_time(),
        )
        return {"request_id": queued.request_id, "position": queued.position}

    def events(self, kind: str | None = None) -> list[dict[str, object]]:
        return [
            m for m in self.received if isinstance(m, dict) and (kind is None or m["type"] == kind)
        ]

    async def wait_for(self, kind: str, request_id: str | None = None, count: int = 1) -> None:
        with trio.fail_after(WAIT):
            while (
                len(
                    [
                        e
                        for e in self.events(kind)
                        if request_id is None or e.get("request_id") == request_id
                    ]
                )
                < count
            ):
                self._arrived = trio.Event()
                await self._arrived.wait()

    async def wait_binary(self, count: int = 1) -> None:
        with trio.fail_after(WAIT):
            while sum(isinstance(m, bytes) for m in self.received) < count:
                self._arrived = trio.Event()
                await self._arrived.wait()

    async def pump(self) -> None:
        while True:
            item = await self.outbox.get()
            assert not hasattr(item, "code")
            self.received.append(json.loads(item) if isinstance(item, str) else item)  # type: ignore[arg-type]
            self.outbox.sent()  # as the writer reports each frame written
            self._arrived.set()


@pytest.fixture
async def harness(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    engine = FakeEngine()
    manager = SessionManager(make_services(session_config(), engine))
    session = manager.create(AudioConfig())
    outbox = Outbox()
    session.outbox = outbox
    h = Harness(engine, manager, session, outbox)
    nursery.start_soon(h.pump)
    await nursery.start(session.run)
    yield h
    if engine.gate is not None:
        engine.gate.set()


async def inference_quiet(h: Harness) -> None:
    """Until no chunk of inference runs or waits, and every task has settled on what
    it returned (a cancelled chunk's result is dropped then, or would have arrived)."""
    inference = h.manager.services.inference
    with trio.fail_after(WAIT):
        await wait_until(lambda: inference.running == 0 and inference.waiting == 0)
    await trio.testing.wait_all_tasks_blocked()


def messages_for(h: Harness, request_id: str) -> list[str]:
    """The kinds of everything received for one request, binary frames as 'audio'."""
    out: list[str] = []
    current: str | None = None
    for m in h.received:
        if isinstance(m, bytes):
            if current == request_id:
                out.append("audio")
        else:
            if m["type"] == "audio_start":
                current = m["request_id"]  # type: ignore[assignment]
            if m.get("request_id") == request_id:
                out.append(str(m["type"]))
    return out


async def test_request_streams_start_audio_end(harness: Harness) -> None:
    queued = harness.submit("Hello there. How are you?", request_id="r1")
    assert queued == {"request_id": "r1", "position": 0}
    await harness.wait_for("audio_end", "r1")
    kinds = messages_for(harness, "r1")
    assert kinds[0] == "queued" and kinds[1] == "audio_start" and kinds[-1] == "audio_end"
    start = harness.events("audio_start")[0]
    assert start["format"] == "pcm" and start["sample_rate"] == FAKE_RATE
    assert start["voice"] == "fake-en" and start["priority"] == "normal"
    pcm = b"".join(m for m in harness.received if isinstance(m, bytes))
    end = harness.events("audio_end")[0]
    assert end["bytes"] == len(pcm)
    # 2 segments x 2 chunks x 50 ms
    assert end["duration_ms"] == pytest.approx(200, abs=2)
    assert len(pcm) // 2 == pytest.approx(0.2 * FAKE_RATE, abs=2)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert np.abs(samples).max() > 5000  # it is the tone, not silence


async def test_priority_order_and_fifo(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.submit("first", request_id="a")
    await harness.wait_for("audio_start", "a")
    assert harness.submit("second", request_id="b")["position"] == 1
    assert harness.submit("urgent", "high", request_id="c")["position"] == 1
    assert harness.submit("third", request_id="d")["position"] == 3
    harness.engine.gate.set()
    await harness.wait_for("audio_end", "d")
    order = [e["request_id"] for e in harness.events("audio_start")]
    assert order == ["a", "c", "b", "d"]


async def test_critical_preempts_lower_priority(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.submit("long story", "high", request_id="story")
    await harness.wait_for("audio_start", "story")
    harness.submit("after", request_id="later")
    assert harness.submit("fire alarm", "critical", request_id="alarm")["position"] == 0
    await harness.wait_for("interrupted")
    interrupted = harness.events("interrupted")
    assert interrupted == [
        {"type": "interrupted", "request_id": "story", "reason": "preempted", "dropped": []}
    ]
    harness.engine.gate.set()
    await harness.wait_for("audio_end", "later")
    assert [e["request_id"] for e in harness.events("audio_start")] == ["story", "alarm", "later"]
    assert messages_for(harness, "story")[-1] == "interrupted"
    assert "audio_end" not in messages_for(harness, "story")


async def test_critical_does_not_preempt_critical(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.submit("one", "critical", request_id="c1")
    await harness.wait_for("audio_start", "c1")
    assert harness.submit("two", "critical", request_id="c2")["position"] == 1
    harness.engine.gate.set()
    await harness.wait_for("audio_end", "c2")
    assert harness.events("interrupted") == []


async def test_interrupt_drops_queue_and_nothing_follows(harness: Harness) -> None:
    harness.engine.delay = 0.02
    harness.submit("One. Two. Three. Four. Five. Six.", request_id="talk")
    await harness.wait_for("audio_start", "talk")
    harness.submit("queued one", request_id="q1")
    harness.submit("queued two", "high", request_id="q2")
    await harness.wait_binary(1)
    event = harness.session.interrupt("user_request", trio.current_time())
    assert event.request_id == "talk"
    assert event.dropped == ("q2", "q1")
    index = len(harness.received)
    # The cancelled chunk finishes in its thread; it must not reach us.
    await harness.wait_for("interrupted")
    await inference_quiet(harness)
    after = harness.received[index:]
    interrupted_at = next(
        i
        for i, m in enumerate(harness.received)
        if isinstance(m, dict) and m["type"] == "interrupted"
    )
    tail = harness.received[interrupted_at + 1 :]
    assert tail == [], f"frames after interrupted: {after!r}"
    assert harness.session.playing is None and harness.session.queue_depth == 0
    assert not any(e["request_id"] in ("q1", "q2") for e in harness.events("audio_start"))
    # The session keeps working afterwards.
    harness.engine.delay = 0.0
    harness.submit("again", request_id="again")
    await harness.wait_for("audio_end", "again")


async def test_interrupt_while_inference_blocked_replies_at_once(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.submit("blocked in the engine", request_id="b")
    await harness.wait_for("audio_start", "b")
    harness.session.interrupt("user_request")
    # The reply does not wait for the thread still inside the engine (the gate is shut).
    await harness.wait_for("interrupted")
    harness.engine.gate.set()
    await inference_quiet(harness)
    assert isinstance(harness.received[-1], dict) and harness.received[-1]["type"] == "interrupted"


async def test_interrupt_with_nothing_playing(harness: Harness) -> None:
    event = harness.session.interrupt("user_request")
    assert event.request_id is None and event.dropped == ()


async def test_engine_failure_is_an_error_and_the_session_goes_on(harness: Harness) -> None:
    harness.submit("please FAIL now", request_id="bad")
    await harness.wait_for("error", "bad")
    error = harness.events("error")[0]
    assert error["code"] == "synthesis_failed"
    harness.submit("fine", request_id="good")
    await harness.wait_for("audio_end", "good")


async def test_queue_full(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.submit("playing", request_id="p")
    await harness.wait_for("audio_start", "p")
    for i in range(4):
        harness.submit(f"waiting {i}")
    with pytest.raises(ClientError) as info:
        harness.submit("one too many")
    assert info.value.code is ErrorCode.QUEUE_FULL


async def test_duplicate_request_id(harness: Harness) -> None:
    harness.submit("x", request_id="same")
    with pytest.raises(ClientError) as info:
        harness.submit("y", request_id="same")
    assert info.value.code is ErrorCode.DUPLICATE_REQUEST_ID


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"language": "xx"}, ErrorCode.UNKNOWN_LANGUAGE),
        ({"language": "en", "voice_id": 5}, ErrorCode.UNKNOWN_VOICE),
        ({"voice_id": "nope"}, ErrorCode.UNKNOWN_VOICE),
        ({"language": "es", "speaker": "pepe"}, ErrorCode.UNKNOWN_SPEAKER),
        ({"format": "aiff"}, ErrorCode.UNKNOWN_FORMAT),
        ({"sample_rate": 1000}, ErrorCode.UNSUPPORTED_SAMPLE_RATE),
        ({"chunk_size": 1}, ErrorCode.INVALID_CHUNK_SIZE),
    ],
)
async def test_bad_request_config(
    harness: Harness, config: dict[str, object], code: ErrorCode
) -> None:
    with pytest.raises(ClientError) as info:
        harness.submit("text", request_id="bad", **config)
    assert info.value.code is code
    assert info.value.request_id == "bad"
    if code in (ErrorCode.UNKNOWN_LANGUAGE, ErrorCode.UNKNOWN_VOICE, ErrorCode.UNKNOWN_SPEAKER):
        assert info.value.details["available"]
    assert harness.session.queue_depth == 0


async def test_per_request_voice_and_format_override(harness: Harness) -> None:
    harness.submit("hola", request_id="es", language="es", speaker="ana", format="wav")
    await harness.wait_for("audio_end", "es")
    start = harness.events("audio_start")[0]
    assert start["voice"] == "fake-es" and start["format"] == "wav"
    first_audio = next(m for m in harness.received if isinstance(m, bytes))
    assert first_audio[:4] == b"RIFF"


async def test_speed_changes_duration(harness: Harness) -> None:
    harness.submit("quick", request_id="normal")
    harness.submit("quick", request_id="fast", speed=2.0)
    await harness.wait_for("audio_end", "fast")
    durations = {e["request_id"]: e["duration_ms"] for e in harness.events("audio_end")}
    assert durations["normal"] == pytest.approx(100, abs=2)
    assert durations["fast"] == pytest.approx(50, abs=2)


async def test_busy_when_inference_is_far_behind() -> None:
    engine = FakeEngine()
    services = make_services(session_config(busy_lateness_ms=1), engine)
    manager = SessionManager(services)
    session = manager.create(AudioConfig())
    session.outbox = Outbox()

    release = threading.Event()

    async def hog() -> None:
        await services.inference.run(
            lambda: release.wait(WAIT),
            priority=Priority.NORMAL,
            deadline=trio.current_time(),
        )

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(3):  # 2 workers busy, 1 waiting with a deadline in the past
                nursery.start_soon(hog)
            with trio.fail_after(WAIT):
                await wait_until(lambda: services.inference.waiting == 1)
            await trio.sleep(0.01)  # the waiter's deadline is now 10 ms past (> 1 ms)
            with pytest.raises(ClientError) as info:
                session.submit(
                    Synthesize("x", Priority.NORMAL, None, AudioConfig()), trio.current_time()
                )
            assert info.value.code is ErrorCode.BUSY
            assert info.value.details["retry_after_ms"] >= 1
            release.set()
    finally:
        release.set()


#: One chunk of the fake engine, in samples: each chunk leaves as one frame of its own.
FAKE_CHUNK_SAMPLES = round(FAKE_RATE * FakeEngine().chunk_seconds)
#: Seconds the paced harness synthesizes ahead of its listener.
PACED_LEAD_S = 0.2


@pytest.fixture
async def paced(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    """A harness whose requests are paced to the listener's clock, ``PACED_LEAD_S``
    ahead of it, on virtual time: its tests take ``autojump_clock``, and inference runs
    inline (``InlineChunks``: hold it with ``paced.chunks.hold()``, not the engine's
    thread gate)."""
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock), (
        "a paced test must take the autojump_clock fixture"
    )
    engine = FakeEngine()
    chunks = InlineChunks()
    config = session_config(realtime_lead_ms=round(PACED_LEAD_S * 1000))
    manager = SessionManager(make_services(config, engine, runner=chunks))
    session = manager.create(AudioConfig())
    session.outbox = Outbox()
    h = Harness(engine, manager, session, session.outbox, chunks=chunks)
    nursery.start_soon(h.pump)
    await nursery.start(session.run)
    yield h
    chunks.release()


async def test_a_closing_connection_does_not_break_interrupt_or_close() -> None:
    # REST interrupt/DELETE may reach a session whose connection is already closing.
    manager = SessionManager(make_services(session_config(), FakeEngine()))
    session = manager.create(AudioConfig())
    session.outbox = Outbox()
    session.submit(Synthesize("One.", Priority.NORMAL, "r1", AudioConfig()), 0.0)
    session.outbox.close_with(1001, "going away", drop_audio=True)
    event = session.interrupt("rest")
    assert event.dropped == ("r1",)
    session.close(1000, "session deleted")
    assert session.queue_depth == 0


async def test_quick_start_only_when_inference_is_idle(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    engine, chunks = paced.engine, paced.chunks
    assert chunks is not None
    # Measured cheap (as the start-up probe measures warmed voices), with enough history
    # that this test's own chunks cannot change the verdict.
    paced.manager.services.admission.observe_chunk("fake-en", 0.02, 10.0)
    paced.submit("One.", request_id="alone")
    await paced.wait_for("audio_end", "alone")
    await trio.sleep(0.15)  # its audio has played: the listener is idle again
    chunks.hold()  # hold the next request in its first chunk
    paced.submit("Two.", request_id="first")
    other = paced.manager.create(AudioConfig())
    other.outbox = Outbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain, other.outbox)
        await nursery.start(other.run)
        with trio.fail_after(WAIT):
            await wait_until(lambda: chunks.held == 1)
        other.submit(Synthesize("Three.", Priority.NORMAL, "busy", AudioConfig()), 0.0)
        with trio.fail_after(WAIT):
            await wait_until(lambda: chunks.held == 2)
        chunks.release()
        await paced.wait_for("audio_end", "first")
        nursery.cancel_scope.cancel()
    # Right after "first" the listener still plays it: not quick. Nor is a request
    # queued behind audio the listener is still playing (its first chunk is not urgent).
    paced.submit("Five.", request_id="right-after")
    await paced.wait_for("audio_end", "right-after")
    await trio.sleep(0.3)  # both have played ("right-after" after "first": 0.2 s)
    paced.submit(THREE_TENTHS, request_id="long")
    paced.submit("Four.", request_id="queued")
    await paced.wait_for("audio_end", "queued")
    # By text: the two held first chunks may leave the gate in either order.
    quick = {text: o.quick_start for text, o in zip(engine.texts, engine.options, strict=True)}
    assert quick == {
        "One.": True,
        "Two.": True,
        "Three.": False,
        "Five.": False,
        THREE_TENTHS: True,
        "Four.": False,
    }


async def _drain(outbox: Outbox) -> None:
    while True:
        await outbox.get()


#: Three segments x 2 chunks x 50 ms of the fake engine.
THREE_TENTHS = "One. Two. Three."


async def test_a_queued_request_is_paced_after_the_audio_before_it(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    # r2 is queued behind r1: the listener hears it after r1's 0.3 s, so the server
    # may finish it no sooner than 0.6 - 0.2 (lead) s after r1's first frame. Paced
    # from its own first frame instead, it would finish ~0.2 s after r1's start.
    started = trio.current_time()
    paced.submit(THREE_TENTHS, request_id="r1")
    paced.submit(THREE_TENTHS, request_id="r2")
    await paced.wait_for("audio_end", "r2")
    assert trio.current_time() - started >= 0.6 - PACED_LEAD_S - 0.01
    assert paced.manager.services.metrics.underruns == 0


async def test_an_interrupt_resets_the_listener_clock(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    assert paced.chunks is not None
    paced.submit(THREE_TENTHS, request_id="r1")
    await paced.wait_for("audio_end", "r1")  # produced; the listener still plays it
    paced.session.interrupt("barge_in")  # ... and stops
    assert paced.session.clock.dry_at is None
    paced.chunks.hold()  # hold r2 at its first chunk
    paced.submit(THREE_TENTHS, request_id="r2")
    with trio.fail_after(WAIT):
        await wait_until(lambda: paced.session.playing and paced.session.playing.job)
    assert paced.session.playing is not None and paced.session.playing.job is not None
    job = paced.session.playing.job
    assert job.carried is None  # plays at once, not after r1's audio
    paced.chunks.release()
    await paced.wait_for("audio_end", "r2")
    assert paced.manager.services.metrics.underruns == 0


async def test_a_first_chunk_that_returns_after_an_interrupt_counts_nothing(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    # r2 is queued behind r1's audio (carried); its first chunk is in the engine when
    # the interrupt comes, and returns after r1's audio would have run out. The
    # listener stopped at the interrupt: no underrun, no first audio, no clock.
    assert paced.chunks is not None
    metrics = paced.manager.services.metrics
    paced.submit(THREE_TENTHS, request_id="r1")
    await paced.wait_for("audio_end", "r1")
    paced.chunks.hold()
    paced.submit(THREE_TENTHS, request_id="r2", chunk_size=FAKE_CHUNK_SAMPLES)
    with trio.fail_after(WAIT):
        await wait_until(lambda: paced.chunks is not None and paced.chunks.held == 1)
    assert paced.session.playing is not None and paced.session.playing.job is not None
    assert paced.session.playing.job.carried is not None
    first_audio = metrics.time_to_first_audio.count
    paced.session.interrupt("barge_in")
    await trio.sleep(0.5)  # past the end of r1's audio
    paced.chunks.release()
    await inference_quiet(paced)
    assert metrics.underruns == 0
    assert metrics.time_to_first_audio.count == first_audio
    assert paced.session.clock.dry_at is None


async def test_a_chunk_that_returns_after_an_interrupt_leaves_the_next_requests_clock(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    # r1 is interrupted with a chunk in the engine; r2 plays at once and its listener
    # has heard it all when r1's chunk comes back. That chunk was never to be heard:
    # not a gap in r2's audio, and r2's clock stays where r2 left it.
    chunks = paced.chunks
    assert chunks is not None
    paced.submit(THREE_TENTHS, request_id="r1", chunk_size=FAKE_CHUNK_SAMPLES)
    await paced.wait_binary()
    chunks.hold()
    with trio.fail_after(WAIT):
        await wait_until(lambda: chunks.held == 1)
    paced.session.interrupt("barge_in")
    release_r1 = chunks.set_aside()
    paced.submit("One.", request_id="r2")
    await paced.wait_for("audio_end", "r2")
    await trio.sleep(0.3)  # r2's 0.1 s has played
    dry_at = paced.session.clock.dry_at
    release_r1()
    await inference_quiet(paced)
    assert paced.manager.services.metrics.underruns == 0
    assert paced.session.clock.dry_at == dry_at


async def test_a_request_after_the_listener_finished_starts_its_own_clock(
    paced: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    assert paced.chunks is not None
    paced.submit("One.", request_id="r1")  # 0.1 s of audio
    await paced.wait_for("audio_end", "r1")
    await trio.sleep(0.15)  # the listener has played it all
    paced.chunks.hold()
    paced.submit(THREE_TENTHS, request_id="r2")
    with trio.fail_after(WAIT):
        await wait_until(lambda: paced.session.playing and paced.session.playing.job)
    assert paced.session.playing is not None and paced.session.playing.job is not None
    job = paced.session.playing.job
    assert job.carried is None
    paced.chunks.release()
    await paced.wait_for("audio_end", "r2")
    assert paced.manager.services.metrics.underruns == 0


async def test_session_json_and_manager(harness: Harness) -> None:
    data = harness.session.to_json()
    assert data["session_id"] == harness.session.id
    assert data["config"]["voice"] == "fake-en"  # type: ignore[index]
    with pytest.raises(ClientError) as info:
        harness.manager.get("missing")
    assert info.value.code is ErrorCode.UNKNOWN_SESSION


async def test_unattached_sessions_are_reaped(harness: Harness) -> None:
    manager = harness.manager
    orphan = manager.create(AudioConfig(language="es"))
    now = orphan.created_at
    assert manager.reap_unattached(now + 10, max_age_s=60) == []
    assert manager.reap_unattached(now + 61, max_age_s=60) == [orphan.id]
    # The attached session is never reaped, however old.
    assert harness.session.id in manager.sessions
    assert orphan.closed
