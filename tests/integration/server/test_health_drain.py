"""``/health`` as a load balancer reads it (503 when full or draining) and the drain
itself, on one in-process server over the fake engine (the cluster tests drain a real
replica with SIGTERM behind HAProxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from streamer.server.app import RunningServer
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import Client, rest, running_server
from tests.support.services import make_config, make_services

WAIT_S = 20.0
POLL_S = 0.01


async def health_becomes(http: httpx.AsyncClient, status: int) -> dict[str, object]:
    """Poll ``/health`` until it answers ``status``; its body."""
    with trio.fail_after(WAIT_S):
        while True:
            reply = await http.get("/health")
            if reply.status_code == status:
                body: dict[str, object] = reply.json()
                return body
            await trio.sleep(POLL_S)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        server={"max_connections": 2, "drain_timeout_s": 30},
        performance={"realtime_lead_ms": 200},
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


async def test_health_is_503_full_while_every_connection_slot_is_taken(
    server: RunningServer,
) -> None:
    url = f"ws://127.0.0.1:{server.websocket_port}"
    async with rest(server) as http:
        assert (await http.get("/health")).status_code == 200
        async with open_websocket_url(url), open_websocket_url(url):
            assert await health_becomes(http, 503) == {"status": "full", "ready": True}
        assert (await health_becomes(http, 200))["status"] == "ok"


async def test_a_drain_refuses_new_sessions_and_lets_live_ones_finish(
    server: RunningServer,
) -> None:
    url = f"ws://127.0.0.1:{server.websocket_port}"
    async with rest(server) as http, open_websocket_url(url) as socket:
        speaker = Client(socket)
        await speaker.send(type="synthesize", text="One. Two. Three.", request_id="live")
        await speaker.next_event("audio_start")
        server.drain()
        assert (await health_becomes(http, 503))["status"] == "draining"
        created = await http.post("/api/v1/sessions", json={})
        assert created.status_code == 503
        assert created.json()["error"]["code"] == "draining"
        assert created.headers["Retry-After"] == "1"
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(url):
                pass
        assert refused.value.status_code == 503
        # The live request is spoken to its end, then the connection is let go.
        await speaker.until("audio_end", "live")
        await speaker.drain(WAIT_S)
        assert speaker.closed_code == 1001
        assert speaker.close_reason == "server draining"
    # With its last connection gone the drain is over: the server stops by itself.
    with trio.fail_after(WAIT_S):
        await server.stopped.wait()
