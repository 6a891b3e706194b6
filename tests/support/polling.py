"""Waiting for state that no event announces (a worker thread's progress, a counter)."""

from __future__ import annotations

from collections.abc import Callable

import trio

#: How often a condition is re-checked: short next to any wait a test bounds.
POLL_INTERVAL_S = 0.01


async def wait_until(condition: Callable[[], object]) -> None:
    """Return once ``condition()`` is true. Unbounded: callers bound it with
    ``trio.fail_after``."""
    while True:
        if condition():
            return
        await trio.sleep(POLL_INTERVAL_S)
