"""``tts-streamer``: run the server (``serve``, the default) and talk to one.

tts-streamer --config config/default.json        # same as: tts-streamer serve ...
python -m streamer --config config/default.json
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from .config import Config, ConfigError, load_config
from .logs import setup_logging

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "config/default.json"
#: Subcommands that talk to a running server; implemented in ``streamer.client.cli``.
CLIENT_COMMANDS = ("say", "voices", "status")


async def _serve(config: Config) -> None:
    from .server.app import run_server

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run_server, config)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                server.shutdown()
                break


def serve_main(config_path: str) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"tts-streamer: {exc}", file=sys.stderr)
        return 2
    log_file = config.path(config.server.log_file) if config.server.log_file else None
    setup_logging(config.server.log_level, log_file)
    try:
        trio.run(_serve, config)
    except BaseExceptionGroup as group:
        # A start-up refusal (a default voice that does not exist, a network address
        # without API keys) is a config error like the file's own: a line, exit 2.
        errors, others = group.split(ConfigError)
        if errors is None or others is not None:
            raise
        leaf: BaseException = errors
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        print(f"tts-streamer: {leaf}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CLIENT_COMMANDS:
        from .client.cli import main as client_main

        return int(client_main(args))
    if args and args[0] == "keys":  # tts-streamer keys create --id NAME
        from .server.security import keys_main

        return keys_main(args[1:])
    if args and args[0] == "serve":
        args = args[1:]
    parser = argparse.ArgumentParser(
        prog="tts-streamer",
        description="Run the MIT-TTS-Streamer server. Client commands: "
        + ", ".join(CLIENT_COMMANDS)
        + "; API keys: keys create (tts-streamer COMMAND --help).",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="JSON config file")
    parsed = parser.parse_args(args)
    if not Path(parsed.config).exists():
        print(f"tts-streamer: config file {parsed.config} not found", file=sys.stderr)
        return 2
    return serve_main(parsed.config)
