"""The process-wide runtime every session shares: the inference scheduler, admission
control, the event loop's CPU priority, the metrics, and the ``Services`` that bundles
them."""

from ._admission import (
    BOUND_FLOOR,
    COST_HALF_LIFE_AUDIO_S,
    ESTIMATE_MARGIN,
    FORGET_S,
    MAX_WAITING_PER_WORKER,
    PRIOR_SECONDS_PER_CHAR,
    RELAX_BELOW,
    RELAX_PER_S,
    RELAX_QUIET_S,
    TIGHTEN_COOLDOWN_S,
    TIGHTEN_FACTOR,
    UNMEASURED_COST,
    Admission,
    Refusal,
    Reservation,
    VoiceCost,
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
    ThreadRunner,
    Timed,
)
from ._metrics import Distribution, MetricName, Metrics, Observer, RequestOutcome
from ._patching import apply_once
from ._process import GIL_SWITCH_INTERVAL_S, frozen_startup_objects, tuned_process, watch_event_loop
from ._services import (
    BENCH_SLOWDOWN_ENV,
    CALIBRATION_TEXT,
    Services,
    build_services,
    calibrate,
    check_defaults,
    load_models,
    rescan_voices,
)
from ._state import ServerState

__all__ = [
    "BENCH_SLOWDOWN_ENV",
    "BOUND_FLOOR",
    "BULK_NICE_INCREMENT",
    "CALIBRATION_TEXT",
    "COST_HALF_LIFE_AUDIO_S",
    "ESTIMATE_MARGIN",
    "FORGET_S",
    "GIL_SWITCH_INTERVAL_S",
    "MAX_WAITING_PER_WORKER",
    "PRIOR_SECONDS_PER_CHAR",
    "RELAX_BELOW",
    "RELAX_PER_S",
    "RELAX_QUIET_S",
    "TIGHTEN_COOLDOWN_S",
    "TIGHTEN_FACTOR",
    "UNMEASURED_COST",
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
    "Reservation",
    "ServerState",
    "Services",
    "ThreadRunner",
    "Timed",
    "VoiceCost",
    "apply_once",
    "build_services",
    "calibrate",
    "check_defaults",
    "frozen_startup_objects",
    "load_models",
    "make_event_loop_realtime",
    "realtime_supported",
    "rescan_voices",
    "restore",
    "tuned_process",
    "watch_event_loop",
]
