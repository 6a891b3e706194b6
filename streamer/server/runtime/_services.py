"""What every session shares, built once per server: the voice registry, the inference
scheduler, admission control and the metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ...config import Config, ConfigError
from ...engines import build_engines
from ...engines.base import Voice
from ...engines.registry import VOICE_RESCAN_INTERVAL_S, VoiceRegistry, VoiceSelectionError
from ...langdetect import default_detector
from ..security import Security
from ._admission import Admission
from ._downloads import DownloadGate
from ._inference import InferenceScheduler
from ._metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    """What every session shares: one registry, one inference scheduler, one metrics,
    one admission control."""

    config: Config
    registry: VoiceRegistry
    inference: InferenceScheduler
    metrics: Metrics
    admission: Admission = field(default_factory=Admission)
    #: The bound on HTTP speech (sized from the workers).
    downloads: DownloadGate = field(init=False)
    #: Keys, tokens, origins and per-key quotas (read from the config and environment).
    security: Security = field(init=False)

    def __post_init__(self) -> None:
        self.downloads = DownloadGate(self.inference.workers)
        self.security = Security.from_config(self.config)

    def admission_capacity(self) -> float:
        """CPU-seconds per second admitted real-time streams may need."""
        return self.inference.workers * self.config.performance.max_inference_load


def build_services(config: Config) -> Services:
    """The runtime for ``config``: engines (not loaded yet), registry, scheduler."""
    workers = config.inference_workers()
    engines = build_engines(
        engine=config.tts.engine,
        voices_dir=config.path(config.tts.voices_dir),
        device=config.tts.device,
        # One onnxruntime thread per synthesis; concurrency comes from the workers,
        # so threads in total never exceed the cores.
        intra_op_threads=1,
        piper_streaming=config.tts.piper.streaming,
        piper_cache_dir=config.path(config.tts.piper.cache_dir)
        if config.tts.piper.cache_dir
        else None,
        melo_enabled=config.tts.melo.enabled,
        melo_languages=config.tts.melo.languages,
        melo_checkpoint_dir=config.path(config.tts.melo.checkpoint_dir)
        if config.tts.melo.checkpoint_dir
        else None,
        melo_device=config.tts.melo.device,
        kokoro_model_dir=config.path(config.tts.kokoro.model_dir),
        kokoro_device=config.tts.kokoro.device,
    )
    return Services(
        config=config,
        registry=VoiceRegistry(
            engines,
            default_language=config.tts.default_language,
            preferred_engine=None if config.tts.engine == "auto" else config.tts.engine,
        ),
        inference=InferenceScheduler(workers),
        metrics=Metrics(),
    )


def load_models(services: Services) -> None:
    """Blocking: load every available engine and warm up its default voices."""
    config = services.config
    for engine in services.registry.engines():
        status = engine.status()
        if not status.available:
            log.warning("engine %s unavailable: %s", engine.name, status.reason)
            continue
        try:
            engine.load()
        except Exception:
            log.exception("engine %s failed to load; its voices stay unavailable", engine.name)
    # Loading can change what an engine offers (or whether it is available at all).
    services.registry.refresh()
    # ``language: "auto"``: the detector's model (~0.5 s to load) must not load on the
    # event loop at a client's first request.
    default_detector().load()
    if not config.performance.warm_up:
        return
    # Warm the voice the server default resolves to, and the best English voice.
    warm: dict[str, Voice] = {}
    for language in {config.tts.default_language, "en"}:
        try:
            voice = services.registry.resolve(language, 0)
        except VoiceSelectionError:
            continue  # no voice for it: nothing to warm
        warm[voice.id] = voice
    for voice in warm.values():
        try:
            services.registry.engine_for(voice).warm_up(voice)
            log.info("warmed up voice %s", voice.id)
        except Exception:
            log.exception("warm-up of %s failed", voice.id)


def check_defaults(services: Services) -> None:
    """Refuse to start when the configured default voice does not exist here: every
    session that takes the defaults would fail. Raises ``ConfigError`` naming the key."""
    tts = services.config.tts
    try:
        services.registry.resolve(tts.default_language, tts.default_voice_id)
    except VoiceSelectionError as exc:
        key = "tts.default_language" if exc.code == "unknown_language" else "tts.default_voice_id"
        available = ", ".join(exc.available[:20]) or "none"
        raise ConfigError(f"config key '{key}': {exc.message} (available: {available})") from None


async def rescan_voices(services: Services) -> None:
    """Rescan the engines' voices every ``VOICE_RESCAN_INTERVAL_S``, forever, in a worker
    thread: requests resolve against the registry's in-memory snapshot, so the event
    loop (at real-time priority) never touches the filesystem for them."""
    while True:
        await trio.sleep(VOICE_RESCAN_INTERVAL_S)
        await trio.to_thread.run_sync(services.registry.refresh)
