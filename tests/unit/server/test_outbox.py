"""The outbox between a session and its connection's writer: dropping a request's
frames, the audio byte budget, closing, and the flush signal (a request's first
inference waits for its replies to be written, so the writer reports each frame it
sends)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from streamer.server.session import MAX_QUEUED_AUDIO_BYTES, CloseRequest, Outbox, OutboxClosed


async def test_wait_flushed_returns_once_everything_queued_is_written() -> None:
    outbox = Outbox()
    flushed = trio.Event()

    async def waiter() -> None:
        await outbox.wait_flushed()
        flushed.set()

    await outbox.wait_flushed()  # nothing queued: at once
    outbox.put_event('{"type":"queued"}')
    outbox.put_event('{"type":"audio_start"}')
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await outbox.get()
        outbox.sent()
        await trio.testing.wait_all_tasks_blocked()
        assert not flushed.is_set()  # one still queued
        await outbox.get()
        await trio.testing.wait_all_tasks_blocked()
        assert not flushed.is_set()  # taken, not yet written
        outbox.sent()
        with trio.fail_after(1):
            await flushed.wait()


async def test_wait_flushed_returns_when_the_outbox_closes() -> None:
    outbox = Outbox()
    outbox.put_event('{"type":"queued"}')
    with trio.fail_after(1):  # fails, rather than hangs, if it never returns
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.wait_flushed)
            await trio.testing.wait_all_tasks_blocked()
            outbox.close()


async def test_drop_removes_and_refuses_a_request() -> None:
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


async def test_backpressure_waits_for_the_writer() -> None:
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


async def test_close_with_drops_audio_keeps_events() -> None:
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
