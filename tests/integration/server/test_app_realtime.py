"""The server runs its event loop under real-time scheduling while it serves, and gives
it back when it stops (the policy itself: tests/unit/server/test_cpu_priority.py)."""

from __future__ import annotations

import os

import trio

from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services
from tests.support.threads import in_new_thread, needs_realtime


@needs_realtime
def test_server_runs_its_loop_realtime_while_serving() -> None:
    config = make_config(performance={"event_loop_realtime_priority": 2})

    async def main() -> tuple[int, int]:
        async with running_server(config, make_services(config, [FakeEngine()])):
            return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    def serve() -> tuple[tuple[int, int], int]:
        return trio.run(main), os.sched_getscheduler(0)

    (policy, priority), after = in_new_thread(serve)
    assert policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO and priority == 2
    assert after == os.SCHED_OTHER  # given back when the server stops
