"""What admission is fed: the scheduler's wall time per chunk, the start-up probe, the
bench slowdown option, and the probe's view of a ``queued`` that waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

from scripts._probe import Probe, RequestTrace
from streamer.config import ConfigError, parse_config
from streamer.engines.registry import VoiceRegistry
from streamer.engines.text import split_for_streaming
from streamer.protocol import Priority
from streamer.server.runtime import (
    BENCH_SLOWDOWN_ENV,
    CALIBRATION_TEXT,
    InferenceScheduler,
    Metrics,
    Services,
    ThreadRunner,
    calibrate,
    cost_key,
)
from streamer.server.runtime._services import bench_slowdown
from tests.fake_engine import FakeEngine

T = TypeVar("T")


class VirtualCpu:
    """A chunk takes ``seconds`` of trio's clock (the tests run under autojump)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.urgent: list[bool] = []

    async def __call__(self, fn: Callable[[], T], *, urgent: bool) -> T:
        self.urgent.append(urgent)
        value = fn()
        await trio.sleep(self.seconds)
        return value


async def test_chunks_are_timed_from_their_grant_not_their_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cpu = VirtualCpu(0.25)
    scheduler = InferenceScheduler(1, cpu)
    done: list[int] = []
    scheduler.on_chunk_done = lambda: done.append(1)
    times: list[float] = []

    async def chunk() -> None:
        timed = await scheduler.run_timed(
            lambda: 7, priority=Priority.NORMAL, deadline=trio.current_time() + 10
        )
        assert timed.value == 7
        times.append(timed.seconds)

    async with trio.open_nursery() as nursery:
        for _ in range(3):  # one worker: the second and third wait for it
            nursery.start_soon(chunk)
    assert times == [pytest.approx(0.25)] * 3
    assert len(done) == 3 and scheduler.chunks_run == 3
    assert cpu.urgent == [False, False, False]  # a deadline 10 s away is bulk work


async def test_the_bench_slowdown_makes_each_chunk_take_longer() -> None:
    # A lower bound only: the worker sleeps at least ``slowdown`` times the chunk.
    scheduler = InferenceScheduler(1, ThreadRunner(slowdown=2.0))
    timed = await scheduler.run_timed(
        lambda: time.sleep(0.02), priority=Priority.NORMAL, deadline=trio.current_time()
    )
    assert timed.seconds >= 0.06


def test_bench_slowdown_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BENCH_SLOWDOWN_ENV, raising=False)
    assert bench_slowdown() == 0.0
    monkeypatch.setenv(BENCH_SLOWDOWN_ENV, "1.5")
    assert bench_slowdown() == 1.5
    for bad in ("-1", "fast", "nan", "inf"):
        monkeypatch.setenv(BENCH_SLOWDOWN_ENV, bad)
        with pytest.raises(ConfigError, match=BENCH_SLOWDOWN_ENV):
            bench_slowdown()
    with pytest.raises(ValueError, match="slowdown"):
        ThreadRunner(slowdown=-1)


def test_the_start_up_probe_measures_both_chunkings() -> None:
    engine = FakeEngine(chunks_per_segment=2, chunk_seconds=0.1)
    config = parse_config({"tts": {"default_language": "en"}})
    services = Services(config, VoiceRegistry([engine]), InferenceScheduler(2), Metrics())
    voice = engine.voices()[0]
    calibrate(services, engine, voice)
    admission = services.admission
    streamed = admission.voice(cost_key(voice.id, False))
    whole = admission.voice(cost_key(voice.id, True))
    assert streamed.audio > 0 and whole.audio > 0
    assert streamed.first_audio == pytest.approx(0.1) and streamed.largest_chunk == 0.1
    assert [o.whole_segments for o in engine.options] == [False, True]
    # The fake makes 0.2 s per text segment: a measured rate, not the prior.
    per_char = len(split_for_streaming(CALIBRATION_TEXT)) * 0.2 / len(CALIBRATION_TEXT)
    assert admission.voice(voice.id).seconds_per_char == pytest.approx(per_char)


def test_config_validates_the_new_keys() -> None:
    performance = parse_config({"performance": {"max_start_delay_ms": 0}}).performance
    assert performance.max_start_delay_ms == 0
    for key, value in (("max_start_delay_ms", -1), ("max_start_delay_ms", 60_001),
                       ("max_inference_load", 0), ("max_inference_load", 1.6)):
        with pytest.raises(ConfigError, match=f"performance.{key}"):
            parse_config({"performance": {key: value}})


def test_the_probe_reads_the_wait_from_queued() -> None:
    probe = Probe(None, "probe")
    trace = probe.traces.setdefault("r1", RequestTrace("r1", 0.0))
    probe.record('{"type":"queued","request_id":"r1","position":0,"admission_wait_ms":2000}', 0.1)
    assert trace.admission_wait_ms == 2000 and trace.queued_at == 0.1


@pytest.mark.slow
def test_piper_windows_grow_smoothly_across_segments_and_whole_segments_are_one_window() -> None:
    # What admission's demand model assumes of an engine: a stream's next chunk is at
    # most about twice what came before it, so the audio buffered covers its decoding.
    from streamer.engines.base import SynthesisOptions
    from streamer.engines.piper import PiperEngine
    from streamer.engines.piper_split import MAX_WINDOW_FRAMES, MIN_TAIL_FRAMES, WINDOW_GROWTH

    engine = PiperEngine(None, intra_op_threads=1)
    engine.load()
    voice = engine.voices()[0]
    hop = 256
    text = "Hello there, how are you today? I hope the weather is kind to you."
    streamed = [len(c) // hop for c in engine.stream(voice, text, SynthesisOptions())]
    assert len(split_for_streaming(text)) >= 2 and len(streamed) > 3
    for index, frames in enumerate(streamed[1:], start=1):
        assert frames <= WINDOW_GROWTH * max(streamed[:index]) + MIN_TAIL_FRAMES
    # Durations are sampled (noise_w), so only the chunking is compared, not the frames.
    options = SynthesisOptions(whole_segments=True)
    whole = [len(c) // hop for c in engine.stream(voice, text, options)]
    assert len(whole) == len(split_for_streaming(text))  # each segment < MAX_WINDOW_FRAMES
    assert max(whole) <= MAX_WINDOW_FRAMES
