"""The real server over real sockets (port 0), speaking with the fake engine.

These cover the wiring: WebSocket protocol, REST control, isolation of failures,
connection limits and shutdown. ``test_server_piper.py`` repeats the essentials with
the real Piper voice.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from streamer.server.app import RunningServer
from streamer.server.session import Session
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import rest, running_server, ws_client
from tests.support.services import make_config, make_services


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        server={"max_connections": 5},
        performance={"realtime_lead_ms": 0},
    )
    async with running_server(config, make_services(config, [engine])) as running:
        yield running
    if engine.gate is not None:
        engine.gate.set()


async def test_connect_then_synthesize(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(type="connect", config={"language": "es", "voice_id": 0, "format": "wav"})
        connected = await client.next_event("connected")
        assert connected["session_id"].startswith("s-")
        assert connected["config"]["voice"] == "fake-es"
        assert connected["config"]["format"] == "wav"
        await client.send(type="synthesize", text="Hola. Adiós.", request_id="r1")
        queued = await client.next_event()
        assert queued == {"type": "queued", "request_id": "r1", "position": 0}
        start = await client.next_event()
        assert start["type"] == "audio_start" and start["format"] == "wav"
        end = await client.until("audio_end", "r1")
        audio = client.audio("r1")
        assert audio[:4] == b"RIFF" and end["bytes"] == len(audio)


async def test_synthesize_first_gets_a_default_session(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(type="synthesize", text="hello")
        queued = await client.next_event("queued")
        end = await client.until("audio_end", queued["request_id"])
        assert end["duration_ms"] > 0
        assert client.events("audio_start")[0]["voice"] == "fake-en"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "synthesize"}', "missing_text"),
        ('{"type": "synthesize", "text": ""}', "empty_text"),
        ('{"type": "synthesize", "text": "' + "x" * 5001 + '"}', "text_too_long"),
        ('{"type": "synthesize", "text": "a", "priority": "meh"}', "unknown_priority"),
        ('{"type": "synthesize", "text": "a", "config": {"format": "aiff"}}', "unknown_format"),
        ('{"type": "synthesize", "text": "a", "config": {"language": "tlh"}}', "unknown_language"),
        ('{"type": "synthesize", "text": "a", "config": {"voice_id": "zzz"}}', "unknown_voice"),
        ('{"type": "synthesize", "text": "a", "config": {"speed": -1}}', "invalid_speed"),
    ],
)
async def test_bad_input_gets_its_code_and_the_session_goes_on(
    server: RunningServer, message: str, code: str
) -> None:
    async with ws_client(server) as client:
        await client.send(type="connect", config={})
        await client.next_event("connected")
        await client.ws.send_message(message)
        error = await client.next_event("error")
        assert error["code"] == code and error["message"]
        await client.send(type="synthesize", text="still here", request_id="ok")
        await client.until("audio_end", "ok")


async def test_binary_message_is_refused(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.ws.send_message(b"\x00\x01")
        assert (await client.next_event("error"))["code"] == "binary_not_supported"


async def test_bad_first_connect_can_be_retried(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(type="connect", config={"language": "xx"})
        error = await client.next_event("error")
        assert error["code"] == "unknown_language"
        assert "en-US" in error["details"]["available"]
        await client.send(type="connect", config={"language": "en"})
        assert (await client.next_event("connected"))["config"]["voice"] == "fake-en"


async def test_priorities_over_the_wire(server: RunningServer, engine: FakeEngine) -> None:
    engine.gate = threading.Event()
    async with ws_client(server) as client:
        await client.send(type="synthesize", text="first", request_id="a")
        await client.until("audio_start", "a")
        await client.send(type="synthesize", text="normal", request_id="b")
        await client.send(type="synthesize", text="high", request_id="c", priority="high")
        await client.until("queued", "c")
        await client.send(type="synthesize", text="alert", request_id="d", priority="critical")
        interrupted = await client.next_event("interrupted")
        assert interrupted["request_id"] == "a" and interrupted["reason"] == "preempted"
        engine.gate.set()
        await client.until("audio_end", "b")
        order = [e["request_id"] for e in client.events("audio_start")]
        assert order == ["a", "d", "c", "b"]


async def test_interrupt_leaves_nothing_after_the_reply(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.01
    async with ws_client(server) as client:
        await client.send(type="synthesize", text="One. Two. Three. Four. Five.", request_id="t")
        await client.send(type="synthesize", text="queued", request_id="q")
        while not client.audio("t"):
            await client.receive_one()
        await client.send(type="interrupt", reason="user_request")
        reply = await client.next_event("interrupted")
        assert reply == {
            "type": "interrupted",
            "request_id": "t",
            "reason": "user_request",
            "dropped": ["q"],
        }
        mark = len(client.received)
        await client.drain(0.5)
        assert client.received[mark:] == []


async def test_rest_interrupt_reaches_the_websocket_session(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.gate = threading.Event()
    async with ws_client(server) as client, rest(server) as http:
        await client.send(type="connect", config={})
        session_id = (await client.next_event("connected"))["session_id"]
        await client.send(type="synthesize", text="long", request_id="long")
        await client.send(type="synthesize", text="next", request_id="next")
        await client.until("audio_start", "long")
        response = await http.post(f"/api/v1/interrupt/{session_id}", json={"reason": "operator"})
        assert response.status_code == 200
        assert response.json() == {
            "session_id": session_id,
            "request_id": "long",
            "reason": "operator",
            "dropped": ["next"],
        }
        reply = await client.next_event("interrupted")
        assert reply["reason"] == "operator" and reply["request_id"] == "long"
        engine.gate.set()
        mark = len(client.received)
        await client.drain(0.3)
        assert client.received[mark:] == []


async def test_rest_api(server: RunningServer) -> None:
    async with rest(server) as http:
        status = (await http.get("/api/v1/status")).json()
        assert status["status"] == "ok" and status["ready"] is True
        assert status["websocket_port"] == server.websocket_port
        assert any(f["name"] == "mp3" for f in status["formats"])
        assert status["engines"][0]["name"] == "fake"
        workers = status["inference"]["workers"]
        admission = status["admission"]
        assert (admission["streams"], admission["waiting"], admission["load"]) == (0, 0, 0.0)
        assert admission["capacity"] == pytest.approx(workers * admission["bound"])

        voices = (await http.get("/api/v1/voices")).json()
        assert {v["id"] for v in voices["voices"]} == {"fake-en", "fake-es"}
        spanish = (await http.get("/api/v1/voices", params={"language": "es-MX"})).json()
        assert [v["id"] for v in spanish["voices"]] == ["fake-es"]

        created = await http.post("/api/v1/sessions", json={"config": {"language": "es"}})
        assert created.status_code == 201
        session_id = created.json()["session_id"]
        listed = (await http.get("/api/v1/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [session_id]
        one = (await http.get(f"/api/v1/sessions/{session_id}")).json()
        assert one["config"]["voice"] == "fake-es" and one["attached"] is False

        bad = await http.post("/api/v1/sessions", json={"config": {"format": "aiff"}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_format"
        bad = await http.post("/api/v1/sessions", content=b"{nope")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"

        missing = await http.post("/api/v1/interrupt/s-missing")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "unknown_session"
        assert (await http.get("/api/v1/sessions/s-missing")).status_code == 404
        assert (await http.get("/api/v1/nothing")).status_code == 404

        deleted = await http.delete(f"/api/v1/sessions/{session_id}")
        assert deleted.status_code == 200
        assert (await http.get(f"/api/v1/sessions/{session_id}")).status_code == 404

        metrics = (await http.get("/api/v1/metrics")).json()
        for key in (
            "time_to_first_audio",
            "first_response",
            "interrupt_latency",
            "queue_depths",
            "requests",
            "sessions",
            "queue_wait",
        ):
            assert key in metrics
        assert metrics["event_loop_lag"]["count"] > 0  # sampled while the server runs


async def test_websocket_attaches_to_a_rest_session(server: RunningServer) -> None:
    async with rest(server) as http:
        session_id = (
            await http.post(
                "/api/v1/sessions", json={"config": {"language": "es", "format": "wav"}}
            )
        ).json()["session_id"]
        async with ws_client(server) as client:
            await client.send(type="connect", session_id=session_id, config={"speed": 1.5})
            connected = await client.next_event("connected")
            assert connected["session_id"] == session_id
            assert connected["config"]["voice"] == "fake-es"
            assert connected["config"]["speed"] == 1.5
            async with ws_client(server) as second:
                await second.send(type="connect", session_id=session_id)
                assert (await second.next_event("error"))["code"] == "session_in_use"
                await second.send(type="connect", session_id="s-nope")
                assert (await second.next_event("error"))["code"] == "unknown_session"
            sessions = (await http.get("/api/v1/sessions")).json()["sessions"]
            assert sessions[0]["attached"] is True
        # Disconnect frees the session.
        with trio.fail_after(5):
            # Polling is the point: this is what a REST client sees.
            while (await http.get(f"/api/v1/sessions/{session_id}")).status_code != 404:  # noqa: ASYNC110
                await trio.sleep(0.02)


async def test_rest_delete_closes_the_websocket(server: RunningServer) -> None:
    async with ws_client(server) as client, rest(server) as http:
        await client.send(type="connect", config={})
        session_id = (await client.next_event("connected"))["session_id"]
        assert (await http.delete(f"/api/v1/sessions/{session_id}")).status_code == 200
        await client.drain(5)
        assert client.closed_code == 1000


async def test_disconnect_mid_stream_cancels_synthesis(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.02
    async with rest(server) as http:
        async with ws_client(server) as client:
            await client.send(type="synthesize", text=" ".join(["Word."] * 50), request_id="x")
            while not client.audio("x"):
                await client.receive_one()
        made = engine.chunks_made
        with trio.fail_after(5):
            while (await http.get("/api/v1/sessions")).json()["sessions"]:  # noqa: ASYNC110
                await trio.sleep(0.02)
        await trio.sleep(0.2)
        assert engine.chunks_made <= made + 2  # at most the chunk in flight finished
        assert engine.chunks_made < 100


async def test_a_bug_in_one_connection_closes_only_that_one(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Session.submit

    def exploding_submit(self: Session, message: object, received_at: float) -> object:
        if getattr(message, "text", "") == "BOOM":
            raise RuntimeError("simulated server bug")
        return original(self, message, received_at)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "submit", exploding_submit)
    async with ws_client(server) as healthy, ws_client(server) as doomed:
        await healthy.send(type="connect", config={})
        await healthy.next_event("connected")
        await doomed.send(type="synthesize", text="BOOM")
        await doomed.drain(5)
        assert doomed.closed_code == 1011
        await healthy.send(type="synthesize", text="fine", request_id="fine")
        await healthy.until("audio_end", "fine")
    async with ws_client(server) as fresh:
        await fresh.send(type="synthesize", text="new connection", request_id="n")
        await fresh.until("audio_end", "n")


async def test_max_connections_refuses_with_503(server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{server.websocket_port}"
    async with trio.open_nursery() as nursery:
        opened = trio.Semaphore(0)
        release = trio.Event()

        async def hold() -> None:
            async with open_websocket_url(url):
                opened.release()
                await release.wait()

        for _ in range(5):
            nursery.start_soon(hold)
        for _ in range(5):
            with trio.fail_after(10):
                await opened.acquire()
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(url):
                pass
        assert info.value.status_code == 503
        assert b"max_connections" in (info.value.body or b"")
        release.set()


async def test_shutdown_closes_websockets_with_1001(engine: FakeEngine) -> None:
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, [engine])) as server:
        async with ws_client(server) as client:
            await client.send(type="connect", config={})
            await client.next_event("connected")
            server.shutdown()
            await client.drain(5)
            assert client.closed_code == 1001


async def test_oversized_message_closes_with_1009(engine: FakeEngine) -> None:
    config = make_config(server={"max_message_bytes": 1024}, tts={"default_language": "en"})
    async with running_server(config, make_services(config, [engine])) as server:
        async with ws_client(server) as client:
            await client.send(type="synthesize", text="x" * 2000)
            await client.drain(5)
            assert client.closed_code == 1009
        async with ws_client(server) as other:  # the server goes on
            await other.send(type="synthesize", text="small", request_id="s")
            await other.until("audio_end", "s")
