"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from streamer.testing import build_tiny_melo, checkpoint_dir, melo_offline_environment

if TYPE_CHECKING:
    from streamer.engines.melo import MeloEngine


@pytest.fixture(scope="session")
def tiny_melo_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny random-weight MeloTTS checkpoint with offline tokenizers and NLTK data,
    built once per test session (see streamer/testing/_tiny_melo.py)."""
    pytest.importorskip("melo")
    root = build_tiny_melo(tmp_path_factory.mktemp("melo"))
    with melo_offline_environment(root):
        yield root


@pytest.fixture(scope="session")
def melo_engine(tiny_melo_root: Path) -> MeloEngine:
    from streamer.engines.melo import MeloEngine

    engine = MeloEngine(languages=("EN", "ES"), checkpoint_dir=checkpoint_dir(tiny_melo_root))
    engine.load()
    return engine
