"""Text-to-speech engines and the voice registry over them.

``base`` is the contract; ``piper`` (neural, ONNX), ``espeak`` (every language) and
``melo`` (MeloTTS, optional) implement it; ``registry`` resolves language + voice to
the best voice of any engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Engine

log = logging.getLogger(__name__)


def build_engines(
    *,
    engine: str,
    voices_dir: Path,
    device: str,
    intra_op_threads: int,
    piper_streaming: str = "windowed",
    piper_cache_dir: Path | None = None,
    melo_enabled: bool = False,
    melo_languages: tuple[str, ...] = (),
    melo_checkpoint_dir: Path | None = None,
    melo_device: str = "auto",
) -> list[Engine]:
    """The engines a config asks for. ``engine`` is "auto" (all) or one engine name.

    Engines are cheap to construct; models load in ``Engine.load``. An engine that
    cannot run here still appears, with ``status().available`` False and the reason.
    """
    engines: list[Engine] = []
    if engine in ("auto", "melo") and (melo_enabled or engine == "melo"):
        from .melo import MeloEngine

        engines.append(
            MeloEngine(
                languages=melo_languages, checkpoint_dir=melo_checkpoint_dir, device=melo_device
            )
        )
    if engine in ("auto", "piper"):
        from .piper import PiperEngine

        engines.append(
            PiperEngine(
                voices_dir,
                intra_op_threads=intra_op_threads,
                use_cuda=device == "cuda",
                streaming=piper_streaming,
                split_cache_dir=piper_cache_dir,
            )
        )
    if engine in ("auto", "espeak"):
        from .espeak import EspeakEngine

        engines.append(EspeakEngine())
    return engines
