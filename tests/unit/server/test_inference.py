"""The process-wide inference scheduler, in isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from streamer.protocol import Priority
from streamer.server.runtime import URGENT_WITHIN_S, InferenceScheduler, ThreadRunner
from tests.support.inline_inference import InlineChunks


async def test_grants_by_priority_then_deadline_then_arrival_while_nothing_is_at_risk() -> None:
    scheduler = InferenceScheduler(1)
    release = threading.Event()
    order: list[str] = []

    async def job(name: str, priority: Priority, deadline: float) -> None:
        await scheduler.run(lambda: order.append(name), priority=priority, deadline=deadline)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: scheduler.run(lambda: release.wait(5), priority=Priority.NORMAL, deadline=0)
        )
        await trio.sleep(0.05)
        now = trio.current_time()
        # Trio starts tasks in random order: let each one queue before the next.
        # Every deadline is further than URGENT_WITHIN_S: priority orders them.
        for args in (
            ("late-normal", Priority.NORMAL, now + 7),
            ("early-normal", Priority.NORMAL, now + 5),
            ("same-deadline-later", Priority.NORMAL, now + 5),
            ("critical", Priority.CRITICAL, now + 9),
            ("high", Priority.HIGH, now + 9),
        ):
            nursery.start_soon(job, *args)
            await wait_all_tasks_blocked()
        assert scheduler.waiting == 5 and scheduler.running == 1
        release.set()
    assert order == ["critical", "high", "early-normal", "same-deadline-later", "late-normal"]
    assert scheduler.running == 0 and scheduler.chunks_run == 6


async def test_cancelled_waiter_gives_up_its_place() -> None:
    scheduler = InferenceScheduler(1)
    release = threading.Event()
    ran: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: scheduler.run(lambda: release.wait(5), priority=Priority.NORMAL, deadline=0)
        )
        await trio.sleep(0.05)
        nursery.start_soon(
            lambda: scheduler.run(lambda: ran.append("x"), priority=Priority.HIGH, deadline=0)
        )
        waiter_scope = trio.CancelScope()

        async def cancellable() -> None:
            with waiter_scope:
                await scheduler.run(
                    lambda: ran.append("cancelled"), priority=Priority.CRITICAL, deadline=0
                )

        nursery.start_soon(cancellable)
        await trio.sleep(0.05)
        waiter_scope.cancel()
        await trio.sleep(0.01)
        release.set()
    assert ran == ["x"]
    assert scheduler.lateness() == 0.0


async def test_lateness_reports_overdue_waiters() -> None:
    scheduler = InferenceScheduler(1)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: scheduler.run(lambda: release.wait(5), priority=Priority.NORMAL, deadline=0)
        )
        await trio.sleep(0.02)
        nursery.start_soon(
            lambda: scheduler.run(
                lambda: None, priority=Priority.NORMAL, deadline=trio.current_time() - 0.5
            )
        )
        await trio.sleep(0.02)
        assert scheduler.lateness() >= 0.5
        release.set()


async def test_a_chunk_at_risk_goes_first_whatever_its_priority(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The policy question of issue #14: high streams building their lead must not make
    # a normal listener run dry. Chunks whose listener runs dry within URGENT_WITHIN_S
    # are served by deadline alone (priority breaks a tie); the rest by priority.
    chunks = InlineChunks(compute_seconds=0.1)
    scheduler = InferenceScheduler(1, runner=chunks)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        chunks.hold()
        nursery.start_soon(
            lambda: scheduler.run(lambda: None, priority=Priority.NORMAL, deadline=0)
        )
        await wait_all_tasks_blocked()
        now = trio.current_time()
        for name, priority, deadline in (
            ("high-ahead", Priority.HIGH, now + 5 * URGENT_WITHIN_S),
            ("critical-ahead", Priority.CRITICAL, now + 4 * URGENT_WITHIN_S),
            ("normal-at-risk", Priority.NORMAL, now + URGENT_WITHIN_S / 2),
            ("high-at-risk", Priority.HIGH, now + URGENT_WITHIN_S * 0.75),
            ("normal-late", Priority.NORMAL, now - 0.1),
            ("high-late-tie", Priority.HIGH, now - 0.1),
            ("normal-ahead", Priority.NORMAL, now + 3 * URGENT_WITHIN_S),
        ):
            nursery.start_soon(
                lambda n=name, p=priority, d=deadline: scheduler.run(
                    lambda: order.append(n), priority=p, deadline=d
                )
            )
            await wait_all_tasks_blocked()
        chunks.release()
    assert order == [
        "high-late-tie",  # the same deadline as normal-late: priority breaks the tie
        "normal-late",
        "normal-at-risk",
        "high-at-risk",
        "critical-ahead",
        "high-ahead",
        "normal-ahead",
    ]


async def test_a_chunk_becomes_at_risk_while_it_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Ranked when a worker frees up: a normal chunk that waited until its listener is
    # about to run dry goes before a high one that is still far ahead.
    chunks = InlineChunks(compute_seconds=URGENT_WITHIN_S)
    scheduler = InferenceScheduler(1, runner=chunks)
    order: list[str] = []
    now = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: scheduler.run(lambda: None, priority=Priority.NORMAL, deadline=now)
        )
        await wait_all_tasks_blocked()
        for name, priority, deadline in (
            ("normal", Priority.NORMAL, now + 1.5 * URGENT_WITHIN_S),
            ("high", Priority.HIGH, now + 10 * URGENT_WITHIN_S),
        ):
            nursery.start_soon(
                lambda n=name, p=priority, d=deadline: scheduler.run(
                    lambda: order.append(n), priority=p, deadline=d
                )
            )
            await wait_all_tasks_blocked()
    # Submitted 1.5 s from dry (not at risk); granted 1 s later, 0.5 s from dry.
    assert order == ["normal", "high"]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        InferenceScheduler(0)


async def test_a_chunk_runner_replaces_the_threads_and_keeps_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # InlineChunks (the session tests' runner on virtual time): chunks run on the event
    # loop's thread, one worker's slot at a time, in the scheduler's order.
    chunks = InlineChunks(compute_seconds=0.1)
    scheduler = InferenceScheduler(1, runner=chunks)
    ran: list[tuple[str, int, float]] = []

    def chunk(name: str) -> None:
        ran.append((name, threading.get_ident(), trio.current_time()))

    async with trio.open_nursery() as nursery:
        chunks.hold()
        nursery.start_soon(
            lambda: scheduler.run(lambda: chunk("first"), priority=Priority.NORMAL, deadline=0)
        )
        await wait_all_tasks_blocked()
        assert chunks.held == 1 and scheduler.running == 1 and not scheduler.idle
        for name, priority in (("normal", Priority.NORMAL), ("critical", Priority.CRITICAL)):
            nursery.start_soon(
                lambda n=name, p=priority: scheduler.run(lambda: chunk(n), priority=p, deadline=0)
            )
            await wait_all_tasks_blocked()
        assert scheduler.waiting == 2
        started = trio.current_time()
        chunks.release()
    assert [name for name, _, _ in ran] == ["first", "critical", "normal"]
    assert {thread for _, thread, _ in ran} == {threading.get_ident()}
    # Each held its one slot for 0.1 s of virtual time.
    assert [at - started for _, _, at in ran] == pytest.approx([0.1, 0.2, 0.3])
    assert scheduler.idle and scheduler.chunks_run == 3


# --- downloads (the background class) against a real-time stream, on virtual time -------

#: Virtual compute of one chunk, and the audio it makes.
CHUNK_COMPUTE_S = 0.01
CHUNK_AUDIO_S = 0.05


async def _flood_and_stream(*, background: bool, downloads: int, chunks: int) -> float:
    """``downloads`` jobs synthesizing as fast as they can (deadline: their own audio
    so far, the way a download's clock runs) beside one real-time stream that must make
    ``chunks`` chunks, each by the moment its listener runs dry. Returns the stream's
    worst lateness past a deadline (0: never late)."""
    scheduler = InferenceScheduler(2, runner=InlineChunks(CHUNK_COMPUTE_S))
    worst = 0.0

    async def download() -> None:
        started = trio.current_time()
        for index in range(chunks * 4):
            deadline = started + index * CHUNK_AUDIO_S
            await scheduler.run(
                lambda: None, priority=Priority.NORMAL, deadline=deadline, background=background
            )

    async def stream() -> None:
        nonlocal worst
        dry_at = trio.current_time() + 0.2  # a little audio already buffered
        for _ in range(chunks):
            await scheduler.run(lambda: None, priority=Priority.NORMAL, deadline=dry_at)
            worst = max(worst, trio.current_time() - dry_at)
            dry_at = max(dry_at, trio.current_time()) + CHUNK_AUDIO_S

    async with trio.open_nursery() as nursery:
        for _ in range(downloads):
            nursery.start_soon(download)
        await trio.testing.wait_all_tasks_blocked()
        await stream()
        nursery.cancel_scope.cancel()
    return worst


async def test_downloads_in_the_background_never_make_a_stream_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await _flood_and_stream(background=True, downloads=50, chunks=40) == 0.0


async def test_downloads_in_the_foreground_would_starve_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The bug the background class fixes: downloads behind real time have the earliest
    # deadlines, and a listener waits behind all of them.
    assert await _flood_and_stream(background=False, downloads=50, chunks=40) > 0.1


T = TypeVar("T")


class VirtualCpu:
    """A chunk takes ``seconds`` of trio's clock (the tests run under autojump)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.urgent: list[bool] = []

    async def __call__(self, fn: Callable[[], T], *, urgent: bool) -> T:
        self.urgent.append(urgent)
        value = fn()
        await trio.sleep(self.seconds)
        return value


async def test_chunks_are_timed_from_their_grant_not_their_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cpu = VirtualCpu(0.25)
    scheduler = InferenceScheduler(1, cpu)
    done: list[int] = []
    scheduler.on_chunk_done = lambda: done.append(1)
    times: list[float] = []

    async def chunk() -> None:
        timed = await scheduler.run_timed(
            lambda: 7, priority=Priority.NORMAL, deadline=trio.current_time() + 10
        )
        assert timed.value == 7
        times.append(timed.seconds)

    async with trio.open_nursery() as nursery:
        for _ in range(3):  # one worker: the second and third wait for it
            nursery.start_soon(chunk)
    assert times == [pytest.approx(0.25)] * 3
    assert len(done) == 3 and scheduler.chunks_run == 3
    assert cpu.urgent == [False, False, False]  # a deadline 10 s away is bulk work


async def test_the_bench_slowdown_makes_each_chunk_take_longer() -> None:
    # A lower bound only: the worker sleeps at least ``slowdown`` times the chunk.
    scheduler = InferenceScheduler(1, ThreadRunner(slowdown=2.0))
    timed = await scheduler.run_timed(
        lambda: time.sleep(0.02), priority=Priority.NORMAL, deadline=trio.current_time()
    )
    assert timed.seconds >= 0.06
