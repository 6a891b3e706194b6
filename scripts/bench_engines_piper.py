"""Benchmark PiperEngine: load time, time to first audio and real-time factor.

    .venv/bin/python scripts/bench_engines_piper.py [--threads 1 2] [--repeats 7]

Load: cold (the model is cut into an empty cache), warm (cut read from the cache) and
clause mode (no cut). Time to first audio: from ``stream()`` to the first chunk, median
of ``--repeats`` runs after a warm-up, for each sentence, mode and thread count. RTF:
synthesis time over audio time for a paragraph, whole stream consumed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

from streamer.engines import piper_split
from streamer.engines.base import SynthesisOptions, Voice
from streamer.engines.piper import PiperEngine

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


def _voice(engine: PiperEngine) -> Voice:
    return next(v for v in engine.voices() if v.id == VOICE_ID)


def _time_load(streaming: str, threads: int, cache: Path) -> tuple[float, PiperEngine]:
    engine = PiperEngine(None, intra_op_threads=threads, streaming=streaming, split_cache_dir=cache)
    start = time.perf_counter()
    engine.load()
    return time.perf_counter() - start, engine


def _first_audio(engine: PiperEngine, text: str, repeats: int) -> float:
    voice = _voice(engine)
    times = []
    for _ in range(repeats + 1):  # the first run warms caches and is dropped
        start = time.perf_counter()
        gen = engine.stream(voice, text, SynthesisOptions())
        next(gen)
        times.append(time.perf_counter() - start)
        if isinstance(gen, Generator):
            gen.close()
    return statistics.median(times[1:])


def _rtf(engine: PiperEngine, text: str) -> float:
    voice = _voice(engine)
    start = time.perf_counter()
    samples = sum(chunk.size for chunk in engine.stream(voice, text, SynthesisOptions()))
    return (time.perf_counter() - start) / (samples / voice.sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--max-window",
        type=int,
        default=piper_split.MAX_WINDOW_FRAMES,
        help="override MAX_WINDOW_FRAMES (experiments only)",
    )
    args = parser.parse_args()
    setattr(piper_split, "MAX_WINDOW_FRAMES", args.max_window)  # noqa: B010 (a Final)
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"windows: first {piper_split.FIRST_WINDOW_FRAMES}, max {piper_split.MAX_WINDOW_FRAMES},"
        f" context {piper_split.CONTEXT_BEHIND}/{piper_split.CONTEXT_AHEAD} frames"
    )

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
            engines = {mode: _time_load(mode, threads, cache)[1] for mode in ("clause", "windowed")}
            for engine in engines.values():
                engine.warm_up(_voice(engine))
            for label, text in SENTENCES.items():
                cells = ", ".join(
                    f"{mode} {_first_audio(engine, text, args.repeats) * 1000:.0f} ms"
                    for mode, engine in engines.items()
                )
                print(f"threads {threads}: first audio, {label}: {cells}")
            cells = ", ".join(
                f"{mode} {_rtf(engine, PARAGRAPH):.3f}" for mode, engine in engines.items()
            )
            print(f"threads {threads}: RTF (paragraph, {len(PARAGRAPH)} chars): {cells}")


if __name__ == "__main__":
    main()
