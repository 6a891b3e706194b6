"""Process-wide tuning the server applies while it runs: the event-loop lag it samples."""

from __future__ import annotations

import time

import trio

from streamer.server.runtime import Metrics, watch_event_loop


async def test_event_loop_lag_shows_a_blocked_loop() -> None:
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_event_loop, metrics)
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
