"""MeloTTS through the whole server: config → engines → WebSocket, on the tiny
random-weight checkpoint (noise, not speech: plumbing, not intelligibility)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from streamer.server import RunningServer
from streamer.testing import TINY_SAMPLE_RATE, checkpoint_dir
from tests.support.audio_streams import decode_streamed
from tests.support.server_harness import Client, production_server, ws_client

pytestmark = [
    pytest.mark.melo,
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

SPANISH_SHORT = "Hola, amigo."
SPANISH_LONG = "Hola, amigo. Hoy hace un tiempo precioso. ¿Damos un paseo por el parque?"
ENGLISH = "Hello there, my friend. The weather is lovely today."


@pytest.fixture
async def server(tiny_melo_root: Path) -> AsyncIterator[RunningServer]:
    melo = {
        "enabled": True,
        "languages": ["EN", "ES"],
        "checkpoint_dir": str(checkpoint_dir(tiny_melo_root)),
        "device": "cpu",
    }
    async with production_server(
        warm_up=False, tts={"default_language": "es", "melo": melo}
    ) as running:
        yield running


async def say(client: Client, text: str, request_id: str, language: str) -> np.ndarray:
    await client.send(
        type="synthesize",
        text=text,
        request_id=request_id,
        config={"language": language, "format": "wav"},
    )
    await client.until("audio_end", request_id)
    start = next(e for e in client.events("audio_start") if e["request_id"] == request_id)
    assert start["voice"].startswith("melo-")
    assert start["sample_rate"] == TINY_SAMPLE_RATE
    audio, rate = decode_streamed(client.audio(request_id))
    assert rate == TINY_SAMPLE_RATE
    return audio


async def test_melo_speaks_spanish_and_english_over_websocket(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(type="connect", config={"language": "es"})
        connected = await client.next_event("connected")
        assert connected["config"]["engine"] == "melo"  # neural before espeak
        short = await say(client, SPANISH_SHORT, "es-short", "es")
        long = await say(client, SPANISH_LONG, "es-long", "es")
        english = await say(client, ENGLISH, "en", "en-US")
        for audio in (short, long, english):
            assert audio.size > 0 and np.all(np.isfinite(audio))
        assert len(long) > 1.5 * len(short)


async def test_melo_request_is_cancellable_between_sentences(server: RunningServer) -> None:
    async with ws_client(server) as client:
        await client.send(
            type="synthesize",
            text=SPANISH_LONG * 4,
            request_id="long",
            config={"language": "es", "format": "pcm"},
        )
        reply = await client.interrupt_once_audio_flows("long", quiet_s=1.0)
        assert reply["request_id"] == "long"
        assert not client.events("audio_end")
