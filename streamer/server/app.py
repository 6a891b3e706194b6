"""The server process: WebSocket and REST in one Trio nursery, one SessionManager.

Start-up: build the engines and registry, bind both ports (so ``/health`` answers 503
while loading), load and warm up models when the config says so, then report readiness
through ``task_status`` with the real ports (port 0 in tests).

Shutdown (``RunningServer.shutdown`` or a signal): stop accepting, close every
WebSocket with 1001 through its own writer, let Hypercorn finish, and cancel whatever
is left after ``shutdown_timeout_s``.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import WebSocketRequest, serve_websocket

from ..config import Config
from ..engines import build_engines
from ..engines.base import Voice
from ..engines.registry import VoiceRegistry
from ..protocol import CloseCode
from ._cpu_priority import make_event_loop_realtime, restore
from ._inference import InferenceScheduler
from .metrics import Metrics
from .rest import create_app
from .session import Services, SessionManager
from .websocket import serve_connection

log = logging.getLogger(__name__)

#: trio-websocket's receive queue; the reader drains it at once, so a few suffice.
WS_MESSAGE_QUEUE: int = 8
#: How often abandoned REST-created sessions are looked for.
REAP_INTERVAL_S: float = 30.0
#: Longest a thread holding the GIL keeps it from a thread that asks (CPython's default
#: is 5 ms). Inference threads run Python between their onnxruntime calls (slicing,
#: phonemizing); at 5 ms the event loop waited up to 5.6 ms for the GIL behind them,
#: the tail of every reply; at 1 ms, 1.8 ms, at no cost to the worker (measured with a
#: ticker thread beside a phonemizing loop: BENCHMARKS.md, "Latency and scale").
GIL_SWITCH_INTERVAL_S: float = 0.001
#: How often the event loop's timeliness is sampled (``event_loop_lag`` in the metrics):
#: often enough that a 2048-sample window covers the last ~20 s, for ~0.1 % of a core.
LOOP_LAG_INTERVAL_S: float = 0.01


@dataclass(slots=True)
class RunningServer:
    """Handle returned by ``nursery.start(run_server, config)``."""

    manager: SessionManager
    http_port: int
    websocket_port: int
    _shutdown: trio.Event = field(default_factory=trio.Event)

    def shutdown(self) -> None:
        """Begin a graceful shutdown; ``run_server`` returns when it is done."""
        self._shutdown.set()


def build_services(config: Config) -> Services:
    workers = config.inference_workers()
    engines = build_engines(
        engine=config.tts.engine,
        voices_dir=config.path(config.tts.voices_dir),
        device=config.tts.device,
        # One onnxruntime thread per synthesis; concurrency comes from the workers,
        # so threads in total never exceed the cores.
        intra_op_threads=1,
        piper_streaming=config.tts.piper.streaming,
        piper_cache_dir=config.path(config.tts.piper.cache_dir)
        if config.tts.piper.cache_dir
        else None,
        melo_enabled=config.tts.melo.enabled,
        melo_languages=config.tts.melo.languages,
        melo_checkpoint_dir=config.path(config.tts.melo.checkpoint_dir)
        if config.tts.melo.checkpoint_dir
        else None,
        melo_device=config.tts.melo.device,
    )
    return Services(
        config=config,
        registry=VoiceRegistry(
            engines,
            default_language=config.tts.default_language,
            preferred_engine=None if config.tts.engine == "auto" else config.tts.engine,
        ),
        inference=InferenceScheduler(workers),
        metrics=Metrics(),
    )


def _load_models(services: Services) -> None:
    """Blocking: load every available engine and warm up its default voices."""
    config = services.config
    for engine in services.registry.engines():
        status = engine.status()
        if not status.available:
            log.warning("engine %s unavailable: %s", engine.name, status.reason)
            continue
        try:
            engine.load()
        except Exception:
            log.exception("engine %s failed to load; its voices stay unavailable", engine.name)
    # Loading can change what an engine offers, or whether it is available at all.
    services.registry.refresh()
    if not config.performance.warm_up:
        return
    # Warm the voice the server default resolves to, and the best English voice.
    warm: dict[str, Voice] = {}
    for language in {config.tts.default_language, "en"}:
        try:
            voice = services.registry.resolve(language, 0)
        except Exception:
            continue
        warm[voice.id] = voice
    for voice in warm.values():
        try:
            services.registry.engine_for(voice).warm_up(voice)
            log.info("warmed up voice %s", voice.id)
        except Exception:
            log.exception("warm-up of %s failed", voice.id)


async def _reap_sessions(manager: SessionManager) -> None:
    while True:
        await trio.sleep(REAP_INTERVAL_S)
        manager.reap_unattached(time.time())


async def _watch_event_loop(metrics: Metrics) -> None:
    """Sample how late the event loop wakes for a timer that is due.

    The lateness is what any event waits at that moment: the loop busy with other tasks,
    the GIL held by an inference thread, or the OS running other threads on every
    core. Python's ``epoll`` rounds timeouts up to whole milliseconds, so an idle loop
    already shows up to ~1 ms; the tail above that is the server's.
    """
    while True:
        due = trio.current_time() + LOOP_LAG_INTERVAL_S
        await trio.sleep_until(due)
        metrics.observe_event_loop_lag(trio.current_time() - due)


async def run_server(
    config: Config,
    *,
    services: Services | None = None,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``RunningServer.shutdown()`` (or cancellation)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    # This thread runs the event loop: first in line for a core (``_cpu_priority``).
    previous_policy = make_event_loop_realtime(config.performance.event_loop_realtime_priority)
    try:
        await _serve(config, services, task_status)
    finally:
        restore(previous_policy)


async def _serve(
    config: Config,
    services: Services | None,
    task_status: trio.TaskStatus[RunningServer],
) -> None:
    services = services or build_services(config)
    manager = SessionManager(services)
    ready = False
    ws_port: int | None = None

    app = create_app(manager, websocket_port=lambda: ws_port, ready=lambda: ready)
    hconfig = HypercornConfig()
    hconfig.bind = [f"{config.server.host}:{config.server.http_port}"]
    hconfig.accesslog = None
    hconfig.graceful_timeout = config.server.shutdown_timeout_s
    http_stop = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        await serve_connection(request, manager)

    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            partial(
                serve_websocket,
                handler,
                config.server.host,
                config.server.websocket_port,
                None,
                message_queue_size=WS_MESSAGE_QUEUE,
                max_message_size=config.server.max_message_bytes,
            )
        )
        ws_port = ws_server.port
        binds = await nursery.start(
            partial(hypercorn_serve, app, hconfig, shutdown_trigger=http_stop.wait)
        )
        http_port = int(binds[0].rsplit(":", 1)[1])
        running = RunningServer(manager=manager, http_port=http_port, websocket_port=ws_port)
        # Ports are bound first so /health answers (503, not ready) while models load;
        # callers of nursery.start() still get a server that is ready to speak.
        if config.performance.preload_models:
            started = trio.current_time()
            await trio.to_thread.run_sync(_load_models, services)
            log.info("models loaded in %.2f s", trio.current_time() - started)
        # Every object alive now (modules, engines, voices: ~66k) lives as long as the
        # process. Left to the cyclic GC, each full collection walks them all: a 14 ms
        # pause of the event loop (measured in-process). Frozen, collections walk only
        # what requests create. (Full collections are rare: no latency figure moved.)
        gc.collect()
        gc.freeze()
        ready = True
        log.info(
            "serving REST on http://%s:%d and WebSocket on ws://%s:%d (pid %d)",
            config.server.host,
            http_port,
            config.server.host,
            ws_port,
            os.getpid(),
        )
        nursery.start_soon(_reap_sessions, manager)
        nursery.start_soon(_watch_event_loop, services.metrics)
        task_status.started(running)
        await running._shutdown.wait()

        log.info("shutting down: closing %d connection(s)", manager.connections)
        with trio.move_on_after(config.server.shutdown_timeout_s):
            for outbox in list(manager.outboxes):
                outbox.close_with(CloseCode.GOING_AWAY, "server shutting down", drop_audio=True)
            http_stop.set()
            while manager.connections:
                await manager.connection_ended.park()
        nursery.cancel_scope.cancel()
    log.info("stopped")
