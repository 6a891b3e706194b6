"""What every session shares, built once per server: the voice registry, the inference
scheduler, admission control and the metrics."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Final

import trio

from ...config import Config, ConfigError
from ...engines import build_engines
from ...engines.base import Engine, SynthesisOptions, Voice
from ...engines.registry import VOICE_RESCAN_INTERVAL_S, VoiceRegistry, VoiceSelectionError
from ...langdetect import default_detector
from ..security import Security
from ._admission import Admission, cost_key
from ._downloads import DownloadGate
from ._inference import InferenceScheduler, ThreadRunner
from ._metrics import Metrics

log = logging.getLogger(__name__)

#: Bench and test option, never a setting: the inference workers sleep this many times
#: each chunk's run time after it (``ThreadRunner``), a CPU that much slower.
BENCH_SLOWDOWN_ENV: Final = "TTS_STREAMER_BENCH_SLOWDOWN"
#: What the start-up probe says, to measure a voice's cost before any client: two
#: clauses, so the figures include a second segment's first window (~6 s of speech).
CALIBRATION_TEXT: Final = (
    "Good morning, this is a short calibration sentence, spoken once at start-up so "
    "that the server knows what a second of speech costs here."
)


@dataclass(slots=True)
class Services:
    """What every session shares: one registry, one inference scheduler, one metrics,
    one admission control."""

    config: Config
    registry: VoiceRegistry
    inference: InferenceScheduler
    metrics: Metrics
    #: Admission control (sized from the workers and ``performance.max_inference_load``).
    admission: Admission = field(init=False)
    #: The bound on HTTP speech (sized from the workers).
    downloads: DownloadGate = field(init=False)
    #: Keys, tokens, origins and per-key quotas (read from the config and environment).
    security: Security = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(
            self.inference.workers, self.config.performance.max_inference_load
        )
        # Every finished chunk may make room for a request waiting to start.
        self.inference.on_chunk_done = self.admission.poke
        self.downloads = DownloadGate(self.inference.workers)
        self.security = Security.from_config(self.config)

    def admission_capacity(self) -> float:
        """Worker-seconds per second admitted real-time streams may need now."""
        return self.admission.capacity


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
        inference=InferenceScheduler(workers, ThreadRunner(bench_slowdown())),
        metrics=Metrics(),
    )


def bench_slowdown() -> float:
    """``TTS_STREAMER_BENCH_SLOWDOWN`` (0 when unset); ``ConfigError`` if it is not a
    number >= 0. Logged loudly: a server running with it is deliberately slow."""
    raw = os.environ.get(BENCH_SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{BENCH_SLOWDOWN_ENV} must be a number >= 0, got {raw!r}")
    if value:
        log.warning(
            "%s=%s: inference is slowed down %.2fx for benchmarking",
            BENCH_SLOWDOWN_ENV, raw, 1 + value,
        )
    return value


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
            engine = services.registry.engine_for(voice)
            engine.warm_up(voice)
            calibrate(services, engine, voice)
            log.info(
                "warmed up voice %s: %s", voice.id, services.admission.voice(voice.id).to_json()
            )
        except Exception:
            log.exception("warm-up of %s failed", voice.id)


def calibrate(services: Services, engine: Engine, voice: Voice) -> None:
    """The start-up probe (blocking, before the server is ready): synthesize
    ``CALIBRATION_TEXT`` chunk by chunk, streamed and in whole segments, timing each
    chunk in wall time as the scheduler does (with the bench slowdown, if any), and
    teach admission what it cost. Under load, the live figures take over within a few
    seconds of audio."""
    runner = services.inference.runner
    slowdown = runner.slowdown if isinstance(runner, ThreadRunner) else 0.0
    admission = services.admission
    # Chunks made while a stream is still getting ahead (the player's rule).
    lead = services.config.performance.realtime_lead_ms / 1000
    for whole in (False, True):
        key = cost_key(voice.id, whole)
        chunks = engine.stream(voice, CALIBRATION_TEXT, SynthesisOptions(whole_segments=whole))
        audio = previous = 0.0
        while True:
            started = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            if slowdown:
                time.sleep(slowdown * (time.perf_counter() - started))
            wall = time.perf_counter() - started
            seconds = len(chunk) / voice.sample_rate
            admission.observe_chunk(key, wall, seconds, first=not audio)
            if not whole and 0 < previous < lead:
                admission.observe_chain(key, wall, previous, None)
            audio += seconds
            previous = seconds
        admission.observe_text(voice.id, len(CALIBRATION_TEXT), audio, 1.0)


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
