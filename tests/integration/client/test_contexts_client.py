"""Streamed-text contexts through the Python clients (Trio and asyncio) against the real
server with the fake engine, and the sans-IO routing of their events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import trio

from streamer.client import (
    AudioEnd,
    ClientProtocol,
    Delivery,
    ErrorEvent,
    Flushed,
    Interrupted,
    Queued,
    Timestamps,
    TTSClientError,
    TTSServerError,
    TTSStreamingClient,
    Word,
)
from streamer.client.asyncio_client import AsyncioTTSStreamingClient
from streamer.server.app import RunningServer
from streamer.server.runtime import Reservation
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

WAIT = 30
REPO = Path(__file__).resolve().parents[3]


def _event(**fields: object) -> str:
    return json.dumps(fields)


# --- sans-IO -------------------------------------------------------------------------------


def test_context_messages() -> None:
    p = ClientProtocol()
    assert json.loads(p.text_message("c1", "Hi", flush=True, priority="high",
                                     config={"timestamps": "word"}, buffer={"max_chars": 50})) == {
        "type": "text", "context_id": "c1", "text": "Hi", "flush": True, "priority": "high",
        "config": {"timestamps": "word"}, "buffer": {"max_chars": 50},
    }  # fmt: skip
    assert json.loads(p.text_message("c1", "")) == {"type": "text", "context_id": "c1", "text": ""}
    assert json.loads(p.flush_message("c1", "f1")) == {
        "type": "flush",
        "context_id": "c1",
        "flush_id": "f1",
    }
    assert json.loads(p.close_message("c1")) == {"type": "close", "context_id": "c1"}
    assert json.loads(p.cancel_message("c1", 1200)) == {
        "type": "cancel",
        "context_id": "c1",
        "played_ms": 1200,
    }
    assert json.loads(p.keepalive_message()) == {"type": "keepalive"}
    assert json.loads(p.interrupt_message("stop", 5)) == {
        "type": "interrupt",
        "reason": "stop",
        "played_ms": 5,
    }
    with pytest.raises(ValueError, match="must be"):
        p.text_message("bad id", "x")
    with pytest.raises(ValueError, match="played_ms"):
        p.cancel_message("c1", -1)


def test_timestamps_and_flushed_are_routed_to_their_context() -> None:
    p = ClientProtocol()
    words = [{"word": "Hi", "start_ms": 0, "end_ms": 200, "char_start": 0, "char_end": 2}]
    out = p.receive(_event(type="timestamps", request_id="c1", words=words, estimated=True))
    assert out == [Delivery("c1", Timestamps("c1", (Word("Hi", 0, 200, 0, 2),), True))]
    assert p.receive(_event(type="flushed", request_id="c1", flush_id="f")) == [
        Delivery("c1", Flushed("c1", "f"))
    ]


def test_an_error_on_an_open_context_does_not_end_it() -> None:
    p = ClientProtocol()
    p.context("c1")
    idle = _event(type="error", code="context_idle", message="m", request_id="c1")
    # Before queued: the opening was refused, the context is over.
    assert p.receive(idle)[0].terminal
    p.context("c1")
    p.receive(_event(type="queued", request_id="c1", position=0, context_id="c1"))
    assert p.receive(idle) == [Delivery("c1", ErrorEvent("context_idle", "m", "c1"))]
    failed = _event(type="error", code="synthesis_failed", message="m", request_id="c1")
    assert p.receive(failed)[0].terminal
    # Refused by admission after its ``queued`` (no room by the time its text was
    # ready): over, as the server takes no more text for it.
    p.context("c2")
    p.receive(_event(type="queued", request_id="c2", position=0, context_id="c2"))
    refused = _event(type="error", code="busy", message="m", request_id="c2")
    assert p.receive(refused)[0].terminal
    # A request's errors end it as before.
    assert p.receive(_event(type="error", code="busy", message="m", request_id="r1"))[0].terminal


def test_interrupted_carries_the_heard_text() -> None:
    p = ClientProtocol()
    out = p.receive(
        _event(type="interrupted", request_id="c1", reason="cancel", dropped=[],
               audio_sent_ms=900, played_ms=640, heard_text="Hello there",
               heard_char_end=11, basis="client")
    )  # fmt: skip
    assert out[0].item == Interrupted("c1", "cancel", (), 900, 640, "Hello there", 11, "client")


# --- against the server ---------------------------------------------------------------------


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm", "context_idle_s": 5},
        performance={"realtime_lead_ms": 0},
    )
    async with running_server(config, make_services(config, engine)) as running:
        yield running
    if engine.gate is not None:
        engine.gate.set()


def _url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.websocket_port}"


TOKENS = ["Hello", " there", ",", " my", " dear", " friend", ".", " How", " are", " you", "?"]


async def test_trio_stream_sends_tokens_and_reads_audio_and_words(
    server: RunningServer, engine: FakeEngine
) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream(context_id="turn-1", timestamps="word")
            async with trio.open_nursery() as nursery:

                async def feed() -> None:
                    for token in TOKENS:
                        await ctx.send_text(token)
                    await ctx.flush("f1")
                    await ctx.close()

                nursery.start_soon(feed)
                result = await ctx.collect()
    assert result.completed and isinstance(result.end, AudioEnd)
    assert result.end.context_id == "turn-1" and result.start is not None
    assert len(result.audio) == result.end.bytes > 0
    assert [w.word for w in result.words] == [
        "Hello",
        "there",
        "my",
        "dear",
        "friend",
        "How",
        "are",
        "you",
    ]
    assert isinstance(ctx.queued, Queued) and ctx.queued.context_id == "turn-1"
    assert engine.texts == ["Hello there,", "my dear friend.", "How are you?"]


async def test_trio_cancel_returns_the_heard_text(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.02
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream(timestamps="word")
            await ctx.send_text("One two three four. Five six seven eight. Nine ten.", flush=True)
            async for item in ctx:
                if isinstance(item, bytes):
                    break
            reply = await ctx.cancel(played_ms=0)
            rest = [item async for item in ctx]
            # The session goes on: a new context speaks.
            again = client.stream()
            await again.send_text("Back again.")
            await again.close()
            result = await again.collect()
    assert reply is not None and reply.reason == "cancel" and reply.basis == "client"
    assert reply.heard_text == "" and reply.heard_char_end == 0 and reply.played_ms == 0
    assert rest == [reply] and ctx.interrupted == reply
    assert result.completed


async def test_errors_that_do_not_end_a_context(server: RunningServer) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream(context_id="c1")
            await ctx.send_text("Hello.")
            await ctx.close()
            # Sent behind the client's back: the server refuses text after close.
            await client._send_text(ClientProtocol.text_message("c1", "late"))
            result = await ctx.collect()
            with pytest.raises(TTSClientError, match="context_closed"):
                await ctx.send_text("more")
    assert result.completed
    assert [e.code for e in result.errors] == ["context_closed"]


async def test_a_refused_opening_raises(server: RunningServer) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream(language="xx")
            await ctx.send_text("Hello.")
            with pytest.raises(TTSServerError) as caught:
                await ctx.collect()
    assert caught.value.code == "unknown_language"


async def test_a_context_refused_by_admission_when_its_text_is_ready_ends_with_busy(
    engine: FakeEngine,
) -> None:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        performance={"realtime_lead_ms": 0, "max_start_delay_ms": 50},
    )
    services = make_services(config, engine)
    # Three admitted streams of a voice never measured (a whole worker each) need more
    # than the two workers: no new stream fits, so the context waits, then is refused.
    for _ in range(3):
        services.admission.force(Reservation("another-voice", expected_audio_s=600.0))
    async with running_server(config, services) as running:
        with trio.fail_after(WAIT):
            async with TTSStreamingClient(_url(running)) as client:
                ctx = client.stream()
                await ctx.send_text("Hello there.")
                await ctx.close()
                with pytest.raises(TTSServerError) as caught:
                    await ctx.collect()
                # Judged when its first segment was ready, not at its opening.
                assert ctx.queued is not None and ctx.queued.admission_wait_ms is None
                # The session goes on: its next context is judged (and refused) alike.
                again = client.stream()
                await again.send_text("Again.")
                with pytest.raises(TTSServerError):
                    await again.collect()
    assert caught.value.code == "busy"
    assert caught.value.details["waited_ms"] >= 50


async def test_interrupt_with_played_ms(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.02
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream()
            await ctx.send_text("One two three. Four five six. Seven.", flush=True)
            async for item in ctx:
                if isinstance(item, bytes):
                    break
            reply = await client.interrupt(played_ms=10)
    assert reply is not None and reply.request_id == ctx.context_id
    assert reply.basis == "client" and reply.heard_text is not None


async def _asyncio_scenario(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with AsyncioTTSStreamingClient(url) as client:
        async with client.stream(context_id="a1", timestamps="word") as ctx:

            async def feed() -> None:
                for token in TOKENS:
                    await ctx.send_text(token)
                # Leaving ``async with`` closes the input.

            sender = asyncio.create_task(feed())
            await sender
        result = await ctx.collect()
        out["completed"] = result.completed
        out["words"] = [w.word for w in result.words]
        cancelled = client.stream()
        await cancelled.send_text("Long one. " * 20, flush=True)
        async for item in cancelled:
            if isinstance(item, bytes):
                break
        out["reply"] = await cancelled.cancel()
    return out


async def test_asyncio_stream(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.01
    with trio.fail_after(WAIT):
        out = await trio.to_thread.run_sync(asyncio.run, _asyncio_scenario(_url(server)))
    assert out["completed"] is True
    assert out["words"][:3] == ["Hello", "there", "my"] and len(out["words"]) == 8
    reply = out["reply"]
    assert isinstance(reply, Interrupted) and reply.reason == "cancel"
    assert reply.basis == "sent" and reply.heard_text is not None


# --- the command line ------------------------------------------------------------------------


async def test_say_stream_speaks_stdin_as_it_arrives(
    server: RunningServer, engine: FakeEngine, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.support.polling import wait_until

    out = tmp_path / "streamed.wav"
    argv = [sys.executable, "-m", "streamer", "say", "--stream", "-", "-o", str(out),
            "--url", _url(server)]  # fmt: skip
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(
                    trio.run_process, argv, cwd=REPO, stdin=subprocess.PIPE,
                    capture_stderr=True, check=False,
                )
            )  # fmt: skip
            assert process.stdin is not None
            for token in ["Hello", " there", ",", " my", " friend", ".", " More"]:
                await process.stdin.send_all(token.encode())
            # Spoken before stdin ends: the first sentence went out with " More".
            await wait_until(lambda: "my friend." in engine.texts)
            await process.stdin.send_all(b" to come.\n")
            await process.stdin.aclose()
            await process.wait()
    assert process.returncode == 0, process.stderr
    assert engine.texts == ["Hello there,", "my friend.", "More to come."]
    with sf.SoundFile(out) as f:
        assert f.frames > 0 and f.samplerate == 16000


async def test_say_stream_with_nothing_to_say(server: RunningServer, tmp_path: Path) -> None:
    import sys

    argv = [sys.executable, "-m", "streamer", "say", "--stream", "-", "-o",
            str(tmp_path / "x.wav"), "--url", _url(server)]  # fmt: skip
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            argv, cwd=REPO, stdin=b"  \n", capture_stderr=True, check=False
        )
    assert done.returncode == 2 and b"no text to say" in done.stderr
    assert not (tmp_path / "x.wav").exists()


async def test_cancelling_an_ended_context_returns_none(server: RunningServer) -> None:
    from tests.support.polling import wait_until

    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            ctx = client.stream(context_id="c1")
            await ctx.send_text("Short.")
            await ctx.close()
            await wait_until(lambda: "c1" not in client._inboxes)  # its end has arrived
            assert await ctx.cancel() is None
            result = await ctx.collect()
    assert result.completed


def test_a_cancel_is_answered_by_its_interrupted_or_by_a_too_late_error() -> None:
    from streamer.client._protocol import Reply

    reply = Reply("cancel", "c1")
    assert reply.matches(Interrupted("c1", "cancel"))
    assert not reply.matches(Interrupted("c1", "preempted"))
    assert not reply.matches(Interrupted("c2", "cancel"))
    assert reply.matches(ErrorEvent("context_closed", "ended", "c1"))
    assert not reply.matches(ErrorEvent("invalid_message", "m", "c1"))
