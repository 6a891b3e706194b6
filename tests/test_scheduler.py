"""The process-wide inference scheduler and the outbox, in isolation."""

from __future__ import annotations

import threading

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from streamer.protocol import Priority
from streamer.server.runtime import InferenceScheduler
from streamer.server.session import MAX_QUEUED_AUDIO_BYTES, CloseRequest, Outbox, OutboxClosed


async def test_grants_by_priority_then_deadline_then_arrival() -> None:
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
        for args in (
            ("late-normal", Priority.NORMAL, now + 5),
            ("early-normal", Priority.NORMAL, now + 1),
            ("same-deadline-later", Priority.NORMAL, now + 1),
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


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        InferenceScheduler(0)


async def test_outbox_drop_removes_and_refuses_a_request() -> None:
    box = Outbox()
    box.put_event("start-a", "a")
    assert await box.put_audio(b"a1", "a")
    box.put_event("other")
    assert await box.put_audio(b"b1", "b")
    assert box.drop("a") == 2
    assert not await box.put_audio(b"a2", "a")
    box.put_event("end-a", "a")  # silently refused too
    assert [await box.get(), await box.get()] == ["other", b"b1"]
    assert len(box) == 0 and box.queued_bytes == 0


async def test_outbox_backpressure_waits_for_the_writer() -> None:
    box = Outbox()
    big = b"x" * MAX_QUEUED_AUDIO_BYTES
    assert await box.put_audio(big, "r")
    done = trio.Event()

    async def producer() -> None:
        await box.put_audio(b"more", "r")
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.sleep(0.05)
        assert not done.is_set()
        assert await box.get() == big
        with trio.fail_after(1):
            await done.wait()


async def test_outbox_close_with_drops_audio_keeps_events() -> None:
    box = Outbox()
    box.put_event("hello")
    await box.put_audio(b"pcm", "r")
    box.close_with(1001, "bye", drop_audio=True)
    assert await box.get() == "hello"
    assert await box.get() == CloseRequest(1001, "bye")
    with pytest.raises(OutboxClosed):
        await box.get()
    with pytest.raises(OutboxClosed):
        box.put_event("late")
