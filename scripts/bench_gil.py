"""How long the event loop can wait for the GIL behind an inference thread.

The server's inference threads run Python between their onnxruntime calls (phonemizing,
slicing latents). A thread that wants the GIL (the event loop, to answer a message)
waits until the holder releases it or CPython's switch interval forces it to. This
script phonemizes in a loop on one thread, as an inference thread does, while a ticker
thread sleeps 0.2 ms at a time and records how late it wakes, for several switch
intervals. The server sets ``GIL_SWITCH_INTERVAL_S`` (``streamer.server.runtime``) from
these figures.

    .venv/bin/python -m scripts.bench_gil
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from streamer.engines.piper import PiperEngine

from ._common import wait_for_quiet

#: The ticker's sleep: far below any switch interval tried.
TICK_S: Final = 0.0002
#: Switch intervals tried: CPython's default, and the smaller ones considered.
INTERVALS_S: Final = (0.005, 0.002, 0.001, 0.0005)
SENTENCE: Final = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
)


def measure(phonemize: object, interval: float, calls: int) -> tuple[float, float, float]:
    """(ticker's worst wake-up delay ms, its p99 ms, ms per phonemize call)."""
    sys.setswitchinterval(interval)
    delays: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(TICK_S)
            now = time.perf_counter()
            delays.append(now - last - TICK_S)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    started = time.perf_counter()
    for _ in range(calls):
        phonemize(SENTENCE)  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    stop.set()
    ticker.join()
    delays.sort()
    return delays[-1] * 1000, delays[int(len(delays) * 0.99)] * 1000, elapsed * 1000 / calls


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_gil", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--calls", type=int, default=200, help="phonemize calls per interval")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as empty:
        engine = PiperEngine(Path(empty))
        voice = engine.voices()[0]
        piper = engine._load_voice(engine._table()[voice.id]).piper
    wait_for_quiet()
    print(f"voice {voice.id}; {args.calls} phonemize calls per switch interval")
    print("| switch interval | ticker worst delay | ticker p99 | ms per phonemize |")
    print("|---|---|---|---|")
    for interval in INTERVALS_S:
        worst, p99, per_call = measure(piper.phonemize, interval, args.calls)
        print(f"| {interval * 1000:g} ms | {worst:.2f} ms | {p99:.2f} ms | {per_call:.3f} |")


if __name__ == "__main__":
    main()
