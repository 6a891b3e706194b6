"""Stand-ins for what this machine cannot download, shared by the test suite and the
benchmark tools (``scripts/``), in the spirit of ``trio.testing``.

It lives in the package, not in ``tests/``: the tools measure with it too, and neither
``tests/`` nor ``scripts/`` may import the other. Importing it is cheap: melo, torch
and NLTK are imported only by the functions that need them.

- :func:`build_tiny_melo`: a tiny random-weight MeloTTS checkpoint per language, with
  the offline tokenizer cache and NLTK data melo needs; :func:`checkpoint_dir` is its
  ``MeloEngine`` checkpoint folder; :func:`melo_offline_environment` points melo at
  those caches (before melo is first imported).
- :class:`RawWebSocket`: a WebSocket client that can write any frame, valid or not
  (:func:`frame`), for the hostile-client tests and ``scripts.reliability``.
"""

from ._raw_websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Closed,
    HandshakeRefused,
    RawWebSocket,
    frame,
    masked,
    wire_bytes,
)
from ._tiny_melo import (
    TINY_SAMPLE_RATE,
    TINY_SPEAKERS,
    build_tiny_melo,
    checkpoint_dir,
    melo_offline_env,
    melo_offline_environment,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "TINY_SAMPLE_RATE",
    "TINY_SPEAKERS",
    "Closed",
    "HandshakeRefused",
    "RawWebSocket",
    "build_tiny_melo",
    "checkpoint_dir",
    "frame",
    "masked",
    "melo_offline_env",
    "melo_offline_environment",
    "wire_bytes",
]
