"""Streamed-text contexts in a session, with the deterministic fake engine: no sockets,
real worker threads, every wait bounded by ``trio.fail_after``."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from streamer.engines.timings import words_of
from streamer.protocol import (
    AudioConfig,
    BufferConfig,
    Cancel,
    ClientError,
    Close,
    ErrorCode,
    Flush,
    Keepalive,
    Priority,
    Synthesize,
    Text,
)
from streamer.server.runtime import Services
from streamer.server.session import Outbox, Session, SessionManager
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.services import make_config, make_services

WAIT = 10.0


@dataclass
class Harness:
    engine: FakeEngine
    services: Services
    session: Session
    outbox: Outbox
    received: list[dict[str, Any] | bytes] = field(default_factory=list)
    _arrived: trio.Event = field(default_factory=trio.Event)

    def text(self, context_id: str, text: str, **fields: Any) -> None:
        self.session.text(Text(context_id, text, **fields), trio.current_time())

    def flush(self, context_id: str, flush_id: str | None = None) -> None:
        self.session.flush(Flush(context_id, flush_id), trio.current_time())

    def close(self, context_id: str) -> None:
        self.session.close_context(Close(context_id), trio.current_time())

    def cancel(self, context_id: str, played_ms: int | None = None) -> None:
        self.session.cancel(Cancel(context_id, played_ms), trio.current_time())

    def events(
        self, kind: str | None = None, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            m
            for m in self.received
            if isinstance(m, dict)
            and (kind is None or m["type"] == kind)
            and (request_id is None or m.get("request_id") == request_id)
        ]

    async def until(self, condition: Callable[[], object]) -> None:
        with trio.fail_after(WAIT):
            while not condition():
                self._arrived = trio.Event()
                await self._arrived.wait()

    async def wait_for(self, kind: str, request_id: str | None = None) -> dict[str, Any]:
        await self.until(lambda: self.events(kind, request_id))
        return self.events(kind, request_id)[-1]

    async def pump(self) -> None:
        while True:
            item = await self.outbox.get()
            assert isinstance(item, str | bytes)
            self.received.append(json.loads(item) if isinstance(item, str) else item)
            self.outbox.sent()
            self._arrived.set()

    def audio_bytes(self, request_id: str) -> int:
        total, current = 0, None
        for m in self.received:
            if isinstance(m, bytes):
                total += len(m) if current == request_id else 0
            elif m["type"] == "audio_start":
                current = m["request_id"]
        return total


def context_services(
    engine: FakeEngine, tts: dict[str, Any], performance: dict[str, Any]
) -> Services:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm", "chunk_size": 400, **tts},
        performance={
            "realtime_lead_ms": 0, "max_queue_size": 8, "worker_processes": 2, **performance
        },
    )
    return make_services(config, engine)


def harness_fixture(**options: Any) -> Callable[..., Any]:
    tts = options.pop("tts", {})
    performance = options.pop("performance", {})

    @pytest.fixture
    async def fixture(nursery: trio.Nursery) -> AsyncIterator[Harness]:
        engine = FakeEngine(chunk_seconds=0.05, **options)
        services = context_services(engine, tts, performance)
        manager = SessionManager(services)
        session = manager.create(AudioConfig())
        outbox = Outbox()
        session.outbox = outbox
        h = Harness(engine, services, session, outbox)
        nursery.start_soon(h.pump)
        await nursery.start(session.run)
        yield h
        if engine.gate is not None:
            engine.gate.set()

    return fixture


harness = harness_fixture()
paced = harness_fixture(performance={"realtime_lead_ms": 150})
limited = harness_fixture(tts={"max_open_contexts": 2, "context_idle_s": 0.3})


def kinds(h: Harness, request_id: str) -> list[str]:
    """What arrived for one request, frames as 'audio' (collapsed)."""
    out: list[str] = []
    current = None
    for m in h.received:
        if isinstance(m, bytes):
            if current == request_id and (not out or out[-1] != "audio"):
                out.append("audio")
        else:
            if m["type"] == "audio_start":
                current = m["request_id"]
            if m.get("request_id") == request_id:
                out.append(m["type"])
    return out


# --- a context's life ----------------------------------------------------------------------


async def test_a_context_streams_in_pieces_and_ends_after_close(harness: Harness) -> None:
    for piece in ("Hello", " there", " my", " friend", ",", " how", " are", " you", "?"):
        harness.text("c1", piece)
    queued = await harness.wait_for("queued", "c1")
    assert queued == {"type": "queued", "request_id": "c1", "position": 0, "context_id": "c1"}
    start = await harness.wait_for("audio_start", "c1")
    assert start["context_id"] == "c1"
    harness.close("c1")
    end = await harness.wait_for("audio_end", "c1")
    assert end["context_id"] == "c1"
    # First clause alone (it started speech), then the rest; each segment 2 chunks.
    assert harness.engine.texts == ["Hello there my friend,", "how are you?"]
    assert end["duration_ms"] == pytest.approx(4 * 50, abs=2)
    assert harness.audio_bytes("c1") == end["bytes"] == 2 * round(0.2 * FAKE_RATE)
    assert kinds(harness, "c1") == ["queued", "audio_start", "audio", "audio_end"]


async def test_audio_start_waits_for_the_first_segment(harness: Harness) -> None:
    harness.text("c1", "Just a few words without an end")
    await trio.testing.wait_all_tasks_blocked()
    assert harness.events("audio_start") == []
    harness.flush("c1")
    await harness.wait_for("audio_start", "c1")


async def test_an_empty_context_closed_at_once_still_ends(harness: Harness) -> None:
    harness.text("c1", "")
    harness.close("c1")
    end = await harness.wait_for("audio_end", "c1")
    assert end["duration_ms"] == 0 and harness.engine.texts == []


async def test_segments_share_one_stream_and_keep_counting_time(harness: Harness) -> None:
    harness.text("c1", "First part here.", config=AudioConfig(timestamps="word"))
    harness.text("c1", " Second part here.", flush=True)
    harness.text("c1", " Third bit")
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
    assert harness.engine.texts == ["First part here.", "Second part here.", "Third bit"]
    words = [w for e in harness.events("timestamps", "c1") for w in e["words"]]
    text = "First part here. Second part here. Third bit"
    assert [w["word"] for w in words] == [w.rstrip(".") for w in words_of(text)]
    for w in words:
        assert text[w["char_start"] : w["char_end"]] == w["word"]
    starts = [w["start_ms"] for w in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # Segment k's audio starts at k x 100 ms of the context's one timeline.
    assert words[3]["start_ms"] >= 100 and words[6]["start_ms"] >= 200
    assert all(e.get("estimated") is True for e in harness.events("timestamps"))


async def test_timestamps_come_before_the_audio_they_time(harness: Harness) -> None:
    harness.text(
        "c1", "Hello world, this is it.", config=AudioConfig(timestamps="word"), flush=True
    )
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
    sequence = kinds(harness, "c1")
    assert sequence.index("timestamps") < sequence.index("audio")
    # Each segment's words precede that segment's frames.
    heard_ms, sent_ms = 0, 0
    for m in harness.received:
        if isinstance(m, bytes):
            sent_ms += len(m) // 2 * 1000 // FAKE_RATE
        elif m["type"] == "timestamps":
            heard_ms = m["words"][0]["start_ms"]
            assert heard_ms >= sent_ms


async def test_char_timestamps_time_every_character(harness: Harness) -> None:
    text = "Hi there, you."
    harness.text("c1", text, config=AudioConfig(timestamps="char"), flush=True)
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
    events = harness.events("timestamps", "c1")
    assert events
    for e in events:
        first, last = e["words"][0], e["words"][-1]
        assert "".join(e["chars"]) == text[first["char_start"] : last["char_end"]]
        assert len(e["chars"]) == len(e["char_start_ms"]) == len(e["char_dur_ms"])
        assert e["char_start_ms"][0] == first["start_ms"]
        assert e["char_start_ms"] == sorted(e["char_start_ms"])


async def test_no_timestamps_unless_asked(harness: Harness) -> None:
    harness.text("c1", "Hello there.", flush=True)
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
    assert harness.events("timestamps") == []


async def test_a_synthesize_can_ask_for_timestamps(harness: Harness) -> None:
    harness.session.submit(
        Synthesize("Hello there.", Priority.NORMAL, "r1", AudioConfig(timestamps="word")),
        trio.current_time(),
    )
    await harness.wait_for("audio_end", "r1")
    words = [w for e in harness.events("timestamps", "r1") for w in e["words"]]
    assert [w["word"] for w in words] == ["Hello", "there"]


# --- flush ----------------------------------------------------------------------------------


async def test_flushed_follows_the_audio_of_the_flushed_text(harness: Harness) -> None:
    harness.text("c1", "No end in sight")
    harness.flush("c1", "f1")
    await harness.wait_for("flushed", "c1")
    sequence = kinds(harness, "c1")
    assert sequence == ["queued", "audio_start", "audio", "flushed"]
    assert harness.events("flushed") == [{"type": "flushed", "request_id": "c1", "flush_id": "f1"}]
    assert harness.audio_bytes("c1") >= 2 * round(0.1 * FAKE_RATE) - 400 * 2


async def test_a_flush_with_nothing_new_answers_after_what_is_queued(harness: Harness) -> None:
    harness.text("c1", "One sentence.", flush=True)
    harness.flush("c1", "f2")
    await harness.wait_for("flushed", "c1")
    assert harness.engine.texts == ["One sentence."]
    assert kinds(harness, "c1")[-1] == "flushed"


# --- errors ----------------------------------------------------------------------------------


def refused(action: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        action()
    return caught.value


async def test_input_after_close_is_context_closed(harness: Harness) -> None:
    harness.text("c1", "Bye.")
    harness.close("c1")
    for action in (
        lambda: harness.text("c1", "more"),
        lambda: harness.flush("c1"),
        lambda: harness.close("c1"),
    ):
        error = refused(action)
        assert error.code is ErrorCode.CONTEXT_CLOSED and error.request_id == "c1"
    await harness.wait_for("audio_end", "c1")
    # Over: its id still answers context_closed, and may not be reused.
    assert refused(lambda: harness.text("c1", "again")).code is ErrorCode.CONTEXT_CLOSED
    assert refused(lambda: harness.flush("c1")).code is ErrorCode.CONTEXT_CLOSED
    duplicate = refused(
        lambda: harness.session.submit(
            Synthesize("x", Priority.NORMAL, "c1", AudioConfig()), trio.current_time()
        )
    )
    assert duplicate.code is ErrorCode.DUPLICATE_REQUEST_ID


async def test_unknown_contexts(harness: Harness) -> None:
    for action in (
        lambda: harness.flush("nope"),
        lambda: harness.close("nope"),
        lambda: harness.cancel("nope"),
        lambda: harness.session.keepalive(Keepalive("nope"), trio.current_time()),
    ):
        error = refused(action)
        assert error.code is ErrorCode.UNKNOWN_CONTEXT and error.request_id == "nope"
    harness.session.keepalive(Keepalive(), trio.current_time())  # no context: nothing


async def test_a_context_id_is_a_request_id(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.session.submit(Synthesize("Hi.", Priority.NORMAL, "r1", AudioConfig()), 0.0)
    assert refused(lambda: harness.text("r1", "Hello")).code is ErrorCode.DUPLICATE_REQUEST_ID
    harness.engine.gate.set()


async def test_bad_opening_config_opens_nothing(harness: Harness) -> None:
    error = refused(lambda: harness.text("c1", "Hi", config=AudioConfig(language="xx")))
    assert error.code is ErrorCode.UNKNOWN_LANGUAGE
    error = refused(lambda: harness.text("c2", "Hi", buffer=BufferConfig(max_chars=1)))
    assert error.code is ErrorCode.INVALID_CONFIG
    # A refused id is spent: the next token (sent before the client saw the refusal)
    # must not open it with other settings.
    late = refused(lambda: harness.text("c1", " there"))
    assert late.code is ErrorCode.CONTEXT_CLOSED and "refused (unknown_language)" in late.message
    assert refused(lambda: harness.flush("c2")).code is ErrorCode.CONTEXT_CLOSED
    assert refused(lambda: harness.flush("c3")).code is ErrorCode.UNKNOWN_CONTEXT
    harness.text("c3", "Now it opens.", flush=True)
    await harness.wait_for("audio_start", "c3")


async def test_too_many_contexts(limited: Harness) -> None:
    limited.text("a", "One")
    limited.text("b", "Two")
    error = refused(lambda: limited.text("c", "Three"))
    assert error.code is ErrorCode.TOO_MANY_CONTEXTS and error.details == {"limit": 2}
    assert "tts.max_open_contexts" in error.message
    limited.cancel("b")
    limited.text("d", "Three")  # "c" was refused: spent, a new id opens


async def test_an_idle_context_is_closed_and_ends(limited: Harness) -> None:
    limited.text("c1", "Waiting for the rest")
    error = await limited.wait_for("error", "c1")
    assert error["code"] == "context_idle"
    end = await limited.wait_for("audio_end", "c1")
    assert end["duration_ms"] > 0  # what it held was spoken
    assert limited.engine.texts == ["Waiting for the rest"]
    assert refused(lambda: limited.text("c1", "late")).code is ErrorCode.CONTEXT_CLOSED


async def test_max_delay_releases_a_stalled_stream(harness: Harness) -> None:
    harness.text("c1", "A stalled ", buffer=BufferConfig(max_delay_ms=50))
    await harness.until(lambda: harness.audio_bytes("c1") > 0)
    assert harness.engine.texts == ["A stalled"]


# --- barge-in ----------------------------------------------------------------------------------


async def test_cancel_a_queued_context(harness: Harness) -> None:
    harness.engine.gate = threading.Event()
    harness.text("c1", "Talking now.", flush=True)
    await harness.wait_for("audio_start", "c1")
    harness.text("c2", "Waiting.")
    harness.cancel("c2")
    reply = await harness.wait_for("interrupted", "c2")
    assert reply == {
        "type": "interrupted",
        "request_id": "c2",
        "reason": "cancel",
        "dropped": [],
        "audio_sent_ms": 0,
        "played_ms": 0,
        "heard_text": "",
        "heard_char_end": 0,
        "basis": "sent",
    }
    assert harness.session.to_json()["queued"] == []
    harness.engine.gate.set()
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
    assert "audio_start" not in kinds(harness, "c2")


async def test_cancel_mid_context_leaves_nothing_after_the_reply(harness: Harness) -> None:
    harness.engine.delay = 0.02
    text = "One two three four. Five six seven eight. Nine ten eleven twelve."
    harness.text("c1", text, config=AudioConfig(timestamps="word"), flush=True)
    await harness.until(lambda: harness.audio_bytes("c1") >= 2 * 0.1 * FAKE_RATE)
    harness.cancel("c1", played_ms=60)
    reply = await harness.wait_for("interrupted", "c1")
    mark = len(harness.received)
    assert reply["request_id"] == "c1" and reply["reason"] == "cancel"
    assert reply["basis"] == "client" and reply["played_ms"] == 60
    assert reply["audio_sent_ms"] >= 60
    words = [w for e in harness.events("timestamps", "c1") for w in e["words"]]
    heard = [w for w in words if (w["start_ms"] + w["end_ms"]) / 2 <= 60]
    assert reply["heard_char_end"] == (heard[-1]["char_end"] if heard else 0)
    assert reply["heard_text"] == text[: reply["heard_char_end"]]
    await trio.sleep(0.2)  # chunks still in flight in their thread must not surface
    assert harness.received[mark:] == []
    assert refused(lambda: harness.text("c1", "more")).code is ErrorCode.CONTEXT_CLOSED


async def test_interrupt_reports_heard_text_by_the_clock(paced: Harness) -> None:
    text = "One two three four. Five six seven eight. Nine ten eleven twelve."
    paced.text("c1", text, flush=True)
    await paced.until(lambda: paced.audio_bytes("c1") > 0)
    paced.text("c2", "Queued behind.")
    event = paced.session.interrupt("user_request", trio.current_time())
    reply = await paced.wait_for("interrupted", "c1")
    assert event.request_id == "c1" and reply["dropped"] == ["c2"]
    assert reply["basis"] == "clock"
    # Pacing keeps the server at most 150 ms ahead of the listener.
    assert 0 <= reply["played_ms"] <= reply["audio_sent_ms"]
    assert reply["heard_text"] == text[: reply["heard_char_end"]]
    assert refused(lambda: paced.text("c2", "x")).code is ErrorCode.CONTEXT_CLOSED


async def test_a_download_reports_what_was_sent(harness: Harness) -> None:
    harness.engine.delay = 0.02
    harness.text(
        "c1", "One two three. Four five six.", config=AudioConfig(realtime=False), flush=True
    )
    await harness.until(lambda: harness.audio_bytes("c1") > 0)
    harness.cancel("c1")
    reply = await harness.wait_for("interrupted", "c1")
    assert reply["basis"] == "sent" and reply["played_ms"] == reply["audio_sent_ms"] > 0


async def test_a_critical_context_preempts_and_reports(harness: Harness) -> None:
    harness.engine.delay = 0.02
    harness.text("c1", "A long normal answer. It goes on. And on.", flush=True)
    await harness.until(lambda: harness.audio_bytes("c1") > 0)
    harness.text("alert", "Alert!", priority=Priority.CRITICAL, flush=True)
    interrupted = await harness.wait_for("interrupted", "c1")
    assert interrupted["reason"] == "preempted" and interrupted["basis"] == "sent"
    assert "heard_text" in interrupted
    harness.close("alert")
    await harness.wait_for("audio_end", "alert")


# --- continuity ----------------------------------------------------------------------------------


async def test_text_faster_than_speech_plays_without_a_gap(paced: Harness) -> None:
    before = paced.services.metrics.underruns
    for sentence in ("First one here.", " Second one here.", " Third one here."):
        paced.text("c1", sentence)
    paced.close("c1")
    await paced.wait_for("audio_end", "c1")
    assert paced.engine.texts == ["First one here.", "Second one here.", "Third one here."]
    assert paced.services.metrics.underruns == before


async def test_text_slower_than_speech_is_not_an_underrun(paced: Harness) -> None:
    before = paced.services.metrics.underruns
    paced.text("c1", "First one.", flush=True)
    await paced.wait_for("audio_start", "c1")
    # Let the listener run dry: 100 ms of audio, then nothing to say for a while.
    await trio.sleep(0.3)
    paced.text("c1", " Later one.", flush=True)
    paced.close("c1")
    await paced.wait_for("audio_end", "c1")
    assert paced.services.metrics.underruns == before


async def test_every_piece_is_charged_to_the_key(harness: Harness) -> None:
    from streamer.server.security import ApiKey, Caller

    harness.session.owner = Caller(ApiKey("a", b"", chars_per_minute=30))
    harness.text("c1", "Twenty characters ok")  # 20, with its admission
    harness.text("c1", " and ten.")  # 29
    limited = refused(lambda: harness.text("c1", " Too much"))
    assert limited.code is ErrorCode.RATE_LIMITED and limited.request_id == "c1"
    assert "retry_after_ms" in limited.details
    # Not appended, and the context goes on.
    assert harness.session._contexts["c1"].context.text == "Twenty characters ok and ten."  # type: ignore[union-attr]
    harness.close("c1")
    await harness.wait_for("audio_end", "c1")
