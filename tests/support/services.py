"""The one way tests build a server's ``Config`` and the ``Services`` its sessions share.

Every test that needs a ``Services`` calls ``make_services(config, engines)``; its
config comes from ``make_config`` (a server on 127.0.0.1 port 0, models not preloaded)
or, for session tests without sockets, ``session_config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from streamer.config import Config, parse_config
from streamer.engines.base import Engine
from streamer.engines.registry import VoiceRegistry
from streamer.server.runtime import ChunkRunner, InferenceScheduler, Metrics, Services

#: Inference workers in session tests, whatever the machine's cores: the 2-core machines
#: the figures were measured on, and what the tests' "both workers busy" cases assume.
SESSION_TEST_WORKERS: Final = 2


def make_config(**sections: dict[str, Any]) -> Config:
    """A config for a server started inside a test; ``sections`` override its keys."""
    base: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "http_port": 0, "websocket_port": 0, "log_file": None},
        # Normal scheduling: the in-process server's loop is the test's own thread, which
        # also runs the test's code (tests/unit/server/test_cpu_priority.py covers
        # real-time).
        "performance": {"preload_models": False, "warm_up": False,
                        "event_loop_realtime_priority": 0},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return parse_config(base)


def session_config(**performance: object) -> Config:
    """A config for session tests: English, PCM, a queue of 4, two inference workers,
    synthesis as fast as possible (``realtime_lead_ms`` 0) unless ``performance`` says
    otherwise."""
    return make_config(
        tts={"default_language": "en", "default_format": "pcm", "chunk_size": 4000},
        performance={
            "realtime_lead_ms": 0,
            "max_queue_size": 4,
            "worker_processes": SESSION_TEST_WORKERS,
            **performance,
        },
    )


def make_services(
    config: Config,
    engines: Engine | Sequence[Engine],
    *,
    runner: ChunkRunner | None = None,
) -> Services:
    """``Services`` for ``config`` over ``engines``: a registry of them,
    ``config.inference_workers()`` inference workers, fresh metrics and admission.
    ``runner`` replaces the inference threads (``InlineChunks``, for tests on a virtual
    clock)."""
    registry = VoiceRegistry([engines] if isinstance(engines, Engine) else list(engines))
    inference = InferenceScheduler(config.inference_workers(), runner=runner)
    return Services(config, registry, inference, Metrics())
