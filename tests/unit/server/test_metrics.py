"""Server metrics (``runtime/_metrics.py``): the underrun log says whose each underrun
was, and a flood of them cannot flood the log (the counter stays exact)."""

from __future__ import annotations

import logging

import pytest

from streamer.server.runtime import Metrics, Underrun
from streamer.server.runtime._metrics import UNDERRUN_LOG_BURST, _RateLimit

LOGGER = "streamer.server.runtime._metrics"


def _underrun(request_id: str = "r1", *, cancelled: bool = False) -> Underrun:
    return Underrun(
        session_id="s1",
        request_id=request_id,
        silence_s=0.0052,
        frame=12,
        audio_s=0.56,
        cancelled=cancelled,
        held_s=0.3,
        wait_s=0.0201,
        compute_s=0.29,
        cpu_s=0.1,
    )


def test_an_underrun_is_logged_with_its_session_request_and_silence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        metrics.count_underrun(_underrun(cancelled=True))
    assert metrics.underruns == 1
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "underrun session=s1 request=r1 silence_ms=5.2 frame=12 audio_s=0.56 "
        "cancelled=yes suppressed=0 chunk: held_ms=300 wait_ms=20 compute_ms=290 cpu_ms=100"
    )


def test_the_underrun_log_is_rate_limited_and_the_count_stays_exact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    flood = int(UNDERRUN_LOG_BURST) * 3
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for index in range(flood):
            metrics.count_underrun(_underrun(f"r{index}"))
    assert metrics.underruns == flood
    assert int(UNDERRUN_LOG_BURST) <= len(caplog.records) < flood


def test_the_rate_limit_refills_and_counts_what_it_refused() -> None:
    now = [0.0]
    limit = _RateLimit(per_s=2.0, burst=2.0, clock=lambda: now[0])
    assert [limit.allow() for _ in range(4)] == [True, True, False, False]
    assert limit.suppressed == 2
    now[0] = 0.5  # one token back
    assert [limit.allow(), limit.allow()] == [True, False]
    now[0] = 100.0  # never more than the burst
    assert [limit.allow() for _ in range(3)] == [True, True, False]


def test_an_underrun_without_details_is_counted_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        metrics.count_underrun()
    assert metrics.underruns == 1
    assert not caplog.records
