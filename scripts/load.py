"""Load scenarios against a live server: sustained speakers, a burst of starts, and
real-time speakers beside HTTP downloads.

    .venv/bin/python -m scripts.load --spawn          # the target run:
                                                      # 50 connected, 20 speaking, 60 s
    .venv/bin/python -m scripts.load --spawn --scenario all --json all.json
    .venv/bin/python -m scripts.load --spawn --scenario all --slowdown 2   # a 3x slower CPU
    .venv/bin/python -m scripts.load --url ws://127.0.0.1:8081 --pid PID --speaking 10
    .venv/bin/python -m scripts.load --spawn --find-capacity --baseline-json base.json

Scenarios (``--scenario``; ``all`` runs the three on one server, in this order):

- ``load``: S connected sessions, K of them speaking continuously, for T seconds
  (below);
- ``burst``: 20 sessions send the same short sentence at the same instant, 3 rounds; a
  ``busy`` is retried at its hint and time to first audio counts from the first try.
  Held to a whole-sentence FIFO measured in-process in the same run (W threads, each
  synthesizing one whole sentence at a time, audio leaving when it is done);
- ``mixed``: 3 WebSocket speakers speaking paragraphs back to back while 20 HTTP
  clients post ``/v1/audio/speech`` back to back, for 30 s (``scripts/_scenarios.py``).

Each scenario reports the underruns and ``busy`` replies the server itself counted
(``/api/v1/metrics``, before and after), the client-side playback model's, time to first
audio, and admission's state after it (bound, measured cost per voice, waits and
refusals). Raw throughput (seconds of audio per second, W threads synthesizing
paragraphs in-process, windowed as the server does) is measured in the same run, before
the scenarios. ``--slowdown F`` runs the server with ``TTS_STREAMER_BENCH_SLOWDOWN=F``
(every inference chunk followed by a sleep F times its run time: a CPU 1+F times
slower) and the in-process baselines with the same sleep. The load average and the
other processes' CPU are recorded beside every scenario: on a shared machine they are
the noise.

Every listener is the sequential player of ``scripts/_probe.py``: a request's audio
starts when it arrives, or when the audio queued before it has played.

The ``load`` scenario in detail: every session connects (``format: pcm``, real-time
pacing on). The K speaking ones start spread over ``--ramp`` seconds (about one
paragraph, so their paragraphs do not all begin together) and then speak for
``--seconds``: realistic paragraphs of 13-15 s of speech, back to back. With ``--next-on
played`` (default) the next paragraph is sent the moment the listener has heard the
previous one out, so each session asks for 1 s of audio per second; ``--next-on
audio_end`` sends it at ``audio_end``, which with pacing comes ~``realtime_lead_ms``
before that: the listener queues the next paragraph's audio behind the previous one's
(the server paces it from there, so a session still asks for 1 s of audio per second,
with no gap between paragraphs). When the time is up every speaking session interrupts
what it plays and stops. The others stay connected and idle.

Reported: underruns (listener model in ``scripts/_probe.py``, per request from its first
audio; with where in the request they happened), time to first audio of every request,
first response, the audio still buffered whenever a new chunk arrived, requests
completed, ``busy`` refusals, the server's CPU (its event-loop thread apart) and
resident memory (from ``/proc`` of its pid: start, middle, end, peak, sampled every
second), and the CPU of the client and of anything else on the machine.

``--find-capacity`` steps K up on one server (``--start``, ``--step``, each step
``--ramp`` + ``--step-seconds`` long) until a step has an underrun, a ``busy`` refusal
or an error, and reports the largest clean K against the engine's raw throughput
(seconds of audio per second with every core busy, from ``scripts.baseline --json``):
one real-time session consumes 1 s of audio per second, so K sessions need K x real
time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from ._common import (
    LATENCY_HEADERS,
    PARAGRAPHS,
    CpuSample,
    http_get_json,
    machine_info,
    markdown_table,
    percentile,
    process_rss_bytes,
    spawned_server,
    stats_row,
    summarize,
    wait_for_quiet,
    write_json,
)
from ._probe import EVENT_TIMEOUT_S, Probe, ProbeError, now, open_probe
from ._scenarios import (
    BURST_CLIENTS,
    BURST_ROUNDS,
    BURST_TEXT,
    burst_run,
    default_workers,
    mixed_run,
    whole_sentence_fifo,
)
from .baseline import throughput

#: What ``--scenario`` may name (``all`` runs these, in this order).
SCENARIOS: Final = ("load", "burst", "mixed")
#: The server's bench option, set by ``--slowdown``.
BENCH_SLOWDOWN_ENV: Final = "TTS_STREAMER_BENCH_SLOWDOWN"
#: Connections opened per second while setting up: a burst of handshakes is not the
#: load under test.
CONNECT_RATE_PER_S: Final = 50
#: How often the server's RSS is sampled.
RSS_INTERVAL_S: Final = 1.0
#: Seed for the ramp offsets and the paragraph order, so runs load the server alike.
SEED: Final = 11
#: Speaking sessions start spread over about one paragraph's duration, so their
#: paragraphs do not all start together: the steady state of independent sessions. (A
#: short ramp makes every session ask for its first ~2.8 s of audio at once, every
#: paragraph; run ``--ramp 2`` to see that worst case.)
RAMP_S: Final = 15.0
#: Longest a speaking session obeys a ``busy`` retry hint before it asks again.
MAX_BUSY_BACKOFF_S: Final = 2.0
#: Seconds given to interrupt replies and closes once a run's time is up.
WIND_DOWN_S: Final = 10.0


@dataclass
class SessionResult:
    requests: int = 0
    completed: int = 0
    underruns: int = 0
    silence_ms: float = 0.0
    audio_s: float = 0.0
    busy: int = 0


@dataclass
class RunResult:
    speaking: int
    connected: int
    seconds: float
    sessions: list[SessionResult] = field(default_factory=list)
    ttfa_ms: list[float] = field(default_factory=list)
    first_response_ms: list[float] = field(default_factory=list)
    #: Audio the listener still had buffered whenever a new chunk arrived.
    buffer_ms: list[float] = field(default_factory=list)
    #: Where in their request's audio the underruns happened (s of audio before them).
    underrun_offsets_s: list[float] = field(default_factory=list)
    rss_series: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def underruns(self) -> int:
        return sum(s.underruns for s in self.sessions)

    @property
    def busy(self) -> int:
        return sum(s.busy for s in self.sessions)


async def _speaker(
    probe: Probe, index: int, start_at: float, stop_at: float, result: SessionResult,
    run: RunResult, next_on: str,
) -> None:
    rng = random.Random(SEED + index)
    order = list(PARAGRAPHS)
    rng.shuffle(order)
    await trio.sleep(max(0.0, start_at - now()))
    n = 0
    previous_end: float | None = None  # when the listener finishes the last request
    while now() < stop_at:
        text = order[n % len(order)]
        trace = await probe.synthesize(f"k{index}-{n}", text)
        if previous_end is not None and previous_end > trace.sent_at:
            trace.plays_after = previous_end  # its player queues it behind that audio
        n += 1
        result.requests += 1
        remaining = stop_at - now()
        with trio.move_on_after(max(0.0, remaining)):
            if next_on == "played":
                await probe.wait_played(trace)
            else:
                await probe.wait_done(trace, patience_s=max(remaining, EVENT_TIMEOUT_S))
        if trace.error is not None:
            if trace.error.code == "busy":
                result.busy += 1
                hint = trace.error.details.get("retry_after_ms", 500) / 1000
                await trio.sleep(min(MAX_BUSY_BACKOFF_S, hint))
            else:
                run.errors.append(f"k{index}: {trace.error}")
            continue
        if trace.first_response_ms is not None:
            run.first_response_ms.append(trace.first_response_ms)
        if trace.ttfa_ms is not None:
            run.ttfa_ms.append(trace.ttfa_ms)
        if trace.ended_at is not None:
            result.completed += 1
        else:  # time is up while it plays: stop it, judge only what arrived before
            sent, _ = await probe.interrupt("load test over", patience_s=WIND_DOWN_S)
            trace = trace.truncated(sent)
        underruns, silence, _, buffers = trace.playback()
        previous_end = trace.play_end() if trace.ended_at is not None else None
        run.buffer_ms.extend(b * 1000 for b in buffers)
        run.underrun_offsets_s.extend(trace.underrun_offsets())
        result.underruns += underruns
        result.silence_ms += silence * 1000
        result.audio_s += trace.audio_seconds


@dataclass
class _Timing:
    """Fixed once every session is connected, so connecting is not part of the run."""

    ready: trio.Semaphore
    next_on: str
    go: trio.Event = field(default_factory=trio.Event)
    starts: dict[int, float] = field(default_factory=dict)
    stop_at: float = 0.0


async def _session(url: str, index: int, speaking: bool, timing: _Timing, run: RunResult) -> None:
    result = SessionResult()
    if speaking:
        run.sessions.append(result)
    try:
        async with open_probe(url) as ws:
            probe = Probe(ws, f"session {index}")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.reader)
                try:
                    await probe.connect({"language": "en", "format": "pcm", "realtime": True})
                    timing.ready.release()
                    await timing.go.wait()
                    if speaking:
                        await _speaker(
                            probe, index, timing.starts[index], timing.stop_at, result, run,
                            timing.next_on,
                        )
                    else:
                        await trio.sleep(max(0.0, timing.stop_at - now()))
                except ProbeError as exc:
                    run.errors.append(str(exc))
                nursery.cancel_scope.cancel()
    except OSError as exc:
        run.errors.append(f"session {index}: {exc}")
        timing.ready.release()


async def load_run(
    url: str, connected: int, speaking: int, seconds: float, ramp: float, pid: int | None,
    next_on: str = "played",
) -> RunResult:
    """One run: connect everybody, then K speak for ``seconds``. Bounded in time."""
    total = max(connected, speaking)
    run = RunResult(speaking=speaking, connected=total, seconds=seconds)
    await trio.to_thread.run_sync(wait_for_quiet, [pid] if pid else [])
    rng = random.Random(SEED)
    timing = _Timing(ready=trio.Semaphore(0, max_value=total), next_on=next_on)
    limit = total / CONNECT_RATE_PER_S + EVENT_TIMEOUT_S + ramp + seconds + 2 * WIND_DOWN_S
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            for index in range(total):
                nursery.start_soon(_session, url, index, index < speaking, timing, run)
                await trio.sleep(1 / CONNECT_RATE_PER_S)
            with trio.fail_after(EVENT_TIMEOUT_S):
                for _ in range(total):
                    await timing.ready.acquire()
            begin = now()
            # Stratified: one start in each 1/K of the ramp, so phases spread evenly.
            timing.starts = {
                i: begin + ramp * (i + rng.random()) / speaking for i in range(speaking)
            }
            timing.stop_at = begin + ramp + seconds
            timing.go.set()
            full_load: list[CpuSample] = []

            async def cpu_after_ramp() -> None:
                # CPU is reported for the full-load part only: during the ramp fewer
                # sessions speak.
                await trio.sleep(max(0.0, begin + ramp - now()))
                full_load.append(CpuSample.take(pid))

            nursery.start_soon(cpu_after_ramp)
            await _sample_rss(pid, run, timing.stop_at)
            run.cpu = CpuSample.take(pid).usage_since(full_load[0]) if full_load else {}
    return run


async def _sample_rss(pid: int | None, run: RunResult, stop_at: float) -> None:
    """RSS every ``RSS_INTERVAL_S`` until ``stop_at`` (just sleeps without a pid)."""
    begin = now()
    while True:
        if pid is not None:
            run.rss_series.append((now() - begin, process_rss_bytes(pid)))
        if now() >= stop_at:
            return
        await trio.sleep(min(RSS_INTERVAL_S, max(0.0, stop_at - now())))


def _mib(value: int) -> float:
    return value / 2**20


def summarize_run(run: RunResult) -> dict[str, Any]:
    rss = [v for _, v in run.rss_series]
    buffers = sorted(run.buffer_ms)
    per_session = [s.underruns for s in run.sessions]
    return {
        "connected": run.connected,
        "speaking": run.speaking,
        "seconds": run.seconds,
        "underruns": run.underruns,
        "underruns_per_session": per_session,
        "sessions_with_underruns": sum(1 for u in per_session if u),
        "underrun_silence_ms": sum(s.silence_ms for s in run.sessions),
        "underrun_offsets_s": sorted(round(o, 2) for o in run.underrun_offsets_s),
        "audio_s": sum(s.audio_s for s in run.sessions),
        "requests_sent": sum(s.requests for s in run.sessions),
        "requests_completed": sum(s.completed for s in run.sessions),
        "busy": run.busy,
        "ttfa_ms": summarize(run.ttfa_ms),
        "buffer_at_chunk_ms": {
            "min": buffers[0] if buffers else None,
            "p1": percentile(buffers, 1) if buffers else None,
            "p5": percentile(buffers, 5) if buffers else None,
            "p50": percentile(buffers, 50) if buffers else None,
        },
        "first_response_ms": summarize(run.first_response_ms),
        "cpu": run.cpu,
        "rss_mib": {
            "start": _mib(rss[0]) if rss else None,
            # Half-way: growth from here to the end is what a leak would look like;
            # before it, allocator arenas are still warming up.
            "middle": _mib(rss[len(rss) // 2]) if rss else None,
            "end": _mib(rss[-1]) if rss else None,
            "peak": _mib(max(rss)) if rss else None,
        },
        "rss_series": [(round(t, 1), round(_mib(v), 1)) for t, v in run.rss_series],
        "errors": run.errors,
    }


def print_run(summary: dict[str, Any], run: RunResult) -> None:
    print()
    print(
        f"## {summary['connected']} connected, {summary['speaking']} speaking,"
        f" {summary['seconds']:.0f} s"
    )
    print(
        markdown_table(
            LATENCY_HEADERS,
            [
                stats_row("TTFA (paragraphs)", run.ttfa_ms),
                stats_row("first response", run.first_response_ms),
            ],
        )
    )
    cpu = summary["cpu"]
    rss = summary["rss_mib"]
    print(
        f"underruns: {summary['underruns']} ({summary['sessions_with_underruns']} of"
        f" {summary['speaking']} sessions, {summary['underrun_silence_ms']:.0f} ms silence;"
        f" per session {summary['underruns_per_session']})"
    )
    if summary["underrun_offsets_s"]:
        print(f"underruns after this much of their request's audio (s): "
              f"{summary['underrun_offsets_s'][:30]}")
    print(
        f"requests: {summary['requests_completed']} completed of {summary['requests_sent']}"
        f" sent, {summary['busy']} busy; {summary['audio_s']:.0f} s of audio delivered"
    )
    buffer = summary["buffer_at_chunk_ms"]
    if buffer["min"] is not None:
        print(
            f"audio still buffered when a new chunk arrived: min {buffer['min']:.0f} ms,"
            f" p1 {buffer['p1']:.0f} ms, p5 {buffer['p5']:.0f} ms, p50 {buffer['p50']:.0f} ms"
        )
    if cpu:
        print(
            f"CPU after the ramp (% of one core, 200 = both): server {cpu['server_cpu_pct']:.0f}"
            f" (event loop {cpu['server_loop_cpu_pct']:.0f}),"
            f" client {cpu['client_cpu_pct']:.0f}, other processes {cpu['other_cpu_pct']:.0f}"
        )
    if rss["start"] is not None:
        print(
            f"server RSS: start {rss['start']:.0f} MiB, middle {rss['middle']:.0f} MiB,"
            f" end {rss['end']:.0f} MiB,"
            f" peak {rss['peak']:.0f} MiB"
        )
    if run.errors:
        print(f"errors ({len(run.errors)}): " + "; ".join(run.errors[:10]))


def _raw_throughput(path: str | None) -> float | None:
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    value = data.get("raw_throughput", {}).get("best_x_realtime")
    return float(value) if value is not None else None


def capacity_sessions(result: dict[str, Any]) -> int | None:
    """The capacity ``--find-capacity`` found, from this tool's JSON (``--json``)."""
    found = result["scenarios"]["load"]["capacity_sessions"]
    return None if found is None else int(found)


async def find_capacity(url: str, args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    """Step K up until a step underruns or is refused; bounded by ``--max-speaking``."""
    steps: list[dict[str, Any]] = []
    best: int | None = None
    k = args.start
    while k <= args.max_speaking:
        run = await load_run(
            url, max(args.sessions, k), k, args.step_seconds, args.ramp, pid, args.next_on
        )
        summary = summarize_run(run)
        print_run(summary, run)
        steps.append(summary)
        if run.underruns or run.busy or run.errors:
            break
        best = k
        k += args.step
    return {"capacity_sessions": best, "steps": steps}


async def _main(url: str, args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    if args.find_capacity:
        return await find_capacity(url, args, pid)
    run = await load_run(
        url, args.sessions, args.speaking, args.seconds, args.ramp, pid, args.next_on
    )
    summary = summarize_run(run)
    print_run(summary, run)
    return summary


def _server_counts(http_url: str | None) -> dict[str, int]:
    """The server's own underrun and ``busy`` counters now (zeros without a URL)."""
    if not http_url:
        return {"underruns": 0, "busy": 0}
    metrics = http_get_json(f"{http_url}/api/v1/metrics")
    errors = metrics.get("errors") or {}
    return {"underruns": int(metrics.get("underruns", 0)), "busy": int(errors.get("busy", 0))}


def _admission_state(http_url: str | None) -> dict[str, Any] | None:
    if not http_url:
        return None
    state: dict[str, Any] = http_get_json(f"{http_url}/api/v1/status").get("admission", {})
    return state


def _conditions(pid: int | None) -> dict[str, Any]:
    """What else the machine was doing just before a scenario (printed beside it)."""
    other = wait_for_quiet([pid] if pid else [])
    load1, load5, _ = os.getloadavg()
    return {"other_cpu_pct": round(other, 1), "loadavg_1m": load1, "loadavg_5m": load5}


def _scenario(
    name: str, args: argparse.Namespace, ws_url: str, http_url: str | None, pid: int | None,
    raw_x: float | None,
) -> dict[str, Any]:
    """Run one scenario; its figures with the server's own counts around it."""
    conditions = _conditions(pid)
    print(f"\n# scenario {name}: load average {conditions['loadavg_1m']:.2f},"
          f" other processes {conditions['other_cpu_pct']:.0f} % of a core")
    before = _server_counts(http_url)
    result: dict[str, Any]
    if name == "load":
        result = trio.run(_main, ws_url, args, pid)
    elif name == "burst":
        burst = trio.run(burst_run, ws_url)
        result = burst.to_json() | {
            "max_busy_per_client": burst.max_busy_per_client, "gave_up": burst.gave_up,
        }
        if not args.skip_fifo:
            fifo = whole_sentence_fifo(
                BURST_TEXT, BURST_CLIENTS, BURST_ROUNDS, default_workers(), args.slowdown
            )
            result["fifo_ttfa_ms"] = summarize(fifo)
    elif name == "mixed":
        if not http_url:
            raise SystemExit("--scenario mixed needs --http-url (or --spawn)")
        result = trio.run(mixed_run, ws_url, http_url).to_json()
    else:
        raise ValueError(name)
    after = _server_counts(http_url)
    result["server_underruns"] = after["underruns"] - before["underruns"]
    result["server_busy"] = after["busy"] - before["busy"]
    result["admission"] = _admission_state(http_url)
    result["conditions"] = conditions
    _print_scenario(name, result, raw_x)
    return result


def _ms(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else f"{value:.0f}"


def _print_scenario(name: str, result: dict[str, Any], raw_x: float | None) -> None:
    ttfa = result.get("ttfa_ms") or {}
    line = (f"{name}: server-counted underruns {result['server_underruns']},"
            f" busy {result['server_busy']}, TTFA p50 {_ms(ttfa, 'p50')} ms"
            f" / p95 {_ms(ttfa, 'p95')} ms")
    if "fifo_ttfa_ms" in result:
        fifo = result["fifo_ttfa_ms"]
        line += f" (whole-sentence FIFO p50 {_ms(fifo, 'p50')} / p95 {_ms(fifo, 'p95')} ms)"
    if "max_busy_per_client" in result:
        line += f"; at most {result['max_busy_per_client']} busy per client"
    if "http_status" in result:
        line += f"; HTTP {result['http_status']}"
    print(line)
    admission = result.get("admission")
    if admission:
        costs = {k: v.get("cost") for k, v in admission.get("voices", {}).items()}
        print(f"  admission: bound {admission.get('bound')}, tightenings"
              f" {admission.get('tightenings')}, waited {admission.get('waited')}, refused"
              f" {admission.get('refused')}, cost per audio-s {costs}")
    if raw_x:
        print(f"  raw throughput measured in this run: {raw_x:.1f}x real time")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="WebSocket URL of a running server")
    target.add_argument(
        "--spawn", action="store_true", help="start a server on free ports, stop it at the end"
    )
    parser.add_argument("--pid", type=int, help="--url's server pid, for its CPU and memory")
    parser.add_argument("--http-url", help="REST URL of --url's server, for its own metrics")
    parser.add_argument("--sessions", type=int, default=50, help="connected sessions (S)")
    parser.add_argument("--speaking", type=int, default=20, help="speaking sessions (K)")
    parser.add_argument("--seconds", type=float, default=60.0, help="speaking time (T)")
    parser.add_argument("--ramp", type=float, default=RAMP_S,
                        help="speaking sessions start spread over this many seconds, then"
                        " all speak for --seconds")
    parser.add_argument(
        "--next-on",
        choices=("played", "audio_end"),
        default="played",
        help="send the next paragraph when the listener has heard the previous one"
        " (played) or at its audio_end, ~realtime_lead before it has played (its audio"
        " then plays right after the previous paragraph's, with no gap)",
    )
    parser.add_argument("--find-capacity", action="store_true",
                        help="step K up until underruns or busy refusals appear")
    parser.add_argument("--start", type=int, default=12, help="first K of --find-capacity")
    parser.add_argument("--step", type=int, default=2, help="K increment of --find-capacity")
    parser.add_argument("--max-speaking", type=int, default=40, help="last K tried")
    parser.add_argument("--step-seconds", type=float, default=30.0,
                        help="speaking time of each --find-capacity step")
    parser.add_argument("--baseline-json", help="scripts.baseline --json output, for the"
                        " engine's raw throughput (otherwise measured in this run)")
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="load",
                        help="which scenario to run (all: load, burst, mixed on one server)")
    parser.add_argument("--slowdown", type=float, default=0.0,
                        help="with --spawn: run the server with TTS_STREAMER_BENCH_SLOWDOWN"
                        " set to this (a CPU 1+F times slower), the in-process baselines"
                        " likewise")
    parser.add_argument("--raw-seconds", type=float, default=10.0,
                        help="seconds of in-process raw throughput measured before the"
                        " scenarios (0: skip)")
    parser.add_argument("--skip-fifo", action="store_true",
                        help="burst: skip the in-process whole-sentence FIFO baseline")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if not args.url and not args.spawn:
        args.url = "ws://127.0.0.1:8081"

    if args.slowdown < 0 or (args.slowdown and not args.spawn):
        parser.error("--slowdown needs --spawn and a value >= 0")
    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']},"
          f" onnxruntime {machine['onnxruntime']}; slowdown {args.slowdown}")
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    raw = _raw_throughput(args.baseline_json)
    if raw is None and args.raw_seconds > 0:
        raw = throughput("windowed", default_workers(), args.raw_seconds, args.slowdown)
        print(f"raw throughput: {raw:.1f}x real time ({default_workers()} threads,"
              f" slowdown {args.slowdown})")
    result: dict[str, Any] = {"machine": machine, "slowdown": args.slowdown,
                              "raw_throughput_x": raw, "scenarios": {}}
    env = {BENCH_SLOWDOWN_ENV: str(args.slowdown)} if args.slowdown else None
    if args.spawn:
        with spawned_server(env=env) as server:
            for name in scenarios:
                result["scenarios"][name] = _scenario(
                    name, args, server.ws_url, server.http_url, server.pid, raw
                )
            result["server_metrics"] = http_get_json(f"{server.http_url}/api/v1/metrics")
    else:
        for name in scenarios:
            result["scenarios"][name] = _scenario(
                name, args, args.url, args.http_url, args.pid, raw
            )
    if args.find_capacity:
        capacity = capacity_sessions(result)
        line = f"capacity: {capacity} continuously speaking real-time sessions without underruns"
        if raw and capacity:
            result["capacity_of_raw_pct"] = 100 * capacity / raw
            line += f" = {100 * capacity / raw:.0f} % of the engine's raw {raw:.1f}x real time"
        print(line)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
