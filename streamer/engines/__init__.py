"""Text-to-speech engines and the voice registry over them.

``base`` is the contract (with its errors, by blame); ``kokoro`` (Kokoro-82M, the most
natural voices), ``piper`` (neural, ONNX), ``pico`` (SVOX Pico, six languages, the fast
natural tier), ``espeak`` (every language) and ``melo`` (MeloTTS, optional) implement
it; ``timings`` is what engines say about when words are spoken; ``languages`` parses
tags and names them (``language_name``); ``registry`` resolves language + voice to the
best voice of any engine, from a snapshot it refreshes on demand; ``patches`` holds our
changes to the engines' libraries, one module per
library. Engines know nothing of sessions or servers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import (
    MAX_SPEED,
    MIN_SPEED,
    Engine,
    EngineError,
    EngineStatus,
    Pcm,
    SynthesisOptions,
    UnknownLanguageError,
    UnknownSpeakerError,
    UnknownVoiceError,
    Voice,
    VoiceSelectionError,
    check_speed,
    engine_errors,
)
from .languages import language_name
from .registry import VOICE_RESCAN_INTERVAL_S, VoiceRegistry
from .timings import TimedChunk, WordTiming

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "VOICE_RESCAN_INTERVAL_S",
    "Engine",
    "EngineError",
    "EngineStatus",
    "Pcm",
    "SynthesisOptions",
    "TimedChunk",
    "UnknownLanguageError",
    "UnknownSpeakerError",
    "UnknownVoiceError",
    "Voice",
    "VoiceRegistry",
    "VoiceSelectionError",
    "WordTiming",
    "build_engines",
    "check_speed",
    "engine_errors",
    "language_name",
]

log = logging.getLogger(__name__)


def _piper_wants_cuda(device: str) -> bool:
    # "auto" means CUDA only where onnxruntime was built with it (onnxruntime-gpu).
    if device != "auto":
        return device == "cuda"
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


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
    kokoro_model_dir: Path | None = None,
    kokoro_device: str = "auto",
) -> list[Engine]:
    """Every engine there is, for a registry to offer. ``engine`` ("auto" or an engine
    name) is only a preference, applied by the registry's ranking: the other engines stay
    as fallbacks, so a language the preferred engine lacks is still spoken. MeloTTS is
    built only when enabled (or preferred), since it needs an optional install.

    Engines are cheap to construct; models load in ``Engine.load``. An engine that
    cannot run here still appears, with ``status().available`` False and the reason
    (Kokoro without ``kokoro_model_dir``, or with its files missing there).
    """
    engines: list[Engine] = []
    if melo_enabled or engine == "melo":
        from .melo import MeloEngine

        engines.append(
            MeloEngine(
                languages=melo_languages, checkpoint_dir=melo_checkpoint_dir, device=melo_device
            )
        )
    from .espeak import EspeakEngine
    from .kokoro import KokoroEngine
    from .pico import PicoEngine
    from .piper import PiperEngine

    engines.append(
        KokoroEngine(
            kokoro_model_dir if kokoro_model_dir is not None else Path("models/kokoro"),
            device=kokoro_device,
            intra_op_threads=intra_op_threads,
        )
    )

    engines.append(
        PiperEngine(
            voices_dir,
            intra_op_threads=intra_op_threads,
            use_cuda=_piper_wants_cuda(device),
            streaming=piper_streaming,
            split_cache_dir=piper_cache_dir,
        )
    )
    engines.append(PicoEngine())
    engines.append(EspeakEngine())
    return engines
