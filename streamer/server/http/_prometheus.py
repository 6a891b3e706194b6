"""``GET /metrics``: the server's figures in the Prometheus text format.

Two sources:

- distributions and counters are fed as they happen: :class:`Metrics` calls every
  observer with ``(name, labels, value)``, and :class:`PrometheusExporter` turns each
  call into a histogram observation or a counter increment;
- gauges (sessions, connections, queue depth, inference load, readiness) are read from
  the ``SessionManager`` at scrape time by a custom collector, so they can never drift.

Each app gets its own ``CollectorRegistry`` (not the process-global one), so tests can
run many servers in one process. ``GET /api/v1/metrics`` keeps the JSON view.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from quart import Response
from quart_trio import QuartTrio

from ... import __version__
from ...protocol import Priority
from ..runtime import MetricName, RequestOutcome, ServerState
from ..session import SessionManager

log = logging.getLogger(__name__)

#: Prefix of every metric name (``tts_time_to_first_audio_seconds``…).
NAMESPACE: Final = "tts"
#: Latency buckets in seconds: dense where our targets lie (first audio within 100-300
#: ms, an interrupt acknowledged within 50 ms), sparse up to the 10 s a request may
#: wait in a long queue.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
    2.0, 5.0, 10.0,
)
#: Real-time factor (compute seconds per audio second) buckets: healthy voices run at
#: 0.001-0.1; at 1.0 synthesis only just keeps up with playback.
RTF_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class _LiveGauges(Collector):
    """Gauges read from the session manager at every scrape."""

    def __init__(self, manager: SessionManager, state: ServerState) -> None:
        self._manager = manager
        self._state = state

    def collect(self) -> Iterable[Metric]:
        manager = self._manager
        services = manager.services
        inference = services.inference.stats()
        sessions = list(manager.sessions.values())

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)

        yield gauge("ready", "1 once models are loaded and requests are served", self._state.ready)
        yield gauge("sessions", "Open sessions (WebSocket or REST-created)", len(sessions))
        yield gauge("connections", "Open WebSocket connections", self._state.connections)
        yield gauge(
            "max_connections", "Configured WebSocket connection limit",
            services.config.server.max_connections,
        )
        yield gauge(
            "queue_depth", "Requests queued (not yet playing) over all sessions",
            sum(s.queue_depth for s in sessions),
        )
        yield gauge(
            "requests_playing", "Requests playing now over all sessions",
            sum(1 for s in sessions if s.playing is not None),
        )
        yield gauge("inference_workers", "Inference worker threads", inference.workers)
        yield gauge("inference_running", "Chunks of inference running now", inference.running)
        yield gauge("inference_waiting", "Chunks of inference waiting for a worker",
                    inference.waiting)
        yield gauge(
            "inference_lateness_seconds",
            "How far the most overdue waiting chunk is past its deadline (busy above "
            "performance.busy_lateness_ms)",
            inference.lateness_s,
        )
        admission = services.admission
        yield gauge(
            "admission_streams", "Real-time streams admitted and being synthesized",
            admission.streams,
        )
        yield gauge(
            "admission_waiting", "Requests waiting for room to start (admission control)",
            admission.waiting,
        )
        yield gauge(
            "admission_load",
            "Worker-seconds per second the admitted real-time streams need (measured "
            "wall time per second of audio, summed)",
            admission.load(),
        )
        yield gauge(
            "admission_capacity",
            "Worker-seconds per second admitted streams may need: workers x the bound, "
            "which starts at performance.max_inference_load and tightens on underruns",
            admission.capacity,
        )
        opened = CounterMetricFamily(
            f"{NAMESPACE}_sessions_opened", "Sessions opened since start"
        )
        opened.add_metric([], services.metrics.sessions_opened)
        yield opened
        info = InfoMetricFamily(f"{NAMESPACE}_build", "Server version")
        info.add_metric([], {"version": __version__})
        yield info


class PrometheusExporter:
    """Prometheus metrics of one server, in a registry of its own."""

    def __init__(self, manager: SessionManager, state: ServerState) -> None:
        # No auto-describe: it would run the live collector at registration, outside
        # Trio (the inference scheduler's clock needs a running loop).
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry

        def histogram(name: str, documentation: str, buckets: tuple[float, ...],
                      labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, documentation, labels, namespace=NAMESPACE,
                             registry=registry, buckets=buckets)

        queue_wait = histogram(
            "queue_wait_seconds", "Time from request arrival until it starts playing",
            LATENCY_BUCKETS, ("priority",),
        )
        for priority in Priority:
            queue_wait.labels(priority=priority.label)
        requests = Counter("requests", "Requests ended, by outcome", ("outcome",),
                           namespace=NAMESPACE, registry=registry)
        # Every outcome up front, so a ``rate()`` over them starts at 0.
        for outcome in RequestOutcome:
            requests.labels(outcome=outcome)
        self._histograms: dict[MetricName, Histogram] = {
            MetricName.TIME_TO_FIRST_AUDIO: histogram(
                "time_to_first_audio_seconds",
                "Time from request arrival to its first audio frame", LATENCY_BUCKETS,
            ),
            MetricName.FIRST_RESPONSE: histogram(
                "first_response_seconds",
                "Time from a synthesize message to its queued reply", LATENCY_BUCKETS,
            ),
            MetricName.INTERRUPT_LATENCY: histogram(
                "interrupt_latency_seconds",
                "Time from an interrupt message to its interrupted reply", LATENCY_BUCKETS,
            ),
            MetricName.QUEUE_WAIT: queue_wait,
            MetricName.EVENT_LOOP_LAG: histogram(
                "event_loop_lag_seconds",
                "How late the event loop ran a timer (sampled every 10 ms)", LATENCY_BUCKETS,
            ),
            MetricName.REAL_TIME_FACTOR: histogram(
                "real_time_factor", "Inference seconds per second of audio, per request",
                RTF_BUCKETS,
            ),
        }
        self._counters: dict[MetricName, Counter] = {
            MetricName.REQUESTS: requests,
            MetricName.ERRORS: Counter("errors", "Errors sent to clients, by code", ("code",),
                                    namespace=NAMESPACE, registry=registry),
            MetricName.UNDERRUNS: Counter(
                "underruns", "Frames sent after the listener had run out of audio",
                namespace=NAMESPACE, registry=registry,
            ),
        }
        unmapped = set(MetricName) - set(self._histograms) - set(self._counters)
        if unmapped:  # a figure added to Metrics must be exported here too
            raise AssertionError(f"no Prometheus collector for {sorted(unmapped)}")
        registry.register(_LiveGauges(manager, state))
        manager.services.metrics.add_observer(self.observe)

    def observe(self, name: MetricName, labels: dict[str, str], value: float) -> None:
        """The ``Metrics`` observer: one observation or increment."""
        histogram = self._histograms.get(name)
        if histogram is not None:
            (histogram.labels(**labels) if labels else histogram).observe(value)
            return
        counter = self._counters[name]
        (counter.labels(**labels) if labels else counter).inc(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def register_prometheus(
    app: QuartTrio, manager: SessionManager, state: ServerState
) -> PrometheusExporter:
    """Add ``GET /metrics`` to ``app``; returns the exporter (tests read its registry)."""
    exporter = PrometheusExporter(manager, state)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(exporter.render(), content_type=CONTENT_TYPE_LATEST)

    return exporter
