"""The real engines, each loaded once for this package's tests.

An engine that cannot run on this machine is skipped, with the reason its status
gives. CI never skips one: ``.ci/run`` runs ``make test``, which installs every engine
first (``make install``: Piper, espeak-ng, SVOX Pico, Kokoro's model and voices).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest

from streamer.engines.base import Engine
from streamer.engines.espeak import EspeakEngine
from streamer.engines.kokoro import KokoroEngine
from streamer.engines.pico import PicoEngine
from streamer.engines.piper import PiperEngine
from tests.support import REPO_ROOT

#: Where ``make install`` puts Kokoro (deploy/install_kokoro.py).
KOKORO_DIR = REPO_ROOT / "models" / "kokoro"

_E = TypeVar("_E", bound=Engine)


def _loaded(engine: _E) -> _E:
    status = engine.status()
    if not status.available:
        pytest.skip(status.reason)
    engine.load()
    return engine


@pytest.fixture(scope="package")
def espeak_engine() -> EspeakEngine:
    return _loaded(EspeakEngine())


@pytest.fixture(scope="package")
def pico_engine() -> PicoEngine:
    return _loaded(PicoEngine())


@pytest.fixture(scope="package")
def kokoro_engine() -> KokoroEngine:
    return _loaded(KokoroEngine(KOKORO_DIR, device="cpu"))


def _piper(mode: str, cache_dir: Path) -> PiperEngine:
    return _loaded(PiperEngine(None, intra_op_threads=2, streaming=mode, split_cache_dir=cache_dir))


@pytest.fixture(scope="package")
def piper_clause_engine(tmp_path_factory: pytest.TempPathFactory) -> PiperEngine:
    return _piper("clause", tmp_path_factory.mktemp("split-cache"))


@pytest.fixture(scope="package")
def piper_windowed_engine(tmp_path_factory: pytest.TempPathFactory) -> PiperEngine:
    return _piper("windowed", tmp_path_factory.mktemp("split-cache"))
