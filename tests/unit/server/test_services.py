"""What the server's services feed admission before any client: the start-up probe
(``calibrate``) and the bench slowdown option (``TTS_STREAMER_BENCH_SLOWDOWN``)."""

from __future__ import annotations

import pytest

from streamer.config import ConfigError
from streamer.engines.text import split_for_streaming
from streamer.server.runtime import (
    BENCH_SLOWDOWN_ENV,
    CALIBRATION_TEXT,
    ThreadRunner,
    calibrate,
    cost_key,
)
from streamer.server.runtime._services import bench_slowdown
from tests.support.fake_engine import FakeEngine
from tests.support.services import make_services, session_config


def test_bench_slowdown_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BENCH_SLOWDOWN_ENV, raising=False)
    assert bench_slowdown() == 0.0
    monkeypatch.setenv(BENCH_SLOWDOWN_ENV, "1.5")
    assert bench_slowdown() == 1.5
    for bad in ("-1", "fast", "nan", "inf"):
        monkeypatch.setenv(BENCH_SLOWDOWN_ENV, bad)
        with pytest.raises(ConfigError, match=BENCH_SLOWDOWN_ENV):
            bench_slowdown()
    with pytest.raises(ValueError, match="slowdown"):
        ThreadRunner(slowdown=-1)


def test_the_start_up_probe_measures_both_chunkings() -> None:
    engine = FakeEngine(chunks_per_segment=2, chunk_seconds=0.1)
    services = make_services(session_config(), engine)
    voice = engine.voices()[0]
    calibrate(services, engine, voice)
    admission = services.admission
    streamed = admission.voice(cost_key(voice.id, False))
    whole = admission.voice(cost_key(voice.id, True))
    assert streamed.audio > 0 and whole.audio > 0
    assert streamed.first_audio == pytest.approx(0.1) and streamed.largest_chunk == 0.1
    assert [o.whole_segments for o in engine.options] == [False, True]
    # The fake makes 0.2 s per text segment: a measured rate, not the prior.
    per_char = len(split_for_streaming(CALIBRATION_TEXT)) * 0.2 / len(CALIBRATION_TEXT)
    assert admission.voice(voice.id).seconds_per_char == pytest.approx(per_char)
