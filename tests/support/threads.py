"""Running code in a fresh thread, so that changing its OS scheduling touches nobody
else; and the skip mark for tests that need real-time scheduling."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from streamer.server.runtime import make_event_loop_realtime, realtime_supported, restore

T = TypeVar("T")


def in_new_thread(fn: Callable[[], T]) -> T:
    """``fn()`` run in a fresh thread; its exception is re-raised here."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def realtime_permitted() -> bool:
    """Whether this process may put a thread under ``SCHED_FIFO``."""

    def probe() -> bool:
        previous = make_event_loop_realtime(1)
        restore(previous)
        return previous is not None

    return realtime_supported() and in_new_thread(probe)


needs_realtime = pytest.mark.skipif(
    not realtime_permitted(), reason="SCHED_FIFO needs Linux and root, CAP_SYS_NICE or ulimit -r"
)
