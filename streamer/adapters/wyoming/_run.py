"""Running the Wyoming server: its URI, the exposure rule, and ``tts-streamer wyoming``.

Wyoming has no authentication by design (the ``wyoming`` package: "meant for a
trusted network"), so API keys cannot protect it. The server's rule for every surface
is that a non-loopback address needs a credential or an explicit opt-out; Wyoming can
only take the opt-out: ``security.allow_unauthenticated`` (or ``--allow-unauthenticated``
on the command line), even when keys protect the WebSocket and HTTP servers.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import trio

from ...config import Config, ConfigError
from ...server.runtime import (
    build_services,
    check_defaults,
    load_models,
    rescan_voices,
    tuned_process,
)
from ...server.security import is_loopback
from ._server import serve_wyoming

log = logging.getLogger(__name__)

#: Home Assistant's customary port for a Wyoming TTS service (wyoming-piper's).
DEFAULT_PORT: Final = 10200
DEFAULT_URI: Final = f"tcp://127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True, slots=True)
class WyomingAddress:
    host: str
    port: int


def parse_uri(uri: str) -> WyomingAddress:
    """``tcp://HOST:PORT`` (the form wyoming services take); raises ``ValueError`` with
    the reason for anything else."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad URI {uri!r}: {exc}") from None
    if parts.scheme != "tcp":
        raise ValueError(f"only tcp://HOST:PORT is supported, got {uri!r}")
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"expected tcp://HOST:PORT, got {uri!r}")
    return WyomingAddress(parts.hostname, port)


def check_wyoming_exposure(config: Config, host: str, *, allow_unauthenticated: bool) -> None:
    """Refuse (``ConfigError``) to serve Wyoming on a non-loopback ``host`` unless
    unauthenticated access is allowed; then warn once."""
    if is_loopback(host):
        return
    if not (allow_unauthenticated or config.security.allow_unauthenticated):
        raise ConfigError(
            f"Wyoming on {host} would be reachable from other machines, and Wyoming has no "
            "authentication (API keys cannot protect it): bind 127.0.0.1, or allow it with "
            "security.allow_unauthenticated: true (tts-streamer wyoming "
            "--allow-unauthenticated) on a trusted network"
        )
    log.warning(
        "serving Wyoming on %s WITHOUT authentication: anyone who can reach it can use it",
        host,
    )


async def run_wyoming(
    config: Config,
    address: WyomingAddress,
    *,
    allow_unauthenticated: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``tts-streamer wyoming``: load the engines, then serve Wyoming alone until
    SIGINT or SIGTERM (or cancellation). ``task_status`` gets the bound port."""
    check_wyoming_exposure(config, address.host, allow_unauthenticated=allow_unauthenticated)
    services = build_services(config)
    check_defaults(services)
    with tuned_process(config.performance.event_loop_realtime_priority):
        if config.performance.preload_models:
            await trio.to_thread.run_sync(load_models, services)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_wyoming, services, address.host, address.port)
            nursery.start_soon(rescan_voices, services)
            task_status.started(port)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s; stopping", signal.Signals(signum).name)
                    break
            nursery.cancel_scope.cancel()
