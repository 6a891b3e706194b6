"""The process-wide inference scheduler shared by every session.

Inference is CPU-bound and the machine has few cores, so at most ``workers`` chunks of
inference run at once (more only thrash: DESIGN.md measured onnxruntime halving its
speed when threads outnumber cores). Whoever waits is served in this order:

1. priority: a ``critical`` chunk of any session runs next;
2. deadline: the chunk whose listener will run out of audio soonest (earliest
   deadline first). A session far ahead of playback has a late deadline and yields to
   one that is about to underrun — that is what keeps many sessions real-time at once
   and stops one long text from starving everybody else;
3. arrival order, for ties.

One unit of work is one ``next()`` of an engine's chunk generator, run in a worker
thread. Cancelling a waiting task removes it from the queue; cancelling a running one
waits for its chunk to finish (threads cannot be interrupted) and discards the result.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from ..protocol import Priority

T = TypeVar("T")


@dataclass(order=True)
class _Waiter:
    key: tuple[int, float, int]
    event: trio.Event = field(compare=False, default_factory=trio.Event)
    granted: bool = field(compare=False, default=False)
    cancelled: bool = field(compare=False, default=False)


class InferenceScheduler:
    """Grants worker threads to chunks of inference by (priority, deadline, arrival)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._free = workers
        self._heap: list[_Waiter] = []
        self._seq = itertools.count()
        # The thread limiter only mirrors our own slots; it keeps trio's default
        # 40-thread limiter out of the picture.
        self._threads = trio.CapacityLimiter(workers)
        self.chunks_run = 0
        self.busy_seconds = 0.0

    @property
    def running(self) -> int:
        return self.workers - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._heap if not w.cancelled)

    def lateness(self) -> float:
        """Seconds the most overdue waiting chunk is past its deadline (0 if none is)."""
        now = trio.current_time()
        late = [now - w.key[1] for w in self._heap if not w.cancelled]
        return max([0.0, *late])

    async def run(self, fn: Callable[[], T], *, priority: Priority, deadline: float) -> T:
        """Run ``fn()`` in a worker thread once a slot is granted; return its result."""
        if self._free > 0 and not self._heap:
            self._free -= 1
        else:
            waiter = _Waiter((-int(priority), deadline, next(self._seq)))
            heapq.heappush(self._heap, waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.granted:
                    self._release()  # granted as we were cancelled: pass the slot on
                else:
                    waiter.cancelled = True
                raise
        started = trio.current_time()
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._threads)
        finally:
            self.chunks_run += 1
            self.busy_seconds += trio.current_time() - started
            self._release()

    def _release(self) -> None:
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if not waiter.cancelled:
                waiter.granted = True
                waiter.event.set()
                return
        self._free += 1
