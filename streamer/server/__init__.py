"""The server process. Its rooms:

- ``session/``: the session core (a listener's session, queue and pre-emption, the
  player of one request, config resolution, the session manager, the outbox);
- ``runtime/``: what the whole process shares (inference scheduler, admission, CPU
  priority, metrics);
- ``security/``: API keys, browser tokens, origins and per-key quotas;
- ``websocket/``: the real-time transport, one nursery per connection;
- ``http/``: REST control, the OpenAI speech API, Prometheus, OpenAPI and the page;
- ``app.py``: the composition root that wires them into one Trio nursery.

The names below load on first use: ``tts-streamer keys`` needs ``security`` alone, not
the transports and engines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import RunningServer, run_server
    from .runtime import Services, build_services

__all__ = ["RunningServer", "Services", "build_services", "run_server"]

_HOMES = {
    "RunningServer": "app",
    "run_server": "app",
    "Services": "runtime",
    "build_services": "runtime",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{home}"), name)
