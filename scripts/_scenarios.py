"""The load tool's other two scenarios, and the in-process baselines they are held to.

- ``burst``: ``clients`` sessions send the same short sentence at the same instant,
  ``rounds`` times (the next round once every listener has heard its sentence). A
  ``busy`` is retried at its ``retry_after_ms``; time to first audio counts from the
  first try. Held to a whole-sentence FIFO (``whole_sentence_fifo``) measured in the
  same run: W threads that synthesize each sentence whole, in arrival order.
- ``mixed``: a few WebSocket speakers speaking paragraphs back to back while many HTTP
  clients post ``/v1/audio/speech`` back to back (downloads), each retrying a 503 at
  its ``Retry-After``.

Every listener is the sequential player of ``_probe.py``: a request's audio starts
when it arrives, or when the audio queued before it has played.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import trio

from ._common import PARAGRAPHS, TEXT_EN_SHORT, summarize
from ._probe import EVENT_TIMEOUT_S, Probe, ProbeError, RequestTrace, now, open_probe

#: Sessions that start at once in a burst, and how many times.
BURST_CLIENTS: Final = 20
BURST_ROUNDS: Final = 3
#: The burst's sentence: short, one clause each side of a comma.
BURST_TEXT: Final = TEXT_EN_SHORT
#: A client refused this often in one round gives up (and says so): the goal is at most
#: one ``busy`` each.
BURST_MAX_TRIES: Final = 5
#: Quiet between rounds, after every listener has heard its sentence.
ROUND_GAP_S: Final = 1.0
#: The mixed scenario: WebSocket speakers, HTTP posters, seconds.
MIXED_SPEAKERS: Final = 3
MIXED_POSTERS: Final = 20
MIXED_SECONDS: Final = 30.0
#: A poster obeys at most this much of a ``Retry-After`` before it posts again.
MAX_RETRY_WAIT_S: Final = 5.0
#: Bound on one HTTP speech request (a paragraph is seconds of work even when shared).
HTTP_TIMEOUT_S: Final = 120.0
#: The voice the in-process baselines use (the server's English default).
VOICE_ID: Final = "piper-en_US-joe-medium"


@dataclass
class Playback:
    """What a listener heard of the requests it made, per the probe's model."""

    ttfa_ms: list[float] = field(default_factory=list)
    underruns: int = 0
    silence_ms: float = 0.0
    busy: int = 0
    waited: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)

    def hear(self, trace: RequestTrace) -> None:
        underruns, silence, _, _ = trace.playback()
        self.underruns += underruns
        self.silence_ms += silence * 1000
        if trace.admission_wait_ms is not None:
            self.waited += 1
        if trace.ended_at is not None:
            self.completed += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_completed": self.completed,
            "client_underruns": self.underruns,
            "underrun_silence_ms": round(self.silence_ms, 1),
            "busy": self.busy,
            "waited_for_admission": self.waited,
            "ttfa_ms": summarize(self.ttfa_ms),
            "errors": self.errors[:20],
        }


def _retry_s(trace: RequestTrace) -> float:
    assert trace.error is not None
    hint = trace.error.details.get("retry_after_ms", 500)
    return float(hint) / 1000 if isinstance(hint, int | float) else 0.5


# --- burst ---------------------------------------------------------------------------------


@dataclass
class BurstResult(Playback):
    #: Most ``busy`` replies any one client got in one round.
    max_busy_per_client: int = 0
    gave_up: int = 0


async def _burst_client(
    probe: Probe, index: int, round_: int, go: trio.Event, result: BurstResult
) -> None:
    await go.wait()
    first_try: float | None = None
    busy = 0
    for attempt in range(BURST_MAX_TRIES):
        trace = await probe.synthesize(f"b{index}-r{round_}-t{attempt}", BURST_TEXT)
        first_try = first_try if first_try is not None else trace.sent_at
        await probe.wait_played(trace)
        if trace.error is not None:
            if trace.error.code != "busy":
                result.errors.append(f"b{index}: {trace.error}")
                return
            busy += 1
            result.busy += 1
            await trio.sleep(_retry_s(trace))
            continue
        result.hear(trace)
        if trace.frames:
            result.ttfa_ms.append((trace.frames[0][0] - first_try) * 1000)
        break
    else:
        result.gave_up += 1
    result.max_busy_per_client = max(result.max_busy_per_client, busy)


async def burst_run(
    url: str, clients: int = BURST_CLIENTS, rounds: int = BURST_ROUNDS
) -> BurstResult:
    """``clients`` sessions, ``rounds`` simultaneous starts of ``BURST_TEXT``."""
    result = BurstResult()
    probes: list[Probe] = []
    limit = rounds * (EVENT_TIMEOUT_S + ROUND_GAP_S) + EVENT_TIMEOUT_S
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            connected = trio.Semaphore(0)

            async def hold(index: int, done: trio.Event) -> None:
                try:
                    async with open_probe(url) as ws:
                        probe = Probe(ws, f"burst {index}")
                        async with trio.open_nursery() as inner:
                            inner.start_soon(probe.reader)
                            await probe.connect({"language": "en", "format": "pcm"})
                            probes.append(probe)
                            connected.release()
                            await done.wait()
                            inner.cancel_scope.cancel()
                except (OSError, ProbeError) as exc:
                    result.errors.append(f"burst {index}: {exc}")
                    connected.release()

            done = trio.Event()
            for index in range(clients):
                nursery.start_soon(hold, index, done)
            for _ in range(clients):
                await connected.acquire()
            for round_ in range(rounds):
                go = trio.Event()
                async with trio.open_nursery() as round_nursery:
                    for index, probe in enumerate(probes):
                        round_nursery.start_soon(_burst_client, probe, index, round_, go, result)
                    await trio.sleep(0.05)  # every client is waiting on ``go``
                    go.set()
                await trio.sleep(ROUND_GAP_S)
            done.set()
    return result


def whole_sentence_fifo(
    text: str, clients: int, rounds: int, workers: int, slowdown: float = 0.0
) -> list[float]:
    """Time to first audio (ms) of ``clients`` simultaneous requests for ``text``,
    ``rounds`` times, served by a plain FIFO: ``workers`` threads, each synthesizing a
    whole sentence at a time (Piper, one model call per clause, one onnxruntime thread)
    whose audio leaves when the sentence is done. In-process: no network, no server.
    ``slowdown`` as the server's bench option (a sleep after each model call)."""
    from streamer.engines.base import SynthesisOptions
    from streamer.engines.piper import PiperEngine

    engine = PiperEngine(None, intra_op_threads=1, streaming="clause")
    engine.load()
    voice = next(v for v in engine.voices() if v.id == VOICE_ID)
    engine.warm_up(voice)
    ttfa: list[float] = []

    def work(line: queue.SimpleQueue[int], start: float) -> None:
        while True:
            try:
                line.get_nowait()
            except queue.Empty:
                return
            chunks = engine.stream(voice, text, SynthesisOptions())
            while True:
                began = time.perf_counter()
                if next(chunks, None) is None:
                    break
                if slowdown:
                    time.sleep(slowdown * (time.perf_counter() - began))
            ttfa.append((time.perf_counter() - start) * 1000)

    for _ in range(rounds):
        line: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(clients):
            line.put(index)
        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(line, start)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(ROUND_GAP_S)
    return ttfa


def default_workers() -> int:
    """The server's default inference workers: one per core."""
    return os.cpu_count() or 1


# --- mixed -----------------------------------------------------------------------------------


@dataclass
class MixedResult(Playback):
    http_status: dict[int, int] = field(default_factory=dict)
    http_ttfb_ms: list[float] = field(default_factory=list)
    http_audio_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {
            "http_status": {str(k): v for k, v in sorted(self.http_status.items())},
            "http_ttfb_ms": summarize(self.http_ttfb_ms),
            "http_audio_s": round(self.http_audio_bytes / 2 / 24000, 1),
        }


async def _ws_speaker(url: str, index: int, stop_at: float, result: MixedResult) -> None:
    try:
        async with open_probe(url) as ws:
            probe = Probe(ws, f"speaker {index}")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.reader)
                await probe.connect({"language": "en", "format": "pcm"})
                n = 0
                while now() < stop_at:
                    text = PARAGRAPHS[(index + n) % len(PARAGRAPHS)]
                    trace = await probe.synthesize(f"s{index}-{n}", text)
                    n += 1
                    remaining = stop_at - now()
                    with trio.move_on_after(max(0.0, remaining)):
                        await probe.wait_played(trace)
                    if trace.error is not None:
                        if trace.error.code == "busy":
                            result.busy += 1
                            await trio.sleep(_retry_s(trace))
                        else:
                            result.errors.append(f"s{index}: {trace.error}")
                        continue
                    if trace.frames:
                        result.ttfa_ms.append((trace.frames[0][0] - trace.sent_at) * 1000)
                    if trace.ended_at is None:  # time is up while it plays
                        sent, _ = await probe.interrupt("mixed over")
                        trace = trace.truncated(sent)
                    result.hear(trace)
                nursery.cancel_scope.cancel()
    except (OSError, ProbeError) as exc:
        result.errors.append(f"speaker {index}: {exc}")


async def _http_poster(
    http: httpx.AsyncClient, index: int, stop_at: float, result: MixedResult
) -> None:
    n = index
    while now() < stop_at:
        body = {"model": "tts-1", "voice": "alloy", "input": PARAGRAPHS[n % len(PARAGRAPHS)],
                "response_format": "pcm"}
        n += 1
        sent = now()
        try:
            async with http.stream("POST", "/v1/audio/speech", json=body) as response:
                status = response.status_code
                first = True
                async for data in response.aiter_bytes():
                    if first:
                        result.http_ttfb_ms.append((now() - sent) * 1000)
                        first = False
                    if status == 200:
                        result.http_audio_bytes += len(data)
                retry = response.headers.get("retry-after")
        except httpx.HTTPError as exc:
            result.errors.append(f"poster {index}: {type(exc).__name__}")
            continue
        result.http_status[status] = result.http_status.get(status, 0) + 1
        if status == 503:
            wait = float(retry) if retry and retry.isdigit() else 1.0
            await trio.sleep(min(MAX_RETRY_WAIT_S, wait, max(0.0, stop_at - now())))


async def mixed_run(
    ws_url: str,
    http_url: str,
    speakers: int = MIXED_SPEAKERS,
    posters: int = MIXED_POSTERS,
    seconds: float = MIXED_SECONDS,
) -> MixedResult:
    """``speakers`` WebSocket listeners and ``posters`` HTTP downloaders for ``seconds``."""
    result = MixedResult()
    stop_at = now() + seconds
    with trio.fail_after(seconds + HTTP_TIMEOUT_S + EVENT_TIMEOUT_S):
        async with httpx.AsyncClient(
            base_url=http_url, timeout=HTTP_TIMEOUT_S,
            limits=httpx.Limits(max_connections=posters),
        ) as http, trio.open_nursery() as nursery:
            for index in range(posters):
                nursery.start_soon(_http_poster, http, index, stop_at, result)
            for index in range(speakers):
                nursery.start_soon(_ws_speaker, ws_url, index, stop_at, result)
    return result
