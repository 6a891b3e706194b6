"""Every error code a client can cause, caused over a real socket (WebSocket, REST, OpenAI).

The protocol layer's own tests cover each rule without I/O; these check that each code
reaches the client as the documented ``error`` event, that the connection stays open
and that the same session keeps speaking afterwards (a client's mistake ends nothing).
One server (fake engine) serves every case; each case runs on its own connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from streamer.protocol import ErrorCode
from streamer.server import RunningServer
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import WAIT, Client, rest, running_server, ws_client
from tests.support.services import make_config, make_services

#: Small limits, so the limit cases need few messages.
MAX_QUEUE = 2
MAX_CONTEXTS = 2
MAX_TEXT = 200

Send = Callable[[Client], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    code: ErrorCode
    #: Sends the offending message(s) on a connected client.
    send: Send


def _message(**message: Any) -> Send:
    async def send(client: Client) -> None:
        await client.send(**message)

    return send


def _raw(frame: str | bytes) -> Send:
    async def send(client: Client) -> None:
        await client.ws.send_message(frame)

    return send


def _synth(**fields: Any) -> Send:
    return _message(type="synthesize", **{"text": "Hello there.", **fields})


def _config(**config: Any) -> Send:
    return _synth(config=config)


async def _context_after_close(client: Client) -> None:
    await client.send(type="text", context_id="c-closed", text="Hello.", flush=True)
    await client.send(type="close", context_id="c-closed")
    await client.until("audio_end", "c-closed")
    await client.send(type="text", context_id="c-closed", text="more")


#: Codes that any client can cause with one connection and an idle server.
CASES: tuple[Case, ...] = (
    Case(ErrorCode.INVALID_JSON, _raw('{"type": "synthesize", ')),
    Case(ErrorCode.BINARY_NOT_SUPPORTED, _raw(b"\x00\x01")),
    Case(ErrorCode.UNKNOWN_TYPE, _message(type="speak")),
    Case(ErrorCode.INVALID_MESSAGE, _message(type="interrupt", reason="")),
    Case(ErrorCode.MISSING_TEXT, _message(type="synthesize")),
    Case(ErrorCode.EMPTY_TEXT, _synth(text="   ")),
    Case(ErrorCode.TEXT_TOO_LONG, _synth(text="a" * (MAX_TEXT + 1))),
    Case(ErrorCode.UNKNOWN_PRIORITY, _synth(priority="urgent")),
    Case(ErrorCode.INVALID_REQUEST_ID, _synth(request_id="not an id!")),
    Case(ErrorCode.INVALID_CONFIG, _config(pitch=2)),
    Case(ErrorCode.UNKNOWN_FORMAT, _config(format="flac9")),
    Case(ErrorCode.UNSUPPORTED_SAMPLE_RATE, _config(sample_rate=1000)),
    Case(ErrorCode.INVALID_CHUNK_SIZE, _config(chunk_size=1)),
    Case(ErrorCode.INVALID_BITRATE, _config(format="wav", bitrate=64)),
    Case(ErrorCode.INVALID_VOLUME, _config(volume=9)),
    Case(ErrorCode.INVALID_SPEED, _config(speed=9)),
    Case(ErrorCode.UNKNOWN_LANGUAGE, _config(language="xx")),
    Case(ErrorCode.UNKNOWN_VOICE, _config(voice_id="no-such-voice")),
    Case(ErrorCode.UNKNOWN_SPEAKER, _config(voice_id="fake-es", speaker="nobody")),
    Case(ErrorCode.ALREADY_CONNECTED, _message(type="connect")),
    Case(ErrorCode.UNKNOWN_CONTEXT, _message(type="flush", context_id="c-never")),
    Case(ErrorCode.CONTEXT_CLOSED, _context_after_close),
)


async def _speaks(client: Client, request_id: str) -> None:
    """The session still works: a plain request plays to its end."""
    await client.send(type="synthesize", text="Still here.", request_id=request_id)
    end = await client.until("audio_end", request_id)
    assert end["chunks"] > 0


async def _error(client: Client) -> dict[str, Any]:
    return await client.next_event("error")


async def test_each_client_fault_gets_its_code_and_the_session_goes_on() -> None:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm", "max_text_length": MAX_TEXT},
        performance={"realtime_lead_ms": 0},
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as server:
        for index, case in enumerate(CASES):
            async with ws_client(server) as client:
                await client.send(type="connect")
                await client.next_event("connected")
                await case.send(client)
                error = await _error(client)
                assert error["code"] == case.code.value, (case.code, error)
                assert error["message"], error
                await _speaks(client, f"after-{index}")


async def test_limits_and_ids_while_a_request_holds_the_session() -> None:
    """``queue_full``, ``duplicate_request_id`` and ``too_many_contexts`` need a request
    that stays playing: the fake engine's gate holds inference until the test opens it."""
    config = make_config(
        tts={
            "default_language": "en",
            "default_format": "pcm",
            "max_open_contexts": MAX_CONTEXTS,
        },
        performance={"realtime_lead_ms": 0, "max_queue_size": MAX_QUEUE},
    )
    engine = FakeEngine()
    gate = threading.Event()
    engine.gate = gate
    async with running_server(config, make_services(config, [engine])) as server:
        async with ws_client(server) as client:
            await client.send(type="connect")
            await client.next_event("connected")
            await client.send(type="synthesize", text="Held.", request_id="held")
            await client.until("queued", "held")

            await client.send(type="synthesize", text="Again.", request_id="held")
            error = await _error(client)
            assert (error["code"], error["request_id"]) == ("duplicate_request_id", "held")

            for index in range(MAX_QUEUE):
                await client.send(type="synthesize", text="Wait.", request_id=f"q-{index}")
                await client.until("queued", f"q-{index}")
            await client.send(type="synthesize", text="One too many.", request_id="q-over")
            assert (await _error(client))["code"] == "queue_full"

            await client.send(type="interrupt")
            interrupted = await client.next_event("interrupted")
            assert set(interrupted["dropped"]) == {"q-0", "q-1"}

            for index in range(MAX_CONTEXTS):
                await client.send(type="text", context_id=f"c-{index}", text="Hi")
                await client.until("queued", f"c-{index}")
            await client.send(type="text", context_id="c-over", text="Hi")
            error = await _error(client)
            assert error["code"] == "too_many_contexts" and error["request_id"] == "c-over"

            # A refused context id is spent; a cancelled one is closed.
            await client.send(type="cancel", context_id="c-0")
            await client.until("interrupted", "c-0")
            await client.send(type="text", context_id="c-0", text="more")
            assert (await _error(client))["code"] == "context_closed"

            await client.send(type="interrupt")
            await client.next_event("interrupted")
            gate.set()
            await _speaks(client, "after-limits")


async def test_session_codes_across_connections() -> None:
    """``unknown_session`` and ``session_in_use``: a REST-created session attached twice."""
    config = make_config(tts={"default_language": "en", "default_format": "pcm"})
    async with running_server(config, make_services(config, [FakeEngine()])) as server:
        async with rest(server) as http:
            created = await http.post("/api/v1/sessions", json={})
            session_id = created.json()["session_id"]
        async with ws_client(server) as first, ws_client(server) as second:
            await first.send(type="connect", session_id="s-no-such-session")
            assert (await _error(first))["code"] == "unknown_session"
            await first.send(type="connect", session_id=session_id)
            assert (await first.next_event("connected"))["session_id"] == session_id
            await second.send(type="connect", session_id=session_id)
            assert (await _error(second))["code"] == "session_in_use"
            # Both connections go on: the second may still open a session of its own.
            await second.send(type="connect")
            await second.next_event("connected")
            await _speaks(first, "first-ok")
            await _speaks(second, "second-ok")


async def _status(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    reply = await http.request(method, path, **kwargs)
    body = reply.json()
    return reply.status_code, body


async def test_rest_and_openai_codes() -> None:
    """The HTTP surfaces' own codes, each with its status and a JSON body."""
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, [FakeEngine()])) as server:
        await _check_http_codes(server)


async def _check_http_codes(server: RunningServer) -> None:
    async with rest(server) as http:
        status, body = await _status(http, "GET", "/api/v1/no-such-route")
        assert (status, body["error"]["code"]) == (404, "not_found"), body
        status, body = await _status(http, "PUT", "/api/v1/voices")
        assert (status, body["error"]["code"]) == (405, "method_not_allowed"), body

        status, body = await _status(http, "GET", "/v1/models/no-such-model")
        assert body["error"]["code"] == "model_not_found" and status == 404, body

        speech = "/v1/audio/speech"
        cases: list[tuple[dict[str, Any], str]] = [
            ({"input": "Hi", "voice": "alloy"}, "missing_model"),
            ({"model": "tts-1", "input": "Hi"}, "missing_voice"),
            ({"model": "tts-1", "input": "", "voice": "alloy"}, "empty_text"),
            ({"model": "tts-1", "input": "Hi", "voice": "alloy", "instructions": 5},
             "invalid_instructions"),
            ({"model": "tts-1", "input": "Hi", "voice": "alloy", "stream_format": "x"},
             "invalid_stream_format"),
        ]
        for payload, code in cases:
            reply = await http.post(speech, content=json.dumps(payload))
            assert reply.headers["content-type"].startswith("application/json"), payload
            body = reply.json()
            assert reply.status_code == 400 and body["error"]["code"] == code, (payload, body)
        # The server still speaks afterwards.
        reply = await http.post(speech, json={"model": "tts-1", "input": "Hi", "voice": "alloy",
                                              "response_format": "wav"})
        assert reply.status_code == 200 and reply.content[:4] == b"RIFF"

        # An over-long request head: Hypercorn's refusal, in our JSON shape.
        with trio.fail_after(WAIT):
            reply = await http.get("/api/v1/status", headers={"X-Big": "a" * 70_000})
        assert reply.status_code == 431 and reply.json()["error"]["code"] == "headers_too_large"


async def test_a_server_fault_is_500_internal_error_and_the_next_request_works(
    caplog: Any,
) -> None:
    """Our own bug behind a route (here: the voice list raising) answers 500
    ``internal_error`` in the JSON shape, is logged once, and ends nothing else."""
    config = make_config(tts={"default_language": "en"})
    services = make_services(config, [FakeEngine()])
    real_listing = services.registry.listing
    calls = 0

    def broken_once(language: str | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("simulated bug in the voice list")
        return real_listing(language)

    services.registry.listing = broken_once  # type: ignore[method-assign]
    async with running_server(config, services) as server, rest(server) as http:
        reply = await http.get("/api/v1/voices")
        assert reply.status_code == 500
        assert reply.json()["error"]["code"] == "internal_error"
        assert "simulated" not in reply.text  # no internals leak to the client
        again = await http.get("/api/v1/voices")
        assert again.status_code == 200 and again.json()["count"] == 2
    logged = [r for r in caplog.records if r.exc_info and "simulated" in str(r.exc_info[1])]
    assert len(logged) == 1
