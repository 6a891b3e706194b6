"""Inference on the event loop thread, for session tests on a virtual clock.

``trio.testing.MockClock`` (autojump) jumps virtual time whenever every task waits, and
a task waiting for a worker thread counts as waiting: virtual time races ahead of real
inference. ``InlineChunks`` is the ``ChunkRunner`` that removes the thread: the
``InferenceScheduler`` still queues, orders and counts every chunk, then calls it inline.
A test on it depends on no wall clock, so a stalled machine (a paused process, a busy
CI host) cannot make its audio late.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class InlineChunks:
    """A ``ChunkRunner`` that runs each granted chunk on the event loop thread.

    ``compute_seconds`` of virtual time pass while a chunk holds its slot (0: none), so
    sessions contend for the workers as they do for real cores. ``hold()`` keeps every
    chunk granted from then on waiting in its slot (it counts as running, like a chunk
    stuck in the engine) until ``release()``. Like a chunk in a worker thread, a running
    chunk cannot be cancelled: it is waited for.
    """

    def __init__(self, compute_seconds: float = 0.0) -> None:
        self.compute_seconds = compute_seconds
        self._gate: trio.Event | None = None
        #: Chunks waiting at the ``hold()`` gate now.
        self.held = 0

    def hold(self) -> None:
        if self._gate is None:
            self._gate = trio.Event()

    def set_aside(self) -> Callable[[], None]:
        """Keep the chunks held now waiting, let later ones run; returns what releases
        the chunks kept."""
        gate, self._gate = self._gate, None
        return gate.set if gate is not None else (lambda: None)

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def __call__(self, fn: Callable[[], T], /, *, urgent: bool) -> T:
        with trio.CancelScope(shield=True):
            gate = self._gate
            if gate is not None:
                self.held += 1
                try:
                    await gate.wait()
                finally:
                    self.held -= 1
            if self.compute_seconds:
                await trio.sleep(self.compute_seconds)
            else:
                await trio.lowlevel.checkpoint()
        return fn()
