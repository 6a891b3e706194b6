"""``tts-streamer keys create --id NAME``: make a key and print its config entry."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import IO

from ._keys import API_KEYS_ENV, DEFAULT_CHARS_PER_MINUTE, DEFAULT_MAX_SESSIONS, create_key

#: Exit statuses, as the other commands': 0 done, 2 a usage error.
EXIT_OK = 0
EXIT_USAGE = 2


def add_keys_parser(parser: argparse.ArgumentParser) -> None:
    """Fill ``parser`` (``tts-streamer keys``) with its ``create`` subcommand."""
    commands = parser.add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND", parser_class=argparse.ArgumentParser
    )
    create = commands.add_parser(
        "create",
        help="make a new API key and print it with its config entry",
        description="Make a new API key. The key is printed once: give it to the client. "
        "Only the entry (with the key's SHA-256) goes into the server's config: "
        f"security.api_keys, the file of security.api_keys_file, or ${API_KEYS_ENV}.",
    )
    create.add_argument("--id", required=True, help="the key's name (in logs and metrics)")
    create.add_argument(
        "--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
        help=f"connections and speech requests at once (default {DEFAULT_MAX_SESSIONS}; "
        "0 = no limit)",
    )
    create.add_argument(
        "--chars-per-minute", type=int, default=DEFAULT_CHARS_PER_MINUTE,
        help=f"characters synthesized per rolling minute (default {DEFAULT_CHARS_PER_MINUTE}; "
        "0 = no limit)",
    )
    create.add_argument("--admin", action="store_true", help="sees and controls every session")
    create.add_argument(
        "--json", action="store_true", help='print {"key": ..., "entry": {...}} only'
    )


def run_keys(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Run a parsed ``keys`` command; returns the exit status."""
    try:
        key, entry = create_key(
            args.id,
            max_sessions=args.max_sessions,
            chars_per_minute=args.chars_per_minute,
            admin=args.admin,
        )
    except ValueError as exc:
        err.write(f"tts-streamer keys create: {exc}\n")
        return EXIT_USAGE
    if args.json:
        out.write(json.dumps({"key": key, "entry": entry}) + "\n")
        return EXIT_OK
    out.write(
        f"API key (shown only now; give it to the client):\n  {key}\n\n"
        "Config entry (add it to security.api_keys, to the list in security.api_keys_file, "
        f"or to the JSON list in ${API_KEYS_ENV}):\n  {json.dumps(entry)}\n"
    )
    return EXIT_OK


def keys_main(
    argv: Sequence[str], *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """``tts-streamer keys ...`` on its own: ``argv`` without the word ``keys``."""
    parser = argparse.ArgumentParser(prog="tts-streamer keys")
    add_keys_parser(parser)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    return run_keys(args, stdout or sys.stdout, stderr or sys.stderr)
