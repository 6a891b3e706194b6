"""Timing one engine the way the server drives it, shared by ``bench_engines`` and
``bench_melo``."""

from __future__ import annotations

import statistics
import time

import numpy as np

from streamer.engines.base import Engine, SynthesisOptions, Voice


def measure_stream(
    engine: Engine, voice: Voice, text: str, repeat: int
) -> tuple[float, float, float]:
    """Warm ``voice`` up, then synthesize ``text`` ``repeat`` times as the server does
    (``stream()``, then ``next()`` until exhausted, in this thread): median ms to the
    first chunk, median real-time factor (synthesis time / audio time), audio seconds."""
    engine.warm_up(voice)
    firsts: list[float] = []
    rtfs: list[float] = []
    seconds = 0.0
    for _ in range(repeat):
        samples = 0
        start = time.perf_counter()
        first: float | None = None
        for chunk in engine.stream(voice, text, SynthesisOptions()):
            if first is None:
                first = time.perf_counter() - start
            samples += int(np.asarray(chunk).size)
        total = time.perf_counter() - start
        seconds = samples / voice.sample_rate
        firsts.append((first if first is not None else total) * 1000.0)
        rtfs.append(total / seconds if seconds else float("nan"))
    return statistics.median(firsts), statistics.median(rtfs), seconds
