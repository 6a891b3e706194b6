"""The measurement tools (``scripts/``): each runs as ``python -m scripts.<tool>``, and the
probe they measure with routes what the server sends and models a listener's playback
correctly. No server and no sockets: the probe is fed messages directly."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
from pathlib import Path

import pytest
import trio

import scripts
from scripts._probe import Probe, ProbeError, RequestTrace
from streamer.client import Interrupted

#: Every tool the package docstring lists; a new tool must be added there and here.
TOOLS = (
    "latency",
    "agent_latency",
    "load",
    "soak_memory",
    "baseline",
    "bench_engines",
    "bench_engines_piper",
    "bench_melo",
    "bench_audio",
    "bench_gil",
    "bench_voices",
    "bench_wyoming",
    "bench_adapters",
    "reliability",
    "cluster",
    "bench_cluster",
)
#: A made-up sample rate that makes durations easy to read: 200 bytes of PCM16 = 0.1 s.
RATE = 1000
TENTH_S = 200
#: Bound on the probe's waits in these tests; nothing here waits for real time.
WAIT_S = 5.0


def test_the_package_lists_exactly_its_tools() -> None:
    found = {m.name for m in pkgutil.iter_modules(scripts.__path__) if not m.name.startswith("_")}
    assert found == set(TOOLS)
    assert scripts.__doc__ is not None
    for tool in TOOLS:
        assert f"``{tool}``" in scripts.__doc__


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_answers_help_under_its_module_name(
    tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"scripts.{tool}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert f"usage: python -m scripts.{tool}" in capsys.readouterr().out


def test_the_reliability_tool_has_cases_and_documents_each() -> None:
    from scripts import reliability

    assert reliability.CASES
    assert reliability.__doc__ is not None
    for name, (expected, run) in reliability.CASES.items():
        assert f"``{name}``" in reliability.__doc__
        assert expected and callable(run)


def _event(**fields: object) -> str:
    return json.dumps(fields)


def _probe_with(*request_ids: str) -> Probe:
    probe = Probe(None, "test")
    for request_id in request_ids:
        probe.traces[request_id] = RequestTrace(request_id, sent_at=0.0)
    return probe


def _audio_start(request_id: str) -> str:
    return _event(
        type="audio_start", request_id=request_id, format="pcm", sample_rate=RATE,
        channels=1, priority="normal", voice="v",
    )


def test_probe_times_each_event_and_gives_frames_to_the_playing_request() -> None:
    probe = _probe_with("a", "b")
    probe.record(_event(type="queued", request_id="a", position=0), 0.001)
    probe.record(_event(type="queued", request_id="b", position=1), 0.002)
    probe.record(_audio_start("a"), 0.010)
    probe.record(b"\0" * TENTH_S, 0.011)
    probe.record(b"\0" * TENTH_S, 0.012)
    probe.record(_event(type="audio_end", request_id="a", chunks=2, bytes=400, duration_ms=200),
                 0.013)
    probe.record(b"\0" * TENTH_S, 0.014)  # nobody's: no request plays now
    probe.record(_audio_start("b"), 0.020)
    probe.record(b"\0" * TENTH_S, 0.021)

    a, b = probe.traces["a"], probe.traces["b"]
    assert (a.queued_at, a.audio_start_at, a.ended_at) == (0.001, 0.010, 0.013)
    assert a.frames == [(0.011, TENTH_S), (0.012, TENTH_S)]
    assert a.audio_seconds == pytest.approx(0.2)
    assert a.first_response_ms == pytest.approx(1.0)
    assert a.ttfa_ms == pytest.approx(11.0)
    assert a.done and not b.done
    assert b.frames == [(0.021, TENTH_S)]
    assert len(probe.log) == 9  # every message is logged, routed or not
    assert sum(m.nbytes for m in probe.log) == 4 * TENTH_S


def test_probe_ends_the_interrupted_and_the_dropped_requests() -> None:
    probe = _probe_with("a", "b")
    probe.record(_audio_start("a"), 0.010)
    probe.record(_event(type="interrupted", request_id="a", reason="stop", dropped=["b"]), 0.02)
    probe.record(b"\0" * TENTH_S, 0.03)  # a late frame of nobody's

    assert probe.traces["a"].interrupted_at == 0.02
    assert probe.traces["b"].interrupted_at == 0.02
    assert probe.traces["a"].frames == []


def test_probe_records_a_refusal_on_its_request() -> None:
    probe = _probe_with("a")
    probe.record(
        _event(type="error", request_id="a", code="busy", message="full",
               details={"retry_after_ms": 250}),
        0.01,
    )
    error = probe.traces["a"].error
    assert error is not None and error.code == "busy"
    assert error.details["retry_after_ms"] == 250
    assert probe.traces["a"].done


async def test_waiting_for_an_event_finds_it_in_the_log() -> None:
    probe = _probe_with()
    probe.record(_event(type="interrupted", request_id=None, reason="stop"), 0.5)
    with trio.fail_after(WAIT_S):
        message = await probe.wait_event(Interrupted)
    assert message.at == 0.5


async def test_an_error_before_the_awaited_event_is_a_probe_error() -> None:
    probe = _probe_with()
    probe.record(_event(type="error", code="bad_request", message="no"), 0.1)
    with trio.fail_after(WAIT_S), pytest.raises(ProbeError, match="bad_request"):
        await probe.wait_event(Interrupted)


def _trace(frames: list[tuple[float, int]], plays_after: float | None = None) -> RequestTrace:
    return RequestTrace("r", sent_at=0.0, sample_rate=RATE, frames=frames, plays_after=plays_after)


def test_frames_ahead_of_playback_are_no_underrun() -> None:
    # 0.1 s of audio each, every 0.05 s: the listener's buffer grows.
    trace = _trace([(1.0, TENTH_S), (1.05, TENTH_S), (1.10, TENTH_S)])
    underruns, silence, gaps, buffers = trace.playback()
    assert (underruns, silence) == (0, 0.0)
    assert gaps == pytest.approx([0.05, 0.05])
    assert buffers == pytest.approx([0.05, 0.10])
    assert trace.play_end() == pytest.approx(1.3)
    assert trace.underrun_offsets() == []


def test_a_frame_after_the_audio_ran_out_is_an_underrun_of_its_lateness() -> None:
    trace = _trace([(1.0, TENTH_S), (1.25, TENTH_S)])  # 0.15 s after the first ran out
    underruns, silence, _, buffers = trace.playback()
    assert underruns == 1
    assert silence == pytest.approx(0.15)
    assert buffers == pytest.approx([-0.15])
    assert trace.underrun_offsets() == pytest.approx([0.1])
    assert trace.play_end() == pytest.approx(1.35)  # the second frame plays from 1.25


def test_a_request_queued_behind_audio_plays_after_it() -> None:
    on_time = _trace([(1.0, TENTH_S)], plays_after=1.5)
    assert on_time.playback()[:2] == (0, 0.0)
    assert on_time.play_end() == pytest.approx(1.6)

    late = _trace([(2.0, TENTH_S)], plays_after=1.5)
    underruns, silence, _, _ = late.playback()
    assert underruns == 1
    assert silence == pytest.approx(0.5)
    assert late.underrun_offsets() == [0.0]


def test_a_truncated_trace_keeps_what_arrived_before_the_cut() -> None:
    trace = _trace([(1.0, TENTH_S), (1.1, TENTH_S), (1.2, TENTH_S)], plays_after=0.9)
    cut = trace.truncated(1.15)
    assert cut.frames == [(1.0, TENTH_S), (1.1, TENTH_S)]
    assert (cut.sample_rate, cut.plays_after) == (RATE, 0.9)
    assert len(trace.frames) == 3


def test_the_reliability_tool_reads_whose_underruns_the_server_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from scripts.reliability import attribute_underruns, parse_underruns
    from streamer.server.runtime import Metrics, Underrun

    metrics = Metrics()
    with caplog.at_level(logging.INFO):
        for session, request, cancelled in (
            ("s-target", "target-16", True), ("s-w1", "witness-1-3", False),
            ("s-gone", "x", False), (None, None, False),
        ):
            metrics.count_underrun(
                Underrun(session, request, 0.0052, 12, 0.56, cancelled, 0.3, 0.02, 0.29, 0.1)
            )
    log = "".join(f"INFO x: {r.getMessage()}\n" for r in caplog.records).encode()
    underruns = parse_underruns(b"noise\n" + log)
    assert [(u.session, u.request, u.cancelled) for u in underruns] == [
        ("s-target", "target-16", True), ("s-w1", "witness-1-3", False),
        ("s-gone", "x", False), ("-", "-", False),
    ]
    assert underruns[0].silence_ms == 5.2 and underruns[0].frame == 12
    assert underruns[0].chunk_ms == (300, 20, 290, 100)
    by_owner = attribute_underruns(underruns, {"s-target": "target", "s-w1": "witness-1"})
    assert {owner: (e["underruns"], e["cancelled"]) for owner, e in by_owner.items()} == {
        "target": (1, 1), "witness-1": (1, 0), "other": (1, 0), "-": (1, 0),
    }
    assert by_owner["target"]["examples"] == [
        "target-16 frame 12 at 0.56 s: 5.2 ms (cancelled) (chunk asked with 300 ms left: "
        "waited 20 ms, 290 ms in the worker, 100 ms CPU)"
    ]


def test_the_probe_reads_the_wait_from_queued() -> None:
    probe = Probe(None, "probe")
    trace = probe.traces.setdefault("r1", RequestTrace("r1", 0.0))
    probe.record('{"type":"queued","request_id":"r1","position":0,"admission_wait_ms":2000}', 0.1)
    assert trace.admission_wait_ms == 2000 and trace.queued_at == 0.1


def test_the_local_clusters_replicas_find_the_projects_models(tmp_path: Path) -> None:
    """Replica configs live in a temporary directory: their model, voice and cache paths
    are written absolute, resolved from the base config's project (Kokoro was 'not
    installed' in every replica of `make cluster` before)."""
    from scripts.cluster import LocalCluster

    cluster = LocalCluster(
        1,
        {"tts": {"piper": {"cache_dir": "cache/piper"}, "voices_dir": "/abs/voices"}},
        workdir=tmp_path,
        project_dir=Path("/project"),
    )
    tts = cluster.replica_config(cluster.nodes[0])["tts"]
    assert tts["kokoro"]["model_dir"] == "/project/models/kokoro"
    assert tts["piper"]["cache_dir"] == "/project/cache/piper"
    assert tts["voices_dir"] == "/abs/voices"


def test_the_agent_bench_places_each_underrun_before_or_after_the_first_boundary() -> None:
    from scripts.agent_latency import Listener, boundary_s
    from streamer.client import Word

    listener = Listener(bytes_per_s=RATE * 2)  # PCM16: 2000 bytes a second
    listener.frame(0.0, TENTH_S * 2)  # 0.2 s of audio, plays until 0.2
    listener.frame(0.1, TENTH_S * 2)  # in time: plays until 0.4
    listener.frame(0.5, TENTH_S * 2)  # 0.1 s late, after 0.4 s of audio
    listener.frame(1.0, TENTH_S * 2)  # 0.3 s late, after 0.6 s of audio
    assert listener.underruns == 2
    assert listener.gaps_at == pytest.approx([0.4, 0.6])
    assert listener.audio_s == pytest.approx(0.8)

    first_segment = "Hello there."
    words = [
        Word("Hello", 0, 300, 0, 5),
        Word("there.", 300, 500, 6, 12),
        Word("Next", 550, 800, 13, 17),
        Word("one.", 800, 1000, 18, 22),
    ]
    assert boundary_s(words, len(first_segment)) == pytest.approx(0.55)
    assert boundary_s(words[:2], len(first_segment)) is None


def test_the_cluster_bench_reads_the_capacity_where_the_load_tool_writes_it(
    tmp_path: Path,
) -> None:
    # The load tool nests each scenario's figures under "scenarios"; the cluster bench
    # read a top-level key and reported every capacity as None.
    from scripts.load import capacity_sessions

    written = {"scenarios": {"load": {"capacity_sessions": 20, "steps": []}}}
    path = tmp_path / "load.json"
    path.write_text(json.dumps(written))
    assert capacity_sessions(json.loads(path.read_text())) == 20
    assert capacity_sessions({"scenarios": {"load": {"capacity_sessions": None}}}) is None
