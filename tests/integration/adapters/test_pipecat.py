"""The Pipecat adapter (``streamer/adapters/pipecat``) inside a real Pipecat pipeline,
against our real server with the Piper voice: LLM text frames in, token by token at an
LLM's pace; played audio, timed words and the assistant context out.

The pipeline has no network transport. Its output is :class:`Speaker`, a Pipecat output
transport whose "sound card" takes each 20 ms chunk in real time: Pipecat's own clock
then releases each word frame when its audio plays, as a real transport would, so the
assistant context holds what a listener heard. Marked slow: a real model, Whisper, and
as much wall time as the speech."""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import trio

from streamer.server import RunningServer, build_services
from tests.support.server_harness import rest, running_server
from tests.support.services import make_config

pipecat = pytest.importorskip("pipecat")

from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMAssistantAggregator,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.tts_service import TextAggregationMode  # noqa: E402
from pipecat.transports.base_output import BaseOutputTransport  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from streamer.adapters.pipecat import StreamerTTSService  # noqa: E402
from tests.support.llm_text import llm_tokens, normalized_words  # noqa: E402

pytestmark = pytest.mark.slow

#: The pipeline's output rate: Pipecat's usual 16 kHz, not the voice's 22 050 Hz, so
#: the server's resampling to the pipeline's rate is on the path.
RATE = 16000
#: An LLM's pace: tokens per second.
TOKENS_PER_S = 30
#: How long the LLM stops mid-turn in the pause test: more than Pipecat's 3 s default.
LLM_PAUSE_S = 4.5
#: Bound on any one wait of the asyncio side (the speech itself takes ~10 s).
WAIT_S = 60.0
#: No names or titles: Whisper tiny writes "Doctor Alvarez at" its own way.
ANSWER = (
    "Sure, I can help with that. Your next appointment is on Thursday afternoon, at the "
    "clinic downtown. Would you like me to send a reminder the evening before?"
)


class Speaker(BaseOutputTransport):
    """An output transport whose sound card plays in real time on the wall clock.

    Pipecat releases each word frame on the wall clock, counted from the turn's first
    audio; a device with its own clock plays on it too. So a chunk is taken when the
    audio before it has played by that clock, and after this process was stalled (a
    loaded machine) the backlog is taken at once instead of falling behind the words.
    A pause longer than ``IDLE_S`` is the device idling between turns.
    """

    IDLE_S = 1.0

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True))
        self._started_at = 0.0
        self._queued_s = -self.IDLE_S

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = asyncio.get_running_loop().time()
        if now > self._started_at + self._queued_s + self.IDLE_S:
            self._started_at, self._queued_s = now, 0.0
        self._queued_s += len(frame.audio) / 2 / frame.sample_rate
        # Taken as it plays: return once it has.
        await asyncio.sleep(self._started_at + self._queued_s - now)
        return True


@dataclass
class Heard:
    """What passed the speaker, in order: the audio it played and the words released
    as they played."""

    audio: list[bytes] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    #: Out of the TTS service, in order: the context of each audio frame, and
    #: "interruption" where one passed.
    timeline: list[str] = field(default_factory=list)
    #: Set when a turn's end frame has played (Pipecat times it after its last word).
    turn_played: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the speaker has played a turn's audio to its end (its stop frame).
    audio_played: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when an interruption has passed the speaker (it dropped what it held).
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once ``barge_in_after_s`` of audio has played.
    barge_in_after_s: float = float("inf")
    barge_in: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def played_s(self) -> float:
        return sum(len(a) for a in self.audio) / 2 / RATE


class Recorder(FrameProcessor):
    """Records what comes out of the speaker (played audio, released word frames)."""

    def __init__(self, heard: Heard) -> None:
        super().__init__()
        self.heard = heard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.heard.audio.append(frame.audio)
            if self.heard.played_s >= self.heard.barge_in_after_s:
                self.heard.barge_in.set()
        elif isinstance(frame, TTSTextFrame):
            self.heard.words.append(frame.text)
        elif isinstance(frame, TTSStoppedFrame):
            self.heard.audio_played.set()
        elif isinstance(frame, InterruptionFrame):
            self.heard.interrupted.set()
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.heard.turn_played.set()
        await self.push_frame(frame, direction)


class Tap(FrameProcessor):
    """Records what leaves the TTS service: each audio frame's context, interruptions."""

    def __init__(self, heard: Heard) -> None:
        super().__init__()
        self.heard = heard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.heard.timeline.append(str(frame.context_id))
        elif isinstance(frame, InterruptionFrame):
            self.heard.timeline.append("interruption")
        await self.push_frame(frame, direction)


@dataclass
class Agent:
    """A voice agent's output half: our TTS, the speaker, the assistant context."""

    tts: StreamerTTSService
    heard: Heard
    context: LLMContext
    worker: PipelineWorker
    connections: list[str]

    async def say(self, text: str) -> None:
        """Stream ``text`` as one LLM turn, token by token."""
        await self.worker.queue_frame(LLMFullResponseStartFrame())
        for token in llm_tokens(text):
            await self.worker.queue_frame(LLMTextFrame(token))
            await asyncio.sleep(1 / TOKENS_PER_S)
        await self.worker.queue_frame(LLMFullResponseEndFrame())

    async def say_and_hear(self, text: str) -> None:
        """Stream ``text`` as one turn and return once the speaker has played all of it."""
        self.heard.turn_played.clear()
        self.heard.audio_played.clear()
        await self.say(text)
        # Its words (released up to the end frame) and its audio (up to its stop frame);
        # not "the bot stopped speaking", which a speaker that ran dry between two
        # sentences of a stalled process also says.
        await self.heard.turn_played.wait()
        await self.heard.audio_played.wait()

    def assistant_text(self) -> str:
        return " ".join(
            str(m.get("content"))
            for m in self.context.get_messages()
            if isinstance(m, dict) and m.get("role") == "assistant"
        )


async def run_agent(url: str, scenario: Any, mode: TextAggregationMode) -> Any:
    """Run ``scenario(agent)`` inside a running pipeline; returns its result."""
    tts = StreamerTTSService(url=url, language="en", text_aggregation_mode=mode)
    connections: list[str] = []

    @tts.event_handler("on_connected")
    async def on_connected(service: Any) -> None:
        connections.append("connected")

    heard = Heard()
    context = LLMContext()
    pipeline = Pipeline(
        [tts, Tap(heard), Speaker(), Recorder(heard), LLMAssistantAggregator(context)]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_out_sample_rate=RATE),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker: Any, frame: Any) -> None:
        started.set()

    agent = Agent(tts, heard, context, worker, connections)
    result: Any = None

    async def drive() -> None:
        nonlocal result
        try:
            await asyncio.wait_for(started.wait(), WAIT_S)
            result = await asyncio.wait_for(scenario(agent), WAIT_S)
        except BaseException:
            await worker.cancel()  # a failed scenario: tear down at once, then report
            raise
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), WAIT_S * 2)
    return result


def _run(url: str, scenario: Any, mode: TextAggregationMode) -> Any:
    return asyncio.run(run_agent(url, scenario, mode))


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


@pytest.mark.parametrize("mode", [TextAggregationMode.TOKEN, TextAggregationMode.SENTENCE])
async def test_a_streamed_turn_is_spoken_timed_and_kept_in_the_context(
    server: RunningServer, mode: TextAggregationMode
) -> None:
    from tests.support.asr import transcribe

    agents: list[Agent] = []

    async def scenario(agent: Agent) -> None:
        agents.append(agent)
        await agent.say_and_hear(ANSWER)

    await trio.to_thread.run_sync(_run, _url(server), scenario, mode)
    agent = agents[0]
    said = normalized_words(ANSWER)

    # Whisper hears the answer in what the speaker played.
    audio = np.frombuffer(b"".join(agent.heard.audio), dtype="<i2").astype(np.float32) / 32768
    heard = transcribe(audio, RATE).split()
    matched = difflib.SequenceMatcher(a=said, b=heard, autojunk=False)
    assert sum(b.size for b in matched.get_matching_blocks()) >= 0.9 * len(said), " ".join(heard)

    # Every word came timed from the server and went out as it played, and the
    # assistant context holds the answer as spoken.
    assert normalized_words(" ".join(agent.heard.words)) == said
    assert normalized_words(agent.assistant_text()) == said
    assert agent.connections == ["connected"]


async def test_an_interruption_stops_the_audio_and_keeps_only_the_heard_words(
    server: RunningServer,
) -> None:
    from tests.support.asr import transcribe

    async def scenario(agent: Agent) -> dict[str, Any]:
        # The user barges in after two seconds of speech.
        agent.heard.barge_in_after_s = 2.0
        turn = asyncio.create_task(agent.say(ANSWER + " " + ANSWER))
        await agent.heard.barge_in.wait()
        turn.cancel()
        await agent.worker.queue_frame(InterruptionFrame())
        await agent.heard.interrupted.wait()
        # The same connection speaks the next turn (a cancel, not a reconnect).
        agent.heard.words.clear()
        mark = len(agent.heard.audio)
        await agent.say_and_hear("All right, stopping here.")
        return {"mark": mark}

    agent_box: list[Agent] = []

    async def capture(a: Agent) -> dict[str, Any]:
        agent_box.append(a)
        return await scenario(a)

    out = await trio.to_thread.run_sync(_run, _url(server), capture, TextAggregationMode.TOKEN)
    agent = agent_box[0]

    # Once the service has handled the interruption, nothing of that turn comes out of
    # it (the speaker drops what it still held): the audio after it is the next turn's,
    # in a context of its own.
    timeline = agent.heard.timeline
    cut = timeline.index("interruption")
    interrupted, following = timeline[0], set(timeline[cut + 1 :])
    assert interrupted not in following and len(following) == 1
    # The context holds only what was heard: a non-empty prefix of the answer, what
    # Whisper hears in the audio played before the interruption, and at most the two
    # words whose start had played when it came (Pipecat counts a word once its start
    # plays; Whisper does not hear a word cut short).
    messages = [m for m in agent.context.get_messages() if m.get("role") == "assistant"]
    first = normalized_words(str(messages[0]["content"]))
    said = normalized_words(ANSWER + " " + ANSWER)
    assert first and first == said[: len(first)] and len(first) < len(said) // 2
    played = b"".join(agent.heard.audio[: out["mark"]])
    pcm = np.frombuffer(played, dtype="<i2").astype(np.float32) / 32768
    heard = transcribe(pcm, RATE).split()
    assert 0 <= len(first) - len(heard) <= 2, (heard, first)
    # The next turn is spoken, on the same connection.
    assert normalized_words(str(messages[-1]["content"])) == ["all", "right", "stopping", "here"]
    assert agent.connections == ["connected"]

    # The server saw a cancel: the context ended interrupted, not finished.
    async with rest(server) as http:
        metrics = (await http.get("/api/v1/metrics")).json()
    assert metrics["requests"].get("interrupted") == 1


async def test_an_llm_pausing_mid_turn_loses_nothing(server: RunningServer) -> None:
    """A turn whose LLM stops for a while (a tool call) between two sentences: the
    audio pauses for longer than Pipecat's default 3 s guard, and the turn goes on."""
    first, second = "Let me check that for you.", " It will be sunny all day tomorrow."
    agents: list[Agent] = []

    async def scenario(agent: Agent) -> None:
        agents.append(agent)
        agent.heard.turn_played.clear()
        agent.heard.audio_played.clear()
        await agent.worker.queue_frame(LLMFullResponseStartFrame())
        for text in (first, second):
            for token in llm_tokens(text):
                await agent.worker.queue_frame(LLMTextFrame(token))
                await asyncio.sleep(1 / TOKENS_PER_S)
            if text is first:
                await asyncio.sleep(LLM_PAUSE_S)
        await agent.worker.queue_frame(LLMFullResponseEndFrame())
        await agent.heard.turn_played.wait()
        await agent.heard.audio_played.wait()

    await trio.to_thread.run_sync(_run, _url(server), scenario, TextAggregationMode.TOKEN)
    agent = agents[0]
    assert normalized_words(agent.assistant_text()) == normalized_words(first + second)
    assert normalized_words(" ".join(agent.heard.words)) == normalized_words(first + second)
