"""The OpenAI-compatible speech API, driven by the official ``openai`` package.

The SDK is synchronous (httpx), so each call runs in a worker thread while the server
runs in the test's Trio loop.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import openai
import pytest
import trio

from streamer.engines.base import Voice
from streamer.server.app import RunningServer
from streamer.server.http import OPENAI_SAMPLE_RATE, OPENAI_VOICES, openai_voice_map
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

WAIT = 30
T = TypeVar("T")


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


@pytest.fixture
async def server(engine: FakeEngine) -> AsyncIterator[RunningServer]:
    config = make_config(tts={"default_language": "es"})
    async with running_server(config, make_services(config, [engine])) as running:
        yield running


def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.http_port}/v1",
        api_key="dummy",
        max_retries=0,
        timeout=WAIT,
    )


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(WAIT):
        return await trio.to_thread.run_sync(fn)


async def test_wav_is_24_khz_whatever_the_voice_rate(server: RunningServer) -> None:
    client = sdk(server)
    response = await in_thread(
        lambda: client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello world.", response_format="wav"
        )
    )
    data = response.content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[24:28])[0] == OPENAI_SAMPLE_RATE != FAKE_RATE
    assert response.response.headers["x-voice"] == "fake-en"


async def test_pcm_is_raw_24_khz_s16le(server: RunningServer) -> None:
    client = sdk(server)
    response = await in_thread(
        lambda: client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="nova", input="Hello world.", response_format="pcm",
            instructions="Speak cheerfully.",  # accepted, ignored
        )
    )
    # The fake engine speaks one segment as 2 chunks of 50 ms: 0.1 s at 24 kHz, 16-bit.
    expected = round(0.1 * OPENAI_SAMPLE_RATE) * 2
    assert abs(len(response.content) - expected) <= 200 and len(response.content) % 2 == 0


async def test_mp3_is_the_default_and_our_voice_ids_work(server: RunningServer) -> None:
    client = sdk(server)
    response = await in_thread(
        lambda: client.audio.speech.create(model="tts-1", voice="fake-es", input="Hola.")
    )
    data = response.content
    assert data[0] == 0xFF and data[1] & 0xE0 == 0xE0
    assert response.response.headers["content-type"] == "audio/mpeg"
    assert response.response.headers["x-voice"] == "fake-es"


async def test_audio_streams_as_it_is_synthesized(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.03  # 40 chunks: the whole text takes over a second
    text = " ".join(["Word."] * 20)
    client = sdk(server)

    def stream() -> tuple[float, float, int, str]:
        started = time.monotonic()
        first: float | None = None
        total = 0
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm"
        ) as response:
            for chunk in response.iter_bytes():
                if first is None:
                    first = time.monotonic() - started
                total += len(chunk)
            content_type = response.headers["content-type"]
        assert first is not None
        return first, time.monotonic() - started, total, content_type

    first, whole, total, content_type = await in_thread(stream)
    assert content_type.startswith("audio/pcm")
    assert total == pytest.approx(20 * 0.1 * OPENAI_SAMPLE_RATE * 2, rel=0.02)
    assert first < whole / 3, (first, whole)


async def test_server_sent_events_carry_the_same_audio(server: RunningServer) -> None:
    client = sdk(server)
    text = "One. Two. Three."
    plain = await in_thread(
        lambda: client.audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm"
        ).content
    )

    def events() -> tuple[str, list[dict[str, Any]]]:
        with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=text, response_format="pcm",
            stream_format="sse",
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
            return response.headers["content-type"], [json.loads(line[6:]) for line in lines]

    content_type, received = await in_thread(events)
    assert content_type.startswith("text/event-stream")
    assert [e["type"] for e in received[:-1]] == ["speech.audio.delta"] * (len(received) - 1)
    assert received[-1] == {"type": "speech.audio.done"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in received[:-1])
    assert audio == plain


@pytest.mark.parametrize(
    ("overrides", "code", "param"),
    [
        ({"input": ""}, "empty_text", "input"),
        ({"input": "   "}, "empty_text", "input"),
        ({"voice": "darth"}, "unknown_voice", "voice"),
        ({"response_format": "ogg"}, "unknown_format", "response_format"),
        ({"speed": 4.0}, "invalid_speed", "speed"),
        ({"speed": 0.25}, "invalid_speed", "speed"),
        ({"stream_format": "jsonl"}, "invalid_stream_format", "stream_format"),
        ({"input": "x" * 5001}, "text_too_long", "input"),
    ],
)
async def test_bad_input_is_a_bad_request_error(
    server: RunningServer, overrides: dict[str, Any], code: str, param: str
) -> None:
    client = sdk(server)
    arguments: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "Hi."} | overrides

    def call() -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.speech.create(**arguments)
        return info.value

    error = await in_thread(call)
    assert error.status_code == 400
    assert error.code == code and error.param == param
    assert error.type == "invalid_request_error" and error.message


async def test_aac_is_adts(server: RunningServer) -> None:
    client = sdk(server)
    audio = await in_thread(
        lambda: client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hi.", response_format="aac"
        ).content
    )
    assert audio[0] == 0xFF and audio[1] & 0xF0 == 0xF0  # ADTS sync word


async def test_unknown_voice_lists_the_choices(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        response = await http.post(
            "/v1/audio/speech", json={"model": "tts-1", "voice": "darth", "input": "hi"}
        )
    message = response.json()["error"]["message"]
    assert "alloy" in message and "fake-es" in message


async def test_overload_is_503_with_retry_after(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.manager.services.inference, "lateness", lambda: 4.2)
    client = sdk(server)

    def call() -> openai.InternalServerError:
        with pytest.raises(openai.InternalServerError) as info:
            client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
        return info.value

    error = await in_thread(call)
    assert error.status_code == 503 and error.code == "busy"
    assert error.response.headers["retry-after"] == "5"


async def test_synthesis_failure_before_audio_is_a_500(server: RunningServer) -> None:
    client = sdk(server)

    def call() -> openai.InternalServerError:
        with pytest.raises(openai.InternalServerError) as info:
            client.audio.speech.create(model="tts-1", voice="alloy", input="FAIL now")
        return info.value

    error = await in_thread(call)
    assert error.status_code == 500 and error.code == "synthesis_failed"


async def test_a_client_that_disconnects_stops_synthesis(
    server: RunningServer, engine: FakeEngine
) -> None:
    engine.delay = 0.02
    text = " ".join(["Word."] * 100)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        with trio.fail_after(WAIT):
            async with http.stream(
                "POST", "/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"},
            ) as response:
                async for _ in response.aiter_raw():
                    break
    metrics = server.manager.services.metrics
    with trio.fail_after(WAIT):
        while True:
            if metrics.requests["abandoned"]:
                break
            await trio.sleep(0.02)
    made = engine.chunks_made
    await trio.sleep(0.3)
    assert engine.chunks_made <= made + 1 and made < 200


async def test_models_and_voices(server: RunningServer) -> None:
    client = sdk(server)
    models = await in_thread(lambda: [m.id for m in client.models.list()])
    assert "tts-1" in models and "gpt-4o-mini-tts" in models
    assert (await in_thread(lambda: client.models.retrieve("tts-1"))).owned_by

    def missing() -> openai.NotFoundError:
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("dall-e-9")
        return info.value

    assert (await in_thread(missing)).code == "model_not_found"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        voices = (await http.get("/v1/audio/voices")).json()
    by_id = {v["id"]: v for v in voices["data"]}
    assert set(OPENAI_VOICES) < set(by_id)
    assert by_id["alloy"]["voice_id"] == "fake-en" and by_id["fake-es"]["type"] == "builtin"


def test_openai_voices_map_round_robin_onto_neural_english_voices() -> None:
    voices = [
        Voice("en-a", "fake", "en-US", "A", 16000, "high", True),
        Voice("en-b", "fake", "en-GB", "B", 16000, "medium", True, speakers=("p1", "p2")),
        Voice("en-robot", "fake", "en", "Robot", 16000, "fallback", False),
        Voice("es-a", "fake", "es", "Ana", 16000, "high", True),
    ]
    config = make_config()
    mapping = openai_voice_map(make_services(config, [FakeEngine(voices=voices)]))
    pairs = [(m.name, m.voice.id, m.speaker) for m in mapping]
    assert pairs[:4] == [
        ("alloy", "en-a", None),
        ("ash", "en-b", "p1"),
        ("ballad", "en-b", "p2"),
        ("coral", "en-a", None),
    ]
    assert len(pairs) == len(OPENAI_VOICES)
    assert all(voice != "en-robot" for _, voice, _ in pairs)


def test_without_english_voices_openai_names_map_to_nothing() -> None:
    spanish = [Voice("es-a", "fake", "es", "Ana", 16000, "high", True)]
    config = make_config()
    assert openai_voice_map(make_services(config, [FakeEngine(voices=spanish)])) == []
