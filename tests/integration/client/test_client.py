"""The Python clients (Trio and asyncio) against the real server with the fake engine,
and the sans-IO routing under them."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from streamer.client import (
    AudioEnd,
    AudioStart,
    ClientProtocol,
    Connected,
    Delivery,
    ErrorEvent,
    Interrupted,
    PcmFormat,
    Queued,
    RecordingSink,
    TTSConnectionError,
    TTSServerError,
    TTSStreamingClient,
    UnknownEvent,
)
from streamer.client._protocol import MAX_BUFFERED_AUDIO_BYTES, Inbox
from streamer.client.asyncio_client import AsyncioTTSStreamingClient
from streamer.server.app import RunningServer
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

WAIT = 30


# --- sans-IO routing ----------------------------------------------------------------


def _event(**fields: object) -> str:
    return json.dumps(fields)


def test_audio_frames_go_to_the_request_that_started_last() -> None:
    protocol = ClientProtocol()
    assert protocol.receive(b"orphan") == []  # nothing plays: a frame nobody wants
    start = protocol.receive(
        _event(type="audio_start", request_id="a", format="pcm", sample_rate=16000,
               channels=1, priority="normal", voice="v")
    )
    assert start == [Delivery("a", AudioStart("a", "pcm", 16000, 1, "normal", "v"))]
    assert protocol.receive(b"\x01\x02") == [Delivery("a", b"\x01\x02")]
    end = protocol.receive(_event(type="audio_end", request_id="a", chunks=1, bytes=2,
                                  duration_ms=0))
    assert end == [Delivery("a", AudioEnd("a", 1, 2, 0), terminal=True)]
    assert protocol.receive(b"late") == []


def test_interrupted_reaches_the_playing_the_dropped_and_the_connection() -> None:
    protocol = ClientProtocol()
    protocol.playing = "a"
    out = protocol.receive(
        _event(type="interrupted", request_id="a", reason="user_request", dropped=["b", "c"])
    )
    event = Interrupted("a", "user_request", ("b", "c"))
    assert out == [
        Delivery(None, event),
        Delivery("a", event, terminal=True),
        Delivery("b", event, terminal=True),
        Delivery("c", event, terminal=True),
    ]
    assert protocol.playing is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (_event(type="error", code="invalid_json", message="bad"),
         Delivery(None, ErrorEvent("invalid_json", "bad"))),
        (_event(type="error", code="busy", message="later", request_id="r", details={"x": 1}),
         Delivery("r", ErrorEvent("busy", "later", "r", {"x": 1}), terminal=True)),
        (_event(type="queued", request_id="r", position=2), Delivery("r", Queued("r", 2))),
        (_event(type="connected", session_id="s", config={}),
         Delivery(None, Connected("s", {}))),
        (_event(type="karaoke", words=[]),
         Delivery(None, UnknownEvent("karaoke", {"type": "karaoke", "words": []}))),
    ],
)
def test_events_are_routed_by_request_id(message: str, expected: Delivery) -> None:
    assert ClientProtocol().receive(message) == [expected]


def test_messages_are_checked_before_sending() -> None:
    protocol = ClientProtocol()
    with pytest.raises(ValueError, match="priority"):
        protocol.synthesize_message("hi", "urgent", "r1", {})
    with pytest.raises(ValueError, match="request_id"):
        protocol.synthesize_message("hi", "normal", "has space", {})
    with pytest.raises(ValueError, match="reason"):
        protocol.interrupt_message("")
    assert protocol.new_request_id() != protocol.new_request_id()
    assert json.loads(protocol.synthesize_message("hi", "high", "r1", {"speed": 1.5})) == {
        "type": "synthesize", "text": "hi", "priority": "high", "request_id": "r1",
        "config": {"speed": 1.5},
    }


def test_inbox_bounds_audio_and_discards_on_demand() -> None:
    inbox = Inbox("r")
    frame = b"\x00" * (MAX_BUFFERED_AUDIO_BYTES // 2)
    inbox.put(Queued("r", 0))
    inbox.put(frame)
    assert inbox.has_room
    inbox.put(frame)
    assert not inbox.has_room  # the reader must wait for the consumer now
    assert inbox.take() == Queued("r", 0)
    assert inbox.take() == frame and inbox.has_room
    inbox.discard_audio()
    inbox.put(b"dropped")
    inbox.put(Interrupted("r", "user_request"), terminal=True)
    assert inbox.take() == Interrupted("r", "user_request")
    assert inbox.take() == "end"


# --- against the real server ----------------------------------------------------------


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        performance={"realtime_lead_ms": 0},
    )
    async with running_server(config, make_services(config, [engine])) as running:
        yield running
    if engine.gate is not None:
        engine.gate.set()


def _url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.websocket_port}"


async def test_connect_and_stream_one_request(server: RunningServer) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            connected = await client.connect(language="es", format="wav")
            assert connected.session_id.startswith("s-")
            assert client.session_id == connected.session_id
            assert connected.config["voice"] == "fake-es"
            items = [item async for item in client.synthesize("Hola. Adiós.", request_id="r1")]
    assert isinstance(items[0], Queued) and items[0].request_id == "r1"
    start = items[1]
    assert isinstance(start, AudioStart)
    assert start.format == "wav" and start.sample_rate == FAKE_RATE
    end = items[-1]
    assert isinstance(end, AudioEnd)
    audio = b"".join(item for item in items if isinstance(item, bytes))
    assert audio[:4] == b"RIFF" and len(audio) == end.bytes and end.duration_ms > 0


async def test_request_error_raises_with_the_server_code_and_the_client_goes_on(
    server: RunningServer,
) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            with pytest.raises(TTSServerError) as connect_error:
                await client.connect(language="tlh")
            assert connect_error.value.code == "unknown_language"
            await client.connect(language="en")  # a refused connect may be retried
            with pytest.raises(TTSServerError) as info:
                await client.synthesize("hi", voice_id="nobody").collect()
            assert info.value.code == "unknown_voice"
            assert "fake-en" in info.value.details["available"]
            result = await client.synthesize("still fine").collect()
            assert result.completed and len(result.audio) == result.end.bytes  # type: ignore[union-attr]


async def test_interrupt_from_inside_the_loop_ends_both_streams(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.02
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            await client.connect()
            first = await client.submit(" ".join(["Word."] * 40), request_id="long")
            second = await client.submit("never spoken", request_id="queued")
            frames_after_ack = 0
            ack: Interrupted | None = None
            async for item in first:
                if isinstance(item, bytes):
                    if ack is not None:
                        frames_after_ack += 1
                    elif ack is None:
                        ack = await client.interrupt("barge_in")
            assert ack == Interrupted("long", "barge_in", ("queued",))
            assert first.interrupted == ack and first.end is None
            assert frames_after_ack == 0
            rest = [item async for item in second]
            assert rest == [Queued("queued", 1), ack]


async def test_critical_preempts_the_playing_stream(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.gate = threading.Event()
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            normal = await client.submit("first", request_id="n")
            async for item in normal:
                if isinstance(item, AudioStart):
                    break
            alert = await client.submit("alert", priority="critical", request_id="c")
            engine.gate.set()
            rest = [item async for item in normal]
            assert rest[-1] == Interrupted("n", "preempted")
            result = await alert.collect()
            assert result.completed and result.start is not None
            assert result.start.priority == "critical"


async def test_a_slow_consumer_gets_every_byte_and_an_abandoned_one_blocks_nothing(
    server: RunningServer,
) -> None:
    # ~1.9 MB of PCM: more than the client buffers for one request, so the reader
    # must wait for the consumer (back-pressure) rather than drop or buffer it all.
    long_text = " ".join(["Word."] * 600)
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            slow = await client.submit(long_text, realtime=False)
            await trio.sleep(1.0)  # the server sends everything meanwhile
            result = await slow.collect()
            assert result.completed and len(result.audio) == result.end.bytes  # type: ignore[union-attr]
            assert len(result.audio) > MAX_BUFFERED_AUDIO_BYTES

            abandoned = await client.submit(long_text, realtime=False)
            async for _ in abandoned:
                break
            await abandoned.aclose()
            after = await client.synthesize("after", request_id="after").collect()
            assert after.completed


async def test_synthesize_and_play_into_a_recording_sink(server: RunningServer) -> None:
    sink = RecordingSink()
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client:
            result = await client.synthesize_and_play("Hello. World.", sink=sink)
    assert result.completed and result.end is not None
    assert sink.formats == [PcmFormat(FAKE_RATE, 1, "int16")]
    assert len(sink.audio) == result.end.bytes > 0
    assert sink.drained == 1 and sink.aborted == 0


async def test_interrupt_aborts_the_playing_sink(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.02
    sink = RecordingSink()
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server)) as client, trio.open_nursery() as nursery:
            results = []

            async def play() -> None:
                results.append(
                    await client.synthesize_and_play(" ".join(["Word."] * 40), sink=sink)
                )

            nursery.start_soon(play)
            while True:  # the sink is written from a worker thread: poll it
                if sink.chunks:
                    break
                await trio.sleep(0.01)
            await client.interrupt()
    assert results[0].interrupted is not None and not results[0].completed
    assert sink.aborted >= 1 and sink.drained == 0


async def test_playback_needs_a_raw_format(server: RunningServer) -> None:
    async with TTSStreamingClient(_url(server)) as client:
        with pytest.raises(ValueError, match="raw format"):
            await client.synthesize_and_play("x", sink=RecordingSink(), format="mp3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_a_typed_error() -> None:
    with pytest.raises(TTSConnectionError) as info:
        async with TTSStreamingClient(f"ws://127.0.0.1:{_free_port()}"):
            pass
    assert info.value.code == "connection_refused"


async def test_an_error_in_the_body_is_not_wrapped_in_a_group(server: RunningServer) -> None:
    with pytest.raises(KeyError):
        async with TTSStreamingClient(_url(server)):
            raise KeyError("mine")


async def test_server_shutdown_ends_the_stream_with_1001(engine: FakeEngine) -> None:
    engine.gate = threading.Event()
    config = make_config(tts={"default_language": "en"})
    with trio.fail_after(WAIT):
        async with running_server(config, make_services(config, [engine])) as server:
            async with TTSStreamingClient(_url(server)) as client:
                stream = await client.submit("held")
                assert isinstance(await stream.__anext__(), Queued)
                server.shutdown()
                with pytest.raises(TTSConnectionError) as info:
                    async for _ in stream:
                        pass
                assert info.value.close_code == 1001 == client.close_code
                engine.gate.set()


# --- asyncio ------------------------------------------------------------------------


async def _asyncio_scenario(url: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with AsyncioTTSStreamingClient(url) as client:
        connected = await client.connect(language="en", format="pcm")
        out["voice"] = connected.config["voice"]
        result = await client.synthesize("Hello there. General.").collect()
        out["completed"] = result.completed
        out["audio_matches"] = result.end is not None and len(result.audio) == result.end.bytes
        try:
            await client.synthesize("x", format="aiff").collect()
        except TTSServerError as error:
            out["error"] = error.code
        stream = await client.submit(" ".join(["Word."] * 40), request_id="long")
        async for item in stream:
            if isinstance(item, bytes):
                out["ack"] = await client.interrupt("stop")
        out["interrupted"] = stream.interrupted
        sink = RecordingSink()
        played = await client.synthesize_and_play("Play me.", sink=sink)
        out["played"] = played.completed and len(sink.audio) > 0
    return out


async def test_asyncio_client(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.01
    with trio.fail_after(WAIT):
        out = await trio.to_thread.run_sync(asyncio.run, _asyncio_scenario(_url(server)))
    assert out["voice"] == "fake-en"
    assert out["completed"] is True and out["audio_matches"] is True
    assert out["error"] == "unknown_format"
    assert out["ack"] == Interrupted("long", "stop") == out["interrupted"]
    assert out["played"] is True


def test_asyncio_client_connection_refused() -> None:
    async def scenario() -> str:
        try:
            async with AsyncioTTSStreamingClient(f"ws://127.0.0.1:{_free_port()}"):
                return "connected"
        except TTSConnectionError as error:
            return error.code

    assert asyncio.run(scenario()) == "connection_refused"


# --- the seed's client API ------------------------------------------------------------

#: The seed README's example, verbatim but for the import path (and the port, which the
#: test server picks).
SEED_EXAMPLE = '''
import asyncio
from streamer.client.asyncio_client import TTSStreamingClient

async def main():
    client = TTSStreamingClient("ws://localhost:8081")
    await client.connect()
    await client.synthesize_and_play("Hola mundo", priority="normal")
    await client.synthesize_and_play("¡Alerta!", priority="critical")
    await client.close()

asyncio.run(main())
'''

#: The seed's integration snippets, with the client they use.
SEED_INTEGRATION = '''
async def handle_user_input(text):
    return await tts_client.synthesize(text, priority="critical")

async def handle_long_response(long_text):
    return await tts_client.synthesize_streaming(long_text)
'''


def _run_seed_example(port: int, sink: RecordingSink) -> None:
    """Run SEED_EXAMPLE as a script would, its import aside: its TTSStreamingClient is the
    asyncio client playing into ``sink`` instead of a sound card."""
    lines = SEED_EXAMPLE.replace("localhost:8081", f"localhost:{port}").splitlines()
    source = "\n".join(line for line in lines if "import TTSStreamingClient" not in line)
    namespace = {
        "__name__": "__main__",
        "TTSStreamingClient": functools.partial(AsyncioTTSStreamingClient, sink=sink),
    }
    exec(compile(source, "seed_example.py", "exec"), namespace)


def test_the_seed_name_imports_the_asyncio_client() -> None:
    from streamer.client.asyncio_client import TTSStreamingClient as SeedClient

    assert SeedClient is AsyncioTTSStreamingClient


async def test_the_seed_example_runs_as_written(server: RunningServer) -> None:
    sink = RecordingSink()
    with trio.fail_after(WAIT):
        await trio.to_thread.run_sync(_run_seed_example, server.websocket_port, sink)
    # Two requests played to their end through the sink, in the default language (es).
    assert sink.formats == [PcmFormat(FAKE_RATE, 1, "int16")] * 2
    assert sink.drained == 2 and sink.aborted == 0 and len(sink.audio) > 0


async def _seed_integration(url: str) -> dict[str, object]:
    tts_client = AsyncioTTSStreamingClient(url)
    await tts_client.connect(language="en")
    namespace: dict[str, object] = {"tts_client": tts_client}
    exec(SEED_INTEGRATION, namespace)
    out: dict[str, object] = {}
    try:
        handle_user_input: Any = namespace["handle_user_input"]
        handle_long_response: Any = namespace["handle_long_response"]
        urgent = await handle_user_input("Fire. Leave now.")
        long = await handle_long_response(" ".join(["A sentence."] * 20))
        out["urgent"] = (
            urgent.completed, urgent.start.priority, len(urgent.audio) == urgent.end.bytes
        )
        out["long"] = (long.completed, len(long.audio) == long.end.bytes)
        chunks = [c async for c in tts_client.synthesize_streaming("Only audio. Here.")]
        out["only_bytes"] = bool(chunks) and all(isinstance(c, bytes) for c in chunks)
    finally:
        await tts_client.close()
        await tts_client.close()  # idempotent
    return out


async def test_the_seed_integration_calls_return_the_audio(server: RunningServer) -> None:
    with trio.fail_after(WAIT):
        out = await trio.to_thread.run_sync(asyncio.run, _seed_integration(_url(server)))
    assert out["urgent"] == (True, "critical", True)
    assert out["long"] == (True, True)
    assert out["only_bytes"] is True


def test_asyncio_connect_without_a_server_is_a_typed_error() -> None:
    async def scenario() -> str:
        client = AsyncioTTSStreamingClient(f"ws://127.0.0.1:{_free_port()}")
        try:
            await client.connect()
        except TTSConnectionError as error:
            return error.code
        finally:
            await client.close()
        return "connected"

    assert asyncio.run(scenario()) == "connection_refused"


async def test_trio_client_awaits_a_synthesis_and_streams_audio_only(
    server: RunningServer,
) -> None:
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(_url(server), sink=RecordingSink()) as client:
            result = await client.synthesize("Hello. World.", priority="high")
            assert result.completed and result.start is not None
            assert result.start.priority == "high" and len(result.audio) == result.end.bytes  # type: ignore[union-attr]
            stream = client.synthesize_streaming("Just audio.")
            chunks = [chunk async for chunk in stream]
            assert chunks and all(isinstance(chunk, bytes) for chunk in chunks)
            assert stream.end is not None and sum(map(len, chunks)) == stream.end.bytes
            played = await client.synthesize_and_play("Into the client's sink.")
            assert played.completed
            assert isinstance(client.sink, RecordingSink) and client.sink.drained == 1
        await client.close()  # after the block: a no-op
