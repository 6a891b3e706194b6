"""OS scheduling of the server's event loop (real-time, threads it starts normal) and the
event-loop lag the server samples."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio

from streamer.protocol import Priority
from streamer.server.runtime import (
    BULK_NICE_INCREMENT,
    URGENT_NICE_INCREMENT,
    URGENT_WITHIN_S,
    InferenceScheduler,
    Metrics,
    make_event_loop_realtime,
    realtime_supported,
    restore,
)
from streamer.server.runtime import watch_event_loop as _watch_event_loop

from .fake_engine import FakeEngine
from .server_harness import make_config, running_server, services_with

T = TypeVar("T")


def _in_new_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread, so that changing its scheduling touches nobody else."""
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


def _realtime_permitted() -> bool:
    def probe() -> bool:
        previous = make_event_loop_realtime(1)
        restore(previous)
        return previous is not None

    return realtime_supported() and _in_new_thread(probe)


needs_realtime = pytest.mark.skipif(
    not _realtime_permitted(), reason="SCHED_FIFO needs Linux and root, CAP_SYS_NICE or ulimit -r"
)


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@needs_realtime
def test_event_loop_thread_goes_realtime_and_back() -> None:
    def change() -> tuple[int, int, int, int]:
        previous = make_event_loop_realtime(3)
        during = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
        restore(previous)
        return *during, os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    policy, priority, after, after_priority = _in_new_thread(change)
    # The kernel reports SCHED_RESET_ON_FORK along with the policy.
    assert policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO and priority == 3
    assert policy & os.SCHED_RESET_ON_FORK
    assert (after, after_priority) == (os.SCHED_OTHER, 0)


def test_priority_zero_changes_nothing() -> None:
    def change() -> tuple[object, int]:
        return make_event_loop_realtime(0), os.sched_getscheduler(0)

    assert _in_new_thread(change) == (None, os.SCHED_OTHER)


@pytest.mark.skipif(not realtime_supported(), reason="Linux scheduling policies")
def test_no_permission_leaves_normal_scheduling_and_says_how_to_allow_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unprivileged service without LimitRTPRIO: the server must start anyway."""

    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    caplog.set_level("INFO", logger="streamer.server.runtime._cpu_priority")
    before = os.sched_getscheduler(0)
    assert make_event_loop_realtime(1) is None
    assert os.sched_getscheduler(0) == before
    assert "LimitRTPRIO=1" in caplog.text
    restore(None)  # nothing to undo: no call, no error


@needs_realtime
def test_inference_workers_do_not_inherit_real_time() -> None:
    """Workers are started from the event loop thread; each must run under the normal
    policy at its lane's lower priority, or inference would starve everything else."""

    async def main() -> list[tuple[int, int]]:
        scheduler = InferenceScheduler(2)

        def observe() -> tuple[int, int]:
            return os.sched_getscheduler(0), _nice()

        now = trio.current_time()
        urgent = await scheduler.run(observe, priority=Priority.NORMAL, deadline=now)
        bulk = await scheduler.run(
            observe, priority=Priority.NORMAL, deadline=now + 10 * URGENT_WITHIN_S
        )
        return [urgent, bulk]

    def serve() -> tuple[list[tuple[int, int]], int]:
        previous = make_event_loop_realtime(1)
        try:
            return trio.run(main), _nice()
        finally:
            restore(previous)

    (urgent, bulk), base_nice = _in_new_thread(serve)
    assert urgent == (os.SCHED_OTHER, min(19, base_nice + URGENT_NICE_INCREMENT))
    assert bulk == (os.SCHED_OTHER, min(19, base_nice + BULK_NICE_INCREMENT))


@needs_realtime
def test_server_runs_its_loop_realtime_while_serving() -> None:
    config = make_config(performance={"event_loop_realtime_priority": 2})

    async def main() -> tuple[int, int]:
        async with running_server(config, services_with(config, [FakeEngine()])):
            return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    def serve() -> tuple[tuple[int, int], int]:
        return trio.run(main), os.sched_getscheduler(0)

    (policy, priority), after = _in_new_thread(serve)
    assert policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO and priority == 2
    assert after == os.SCHED_OTHER  # given back when the server stops


async def test_event_loop_lag_shows_a_blocked_loop() -> None:
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_event_loop, metrics)
        await trio.sleep(0.05)
        time.sleep(0.1)  # noqa: ASYNC251 (on purpose: the watcher's timer must fire late)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    lag = metrics.event_loop_lag
    assert lag.count >= 5
    worst, best = lag.percentile(100), lag.percentile(0)
    assert worst is not None and worst >= 0.08
    assert best is not None and 0.0 <= best < 0.08
    assert "event_loop_lag" in metrics.to_json()
