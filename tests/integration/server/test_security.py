"""Security over real sockets: API keys, tokens, origins, per-key quotas and ownership
on the WebSocket handshake, the REST routes and the OpenAI API (protocol_docs/security.md).

The server runs in the test's Trio loop with the fake engine; the OpenAI SDK, being
synchronous, runs in worker threads.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import openai
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from streamer.config import ConfigError
from streamer.server.app import RunningServer, run_server
from streamer.server.security import TokenSigner, key_digest
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import WAIT, Client, running_server
from tests.support.services import make_config, make_services

T = TypeVar("T")

KEY_A = "tts_test-key-of-a"
KEY_B = "tts_test-key-of-b"
KEY_ADMIN = "tts_test-key-of-the-admin"
KEY_SLOW = "tts_test-key-with-a-char-limit"
SECRET = "a-token-secret-of-at-least-32-characters"
#: A page origin listed in ``security.allowed_origins``.
APP_ORIGIN = "https://app.example.com"
#: ``chars_per_minute`` of KEY_SLOW, and the window the test shortens it to.
SLOW_CHARS = 40
SHORT_WINDOW_S = 1.0


def entry(key: str, key_id: str, **limits: object) -> dict[str, object]:
    return {"id": key_id, "sha256": key_digest(key).hex(), **limits}


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en"},
        security={
            "api_keys": [
                entry(KEY_A, "a", max_sessions=2),
                entry(KEY_B, "b"),
                entry(KEY_ADMIN, "boss", admin=True),
                entry(KEY_SLOW, "slow", chars_per_minute=SLOW_CHARS),
            ],
            "token_secret": SECRET,
            "allowed_origins": [APP_ORIGIN],
        },
    )
    services = make_services(config, [FakeEngine()])
    # A minute is the rule; the test waits out a second instead.
    services.security.quotas.window_s = SHORT_WINDOW_S
    async with running_server(config, services) as running:
        yield running


def ws_url(server: RunningServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.websocket_port}{path}"


def rest(server: RunningServer, key: str | None = None, **headers: str) -> httpx.AsyncClient:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", timeout=WAIT, headers=headers
    )


@asynccontextmanager
async def connected(
    server: RunningServer,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    path: str = "/",
) -> AsyncIterator[Client]:
    """An admitted WebSocket with a session (``connected`` received)."""
    with trio.fail_after(WAIT):
        async with open_websocket_url(
            ws_url(server, path), extra_headers=headers, subprotocols=subprotocols
        ) as ws:
            client = Client(ws)
            await client.send(type="connect", config={"format": "pcm"})
            await client.next_event("connected")
            yield client


async def refused(
    server: RunningServer,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    path: str = "/",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The handshake's refusal: status, headers (lower-case names), JSON body."""
    with trio.fail_after(WAIT), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(
            ws_url(server, path), extra_headers=headers, subprotocols=subprotocols
        ):
            pass
    error = rejected.value
    names = {k.decode().lower(): v.decode() for k, v in error.headers}
    return error.status_code, names, json.loads(error.body or b"{}")


async def token_for(server: RunningServer, key: str) -> str:
    async with rest(server, key) as http:
        reply = await http.post("/api/v1/tokens")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert 0 < body["expires_in"] <= 60
    token: str = body["token"]
    return token


async def speak(client: Client, text: str, request_id: str) -> dict[str, Any]:
    """Send a request; its ``queued`` reply, or the ``error`` event that refused it."""
    await client.send(type="synthesize", text=text, request_id=request_id)
    while True:
        event = await client.next_event()
        if event.get("request_id") == request_id and event["type"] in ("queued", "error"):
            return event


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(WAIT):
        return await trio.to_thread.run_sync(fn)


def sdk(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1",
        api_key=key,
        max_retries=0,
        timeout=WAIT,
    )


# --- the WebSocket handshake -----------------------------------------------------------


async def test_a_websocket_without_a_good_credential_gets_401(server: RunningServer) -> None:
    good = await token_for(server, KEY_A)
    payload, signature = good.split(".")
    tampered = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
    expired, _ = TokenSigner(SECRET.encode(), 60).issue("a", time.time() - 3600)
    attempts: list[dict[str, Any]] = [
        {},  # nothing
        {"headers": bearer("tts_not-a-key-of-ours")},
        {"headers": [(b"authorization", f"Basic {KEY_A}".encode())]},
        {"subprotocols": ["tts.v1", f"tts.token.{expired}"]},
        {"subprotocols": ["tts.v1", f"tts.token.{tampered}"]},
        {"path": f"/?token={tampered}"},
        {"path": f"/?token={KEY_A}"},  # a key never goes in a URL
        {"subprotocols": ["tts.v1", f"tts.token.{KEY_A}"]},
    ]
    for attempt in attempts:
        status, headers, body = await refused(server, **attempt)
        assert status == 401, attempt
        assert body["error"]["code"] == "unauthorized"
        assert headers["www-authenticate"].startswith("Bearer")
        assert KEY_A not in json.dumps(body)
    _, _, body = await refused(server, subprotocols=["tts.v1", f"tts.token.{expired}"])
    assert "expired" in body["error"]["message"]


async def test_a_key_by_header_a_token_by_subprotocol_or_query_all_work(
    server: RunningServer,
) -> None:
    async with connected(server, headers=bearer(KEY_A)) as client:
        assert (await speak(client, "By header.", "h"))["type"] == "queued"
        await client.until("audio_end", "h")
    async with connected(server, headers=[(b"x-api-key", KEY_B.encode())]) as client:
        assert (await speak(client, "By x-api-key.", "x"))["type"] == "queued"
    token = await token_for(server, KEY_A)
    async with connected(server, subprotocols=["tts.v1", f"tts.token.{token}"]) as client:
        assert client.ws.subprotocol == "tts.v1"  # the token is never echoed
        assert (await speak(client, "By subprotocol.", "s"))["type"] == "queued"
        await client.until("audio_end", "s")
    async with connected(server, path=f"/?token={token}") as client:
        assert (await speak(client, "By query.", "q"))["type"] == "queued"
    async with connected(server, headers=bearer(token)) as client:  # a token as Bearer
        assert client.ws.subprotocol is None


async def test_origins(server: RunningServer) -> None:
    evil = [*bearer(KEY_A), (b"origin", b"https://evil.example")]
    status, _, body = await refused(server, headers=evil)
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    # A page elsewhere cannot even learn whether a token is good.
    token = await token_for(server, KEY_A)
    status, _, _ = await refused(
        server,
        headers=[(b"origin", b"https://evil.example")],
        subprotocols=["tts.v1", f"tts.token.{token}"],
    )
    assert status == 403
    own_page = f"http://127.0.0.1:{server.http_port}".encode()
    for origin in (own_page, APP_ORIGIN.encode()):
        async with connected(server, headers=[*bearer(KEY_A), (b"origin", origin)]) as client:
            assert (await speak(client, "From a page.", "p"))["type"] == "queued"

    async with rest(server, KEY_A, Origin="https://evil.example") as http:
        reply = await http.get("/api/v1/voices")
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in reply.headers
    async with rest(server, KEY_A, Origin=APP_ORIGIN) as http:
        reply = await http.get("/api/v1/voices")
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == APP_ORIGIN
        preflight = await http.options(
            "/v1/audio/speech",
            headers={
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        unauthorized = await http.get("/api/v1/voices", headers={"Authorization": "Bearer x"})
        assert unauthorized.status_code == 401  # and the page may read why:
        assert unauthorized.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_max_sessions_plus_one_is_429_until_one_ends(server: RunningServer) -> None:
    async with connected(server, headers=bearer(KEY_A)), connected(
        server, headers=bearer(KEY_A)
    ) as second:
        status, headers, body = await refused(server, headers=bearer(KEY_A))
        assert status == 429 and body["error"]["code"] == "too_many_sessions"
        assert int(headers["retry-after"]) >= 1
        # Another key is not affected; nor is the OpenAI API of another key.
        async with connected(server, headers=bearer(KEY_B)):
            pass
        # A speech request is a session too.
        with pytest.raises(openai.RateLimitError) as limited:
            await in_thread(
                lambda: sdk(server, KEY_A).audio.speech.create(
                    model="tts-1", voice="alloy", input="One more."
                )
            )
        assert limited.value.status_code == 429
        assert limited.value.body["code"] == "too_many_sessions"  # type: ignore[index]
        await second.ws.aclose()
        async with connected(server, headers=bearer(KEY_A)) as third:
            assert (await speak(third, "Room again.", "r"))["type"] == "queued"


async def test_over_chars_per_minute_is_rate_limited_and_the_session_goes_on(
    server: RunningServer,
) -> None:
    async with connected(server, headers=bearer(KEY_SLOW)) as client:
        first = "Thirty characters of text, ok."
        assert (await speak(client, first, "r1"))["type"] == "queued"
        refusal = await speak(client, first, "r2")
        assert refusal["type"] == "error" and refusal["code"] == "rate_limited"
        retry_ms = refusal["details"]["retry_after_ms"]
        assert 0 < retry_ms <= SHORT_WINDOW_S * 1000
        await client.until("audio_end", "r1")
        # The hint is the answer: after it, the same text fits again, same session.
        await trio.sleep(retry_ms / 1000)
        assert (await speak(client, first, "r3"))["type"] == "queued"
        await client.until("audio_end", "r3")
    # The OpenAI API shares the budget (and says 429 with Retry-After).
    with pytest.raises(openai.RateLimitError) as limited:
        await in_thread(
            lambda: sdk(server, KEY_SLOW).audio.speech.create(
                model="tts-1", voice="alloy", input="x" * (SLOW_CHARS + 1)
            )
        )
    assert limited.value.body["code"] == "rate_limited"  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_a_key_sees_only_its_sessions_and_an_admin_all(server: RunningServer) -> None:
    async with connected(server, headers=bearer(KEY_A)) as mine, rest(server, KEY_B) as other:
        session_id = mine.received[-1]["session_id"]
        listed = (await other.get("/api/v1/sessions")).json()["sessions"]
        assert session_id not in [s["session_id"] for s in listed]
        for method, path in (
            ("GET", f"/api/v1/sessions/{session_id}"),
            ("POST", f"/api/v1/interrupt/{session_id}"),
            ("DELETE", f"/api/v1/sessions/{session_id}"),
        ):
            reply = await other.request(method, path)
            # 404 as for an id that does not exist: B is not told it exists.
            assert reply.status_code == 404, (method, path)
            assert reply.json()["error"]["code"] == "unknown_session"
        async with open_websocket_url(ws_url(server), extra_headers=bearer(KEY_B)) as ws:
            intruder = Client(ws)
            await intruder.send(type="connect", session_id=session_id)
            error = await intruder.next_event("error")
            assert error["code"] == "unknown_session"

        async with rest(server, KEY_A) as owner:
            created = (await owner.post("/api/v1/sessions", json={})).json()["session_id"]
            listed = (await owner.get("/api/v1/sessions")).json()["sessions"]
            assert {session_id, created} <= {s["session_id"] for s in listed}
        assert (await other.get(f"/api/v1/sessions/{created}")).status_code == 404

        async with rest(server, KEY_ADMIN) as admin:
            listed = (await admin.get("/api/v1/sessions")).json()["sessions"]
            assert {session_id, created} <= {s["session_id"] for s in listed}
            assert (await admin.get(f"/api/v1/sessions/{session_id}")).status_code == 200
            reply = await admin.post(f"/api/v1/interrupt/{session_id}", json={"reason": "ops"})
            assert reply.status_code == 200
            assert (await mine.next_event("interrupted"))["reason"] == "ops"
            assert (await admin.delete(f"/api/v1/sessions/{session_id}")).status_code == 200
        await mine.drain(WAIT)  # until the server's close
        assert mine.closed_code == 1000


async def test_rest_routes_need_a_key_except_the_open_ones(server: RunningServer) -> None:
    async with rest(server) as anonymous:
        for path in ("/api/v1/status", "/api/v1/voices", "/api/v1/sessions", "/api/v1/metrics",
                     "/metrics", "/openapi.json", "/v1/models", "/no/such/route"):
            reply = await anonymous.get(path)
            assert reply.status_code == 401, path
            assert reply.headers["www-authenticate"].startswith("Bearer")
        for path in ("/health", "/health/live", "/", "/web/app.js"):
            assert (await anonymous.get(path)).status_code == 200, path
        assert (await anonymous.post("/api/v1/tokens")).status_code == 401
    async with rest(server, "tts_wrong") as wrong:
        reply = await wrong.get("/api/v1/status")
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"
    async with rest(server, **{"X-Api-Key": KEY_A}) as by_header:
        assert (await by_header.get("/api/v1/status")).status_code == 200
    token = await token_for(server, KEY_A)
    async with rest(server, token) as by_token:
        assert (await by_token.get("/api/v1/voices")).status_code == 200
        refused_token = await by_token.post("/api/v1/tokens")  # a token cannot renew itself
        assert refused_token.status_code == 401


async def test_an_early_401_does_not_stall_the_next_request_on_the_connection(
    server: RunningServer,
) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello there. " * 200}
    async with rest(server) as http:  # one keep-alive connection
        for _ in range(5):
            reply = await http.post("/v1/audio/speech", json=body)
            assert reply.status_code == 401
            # OpenAI's shape on OpenAI's routes, so the SDK raises AuthenticationError.
            assert reply.json()["error"]["code"] == "unauthorized"
        good = await http.post(
            "/v1/audio/speech",
            json={**body, "input": "Fine.", "response_format": "wav"},
            headers={"Authorization": f"Bearer {KEY_A}"},
        )
        assert good.status_code == 200 and good.content[:4] == b"RIFF"


async def test_the_openai_sdk_authenticates_with_its_api_key(server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        await in_thread(lambda: sdk(server, "tts_wrong").models.list())
    speech = await in_thread(
        lambda: sdk(server, KEY_B).audio.speech.create(
            model="tts-1", voice="alloy", input="Hello.", response_format="wav"
        )
    )
    assert speech.content[:4] == b"RIFF"


async def test_public_metrics_and_docs_when_configured() -> None:
    config = make_config(
        security={
            "api_keys": [entry(KEY_A, "a")],
            "public_metrics": True,
            "public_docs": True,
        }
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        async with rest(running) as anonymous:
            assert (await anonymous.get("/metrics")).status_code == 200
            assert (await anonymous.get("/openapi.json")).status_code == 200
            assert (await anonymous.get("/api/v1/metrics")).status_code == 401


async def test_a_network_address_without_keys_refuses_to_start() -> None:
    config = make_config(server={"host": "0.0.0.0"})
    with trio.fail_after(WAIT), pytest.raises(ConfigError, match=r"server\.host"):
        await run_server(config, services=make_services(config, [FakeEngine()]))


async def test_without_keys_on_loopback_nothing_asks_for_one() -> None:
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        async with connected(running) as client:
            assert (await speak(client, "Open.", "o"))["type"] == "queued"
        async with rest(running) as http:
            assert (await http.get("/api/v1/sessions")).status_code == 200
            # A page elsewhere still may not drive a local server from a visitor's browser.
            evil = await http.get("/api/v1/status", headers={"Origin": "http://evil.example"})
            assert evil.status_code == 403
        status, _, _ = await refused(running, headers=[(b"origin", b"http://evil.example")])
        assert status == 403
