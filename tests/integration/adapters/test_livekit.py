"""The LiveKit Agents adapter (``streamer/adapters/livekit``) through LiveKit's own TTS
API, against our real server with the Piper voice: ``tts.stream()`` fed token by token
at an LLM's pace, ``tts.synthesize()``, and a stream closed mid-way.

Marked slow: a real model, Whisper, and as much wall time as the speech."""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import trio

from streamer.server import RunningServer, build_services
from tests.support.server_harness import rest, running_server
from tests.support.services import make_config

pytest.importorskip("livekit.agents")

from livekit.agents import tts as lk_tts
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT, TimedString

from streamer.adapters.livekit import StreamerTTS
from tests.support.llm_text import llm_tokens, normalized_words

pytestmark = pytest.mark.slow

#: LiveKit's usual rate, not the voice's 22 050 Hz: the server resamples on the way.
RATE = 24000
TOKENS_PER_S = 30
#: Bound on the asyncio side of one test (the speech itself takes a few seconds).
WAIT_S = 60.0
#: No names or titles: Whisper tiny writes "Doctor Alvarez at" its own way.
ANSWER = (
    "Sure, I can help with that. Your next appointment is on Thursday afternoon, at the "
    "clinic downtown. Would you like a reminder the evening before?"
)


def heard_enough(audio: bytes, text: str) -> tuple[bool, list[str]]:
    """Whether Whisper hears 90 % of ``text``'s words in ``audio`` (PCM16 at RATE)."""
    from tests.support.asr import transcribe

    pcm = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768
    heard = transcribe(pcm, RATE).split()
    said = normalized_words(text)
    matcher = difflib.SequenceMatcher(a=said, b=heard, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks()) >= 0.9 * len(said), heard


async def collect(events: Any) -> tuple[bytes, list[TimedString]]:
    audio: list[bytes] = []
    timed: list[TimedString] = []
    async for event in events:
        assert isinstance(event, lk_tts.SynthesizedAudio)
        assert event.frame.sample_rate == RATE and event.frame.num_channels == 1
        audio.append(event.frame.data.tobytes())
        timed += event.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])
    return b"".join(audio), timed


async def feed(stream: lk_tts.SynthesizeStream, text: str) -> None:
    for token in llm_tokens(text):
        stream.push_text(token)
        await asyncio.sleep(1 / TOKENS_PER_S)
    stream.end_input()


def run(url: str, scenario: Callable[[StreamerTTS], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        tts = StreamerTTS(url=url, language="en", sample_rate=RATE)
        try:
            return await asyncio.wait_for(scenario(tts), WAIT_S)
        finally:
            await tts.aclose()

    return asyncio.run(main())


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en"},
        performance={"preload_models": True, "warm_up": True},
    )
    async with running_server(config, build_services(config)) as running:
        yield running


def _url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.websocket_port}"


async def test_capabilities() -> None:
    tts = StreamerTTS(url="ws://127.0.0.1:9")
    assert tts.capabilities.streaming and tts.capabilities.aligned_transcript
    assert tts.sample_rate == 24000 and tts.num_channels == 1


async def test_a_stream_fed_token_by_token_yields_audio_and_timed_words(
    server: RunningServer,
) -> None:
    async def scenario(tts: StreamerTTS) -> tuple[bytes, list[TimedString]]:
        stream = tts.stream()
        feeder = asyncio.create_task(feed(stream, ANSWER))
        async with stream:
            out = await collect(stream)
        await feeder
        return out

    audio, timed = await trio.to_thread.run_sync(run, _url(server), scenario)

    ok, heard = heard_enough(audio, ANSWER)
    assert ok, " ".join(heard)
    # The timed strings add up to the text as pushed, each word timed, in order,
    # inside the audio.
    assert "".join(timed) == ANSWER
    starts = [t.start_time for t in timed]
    assert all(isinstance(s, float) for s in starts) and starts == sorted(starts)
    assert all(t.end_time >= t.start_time for t in timed)  # type: ignore[operator]
    assert timed[-1].end_time <= len(audio) / 2 / RATE + 0.05  # type: ignore[operator]
    assert normalized_words(" ".join(timed)) == normalized_words(ANSWER)


async def test_synthesize_speaks_one_request(server: RunningServer) -> None:
    text = "Your appointment is confirmed for Thursday."

    async def scenario(tts: StreamerTTS) -> tuple[bytes, list[TimedString]]:
        async with tts.synthesize(text) as chunked:
            return await collect(chunked)

    audio, timed = await trio.to_thread.run_sync(run, _url(server), scenario)
    ok, heard = heard_enough(audio, text)
    assert ok, " ".join(heard)
    assert normalized_words("".join(timed)) == normalized_words(text)


async def test_closing_a_stream_mid_way_cancels_its_context(server: RunningServer) -> None:
    long_answer = " ".join([ANSWER] * 4)
    after = "Fine, I will stop here."

    async def scenario(tts: StreamerTTS) -> dict[str, Any]:
        stream = tts.stream()
        feeder = asyncio.create_task(feed(stream, long_answer))
        received = 0
        async for event in stream:
            received += len(event.frame.data.tobytes())
            if received >= RATE * 2:  # a second of PCM16: the user barges in
                break
        await stream.aclose()
        feeder.cancel()
        # The pooled connection speaks the next stream, and only it.
        stream = tts.stream()
        stream.push_text(after)
        stream.end_input()
        async with stream:
            audio, timed = await collect(stream)
        return {"audio": audio, "timed": timed}

    out = await trio.to_thread.run_sync(run, _url(server), scenario)
    ok, heard = heard_enough(out["audio"], after)
    assert ok and len(heard) <= len(normalized_words(after)) + 1, heard
    assert "".join(out["timed"]) == after

    # The server saw the cancel: the first context ended interrupted, by a cancel.
    async with rest(server) as http:
        metrics = (await http.get("/api/v1/metrics")).json()
    assert metrics["requests"].get("interrupted") == 1
    assert metrics["requests"].get("finished") == 1
