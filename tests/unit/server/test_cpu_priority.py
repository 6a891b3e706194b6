"""OS scheduling of the server's event loop (real-time; the inference threads it starts
run normal, niced)."""

from __future__ import annotations

import os
import threading

import pytest
import trio

from streamer.protocol import Priority
from streamer.server.runtime import (
    BULK_NICE_INCREMENT,
    URGENT_NICE_INCREMENT,
    URGENT_WITHIN_S,
    InferenceScheduler,
    make_event_loop_realtime,
    realtime_supported,
    restore,
)
from tests.support.threads import in_new_thread, needs_realtime


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@needs_realtime
def test_event_loop_thread_goes_realtime_and_back() -> None:
    def change() -> tuple[int, int, int, int]:
        previous = make_event_loop_realtime(3)
        during = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
        restore(previous)
        return *during, os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    policy, priority, after, after_priority = in_new_thread(change)
    # The kernel reports SCHED_RESET_ON_FORK along with the policy.
    assert policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO and priority == 3
    assert policy & os.SCHED_RESET_ON_FORK
    assert (after, after_priority) == (os.SCHED_OTHER, 0)


def test_priority_zero_changes_nothing() -> None:
    def change() -> tuple[object, int]:
        return make_event_loop_realtime(0), os.sched_getscheduler(0)

    assert in_new_thread(change) == (None, os.SCHED_OTHER)


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

    (urgent, bulk), base_nice = in_new_thread(serve)
    assert urgent == (os.SCHED_OTHER, min(19, base_nice + URGENT_NICE_INCREMENT))
    assert bulk == (os.SCHED_OTHER, min(19, base_nice + BULK_NICE_INCREMENT))
