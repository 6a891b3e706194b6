"""Server metrics: latency distributions, counters and gauges, kept in memory.

Latencies are measured inside the server from the moment a message is read off the
socket, so they exclude the network; ``scripts.latency`` measures the same
things from a client. Percentiles come from a bounded window of recent samples.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ...protocol import Priority

log = logging.getLogger(__name__)

#: Samples kept per distribution: enough for a stable p99, bounded memory.
WINDOW: Final = 2048
#: Underrun log lines per second, at most (the counter stays exact): a starved server
#: underruns every listener at once, and its log must stay readable.
UNDERRUN_LOG_PER_S: Final = 10.0
#: Lines the underrun log may write at once after a quiet spell.
UNDERRUN_LOG_BURST: Final = 20.0


class Distribution:
    """Recent samples of one latency, in seconds."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=WINDOW)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self.total += seconds

    def percentile(self, q: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
        return ordered[index]

    def to_json(self) -> dict[str, object]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 2)

        return {
            "count": self.count,
            "p50_ms": ms(self.percentile(50)),
            "p95_ms": ms(self.percentile(95)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(max(self._samples) if self._samples else None),
        }


class MetricName(StrEnum):
    """Every figure ``Metrics`` reports to its observers; exporters map each member
    (``http/_prometheus.py`` checks that it maps them all)."""

    FIRST_RESPONSE = "first_response_seconds"
    TIME_TO_FIRST_AUDIO = "time_to_first_audio_seconds"
    INTERRUPT_LATENCY = "interrupt_latency_seconds"
    QUEUE_WAIT = "queue_wait_seconds"
    REAL_TIME_FACTOR = "real_time_factor"
    EVENT_LOOP_LAG = "event_loop_lag_seconds"
    REQUESTS = "requests_total"
    ERRORS = "errors_total"
    UNDERRUNS = "underruns_total"


class RequestOutcome(StrEnum):
    """How a request ended (the ``outcome`` label of ``requests_total``)."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    DROPPED = "dropped"
    FAILED = "failed"
    #: An HTTP speech client went away before the end.
    ABANDONED = "abandoned"
    #: Waited for admission and was refused (``busy`` after ``queued``).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Underrun:
    """One audible gap: a frame of a real-time request left after its listener had
    played everything before it. The counter has no labels (a session id would be an
    unbounded label); the log line says whose it was."""

    #: The session and request (None: not a session's request, e.g. HTTP speech).
    session_id: str | None
    request_id: str | None
    #: How long the listener had been silent when the frame left.
    silence_s: float
    #: Frames and seconds of audio the request had sent before it (0: its first frame).
    frame: int
    audio_s: float
    #: The request's scope was cancelled (interrupted) when it happened.
    cancelled: bool
    #: The chunk that came late: the audio its listener still held when the player
    #: asked for it, its wait for an inference worker, its wall and CPU seconds there
    #: (wall well over CPU: the worker thread was starved of a core).
    held_s: float = 0.0
    wait_s: float = 0.0
    compute_s: float = 0.0
    cpu_s: float = 0.0


class _RateLimit:
    """A token bucket on the monotonic clock: ``allow()`` at most ``per_s`` times a
    second on average, ``burst`` at once; ``suppressed`` counts the refusals since the
    last allowed one."""

    def __init__(
        self, per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_s = per_s
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return False
        self._tokens -= 1.0
        return True


#: Hook signature for exporters (Prometheus): (metric, labels, value).
Observer = Callable[[MetricName, dict[str, str], float], None]


class Metrics:
    """Everything the REST ``/api/v1/metrics`` endpoint reports."""

    def __init__(self) -> None:
        self.first_response = Distribution()
        self.time_to_first_audio = Distribution()
        self.interrupt_latency = Distribution()
        self.queue_wait = {p: Distribution() for p in Priority}
        self.real_time_factor = Distribution()
        #: How late the event loop ran a timer (see ``app._watch_event_loop``): what a
        #: message arriving at a random moment waits before the server reads it.
        self.event_loop_lag = Distribution()
        self.requests: Counter[RequestOutcome] = Counter()
        self.errors: Counter[str] = Counter()  # by error code
        self.underruns = 0
        self.sessions_opened = 0
        self._observers: list[Observer] = []
        self._underrun_log = _RateLimit(UNDERRUN_LOG_PER_S, UNDERRUN_LOG_BURST)

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def _emit(self, name: MetricName, labels: dict[str, str], value: float) -> None:
        for observer in self._observers:
            observer(name, labels, value)

    def observe_first_response(self, seconds: float) -> None:
        self.first_response.observe(seconds)
        self._emit(MetricName.FIRST_RESPONSE, {}, seconds)

    def observe_ttfa(self, seconds: float) -> None:
        self.time_to_first_audio.observe(seconds)
        self._emit(MetricName.TIME_TO_FIRST_AUDIO, {}, seconds)

    def observe_interrupt(self, seconds: float) -> None:
        self.interrupt_latency.observe(seconds)
        self._emit(MetricName.INTERRUPT_LATENCY, {}, seconds)

    def observe_queue_wait(self, priority: Priority, seconds: float) -> None:
        self.queue_wait[priority].observe(seconds)
        self._emit(MetricName.QUEUE_WAIT, {"priority": priority.label}, seconds)

    def observe_rtf(self, rtf: float) -> None:
        self.real_time_factor.observe(rtf)
        self._emit(MetricName.REAL_TIME_FACTOR, {}, rtf)

    def observe_event_loop_lag(self, seconds: float) -> None:
        self.event_loop_lag.observe(seconds)
        self._emit(MetricName.EVENT_LOOP_LAG, {}, seconds)

    def count_request(self, outcome: RequestOutcome) -> None:
        self.requests[outcome] += 1
        self._emit(MetricName.REQUESTS, {"outcome": outcome}, 1)

    def count_error(self, code: str) -> None:
        self.errors[code] += 1
        self._emit(MetricName.ERRORS, {"code": code}, 1)

    def count_underrun(self, underrun: Underrun | None = None) -> None:
        """Count an underrun and log whose it was (rate-limited: ``suppressed`` says
        how many lines were left out before this one)."""
        self.underruns += 1
        self._emit(MetricName.UNDERRUNS, {}, 1)
        if underrun is None or not self._underrun_log.allow():
            return
        suppressed, self._underrun_log.suppressed = self._underrun_log.suppressed, 0
        log.warning(
            "underrun session=%s request=%s silence_ms=%.1f frame=%d audio_s=%.2f "
            "cancelled=%s suppressed=%d chunk: held_ms=%.0f wait_ms=%.0f compute_ms=%.0f "
            "cpu_ms=%.0f",
            underrun.session_id or "-",
            underrun.request_id or "-",
            underrun.silence_s * 1000,
            underrun.frame,
            underrun.audio_s,
            "yes" if underrun.cancelled else "no",
            suppressed,
            underrun.held_s * 1000,
            underrun.wait_s * 1000,
            underrun.compute_s * 1000,
            underrun.cpu_s * 1000,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "first_response": self.first_response.to_json(),
            "time_to_first_audio": self.time_to_first_audio.to_json(),
            "interrupt_latency": self.interrupt_latency.to_json(),
            "event_loop_lag": self.event_loop_lag.to_json(),
            "queue_wait": {p.label: d.to_json() for p, d in self.queue_wait.items()},
            "real_time_factor": {
                k: v for k, v in self.real_time_factor.to_json().items() if k == "count"
            }
            | {
                "p50": self.real_time_factor.percentile(50),
                "p95": self.real_time_factor.percentile(95),
            },
            "requests": {str(k): v for k, v in self.requests.items()},
            "errors": dict(self.errors),
            "underruns": self.underruns,
            "sessions_opened": self.sessions_opened,
        }
