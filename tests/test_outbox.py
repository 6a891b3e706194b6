"""The outbox's flush signal: a request's first inference waits for its replies to be
written (``Session._play``), so the writer reports each frame it sends."""

from __future__ import annotations

import trio
import trio.testing

from streamer.server.session import Outbox


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
