"""Latency of the streaming server as a client sees it, with N sessions speaking at once.

    .venv/bin/python -m scripts.latency --spawn                    # 1 session
    .venv/bin/python -m scripts.latency --spawn --sessions 20      # 20 at once
    .venv/bin/python -m scripts.latency --url ws://127.0.0.1:8081 --json out.json
    .venv/bin/python -m scripts.latency --spawn --compare-auth     # the cost of API keys

Of the ``--sessions`` connections (``format: pcm``, real-time pacing on, as a voice
client would use them), ``--probes`` (default one per ten sessions) run ``--repeats``
measuring cycles; the others speak paragraphs back to back, each heard out before the
next, and start spread over one paragraph's duration before the probes begin. (Probes
alone would overload the server: every interrupt throws away the ~2 s of audio
synthesized ahead.) The speakers run in a child process of their own (this tool with
``--background-child``), as other users' clients would: sharing the probes' event loop,
their ~900 audio frames a second would queue ahead of a probe's replies and be counted
as the server's latency. ``--shared-client-loop`` runs them in the probes' loop (the
figures before this option existed). One cycle:

A. a ~30-character English sentence, played to its end: first response (send →
   ``queued``), time to first audio (send → first binary frame), playback underruns;
B. a ~150-character English sentence; after ``--play`` seconds of playback an
   ``interrupt``: interrupt reply (send → ``interrupted``), then a ``--drain`` window
   in which every byte that still arrives is counted (must be zero);
C. the ~150-character sentence again; after ``--play`` seconds a ``critical`` short
   sentence: pre-emption delay (send → the critical request's first audio), played to
   its end (underruns);
D. a Spanish sentence (espeak-ng), short and long alternately, interrupted right after
   its first audio (secondary TTFA row).

``--compare-auth`` (with ``--spawn``) starts two servers, one without API keys and one
with a key (and a ``chars_per_minute`` it never reaches, so every request is charged),
and alternates between them: a handshake on each (``--handshakes`` of them, open →
``connected``), then a cycle on each, one probe per server, so both are measured under
the same load of the machine. It prints both and the in-process cost of the checks (the
handshake's and the per-request charge), timed over many calls. ``--api-key`` (or
``$TTS_STREAMER_API_KEY``) is the key for ``--url``'s server.

Every figure is client-side wall time on ``time.perf_counter``: it includes the
client's own scheduling, on the same machine. A client on a machine of its own wakes at
once when a reply arrives; here the probes share two cores with the server's inference,
and a woken probe waited up to a 4 ms scheduler tick for a core (BENCHMARKS.md). So the
probes' event loop runs at ``SCHED_FIFO`` priority ``--probe-realtime-priority`` (1, like
the server's loop; 0 = normal, to see the same-machine figure), when permitted; the
background speakers' process stays normal. With ``--spawn`` or ``--http-url`` the
server's own figures (from ``/api/v1/metrics``, measured from the moment a message is
read) are printed beside them. Underruns follow the playback model in
``scripts/_probe.py``. Percentiles are nearest-rank: p99 of fewer than 100 samples is the
maximum.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from streamer.client import AudioEnd, AudioStart
from streamer.config import parse_config
from streamer.server.runtime import make_event_loop_realtime
from streamer.server.security import Caller, Security, create_key

from ._common import (
    LATENCY_HEADERS,
    PARAGRAPHS,
    REPO_ROOT,
    TEXT_EN_LONG,
    TEXT_EN_SHORT,
    TEXT_ES_LONG,
    TEXT_ES_SHORT,
    CpuSample,
    http_get_json,
    machine_info,
    markdown_table,
    percentile,
    spawned_server,
    stats_row,
    summarize,
    wait_for_quiet,
    write_json,
)
from ._probe import Probe, ProbeError, RequestTrace, now, open_probe

#: This tool's module, which its background child runs (``python -m``, from the root).
MODULE: Final = "scripts.latency"
#: Seconds between steps of a cycle: a client does not fire its next turn in the same
#: millisecond, and it lets the previous request's tail leave the socket.
STEP_PAUSE_S: Final = 0.2
#: Seed of the stagger between sessions, so two runs load the server alike.
STAGGER_SEED: Final = 7
#: Roughly how long one cycle takes (A ≈ 2.5 s, B ≈ play + drain, C ≈ play + 2.5 s,
#: D ≈ 0.5 s); sessions start spread over one cycle so they do not march in step.
CYCLE_ESTIMATE_S: Final = 9.0
#: One probe per this many sessions: a probe's interrupts throw away the ~2 s of audio
#: synthesized ahead each time, so a test made only of probes asks the server for ~1.3 s
#: of audio per second per session, more than "speaking" means.
PROBE_EVERY: Final = 10
#: Background speakers start spread over about one paragraph's duration.
BACKGROUND_RAMP_S: Final = 15.0
#: A refused request's retry hint is obeyed up to this long.
MAX_RETRY_WAIT_S: Final = 2.0
#: The background process stops within one paragraph's wait once told to; past this
#: something hangs.
EVENT_TIMEOUT_AFTER_STOP_S: Final = 60.0
#: The key for ``--url``'s server, when ``--api-key`` is not given; also how the key
#: reaches the background process (never its command line, which ``ps`` shows).
API_KEY_ENV: Final = "TTS_STREAMER_API_KEY"
#: ``--compare-auth``: connections opened one after another on each server.
COMPARE_HANDSHAKES: Final = 50
#: ``--compare-auth``: the key's ``chars_per_minute``: every request is charged (the
#: cost measured), none is refused.
UNREACHED_CHARS_PER_MINUTE: Final = 10**9
#: Calls timed for the in-process cost of each check (a few ms in all).
COST_CALLS: Final = 20_000


@dataclass
class Samples:
    """Every measured value, in milliseconds unless the name says otherwise."""

    first_response: list[float] = field(default_factory=list)
    #: The same by step of the cycle (a_short, b_long, c_long, c_critical, d_spanish).
    first_response_by_step: dict[str, list[float]] = field(default_factory=dict)
    ttfa_en_short: list[float] = field(default_factory=list)
    ttfa_en_long: list[float] = field(default_factory=list)
    ttfa_es_short: list[float] = field(default_factory=list)
    ttfa_es_long: list[float] = field(default_factory=list)
    interrupt_reply: list[float] = field(default_factory=list)
    preempt_to_audio: list[float] = field(default_factory=list)
    chunk_gap: list[float] = field(default_factory=list)
    buffer_at_burst: list[float] = field(default_factory=list)
    underruns: int = 0
    underrun_silence_ms: float = 0.0
    played_requests: int = 0
    played_audio_s: float = 0.0
    interrupts: int = 0
    bytes_after_interrupt: int = 0
    frames_after_interrupt: int = 0
    #: Requests answered with an ``error`` instead of ``queued``, by code (``busy``).
    refused: dict[str, int] = field(default_factory=dict)
    #: ``--handshakes``: TCP + WebSocket handshake + ``connect`` → ``connected``.
    handshake: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def response(self, step: str, trace: RequestTrace) -> None:
        """Record ``trace``'s first response, overall and under ``step``."""
        value = trace.first_response_ms
        if value is not None:
            self.first_response.append(value)
            self.first_response_by_step.setdefault(step, []).append(value)

    def playback(self, trace: RequestTrace, until: float | None = None) -> None:
        """Fold a played request's underruns and gaps in (frames before ``until``)."""
        if until is not None:
            trace = trace.truncated(until)
        underruns, silence, gaps, buffers = trace.playback()
        self.underruns += underruns
        self.underrun_silence_ms += silence * 1000
        self.chunk_gap.extend(g * 1000 for g in gaps)
        self.buffer_at_burst.extend(b * 1000 for b in buffers)
        self.played_requests += 1
        self.played_audio_s += trace.audio_seconds


def _record(target: list[float], value: float | None) -> None:
    if value is not None:
        target.append(value)


async def _refused(out: Samples, trace: RequestTrace) -> bool:
    """True (after the server's retry hint) if the request was refused with an error."""
    if trace.error is None:
        return False
    code = trace.error.code
    out.refused[code] = out.refused.get(code, 0) + 1
    hint_ms = trace.error.details.get("retry_after_ms", 0)
    await trio.sleep(min(MAX_RETRY_WAIT_S, hint_ms / 1000))
    return True


async def _cycle(
    probe: Probe, session: int, rep: int, args: argparse.Namespace, samples: Samples | None
) -> None:
    """One measuring cycle (A-D in the module doc); ``samples`` None = warm-up."""
    scratch = Samples()
    out = samples or scratch
    tag = f"s{session}-r{rep}"

    # A. short English, played to its end.
    trace = await probe.synthesize(f"{tag}-a", TEXT_EN_SHORT)
    await probe.wait_played(trace)
    if not await _refused(out, trace):
        out.response("a_short", trace)
        _record(out.ttfa_en_short, trace.ttfa_ms)
        out.playback(trace)
    await trio.sleep(STEP_PAUSE_S)

    # B. long English, interrupted while it streams; nothing may follow the reply.
    trace = await probe.synthesize(f"{tag}-b", TEXT_EN_LONG)
    await probe.wait_audio(trace, args.play)
    if await _refused(out, trace):
        return
    out.response("b_long", trace)
    _record(out.ttfa_en_long, trace.ttfa_ms)
    sent, reply = await probe.interrupt("benchmark")
    out.interrupt_reply.append((reply.at - sent) * 1000)
    out.interrupts += 1
    out.playback(trace, until=sent)
    await trio.sleep(args.drain)
    after = probe.log[probe.log.index(reply) + 1 :]
    out.frames_after_interrupt += sum(1 for m in after if isinstance(m.item, bytes))
    out.bytes_after_interrupt += sum(m.nbytes for m in after)
    leaked = [type(m.item).__name__ for m in after if isinstance(m.item, AudioStart | AudioEnd)]
    if leaked:
        out.errors.append(f"{tag}: {leaked} after interrupted")

    # C. long English pre-empted by a critical short sentence.
    trace = await probe.synthesize(f"{tag}-c", TEXT_EN_LONG)
    await probe.wait_audio(trace, args.play)
    if await _refused(out, trace):
        return
    out.response("c_long", trace)
    _record(out.ttfa_en_long, trace.ttfa_ms)
    critical = await probe.synthesize(f"{tag}-crit", TEXT_EN_SHORT, priority="critical")
    await probe.wait_played(critical)
    out.playback(trace, until=critical.sent_at)
    if await _refused(out, critical):
        return
    out.response("c_critical", critical)
    _record(out.preempt_to_audio, critical.ttfa_ms)
    out.playback(critical)
    if trace.interrupted_at is None and trace.ended_at is None:
        out.errors.append(f"{tag}: pre-empted request got no interrupted event")
    await trio.sleep(STEP_PAUSE_S)

    # D. Spanish (espeak-ng), stopped after its first audio.
    long_es = rep % 2 == 1
    trace = await probe.synthesize(
        f"{tag}-d", TEXT_ES_LONG if long_es else TEXT_ES_SHORT, config={"language": "es"}
    )
    await probe.wait_audio(trace, 0.0)
    if await _refused(out, trace):
        return
    out.response("d_spanish", trace)
    _record(out.ttfa_es_long if long_es else out.ttfa_es_short, trace.ttfa_ms)
    await probe.interrupt("benchmark")
    await trio.sleep(STEP_PAUSE_S)


@dataclass
class Background:
    """What the sessions speaking paragraphs around the probes went through."""

    requests: int = 0
    ttfa: list[float] = field(default_factory=list)
    underruns: int = 0
    audio_s: float = 0.0
    refused: int = 0


async def _connected(
    url: str,
    name: str,
    args: argparse.Namespace,
    errors: list[str],
    body: Callable[[Probe], Awaitable[None]],
) -> None:
    """Open a session and run ``body(probe)`` in it; failures become ``errors``."""
    try:
        async with open_probe(url, args.api_key) as ws:
            probe = Probe(ws, name)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.reader)
                try:
                    await probe.connect(
                        {"language": "en", "format": "pcm", "realtime": not args.no_realtime}
                    )
                    await body(probe)
                except ProbeError as exc:
                    errors.append(str(exc))
                nursery.cancel_scope.cancel()
    except OSError as exc:  # refused or reset: the server is gone
        errors.append(f"{name}: {exc}")


async def _probe_session(
    url: str, session: int, args: argparse.Namespace, samples: Samples, start_at: float
) -> None:
    await trio.sleep(max(0.0, start_at - now()))

    async def body(probe: Probe) -> None:
        for rep in range(args.warmup + args.repeats):
            await _cycle(probe, session, rep, args, samples if rep >= args.warmup else None)

    await _connected(url, f"probe {session}", args, samples.errors, body)


async def _background_session(
    url: str, index: int, args: argparse.Namespace, result: Background, errors: list[str],
    start_at: float, stop: trio.Event,
) -> None:
    """Speak paragraphs back to back (each heard out before the next) until ``stop``."""
    await trio.sleep(max(0.0, start_at - now()))

    async def body(probe: Probe) -> None:
        n = index
        while not stop.is_set():
            trace = await probe.synthesize(f"bg{index}-{n}", PARAGRAPHS[n % len(PARAGRAPHS)])
            n += 1
            with trio.CancelScope() as scope:
                async def watch() -> None:
                    await stop.wait()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch)
                    await probe.wait_played(trace)
                    nursery.cancel_scope.cancel()
            if trace.error is not None:
                result.refused += 1
                await trio.sleep(MAX_RETRY_WAIT_S)
                continue
            result.requests += 1
            if trace.ttfa_ms is not None:
                result.ttfa.append(trace.ttfa_ms)
            if scope.cancelled_caught and trace.ended_at is None:
                sent, _ = await probe.interrupt("test over")
                trace = trace.truncated(sent)
            result.underruns += trace.playback()[0]
            result.audio_s += trace.audio_seconds

    await _connected(url, f"background {index}", args, errors, body)


async def _handshake(url: str, api_key: str | None, index: int, samples: Samples) -> None:
    """Open a connection and time it to ``connected``; then close it."""
    started = now()
    try:
        async with open_probe(url, api_key) as ws:
            probe = Probe(ws, f"handshake {index}")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe.reader)
                await probe.connect({"language": "en", "format": "pcm"})
                samples.handshake.append((now() - started) * 1000)
                nursery.cancel_scope.cancel()
    except (OSError, ProbeError) as exc:
        samples.errors.append(f"handshake {index}: {exc}")


async def _measure_handshakes(url: str, args: argparse.Namespace, samples: Samples) -> None:
    """``--handshakes`` connections, one after another: open → ``connected``."""
    for index in range(args.handshakes):
        await _handshake(url, args.api_key, index, samples)


def _server_figures(http_url: str | None, api_key: str | None) -> dict[str, Any] | None:
    if not http_url:
        return None
    try:
        return http_get_json(f"{http_url}/api/v1/metrics", api_key=api_key)
    except OSError as exc:
        print(f"(server metrics unavailable: {exc})", file=sys.stderr)
        return None


def report(samples: Samples, args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    rows = [
        *([stats_row("handshake (open → connected)", samples.handshake)]
          if samples.handshake else []),
        stats_row("first response (→ queued)", samples.first_response),
        stats_row(f"TTFA en {len(TEXT_EN_SHORT)} chars", samples.ttfa_en_short),
        stats_row(f"TTFA en {len(TEXT_EN_LONG)} chars", samples.ttfa_en_long),
        stats_row(f"TTFA es {len(TEXT_ES_SHORT)} chars (espeak)", samples.ttfa_es_short),
        stats_row(f"TTFA es {len(TEXT_ES_LONG)} chars (espeak)", samples.ttfa_es_long),
        stats_row("interrupt reply (→ interrupted)", samples.interrupt_reply),
        stats_row("critical pre-emption → first audio", samples.preempt_to_audio),
        stats_row("gap between audio frames", samples.chunk_gap),
    ]
    buffers = sorted(samples.buffer_at_burst)
    print()
    print(
        f"## {args.sessions} session(s) speaking at once, {extra.get('probes', 1)} probe(s)"
        f" x {args.repeats} cycles"
        f" (pacing {'off' if args.no_realtime else 'on'})"
    )
    print(markdown_table(LATENCY_HEADERS, rows))
    print()
    print(
        f"underruns: {samples.underruns} in {samples.played_requests} played requests"
        f" ({samples.played_audio_s:.0f} s of audio, {samples.underrun_silence_ms:.0f} ms"
        f" of silence)"
    )
    if buffers:
        print(
            "audio still buffered when a new chunk arrived: min"
            f" {buffers[0]:.0f} ms, p1 {percentile(buffers, 1):.0f} ms,"
            f" p5 {percentile(buffers, 5):.0f} ms, p50 {percentile(buffers, 50):.0f} ms"
        )
    print(
        f"after {samples.interrupts} interrupts: {samples.frames_after_interrupt} frames,"
        f" {samples.bytes_after_interrupt} bytes arrived in the {args.drain * 1000:.0f} ms"
        " drain windows"
    )
    if samples.first_response_by_step:
        print("first response by step, p50 / p99 ms: " + ", ".join(
            f"{step} {percentile(sorted(v), 50):.1f} / {percentile(sorted(v), 99):.1f}"
            for step, v in samples.first_response_by_step.items()
        ))
    if samples.refused:
        print(f"refused requests (error instead of queued): {samples.refused}")
    bg = extra.get("background") or {}
    if bg.get("sessions"):
        ttfa = bg["ttfa_ms"]
        print(
            f"{extra['probes']} probe(s) measured the above while {bg['sessions']} more sessions"
            f" spoke paragraphs: {bg['requests']} requests, {bg['audio_s']:.0f} s of audio,"
            f" {bg['underruns']} underruns, {bg['refused']} refused, TTFA p50"
            f" {ttfa['p50'] or 0:.0f} / p95 {ttfa['p95'] or 0:.0f} ms"
        )
    cpu = extra.get("cpu")
    if cpu:
        print(
            f"CPU (% of one core, 200 = both): server {cpu['server_cpu_pct']:.0f}"
            f" (event loop {cpu['server_loop_cpu_pct']:.0f}),"
            f" client {cpu['client_cpu_pct']:.0f}, other processes {cpu['other_cpu_pct']:.0f}"
        )
    server = extra.get("server_metrics")
    if server:
        def fig(name: str) -> str:
            d = server.get(name) or {}
            return f"p50 {d.get('p50_ms')} / p99 {d.get('p99_ms')} ms"

        print(
            "server-side: first response " + fig("first_response")
            + "; TTFA (all requests) " + fig("time_to_first_audio")
            + "; interrupt " + fig("interrupt_latency")
            + "; event loop lag " + fig("event_loop_lag")
            + f"; underruns {server.get('underruns')}; errors {server.get('errors')}"
        )
    if samples.errors:
        print(f"errors ({len(samples.errors)}):")
        for error in samples.errors[:20]:
            print("  " + error)
    return {
        "sessions": args.sessions,
        "repeats": args.repeats,
        "realtime": not args.no_realtime,
        "play_s": args.play,
        "drain_s": args.drain,
        "summary_ms": {
            name: summarize(getattr(samples, name))
            for name in (
                "handshake",
                "first_response",
                "ttfa_en_short",
                "ttfa_en_long",
                "ttfa_es_short",
                "ttfa_es_long",
                "interrupt_reply",
                "preempt_to_audio",
                "chunk_gap",
                "buffer_at_burst",
            )
        },
        "underruns": samples.underruns,
        "underrun_silence_ms": samples.underrun_silence_ms,
        "played_requests": samples.played_requests,
        "played_audio_s": samples.played_audio_s,
        "interrupts": samples.interrupts,
        "frames_after_interrupt": samples.frames_after_interrupt,
        "bytes_after_interrupt": samples.bytes_after_interrupt,
        "refused": samples.refused,
        "errors": samples.errors,
        "first_response_by_step_ms": {
            step: summarize(values) for step, values in samples.first_response_by_step.items()
        },
        "samples_ms": {
            name: getattr(samples, name)
            for name in (
                "first_response",
                "ttfa_en_short",
                "ttfa_en_long",
                "ttfa_es_short",
                "ttfa_es_long",
                "interrupt_reply",
                "preempt_to_audio",
            )
        },
        **extra,
    }


def _background_offset(index: int, speakers: int, rng: random.Random) -> float:
    """When background speaker ``index`` starts, after the run begins: spread over one
    paragraph, as independent sessions would be."""
    return BACKGROUND_RAMP_S * (index + rng.random()) / speakers


async def _speak_in_background(
    url: str, speakers: int, args: argparse.Namespace, result: Background, errors: list[str],
    begin: float, stop: trio.Event,
) -> None:
    rng = random.Random(STAGGER_SEED)
    async with trio.open_nursery() as nursery:
        for index in range(speakers):
            nursery.start_soon(
                _background_session, url, index, args, result, errors,
                begin + _background_offset(index, speakers, rng), stop,
            )


def _background_json(result: Background, errors: list[str]) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "ttfa_ms_samples": result.ttfa,
        "underruns": result.underruns,
        "audio_s": result.audio_s,
        "refused": result.refused,
        "errors": errors,
    }


async def background_child(url: str, args: argparse.Namespace) -> None:
    """``--background-child``: speak until stdin closes, then print what happened as
    one JSON line on stdout."""
    result, stop = Background(), trio.Event()
    errors: list[str] = []

    async def wait_for_eof() -> None:
        await trio.to_thread.run_sync(sys.stdin.read)
        stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_eof)
        await _speak_in_background(url, args.background_child, args, result, errors, now(), stop)
        nursery.cancel_scope.cancel()
    print(json.dumps(_background_json(result, errors)), flush=True)


def _start_background_child(
    url: str, speakers: int, args: argparse.Namespace
) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", MODULE, "--url", url, "--background-child", str(speakers),
        "--drain", str(args.drain),
    ]
    if args.no_realtime:
        command.append("--no-realtime")
    env = {**os.environ, API_KEY_ENV: args.api_key} if args.api_key else None
    return subprocess.Popen(
        command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )


def _stop_background_child(
    child: subprocess.Popen[str], result: Background, errors: list[str]
) -> None:
    """Close the child's stdin (its cue to stop) and fold its figures into ``result``."""
    try:
        out, _ = child.communicate(timeout=EVENT_TIMEOUT_AFTER_STOP_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        errors.append(f"background process did not stop in {EVENT_TIMEOUT_AFTER_STOP_S:.0f} s")
        return
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        errors.append(f"background process exited {child.returncode} without figures")
        return
    figures = json.loads(lines[-1])
    result.requests += figures["requests"]
    result.ttfa.extend(figures["ttfa_ms_samples"])
    result.underruns += figures["underruns"]
    result.audio_s += figures["audio_s"]
    result.refused += figures["refused"]
    errors.extend(figures["errors"])


async def run(
    url: str, args: argparse.Namespace, server_pid: int | None
) -> tuple[Samples, dict[str, Any]]:
    samples = Samples()
    if args.handshakes:
        await _measure_handshakes(url, args, samples)  # before any load
    background = Background()
    probes = min(args.sessions, args.probes or max(1, args.sessions // PROBE_EVERY))
    speakers = args.sessions - probes
    rng = random.Random(STAGGER_SEED)
    begin = now()
    stop = trio.Event()
    child = None
    if speakers and not args.shared_client_loop:
        child = _start_background_child(url, speakers, args)
    client_pids = [child.pid] if child is not None else []
    cpu_start = CpuSample.take(server_pid, client_pids)
    async with trio.open_nursery() as nursery:
        if speakers and child is None:
            nursery.start_soon(
                _speak_in_background, url, speakers, args, background, samples.errors,
                begin, stop,
            )
        probe_begin = begin + (BACKGROUND_RAMP_S if speakers else 0.0)
        async with trio.open_nursery() as probing:
            for session in range(probes):
                offset = CYCLE_ESTIMATE_S * (session + rng.random()) / probes if probes > 1 else 0
                probing.start_soon(
                    _probe_session, url, session, args, samples, probe_begin + offset
                )
        cpu = CpuSample.take(server_pid, client_pids).usage_since(cpu_start)
        stop.set()
    if child is not None:
        await trio.to_thread.run_sync(
            _stop_background_child, child, background, samples.errors
        )
    return samples, {
        "cpu": cpu,
        "probes": probes,
        "background": {
            "sessions": speakers,
            "own_process": child is not None,
            "requests": background.requests,
            "ttfa_ms": summarize(background.ttfa),
            "underruns": background.underruns,
            "audio_s": background.audio_s,
            "refused": background.refused,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="WebSocket URL of a running server")
    target.add_argument(
        "--spawn", action="store_true", help="start a server on free ports, stop it at the end"
    )
    parser.add_argument("--http-url", help="REST URL of --url's server, for its own metrics")
    parser.add_argument("--pid", type=int, help="--url's server pid, for its CPU use")
    parser.add_argument("--sessions", type=int, default=1, help="sessions speaking at once")
    parser.add_argument(
        "--probes",
        type=int,
        help=f"of --sessions, how many run the measuring cycle (default 1 per {PROBE_EVERY});"
        " the others speak paragraphs",
    )
    parser.add_argument("--repeats", type=int, default=20, help="measured cycles per probe")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured cycles first")
    parser.add_argument("--play", type=float, default=1.5,
                        help="seconds of playback before an interrupt or pre-emption")
    parser.add_argument("--drain", type=float, default=0.5,
                        help="seconds to watch for bytes after each interrupted reply")
    parser.add_argument("--no-realtime", action="store_true",
                        help="client config realtime: false (no pacing; no underrun meaning)")
    parser.add_argument(
        "--shared-client-loop", action="store_true",
        help="run the background speakers in the probes' event loop, not a process of their own",
    )
    parser.add_argument(
        "--probe-realtime-priority", type=int, default=1, metavar="N",
        help="SCHED_FIFO priority of the probes' event loop (0 = normal scheduling)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get(API_KEY_ENV) or None,
        help=f"API key of --url's server, sent as Authorization: Bearer (${API_KEY_ENV})",
    )
    parser.add_argument(
        "--handshakes", type=int, default=0, metavar="N",
        help="first open N connections one after another and time open → connected",
    )
    parser.add_argument(
        "--compare-auth", action="store_true",
        help="with --spawn: measure a server without API keys, then one with a key, in one"
        f" run (--handshakes defaults to {COMPARE_HANDSHAKES})",
    )
    parser.add_argument("--background-child", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the figures and raw samples here")
    args = parser.parse_args(argv)
    if not args.url and not args.spawn:
        args.url = "ws://127.0.0.1:8081"
    if args.background_child:
        trio.run(background_child, args.url, args)
        return 0

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']},"
          f" onnxruntime {machine['onnxruntime']}")
    # The server and the background speakers are started from this thread later:
    # SCHED_RESET_ON_FORK starts them under the normal policy.
    probe_policy = make_event_loop_realtime(args.probe_realtime_priority)
    machine["probe_scheduling"] = (
        f"SCHED_FIFO {args.probe_realtime_priority}" if probe_policy else "normal"
    )
    print(f"probes' event loop: {machine['probe_scheduling']} scheduling")
    if args.compare_auth:
        if not args.spawn:
            parser.error("--compare-auth needs --spawn")
        return compare_auth(args, machine)
    if args.spawn:
        with spawned_server() as server:
            wait_for_quiet([server.pid])
            samples, extra = trio.run(run, server.ws_url, args, server.pid)
            extra["server_metrics"] = _server_figures(server.http_url, args.api_key)
    else:
        wait_for_quiet([args.pid] if args.pid else [])
        samples, extra = trio.run(run, args.url, args, args.pid)
        extra["server_metrics"] = _server_figures(args.http_url, args.api_key)
    extra["machine"] = machine
    result = report(samples, args, extra)
    write_json(args.json, result)
    return 1 if samples.errors else 0


def auth_cost_us() -> dict[str, float]:
    """What the checks cost in-process, in µs per call: the WebSocket handshake's (origin,
    key digest against the configured ones, a session slot) and a request's charge."""
    key, entry = create_key("bench", max_sessions=0, chars_per_minute=UNREACHED_CHARS_PER_MINUTE)
    security = Security.from_config(
        parse_config({"security": {"api_keys": [entry]}}), environ={}
    )
    security.origins.page_port = 8080
    headers = {"authorization": f"Bearer {key}", "host": "127.0.0.1:8081",
               "origin": "http://127.0.0.1:8080"}

    def handshake() -> None:
        security.admit_websocket(headers, "/", ["tts.v1"], time.time()).lease.release()

    caller = Caller(security.keys.get("bench"))
    clock = iter(range(10**9))

    def charge() -> None:
        security.quotas.charge(caller, len(TEXT_EN_SHORT), next(clock) * 1e-3)

    return {
        name: timeit.timeit(fn, number=COST_CALLS) / COST_CALLS * 1e6
        for name, fn in (("handshake_check", handshake), ("request_charge", charge))
    }


async def _alternate(
    targets: Sequence[tuple[str, str | None]], args: argparse.Namespace
) -> list[Samples]:
    """Handshakes, then cycles, alternating between the ``(url, api_key)`` targets."""
    samples = [Samples() for _ in targets]
    for index in range(args.handshakes):
        for (url, api_key), out in zip(targets, samples, strict=True):
            await _handshake(url, api_key, index, out)
    async with AsyncExitStack() as stack:
        probes = [
            Probe(await stack.enter_async_context(open_probe(url, api_key)), f"probe {n}")
            for n, (url, api_key) in enumerate(targets)
        ]
        async with trio.open_nursery() as nursery:
            for probe in probes:
                nursery.start_soon(probe.reader)
            try:
                for probe in probes:
                    await probe.connect(
                        {"language": "en", "format": "pcm", "realtime": not args.no_realtime}
                    )
                for rep in range(args.warmup + args.repeats):
                    for n, probe in enumerate(probes):
                        measured = samples[n] if rep >= args.warmup else None
                        await _cycle(probe, n, rep, args, measured)
            except ProbeError as exc:
                samples[0].errors.append(str(exc))
            nursery.cancel_scope.cancel()
    return samples


def compare_auth(args: argparse.Namespace, machine: dict[str, object]) -> int:
    """``--compare-auth``: a server without keys and one with a key, alternately."""
    args.handshakes = args.handshakes or COMPARE_HANDSHAKES
    key, entry = create_key(
        "bench", max_sessions=0, chars_per_minute=UNREACHED_CHARS_PER_MINUTE
    )
    labels = ("without keys", "with a key")
    with spawned_server() as plain, spawned_server(
        {"security": {"api_keys": [entry]}}
    ) as keyed:
        wait_for_quiet([plain.pid, keyed.pid])
        all_samples = trio.run(_alternate, [(plain.ws_url, None), (keyed.ws_url, key)], args)
        server_metrics = [
            _server_figures(plain.http_url, None), _server_figures(keyed.http_url, key)
        ]
    runs: dict[str, dict[str, Any]] = {}
    for label, samples, metrics in zip(labels, all_samples, server_metrics, strict=True):
        print(f"\n# {label}")
        runs[label] = report(
            samples, args, {"probes": 1, "server_metrics": metrics, "machine": machine}
        )
    cost = auth_cost_us()
    rows = []
    for name, figure in (
        ("handshake (open → connected)", "handshake"),
        ("first response (→ queued)", "first_response"),
        (f"TTFA en {len(TEXT_EN_SHORT)} chars", "ttfa_en_short"),
        (f"TTFA en {len(TEXT_EN_LONG)} chars", "ttfa_en_long"),
        ("interrupt reply", "interrupt_reply"),
    ):
        without, with_key = (runs[label]["summary_ms"][figure] for label in labels)
        rows.append([name, without["p50"], with_key["p50"], without["p95"], with_key["p95"]])
    # The server's own first response (message read → queued), without the network.
    own = [(m or {}).get("first_response") or {} for m in server_metrics]
    rows.append(["server-side first response", own[0].get("p50_ms"), own[1].get("p50_ms"),
                 own[0].get("p95_ms"), own[1].get("p95_ms")])
    print("\n## API keys: without / with, alternating in one run")
    print(markdown_table(
        ("figure", "p50 without", "p50 with key", "p95 without", "p95 with key"), rows
    ))
    print(f"in-process cost per call: handshake check {cost['handshake_check']:.1f} µs,"
          f" request charge {cost['request_charge']:.2f} µs")
    write_json(args.json, {"runs": runs, "in_process_cost_us": cost})
    return 1 if any(run["errors"] for run in runs.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
