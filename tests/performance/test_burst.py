"""Many sessions bursting requests, barging in and raising alerts at once; a listener
that stops reading. Invariants, never figures.

The sessions share one fake engine and one inference scheduler whose chunks run inline
(``InlineChunks``), each holding its worker's slot for ``CHUNK_COMPUTE_S`` of virtual
time: on ``trio.testing.MockClock`` the sessions contend for the two workers as they do
for cores, and the outcome depends on the server's logic alone, not on the machine.

Every session has a listener that reads each frame as it comes and plays it in (virtual)
real time, checking by itself what the server claims:

- an admitted stream never runs dry: no frame arrives after the listener played all it
  had, neither inside a request nor at the start of one queued behind audio still
  playing (and the server's own underrun count is 0);
- nothing of a request follows its ``interrupted`` (barge-in or pre-emption), and a
  request dropped from the queue never starts;
- every admitted request ends exactly once (``audio_end``, ``interrupted`` or dropped);
- memory stays bounded: a listener that stops reading holds at most the outbox's audio
  budget, and nobody else notices.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
import trio
import trio.testing

from streamer.protocol import AudioConfig, ClientError, Priority, Synthesize
from streamer.server.runtime import Services
from streamer.server.session import (
    MAX_QUEUED_AUDIO_BYTES,
    UNDERRUN_TOLERANCE_S,
    Outbox,
    OutboxClosed,
    Session,
    SessionManager,
)
from tests.support.fake_engine import FakeEngine
from tests.support.inline_inference import InlineChunks
from tests.support.polling import wait_until
from tests.support.services import make_services, session_config

#: Sessions speaking at once (the 20-speaker load test's order of magnitude).
SESSIONS: Final = 16
#: What each session does, one step after another.
STEPS_PER_SESSION: Final = 24
#: Virtual time of one 50 ms chunk of the fake engine: RTF 0.04, Piper's per stream
#: on the 2-core machines, so all sessions streaming at once need a third of the two
#: workers; the tightest listener then has ~30 ms of its 50 ms frame to spare (none at
#: RTF 0.1). Admission measures it (wall time per chunk on the scheduler's clock): the
#: scenario stays within capacity by design, and overload (waiting, ``busy``) is
#: test_admission_under_load.py's part.
CHUNK_COMPUTE_S: Final = 0.002
#: Samples per frame: one 50 ms chunk of the fake engine at 16 kHz, so the listener
#: checks every chunk's arrival.
FRAME_SAMPLES: Final = 800
#: ... in 16-bit PCM.
FRAME_BYTES: Final = 2 * FRAME_SAMPLES
#: How far synthesis runs ahead of each listener.
LEAD_MS: Final = 300
#: What a session says; the fake engine makes 2 chunks of 50 ms per sentence or clause.
TEXTS: Final = (
    "Hello.",
    "One. Two.",
    "One. Two. Three.",
    "A longer sentence, cut at its clause. And one more. And the last one.",
)
#: Bound on each wait for the scenario to settle (virtual seconds).
WAIT: Final = 60.0


@dataclass
class Listener:
    """Reads every frame of one session as it arrives and plays it in real time."""

    outbox: Outbox
    #: (arrival time, event or frame), in order.
    received: list[tuple[float, dict[str, Any] | bytes]] = field(default_factory=list)
    #: Request id -> when the session's client submitted it.
    submitted_at: dict[str, float] = field(default_factory=dict)
    #: (request id, seconds of silence) for every time the player ran dry mid-stream.
    gaps: list[tuple[str, float]] = field(default_factory=list)
    reading: bool = True
    _resume: trio.Event = field(default_factory=trio.Event)
    _dry_at: float | None = None  # when the player runs out; None: stopped
    _current: str | None = None  # the request whose audio_start came last
    _first_frame: bool = False
    _rate: int = 0

    def playing_until(self, now: float) -> float | None:
        return self._dry_at if self._dry_at is not None and self._dry_at > now else None

    def stop_reading(self) -> None:
        self.reading = False
        self._resume = trio.Event()

    def resume_reading(self) -> None:
        self.reading = True
        self._resume.set()

    async def run(self) -> None:
        try:
            while True:
                if not self.reading:
                    await self._resume.wait()
                item = await self.outbox.get()
                self.outbox.sent()
                now = trio.current_time()
                if isinstance(item, bytes):
                    self._play(now, item)
                    self.received.append((now, item))
                else:
                    assert isinstance(item, str), f"unexpected close: {item!r}"
                    event: dict[str, Any] = json.loads(item)
                    self._event(event)
                    self.received.append((now, event))
        except OutboxClosed:
            pass

    def _event(self, event: dict[str, Any]) -> None:
        if event["type"] == "audio_start":
            assert event["format"] == "pcm"
            self._current, self._rate = event["request_id"], event["sample_rate"]
            self._first_frame = True
        elif event["type"] == "interrupted":
            self._dry_at = None  # the client stops its player

    def _play(self, now: float, frame: bytes) -> None:
        assert self._current is not None and self._rate
        dry_at = self._dry_at
        if dry_at is not None and now > dry_at + UNDERRUN_TOLERANCE_S:
            # Silence, unless this is a request sent after the earlier audio had played.
            if not self._first_frame or self.submitted_at[self._current] < dry_at:
                self.gaps.append((self._current, now - dry_at))
            dry_at = None
        self._first_frame = False
        # Plays right after what the player holds, or now if it holds nothing.
        self._dry_at = (now if dry_at is None else dry_at) + len(frame) / 2 / self._rate


@dataclass
class Speaker:
    session: Session
    listener: Listener
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def submit(
        self, text: str, priority: Priority, config: AudioConfig | None = None
    ) -> str:
        request_id = f"{self.session.id}-{len(self.accepted) + len(self.refused)}"
        now = trio.current_time()
        self.listener.submitted_at[request_id] = now
        message = Synthesize(text, priority, request_id, config or AudioConfig())
        try:
            self.session.submit(message, now)
        except ClientError:
            self.refused.append(request_id)  # busy or queue_full: never admitted
        else:
            self.accepted.append(request_id)
        return request_id


@asynccontextmanager
async def speakers(services: Services, count: int) -> AsyncIterator[list[Speaker]]:
    """``count`` attached sessions with their listeners, torn down on exit."""
    manager = SessionManager(services)
    out: list[Speaker] = []
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            session = manager.create(AudioConfig(chunk_size=FRAME_SAMPLES))
            session.outbox = Outbox()
            listener = Listener(session.outbox)
            nursery.start_soon(listener.run)
            await nursery.start(session.run)
            out.append(Speaker(session, listener))
        yield out
        nursery.cancel_scope.cancel()


async def converse(speaker: Speaker, rng: random.Random) -> None:
    """One client's random conversation: bursts sent while its listener is silent,
    follow-ups while the server still synthesizes, barge-ins and critical alerts."""
    session, listener = speaker.session, speaker.listener
    for _ in range(STEPS_PER_SESSION):
        now = trio.current_time()
        producing = session.playing is not None
        silent = listener.playing_until(now) is None and not producing and not session.queue_depth
        roll = rng.random()
        if silent:
            # High and normal streams side by side: priority orders the scheduler's
            # work only while no deadline is at risk, so a crowd of high streams
            # building their lead cannot make a normal listener run dry.
            priority = rng.choice((Priority.NORMAL, Priority.HIGH))
            for _ in range(rng.randint(1, 3)):
                speaker.submit(rng.choice(TEXTS), priority)
        elif producing and roll < 0.3:
            session.interrupt("barge_in", now)
            if rng.random() < 0.5:
                speaker.submit(rng.choice(TEXTS), Priority.NORMAL)
        elif producing and roll < 0.45:
            speaker.submit("Alert. Alert.", Priority.CRITICAL)
        elif producing and roll < 0.7:
            speaker.submit(rng.choice(TEXTS), Priority.NORMAL)  # continues the stream
        # A request sent after synthesis ended but while the listener still plays could
        # not be on time whatever the server did (its first chunk needs compute): the
        # client waits for silence instead.
        await trio.sleep(rng.uniform(0.02, 0.6))


def check_conversation(speaker: Speaker) -> None:
    received = [item for _, item in speaker.listener.received]
    events = [m for m in received if isinstance(m, dict)]
    started = [e["request_id"] for e in events if e["type"] == "audio_start"]
    assert len(started) == len(set(started)), "a request started twice"
    assert not set(started) & set(speaker.refused), "a refused request was played"
    endings: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "audio_end":
            endings.setdefault(event["request_id"], []).append("audio_end")
        elif event["type"] == "interrupted":
            if event["request_id"] is not None:
                endings.setdefault(event["request_id"], []).append(event["reason"])
            for dropped in event["dropped"]:
                endings.setdefault(dropped, []).append("dropped")
                assert dropped not in started, f"{dropped} was dropped from the queue yet played"
        elif event["type"] == "error":
            pytest.fail(f"unexpected error: {event}")
    assert {rid: len(e) for rid, e in endings.items()} == dict.fromkeys(speaker.accepted, 1)
    # Nothing of an interrupted request follows its interrupted event.
    current: str | None = None
    stopped: set[str] = set()
    for message in received:
        if isinstance(message, bytes):
            assert current not in stopped, f"audio of {current} after its interrupted"
            continue
        request_id = message.get("request_id")
        assert message["type"] == "interrupted" or request_id not in stopped, (
            f"{message} after {request_id}'s interrupted"
        )
        if message["type"] == "audio_start":
            current = request_id
        elif message["type"] == "interrupted" and request_id is not None:
            stopped.add(request_id)


async def test_bursts_barge_ins_and_alerts_keep_every_admitted_stream_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = session_config(realtime_lead_ms=LEAD_MS, max_queue_size=8)
    services = make_services(config, FakeEngine(), runner=InlineChunks(CHUNK_COMPUTE_S))
    async with speakers(services, SESSIONS) as crowd:
        async with trio.open_nursery() as nursery:
            for number, speaker in enumerate(crowd):
                nursery.start_soon(converse, speaker, random.Random(number))
        with trio.fail_after(WAIT):  # every listener has played everything
            await wait_until(
                lambda: all(
                    s.session.playing is None
                    and not s.session.queue_depth
                    and s.listener.playing_until(trio.current_time()) is None
                    for s in crowd
                )
            )
        for speaker in crowd:
            check_conversation(speaker)
            assert speaker.listener.gaps == [], f"{speaker.session.id} ran dry"
        assert services.metrics.underruns == 0
        interrupts = sum(
            1
            for s in crowd
            for _, m in s.listener.received
            if isinstance(m, dict) and m["type"] == "interrupted"
        )
        assert interrupts > SESSIONS  # the scenario did barge in, and often
        assert sum(len(s.accepted) for s in crowd) > SESSIONS * STEPS_PER_SESSION / 2
        assert services.inference.idle and services.admission.streams == 0
        for speaker in crowd:
            assert speaker.session.outbox is not None
            assert speaker.session.outbox.queued_bytes == 0


async def test_a_listener_that_stops_reading_holds_one_outbox_budget_and_nobody_notices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = session_config(realtime_lead_ms=LEAD_MS)
    services = make_services(config, FakeEngine(), runner=InlineChunks(CHUNK_COMPUTE_S))
    # A download far larger than the budget: 600 sentences x 2 chunks x 1600 bytes.
    long_text = " ".join(["Again."] * 600)
    async with speakers(services, 4) as (stalled, *others):
        stalled.listener.stop_reading()
        stalled.submit(long_text, Priority.NORMAL, AudioConfig(realtime=False))
        assert stalled.accepted
        outbox = stalled.session.outbox
        assert outbox is not None
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, outbox.queued_bytes)
                await trio.sleep(0.01)

        async with trio.open_nursery() as watching:
            watching.start_soon(watch)
            async with trio.open_nursery() as nursery:
                for number, speaker in enumerate(others):
                    nursery.start_soon(converse, speaker, random.Random(100 + number))
                with trio.fail_after(WAIT):  # the download fills the budget, then waits
                    await wait_until(lambda: outbox.queued_bytes >= MAX_QUEUED_AUDIO_BYTES)
            with trio.fail_after(WAIT):
                await wait_until(
                    lambda: all(
                        s.session.playing is None and not s.session.queue_depth for s in others
                    )
                )
            watching.cancel_scope.cancel()
        # The budget, passed by at most the one frame that found it not yet spent.
        assert MAX_QUEUED_AUDIO_BYTES <= most <= MAX_QUEUED_AUDIO_BYTES + FRAME_BYTES
        assert stalled.session.playing is not None  # still waiting for its reader
        for speaker in others:
            check_conversation(speaker)
            assert speaker.listener.gaps == []
        assert services.metrics.underruns == 0
        # The barge-in frees what the stalled listener held, and is the last it hears.
        stalled.session.interrupt("barge_in")
        assert outbox.queued_bytes == 0
        stalled.listener.resume_reading()
        with trio.fail_after(WAIT):
            await wait_until(lambda: stalled.session.playing is None and not len(outbox))
        check_conversation(stalled)
        last = stalled.listener.received[-1][1]
        assert isinstance(last, dict) and last["type"] == "interrupted"


#: A download's config: as fast as possible, nobody plays it in real time.
DOWNLOAD: Final = AudioConfig(realtime=False)


async def download_continuously(speaker: Speaker, until: trio.Event) -> None:
    """One download after another (``realtime: false``, synthesized as fast as the
    scheduler allows), read as fast as it comes, until ``until`` is set."""
    while not until.is_set():
        request_id = speaker.submit(" ".join(["Word."] * 40), Priority.NORMAL, DOWNLOAD)
        with trio.fail_after(WAIT):
            await wait_until(
                lambda: speaker.session.playing is None and not speaker.session.queue_depth
            )
        assert request_id in speaker.accepted



async def test_downloads_take_only_what_real_time_streams_leave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = session_config(realtime_lead_ms=LEAD_MS)
    services = make_services(config, FakeEngine(), runner=InlineChunks(CHUNK_COMPUTE_S))
    async with speakers(services, 2 * SESSIONS) as crowd:
        listeners, downloaders = crowd[:SESSIONS], crowd[SESSIONS:]
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for speaker in downloaders:
                nursery.start_soon(download_continuously, speaker, done)
            async with trio.open_nursery() as talking:
                for number, speaker in enumerate(listeners):
                    talking.start_soon(converse, speaker, random.Random(200 + number))
            done.set()
        for speaker in listeners:
            check_conversation(speaker)
            assert speaker.listener.gaps == [], f"{speaker.session.id} ran dry"
        assert services.metrics.underruns == 0
        for speaker in downloaders:
            check_conversation(speaker)
            ends = [m for _, m in speaker.listener.received
                    if isinstance(m, dict) and m["type"] == "audio_end"]
            assert len(ends) == len(speaker.accepted) > 1  # every download finished
