"""``tts-streamer``: one command root for the server and the client commands.

    tts-streamer serve --config config/default.json
    tts-streamer --config config/default.json          # no command: serve
    python -m streamer --config config/default.json
    tts-streamer say "Hola" -o hola.mp3                  # client commands:
    tts-streamer voices | tts-streamer status            # streamer.client.cli
    tts-streamer wyoming --uri tcp://127.0.0.1:10200     # a Wyoming server alone

One argparse parser holds every subcommand, so ``tts-streamer --help`` lists them all.
``serve`` imports the server only when it runs, and the client commands never import
it: the client package knows nothing of the server, nor the server of the client.

Exit status: 0 done; 1 the server answered with an error (client commands); 2 bad
usage, a config file that is missing or invalid, nothing to talk to; 130 Ctrl-C;
141 standard output was closed early (``tts-streamer voices | head -5``), quietly.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn

from .client import cli as client_cli
from .server.security import add_keys_parser, run_keys

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from .client.playback import PlaybackSink
    from .config import Config

log = logging.getLogger(__name__)

DEFAULT_CONFIG: Final = "config/default.json"
#: ``tts-streamer wyoming``'s default address (Home Assistant's usual Wyoming TTS port);
#: as ``streamer.adapters.wyoming.DEFAULT_URI``, which is not imported before it is used.
WYOMING_URI: Final = "tcp://127.0.0.1:10200"
EXIT_USAGE: Final = 2
#: What a shell reports for a process killed by SIGPIPE (128 + 13); we exit with it,
#: without the traceback, when the reader of our standard output has gone.
EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE


class _UsageError(Exception):
    pass


class CommandParser(argparse.ArgumentParser):
    """argparse that writes to the given streams and raises instead of exiting, so
    ``main`` decides the exit status and tests can capture the output."""

    def __init__(self, *args: Any, out: IO[str], err: IO[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._out, self._err = out, err

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (self._err if file is sys.stderr else self._out).write(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._err.write(message)
        raise SystemExit(status)

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def build_parser(out: IO[str], err: IO[str]) -> CommandParser:
    """The ``tts-streamer`` parser: ``serve`` and the client commands."""
    parser = CommandParser(
        prog="tts-streamer",
        out=out,
        err=err,
        description="MIT-TTS-Streamer: run the server (serve, the default) or talk to one.",
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"JSON config file for serve ({DEFAULT_CONFIG})"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    serve = commands.add_parser(
        "serve", help="run the server (the default command)", out=out, err=err,
        description="Run the WebSocket and HTTP servers until SIGINT or SIGTERM.",
    )
    # SUPPRESS: `tts-streamer --config X serve` must keep X, not the subparser's default.
    serve.add_argument("--config", default=argparse.SUPPRESS, help="JSON config file")
    wyoming = commands.add_parser(
        "wyoming", help="run a Wyoming server (Home Assistant) alone", out=out, err=err,
        description="Serve the Wyoming protocol (Home Assistant's voice services) with the "
        "config's engines until SIGINT or SIGTERM. Needs the [wyoming] extra.",
    )
    wyoming.add_argument("--config", default=argparse.SUPPRESS, help="JSON config file")
    wyoming.add_argument(
        "--uri", default=WYOMING_URI, help=f"where to listen, tcp://HOST:PORT ({WYOMING_URI})"
    )
    wyoming.add_argument(
        "--allow-unauthenticated", action="store_true",
        help="serve a non-loopback host (Wyoming has no authentication: a trusted network)",
    )
    client_cli.add_commands(commands, out=out, err=err)
    keys = commands.add_parser(
        "keys", help="API keys: keys create --id NAME", out=out, err=err,
        description="Create API keys for security.api_keys.",
    )
    add_keys_parser(keys)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    sink: PlaybackSink | None = None,
) -> int:
    """Run one ``tts-streamer`` command; returns the exit status. ``sink`` replaces the
    sound card for ``say --play`` (tests)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser(out, err)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        if args.command in (None, "serve"):
            return _serve_command(args.config, err)
        if args.command == "keys":
            return run_keys(args, out, err)
        if args.command == "wyoming":
            return _wyoming_command(args.config, args.uri, args.allow_unauthenticated, err)
        status = client_cli.run(args, out, err, sink)
        out.flush()  # a closed pipe surfaces here, inside the handler below
        return status
    except BrokenPipeError:
        _silence_stdout(out)
        return EXIT_BROKEN_PIPE


def _silence_stdout(out: IO[str]) -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush does not
    print a second BrokenPipeError at exit."""
    if out is sys.stdout:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# --- serve ------------------------------------------------------------------------------


def _serve_command(config_path: str, err: IO[str]) -> int:
    if not Path(config_path).exists():
        err.write(f"tts-streamer: config file {config_path} not found\n")
        return EXIT_USAGE
    return serve_main(config_path, err)


def serve_main(config_path: str, err: IO[str] | None = None) -> int:
    """Load the config, set up logging and run the server until a signal."""
    import trio

    from .config import ConfigError, load_config
    from .logs import setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        (err or sys.stderr).write(f"tts-streamer: {exc}\n")
        return EXIT_USAGE
    log_file = config.path(config.server.log_file) if config.server.log_file else None
    setup_logging(config.server.log_level, log_file)
    try:
        trio.run(_serve, config)
    except BaseException as exc:  # a start-up failure arrives inside exception groups
        reason = _startup_failure(exc, config)
        if reason is None:
            raise
        (err or sys.stderr).write(f"tts-streamer: {reason}\n")
        return EXIT_USAGE
    return 0


def _wyoming_command(config_path: str, uri: str, allow_unauthenticated: bool, err: IO[str]) -> int:
    """``tts-streamer wyoming``: the Wyoming server alone, until a signal."""
    if not Path(config_path).exists():
        err.write(f"tts-streamer: config file {config_path} not found\n")
        return EXIT_USAGE
    try:
        from .adapters.wyoming import parse_uri, run_wyoming
    except ImportError as exc:
        err.write(f"tts-streamer: wyoming needs the [wyoming] extra ({exc})\n")
        return EXIT_USAGE
    import trio

    from .config import ConfigError, load_config
    from .logs import setup_logging

    try:
        address = parse_uri(uri)
        config = load_config(config_path)
    except (ValueError, ConfigError) as exc:
        err.write(f"tts-streamer: {exc}\n")
        return EXIT_USAGE
    log_file = config.path(config.server.log_file) if config.server.log_file else None
    setup_logging(config.server.log_level, log_file)
    try:
        trio.run(
            partial(run_wyoming, config, address, allow_unauthenticated=allow_unauthenticated)
        )
    except BaseException as exc:
        reason = _startup_failure(exc, config, wyoming_port=address.port)
        if reason is None:
            raise
        err.write(f"tts-streamer: {reason}\n")
        return EXIT_USAGE
    return 0


def _startup_failure(
    exc: BaseException, config: Config, *, wyoming_port: int | None = None
) -> str | None:
    """One line for a failure that is the operator's to fix (a config value the server
    cannot honour, a port it cannot bind), or None for anything else (a bug: the
    traceback is then the right report)."""
    from .config import ConfigError

    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(exc)
    for leaf in leaves:
        if isinstance(leaf, ConfigError):
            return str(leaf)
        if isinstance(leaf, OSError) and leaf.errno in (errno.EADDRINUSE, errno.EACCES):
            server = config.server
            if wyoming_port is not None:  # tts-streamer wyoming: that port alone
                return f"cannot listen on port {wyoming_port} (Wyoming): {leaf.strerror} (--uri)"
            ports = f"{server.http_port} (HTTP) or {server.websocket_port} (WebSocket)"
            keys = "server.host, server.http_port, server.websocket_port"
            if server.wyoming_port is not None:
                ports = f"{server.http_port} (HTTP), {server.websocket_port} (WebSocket) or "
                ports += f"{server.wyoming_port} (Wyoming)"
                keys += ", server.wyoming_port"
            return f"cannot listen on {server.host} port {ports}: {leaf.strerror} ({keys})"
    return None


async def _serve(config: Config) -> None:
    import trio

    from .server.app import run_server

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run_server, config)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as watch:

                async def until_stopped() -> None:
                    await server.stopped.wait()
                    watch.cancel_scope.cancel()

                watch.start_soon(until_stopped)
                stopping = False
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if stopping:
                        # Ctrl-C reaches the whole process group (a supervisor passes
                        # it on too): taken here, a repeat would otherwise be re-raised
                        # as KeyboardInterrupt when the receiver closes. The shutdown
                        # already has its deadline (server.shutdown_timeout_s).
                        log.info("received %s again: already stopping", name)
                        continue
                    log.info("received %s", name)
                    if signum == signal.SIGTERM and not server.draining:
                        server.drain()  # server.drain_timeout_s; 0: shut down now
                        continue
                    server.shutdown()
                    stopping = True  # until_stopped ends this loop once it has stopped
