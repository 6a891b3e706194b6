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
from ._inference import (
    BULK_NICE_INCREMENT,
    URGENT_NICE_INCREMENT,
    URGENT_WITHIN_S,
    ChunkRunner,
    InferenceScheduler,
    InferenceStats,
)
from ._metrics import Distribution, MetricName, Metrics, Observer, RequestOutcome
from ._process import GIL_SWITCH_INTERVAL_S, frozen_startup_objects, tuned_process, watch_event_loop
from ._services import Services, build_services, load_models
from ._state import ServerState

__all__ = [
    "BULK_NICE_INCREMENT",
    "COST_HALF_LIFE_AUDIO_S",
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
    "InferenceScheduler",
    "InferenceStats",
    "MetricName",
    "Metrics",
    "Observer",
    "Refusal",
    "RequestOutcome",
    "ServerState",
    "Services",
    "build_services",
    "frozen_startup_objects",
    "load_models",
    "make_event_loop_realtime",
    "realtime_supported",
    "restore",
    "tuned_process",
    "watch_event_loop",
]
