"""``python -m tests.support.fake_replica --config FILE``: the server over the fake
engine in a process of its own, as a cluster's replica in the cluster tests (they kill
it, signal it, restart Redis under it). Signals as ``tts-streamer serve``: SIGTERM
drains (``server.drain_timeout_s``), SIGINT shuts down.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from streamer.config import load_config
from streamer.server.app import run_server
from tests.support.fake_engine import FakeEngine
from tests.support.services import make_services


async def serve(config_path: str, chunk_seconds: float) -> None:
    config = load_config(config_path)
    services = make_services(config, [FakeEngine(chunk_seconds=chunk_seconds)])
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: run_server(config, services=services, task_status=task_status)
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as watch:

                async def until_stopped() -> None:
                    await server.stopped.wait()
                    watch.cancel_scope.cancel()

                watch.start_soon(until_stopped)
                async for signum in signals:
                    if signum == signal.SIGTERM and not server.draining:
                        server.drain()
                        continue
                    server.shutdown()
                    break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--chunk-seconds", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    trio.run(serve, args.config, args.chunk_seconds)


if __name__ == "__main__":
    main()
