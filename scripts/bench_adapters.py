"""Time to first audio through the framework adapters against our raw WebSocket client.

    .venv/bin/python -m scripts.bench_adapters --spawn                  # Piper, 20 rounds
    .venv/bin/python -m scripts.bench_adapters --url ws://127.0.0.1:8081 --rounds 40

Three paths to the same server, in one asyncio process, over one connection each:

- **raw**: ``streamer.client``'s asyncio client, ``stream()`` (a context);
- **pipecat**: ``StreamerTTSService`` (token mode) in a running Pipecat pipeline,
  ``[service, probe]``: the text goes in as an ``LLMTextFrame`` queued on the pipeline
  worker, the clock stops when the first ``TTSAudioRawFrame`` reaches the probe;
- **livekit**: ``StreamerTTS.stream()``: ``push_text``, the clock stops at the first
  ``SynthesizedAudio``.

Each round speaks one paragraph of ``_common.PARAGRAPHS`` through each path in turn
(in a shuffled order, with a pause between them), all with ``format: pcm`` at ``--rate`` Hz,
``timestamps: word``, ``buffer: auto``: the whole paragraph sent as one piece and the
input closed, so the server cuts its first sentence at once and the time is the
path's, not an LLM's pace. First audio counts from handing the text to the path to
the first audio the path delivers. Then the user barges in: the raw client and
LiveKit ``cancel`` the context, Pipecat gets an ``InterruptionFrame`` (which makes
the service send ``cancel``), and the next path starts once that is done. The first
round warms each path up and is not counted.

Reported, for each path:

- **first audio** p50 / p95, and each adapter's **added** time: the p50 of its
  per-round differences from the raw path (paired, so a round that is slow for the
  server is slow for all three). This holds the server's variation (tens of ms on a
  shared 2-core machine), so it is a coarse figure.
- **own time**: the path's time on our side of the socket, with the server's taken
  out: from handing it the text to the ``text`` message leaving through the socket,
  plus from the first audio frame coming out of the socket to the path delivering it.
  Measured at the ``websockets`` connection that all three use (``SocketClock``), so
  the adapter's cost is its own time minus the raw client's.

``uptime``'s load is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ._common import PARAGRAPHS, machine_info, markdown_table, spawned_server, stats_row, write_json

#: Pipecat's usual output rate; every path asks the server for it.
DEFAULT_RATE: Final = 16000
#: Bound on any one wait (a first audio takes tens of ms; a stalled path fails the run).
WAIT_S: Final = 30.0
#: Pause between two measurements: after a cancel the inference chunk already running
#: (a clause or a decoder window, ~0.1 s here) finishes in the background, and the next
#: path must not pay for the one before it.
SETTLE_S: Final = 0.5
#: Seed of the per-round path order (shuffled, so no path always follows another).
ORDER_SEED: Final = 17

PATHS: Final = ("raw", "pipecat", "livekit")


class SocketClock:
    """When the armed path's first ``text`` left, and its first audio frame arrived,
    at the ``websockets`` connection every path here speaks through (so what a path
    does on either side of the socket can be told from the server's time)."""

    def __init__(self) -> None:
        from websockets.asyncio.connection import Connection

        self.sent: float | None = None
        self.received: float | None = None
        self.armed = False
        clock = self
        send, recv = Connection.send, Connection.recv

        async def timed_send(self: Connection, message: Any, *args: Any, **kw: Any) -> None:
            if clock.armed and clock.sent is None and '"type":"text"' in str(message):
                clock.sent = time.perf_counter()
            await send(self, message, *args, **kw)

        async def timed_recv(self: Connection, *args: Any, **kw: Any) -> Any:
            data = await recv(self, *args, **kw)
            if clock.armed and clock.received is None and isinstance(data, bytes):
                clock.received = time.perf_counter()
            return data

        Connection.send = timed_send  # type: ignore[method-assign]
        Connection.recv = timed_recv  # type: ignore[method-assign]

    def arm(self) -> None:
        self.sent = self.received = None
        self.armed = True

    def own_time(self, start: float, delivered: float) -> float:
        """The path's time apart from the server's, for a first audio at ``delivered``."""
        self.armed = False
        if self.sent is None or self.received is None:
            raise RuntimeError("the socket saw no text out or no audio in")
        return (self.sent - start) + (delivered - self.received)


class RawPath:
    """Our asyncio client, one context per answer."""

    def __init__(self, url: str, rate: int, clock: SocketClock) -> None:
        from streamer.client.asyncio_client import AsyncioTTSStreamingClient

        self.client = AsyncioTTSStreamingClient(url)
        self.rate = rate
        self.clock = clock

    async def open(self) -> None:
        await self.client.connect(language="en", format="pcm", sample_rate=self.rate)

    async def first_audio(self, text: str) -> tuple[float, float]:
        context = self.client.stream(
            language="en", format="pcm", sample_rate=self.rate, timestamps="word",
            buffer={"mode": "auto"},
        )  # fmt: skip
        self.clock.arm()
        start = time.perf_counter()
        await context.send_text(text)
        await context.close()
        async for item in context:
            if isinstance(item, bytes):
                delivered = time.perf_counter()
                break
        else:
            raise RuntimeError("raw: the context ended without audio")
        await context.cancel()
        return delivered - start, self.clock.own_time(start, delivered)

    async def close(self) -> None:
        await self.client.aclose()


class PipecatPath:
    """``StreamerTTSService`` in a running pipeline; a probe after it."""

    def __init__(self, url: str, rate: int, clock: SocketClock) -> None:
        from pipecat.frames.frames import Frame, InterruptionFrame, TTSAudioRawFrame
        from pipecat.pipeline.pipeline import Pipeline
        from pipecat.pipeline.worker import PipelineParams, PipelineWorker
        from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
        from pipecat.services.tts_service import TextAggregationMode
        from pipecat.workers.runner import WorkerRunner

        from streamer.adapters.pipecat import StreamerTTSService

        path = self
        self.clock = clock
        self.first: asyncio.Future[float] | None = None
        self.interrupted = asyncio.Event()

        class Probe(FrameProcessor):
            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if isinstance(frame, TTSAudioRawFrame):
                    if path.first is not None and not path.first.done():
                        path.first.set_result(time.perf_counter())
                elif isinstance(frame, InterruptionFrame):
                    path.interrupted.set()
                await self.push_frame(frame, direction)

        tts = StreamerTTSService(
            url=url, language="en", text_aggregation_mode=TextAggregationMode.TOKEN
        )
        self.worker = PipelineWorker(
            Pipeline([tts, Probe()]),
            params=PipelineParams(audio_out_sample_rate=rate),
            cancel_on_idle_timeout=False,
        )
        self.started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]
        async def on_started(worker: Any, frame: Any) -> None:
            self.started.set()

        self.runner = WorkerRunner(handle_sigint=False)
        self.run_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.runner.add_workers(self.worker)
        self.run_task = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(self.started.wait(), WAIT_S)

    async def first_audio(self, text: str) -> tuple[float, float]:
        from pipecat.frames.frames import (
            InterruptionFrame,
            LLMFullResponseEndFrame,
            LLMFullResponseStartFrame,
            LLMTextFrame,
        )

        self.first = asyncio.get_running_loop().create_future()
        await self.worker.queue_frame(LLMFullResponseStartFrame())
        self.clock.arm()
        start = time.perf_counter()
        await self.worker.queue_frame(LLMTextFrame(text))
        await self.worker.queue_frame(LLMFullResponseEndFrame())
        delivered = await asyncio.wait_for(self.first, WAIT_S)
        own = self.clock.own_time(start, delivered)
        self.interrupted.clear()
        await self.worker.queue_frame(InterruptionFrame())
        await asyncio.wait_for(self.interrupted.wait(), WAIT_S)
        return delivered - start, own

    async def close(self) -> None:
        from pipecat.frames.frames import EndFrame

        await self.worker.queue_frame(EndFrame())
        if self.run_task is not None:
            await asyncio.wait_for(self.run_task, WAIT_S)


class LiveKitPath:
    """``StreamerTTS.stream()``, one stream per answer, closed at first audio."""

    def __init__(self, url: str, rate: int, clock: SocketClock) -> None:
        from streamer.adapters.livekit import StreamerTTS

        self.tts = StreamerTTS(url=url, language="en", sample_rate=rate)
        self.clock = clock

    async def open(self) -> None:
        self.tts.prewarm()

    async def first_audio(self, text: str) -> tuple[float, float]:
        stream = self.tts.stream()
        self.clock.arm()
        start = time.perf_counter()
        stream.push_text(text)
        stream.end_input()
        try:
            await asyncio.wait_for(anext(stream), WAIT_S)
            delivered = time.perf_counter()
            return delivered - start, self.clock.own_time(start, delivered)
        finally:
            await stream.aclose()

    async def close(self) -> None:
        await self.tts.aclose()


Figures = dict[str, dict[str, list[float]]]


async def measure(url: str, rounds: int, rate: int) -> Figures:
    """Seconds to first audio (``first``) and the path's own share of them (``own``),
    per path, per counted round (index-aligned)."""
    clock = SocketClock()
    paths: dict[str, Any] = {
        "raw": RawPath(url, rate, clock),
        "pipecat": PipecatPath(url, rate, clock),
        "livekit": LiveKitPath(url, rate, clock),
    }
    for path in paths.values():
        await path.open()
    times: Figures = {"first": {name: [] for name in PATHS}, "own": {name: [] for name in PATHS}}
    try:
        order = list(PATHS)
        shuffle = random.Random(ORDER_SEED).shuffle
        for index in range(rounds + 1):
            text = PARAGRAPHS[index % len(PARAGRAPHS)]
            shuffle(order)
            for name in order:
                await asyncio.sleep(SETTLE_S)
                call: Callable[[str], Awaitable[tuple[float, float]]] = paths[name].first_audio
                first, own = await asyncio.wait_for(call(text), WAIT_S)
                if index:  # the first round warms the paths up
                    times["first"][name].append(first)
                    times["own"][name].append(own)
    finally:
        for path in paths.values():
            await path.close()
    return times


def report(times: Figures, args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()
    headers = ["path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    for kind, title in (("first", "first audio"), ("own", "own time (server's taken out)")):
        print(f"\n{title}:")
        rows = [stats_row(name, [t * 1000 for t in times[kind][name]]) for name in PATHS]
        print(markdown_table(headers, rows))
    added: dict[str, dict[str, float]] = {}
    for name in PATHS[1:]:
        added[name] = {}
        for kind in ("first", "own"):
            pairs = zip(times[kind][name], times[kind]["raw"], strict=True)
            added[name][kind] = statistics.median((a - r) * 1000 for a, r in pairs)
        print(
            f"{name}: added p50 {added[name]['first']:+.1f} ms on first audio (paired), "
            f"{added[name]['own']:+.2f} ms of own time"
        )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return {
        "machine": machine_info(),
        "load_average": load,
        "rate": args.rate,
        "ms": {kind: {k: [t * 1000 for t in v] for k, v in d.items()} for kind, d in times.items()},
        "added_p50_ms": added,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_adapters",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--spawn", action="store_true", help="start a server on free ports")
    target.add_argument("--url", help="a running server's WebSocket URL")
    parser.add_argument("--rounds", type=int, default=20, help="counted rounds per path")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="output sample rate")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.spawn:
        with spawned_server() as server:
            times = asyncio.run(measure(server.ws_url, args.rounds, args.rate))
    else:
        times = asyncio.run(measure(args.url, args.rounds, args.rate))
    write_json(args.json, report(times, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
