"""Sub-sentence streaming for Piper voices (work in progress: not implemented yet).

Until it is, ``WindowedDecoder.load`` raises and ``PiperEngine`` falls back to clause
mode for every voice, logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class WindowedDecoder:
    """A Piper model cut into encoder and windowed decoder."""

    @classmethod
    def load(
        cls,
        model_path: Path,
        *,
        cache_dir: Path | None,
        session_options: Any,
        providers: list[str],
    ) -> WindowedDecoder:
        raise NotImplementedError("windowed Piper streaming is not implemented yet")
