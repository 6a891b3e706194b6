"""Process-wide tuning the server applies while it runs, and undoes when it stops (test
processes start many servers in turn, so nothing may outlive its server)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import trio

from ._cpu_priority import make_event_loop_realtime, restore
from ._metrics import Metrics

#: Longest a thread holding the GIL keeps it from a thread that asks (CPython's default
#: is 5 ms). Inference threads run Python between their onnxruntime calls (slicing,
#: phonemizing); at 5 ms the event loop waited up to 5.6 ms for the GIL behind them,
#: the tail of every reply; at 1 ms, 1.8 ms, at no cost to the worker (measured with a
#: ticker thread beside a phonemizing loop: BENCHMARKS.md, "Latency and scale").
GIL_SWITCH_INTERVAL_S: Final = 0.001
#: How often the event loop's timeliness is sampled (``event_loop_lag`` in the metrics):
#: often enough that a 2048-sample window covers the last ~20 s, for ~0.1 % of a core.
LOOP_LAG_INTERVAL_S: Final = 0.01


@contextmanager
def tuned_process(realtime_priority: int) -> Iterator[None]:
    """While the server runs: a short GIL switch interval, and this thread (the event
    loop's) first in line for a core at ``realtime_priority`` (``_cpu_priority``; 0
    leaves it alone). Both are restored on exit."""
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    previous_policy = make_event_loop_realtime(realtime_priority)
    try:
        yield
    finally:
        restore(previous_policy)
        sys.setswitchinterval(previous_interval)


@contextmanager
def frozen_startup_objects() -> Iterator[None]:
    """Move every object alive now out of the cyclic GC's sight until exit.

    After start-up, every object alive (modules, engines, voices: ~66k) lives as long as
    the server. Left to the cyclic GC, each full collection walks them all: a 14 ms
    pause of the event loop (measured in-process). Frozen, collections walk only what
    requests create. (Full collections are rare: no latency figure moved.)
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def watch_event_loop(metrics: Metrics) -> None:
    """Sample how late the event loop wakes for a timer that is due, forever.

    The lateness is what any event waits at that moment: the loop busy with other tasks,
    the GIL held by an inference thread, or the OS running other threads on every
    core. Python's ``epoll`` rounds timeouts up to whole milliseconds, so an idle loop
    already shows up to ~1 ms; the tail above that is the server's.
    """
    while True:
        due = trio.current_time() + LOOP_LAG_INTERVAL_S
        await trio.sleep_until(due)
        metrics.observe_event_loop_lag(trio.current_time() - due)
