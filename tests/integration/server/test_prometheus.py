"""Observability: ``GET /metrics`` (Prometheus) and ``GET /health`` (readiness/liveness)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from streamer.client import TTSServerError, TTSStreamingClient
from streamer.config import PerformanceConfig
from streamer.server.app import RunningServer
from streamer.server.http import create_app
from streamer.server.runtime import ServerState
from streamer.server.session import SessionManager
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

WAIT = 30
#: Every sample of one scrape, by (name, labels).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[RunningServer]:
    config = make_config(tts={"default_language": "en"}, performance={"realtime_lead_ms": 0})
    async with running_server(config, make_services(config, [engine])) as running:
        yield running
    if engine.gate is not None:
        engine.gate.set()


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def scrape(server: RunningServer) -> tuple[str, Samples]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return response.headers["content-type"], samples(response.text)


async def test_metrics_count_what_happened(server: RunningServer, engine: FakeEngine) -> None:
    url = f"ws://127.0.0.1:{server.websocket_port}"
    with trio.fail_after(WAIT):
        async with TTSStreamingClient(url) as client:
            await client.connect()
            assert (await client.synthesize("Hello. World.").collect()).completed
            with pytest.raises(TTSServerError):
                await client.synthesize("x", voice_id="nobody").collect()
            engine.gate = threading.Event()
            stream = await client.submit("held back", priority="high")
            async for item in stream:
                if not isinstance(item, bytes) and type(item).__name__ == "AudioStart":
                    break
            await client.interrupt()
            engine.gate.set()

            content_type, live = await scrape(server)
            assert content_type.startswith("text/plain; version=")
            assert value(live, "tts_sessions") == 1 and value(live, "tts_connections") == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
            speech = await http.post(
                "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi."}
            )
            assert speech.status_code == 200
        while True:  # the server notices the closed connection a moment later
            _, found = await scrape(server)
            if value(found, "tts_connections") == 0:
                break
            await trio.sleep(0.02)

    assert value(found, "tts_ready") == 1
    assert value(found, "tts_sessions") == 0 and value(found, "tts_queue_depth") == 0
    assert value(found, "tts_inference_workers") >= 1
    # Every stream has ended; capacity = workers x max_inference_load (no underruns:
    # the bound never tightened).
    assert value(found, "tts_admission_streams") == 0
    assert value(found, "tts_admission_waiting") == 0
    assert value(found, "tts_admission_load") == 0
    assert value(found, "tts_admission_capacity") == pytest.approx(
        value(found, "tts_inference_workers") * PerformanceConfig().max_inference_load
    )
    assert value(found, "tts_build_info", version="0.1.0") == 1
    # WebSocket request + speech request; the interrupted one had no audio yet.
    assert value(found, "tts_time_to_first_audio_seconds_count") == 2
    assert value(found, "tts_first_response_seconds_count") == 2
    assert value(found, "tts_interrupt_latency_seconds_count") == 1
    assert value(found, "tts_queue_wait_seconds_count", priority="normal") == 1
    assert value(found, "tts_queue_wait_seconds_count", priority="high") == 1
    assert value(found, "tts_queue_wait_seconds_count", priority="critical") == 0
    assert value(found, "tts_requests_total", outcome="finished") == 2
    assert value(found, "tts_requests_total", outcome="interrupted") == 1
    assert value(found, "tts_errors_total", code="unknown_voice") == 1
    assert value(found, "tts_real_time_factor_count") == 2
    # The server samples its event loop's lag every 10 ms while it runs.
    assert value(found, "tts_event_loop_lag_seconds_count") > 0
    assert value(found, "tts_sessions_opened_total") == 1
    assert value(found, "tts_underruns_total") == 0
    # Histogram buckets are cumulative and end at +Inf = count.
    assert value(found, "tts_time_to_first_audio_seconds_bucket", le="+Inf") == 2


async def test_each_server_has_its_own_registry(engine: FakeEngine) -> None:
    config = make_config(tts={"default_language": "en"})
    with trio.fail_after(WAIT):
        async with running_server(config, make_services(config, [engine])) as one, \
                running_server(config, make_services(config, [FakeEngine()])) as two:
            async with TTSStreamingClient(f"ws://127.0.0.1:{one.websocket_port}") as client:
                await client.synthesize("only on one", realtime=False).collect()
            _, first = await scrape(one)
            _, second = await scrape(two)
    assert value(first, "tts_requests_total", outcome="finished") == 1
    assert value(second, "tts_requests_total", outcome="finished") == 0


async def test_health_is_ready_on_a_running_server(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        ready = await http.get("/health")
        live = await http.get("/health/live")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "ready": True}
    assert live.status_code == 200 and live.json()["ready"] is True


async def test_health_is_503_until_models_are_loaded() -> None:
    config = make_config()
    manager = SessionManager(make_services(config, [FakeEngine()]))
    app = create_app(manager, ServerState())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        readiness = await client.get("/health")
        liveness = await client.get("/health/live")
        speech = await client.post(
            "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "hi"}
        )
        scraped = await client.get("/metrics")
        assert readiness.status_code == 503
        assert await readiness.get_json() == {"status": "starting", "ready": False}
        assert liveness.status_code == 200
        assert speech.status_code == 503 and speech.headers["Retry-After"] == "1"
        assert (await speech.get_json())["error"]["code"] == "not_ready"
        assert value(samples(await scraped.get_data(as_text=True)), "tts_ready") == 0
