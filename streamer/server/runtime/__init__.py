"""The process-wide runtime every session shares: the inference scheduler, admission
control, the event loop's CPU priority, the metrics, and the ``Services`` that bundles
them."""

from ._admission import (
    COST_HALF_LIFE_AUDIO_S,
    FULL_RETRY_S,
    STARTUP_BUFFER_S,
    STARTUP_FACTOR,
    STARTUP_RETRY_S,
    Admission,
    Refusal,
)
from ._cpu_priority import make_event_loop_realtime, realtime_supported, restore
from ._downloads import DownloadGate
from ._inference import (
    BULK_NICE_INCREMENT,
    URGENT_NICE_INCREMENT,
    URGENT_WITHIN_S,
    ChunkRunner,
    InferenceScheduler,
    InferenceStats,
)
from ._metrics import Distribution, MetricName, Metrics, Observer, RequestOutcome
from ._patching import apply_once
from ._process import GIL_SWITCH_INTERVAL_S, frozen_startup_objects, tuned_process, watch_event_loop
from ._services import Services, build_services, check_defaults, load_models, rescan_voices
from ._state import DRAINING_RETRY_MS, ServerState, draining_refusal

__all__ = [
    "BULK_NICE_INCREMENT",
    "COST_HALF_LIFE_AUDIO_S",
    "DRAINING_RETRY_MS",
    "FULL_RETRY_S",
    "GIL_SWITCH_INTERVAL_S",
    "STARTUP_BUFFER_S",
    "STARTUP_FACTOR",
    "STARTUP_RETRY_S",
    "URGENT_NICE_INCREMENT",
    "URGENT_WITHIN_S",
    "Admission",
    "ChunkRunner",
    "Distribution",
    "DownloadGate",
    "InferenceScheduler",
    "InferenceStats",
    "MetricName",
    "Metrics",
    "Observer",
    "Refusal",
    "RequestOutcome",
    "ServerState",
    "Services",
    "apply_once",
    "build_services",
    "check_defaults",
    "draining_refusal",
    "frozen_startup_objects",
    "load_models",
    "make_event_loop_realtime",
    "realtime_supported",
    "rescan_voices",
    "restore",
    "tuned_process",
    "watch_event_loop",
]
