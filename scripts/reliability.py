"""Reliability under attack: hostile and sloppy clients against a live server while
witness sessions stream, each case judged against what the server promises (issue #12).

    .venv/bin/python -m scripts.reliability --spawn                 # every case
    .venv/bin/python -m scripts.reliability --spawn --cases frames,burst
    .venv/bin/python -m scripts.reliability --url ws://127.0.0.1:8081 \\
        --http-url http://127.0.0.1:8080 --config config/default.json

``--witnesses`` sessions (default 3) speak paragraphs back to back for the whole run,
as real-time listeners (``format: pcm``; the next paragraph is sent at ``audio_end`` and
queued behind the previous one's audio in the listener's player, so the stream never
pauses), and one more session, the *target*, does the same as the victim of the REST
interrupts. Before each case the tool waits (up to ``QUIET_WAIT_S``) for other
processes to leave the CPU alone, and reports the CPU the server, the tool and anything
else used during it. The cases run one after another (``CASES``, in this order):

- ``ws_fuzz``: ``--ws-messages`` hostile frames (``scripts/_hostile.py``) on one raw
  connection, reopened whenever the server closes it; each frame is followed by a
  marker (an ``interrupt`` with a reason only this tool sends), so the replies between
  two markers answer one frame. Expected: an ``error`` event with a documented code (an
  ``ErrorCode``) or a reply, or, for a frame that is not UTF-8 or is over
  ``server.max_message_bytes`` bytes, close 1007 or 1009 (sent alone, after the replies
  before it);
- ``http_fuzz``: ``--http-requests`` hostile bodies (some not UTF-8) to ``POST
  /api/v1/sessions``, ``POST /api/v1/interrupt/{target}`` and ``POST /v1/audio/speech``
  on one keep-alive connection. Expected: success, or an error in the surface's JSON
  shape (ours ``{"error":{"code","message"}}``, OpenAI's
  ``{"error":{"message","type","param","code"}}``) with a documented code; no 5xx but
  503 ``busy``;
- ``frames``: raw-socket frame attacks, one connection each: invalid UTF-8 in a text
  frame (close 1007); RSV bits, an unmasked frame, reserved opcodes, an oversized ping,
  a fragmented ping, invalid close codes, a continuation with no message (1002); a
  message of ``max_message_bytes / 2`` three-byte characters (98,335 bytes in 32,799
  characters at the default limit: 1009);
- ``http_limits``: a speech body over 1 MiB (413), a REST body over 64 KiB (413), a
  100 KiB header (431), a malformed request line (400): each a JSON error body;
- ``burst``: ``--burst`` simultaneous WebSocket handshakes. Expected: exactly
  ``max_connections`` minus the connections already open are accepted, the rest get
  HTTP 503 ``max_connections``; every slot is free again once they close;
- ``idle``: a WebSocket with no message, one with a session and then silence, one that
  hears a paragraph out and then is silent (each closed with 1000 ``idle_timeout``
  ``server.idle_timeout_s`` after it fell silent, give or take ``CLOSE_MARGIN_S``: not
  later, and not sooner either), an idle keep-alive HTTP connection (closed within
  ``server.http_keep_alive_timeout_s``), a response with ``Connection: close`` (closed
  at once);
- ``half_open``: a silent TCP connection and a half-sent upgrade on the WebSocket port
  (closed within ``server.handshake_timeout_s``), a half-sent request head and a
  half-sent body on the HTTP port (within ``server.http_read_timeout_s``);
- ``keepalive_503``: every download slot and queue place held by clients that do not
  read (``/api/v1/status``: ``downloads``), two speech requests on one keep-alive
  connection (503 ``busy`` with ``Retry-After``); then the holders hang up and the same
  connection asks again every ``http_keep_alive_timeout_s / 2`` (a client obeying
  ``Retry-After`` without idling past the keep-alive timeout): 503 until a slot is
  free, then 200 with its audio, never a stall;
- ``slow_reader``: a speech response (a paragraph, raw PCM) read at ``SLOW_READ_PACE``
  times real time through a small receive buffer, as a player streaming to a speaker
  reads it, for longer than ``server.http_read_timeout_s``. Expected: the whole
  response (the read timeout is for the client's request, not for our response);
- ``http_flood``: ``--flood`` concurrent speech requests (a paragraph each) while the
  witnesses stream. Expected: each 200 or 503 ``busy`` with ``Retry-After``; 0 underruns
  counted by the server (``/api/v1/metrics`` before and after) and by the witnesses;
- ``sigterm`` (``--spawn`` only; it ends the server, so it runs last): a streamed speech
  response its client does not read, then SIGTERM. Expected: the process exits within
  ``server.shutdown_timeout_s`` + ``SHUTDOWN_MARGIN_S``, and the witnesses get 1001.

Reported per case: expected, observed, pass or FAIL, counts and figures, the witnesses'
effects inside the case's window (its run plus ``SETTLE_S``): underruns (the listener
model of ``scripts/_probe.py``), errors, ``interrupted`` events and closes (each must be
0, but the 1001 closes of ``sigterm``), and the server's side: underruns and
``internal_error``/``synthesis_failed`` counted in ``/api/v1/metrics``, and tracebacks
in its log (``--spawn`` only). The server logs whose each underrun was and why its
chunk came late; with its log (``--spawn``) the report says whose they were (a witness,
``target``, ``other`` sessions), how many happened to a request already interrupted
(``cancelled``), and the late chunks' figures; after the table, whose were the underruns
logged outside every case's window (the witnesses starting, the pauses between cases).
A case passes when its expectation holds and nothing else was noticed. ``--spawn`` runs
the server with short timeouts (``SPAWN_SERVER``) so each case takes seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from streamer.client import ErrorEvent, Interrupted
from streamer.config import ServerConfig, load_config, parse_config
from streamer.protocol import ErrorCode
from streamer.testing import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    Closed,
    HandshakeRefused,
    RawWebSocket,
    frame,
)

from ._common import (
    PARAGRAPHS,
    CpuSample,
    http_get_json,
    machine_info,
    markdown_table,
    spawned_server,
    wait_for_quiet,
    write_json,
)
from ._hostile import HostileInput
from ._probe import Probe, ProbeError, RequestTrace, now, open_probe
from ._raw_http import ConnectionEnded, HttpConnection, HttpReply, closed_within, parse_raw_reply

MODULE: Final = "scripts.reliability"
#: What a spawned server runs with: timeouts short enough that each case takes seconds,
#: a connection cap the burst can exceed many times over.
SPAWN_SERVER: Final[dict[str, Any]] = {
    "max_connections": 64,
    "idle_timeout_s": 4.0,
    "handshake_timeout_s": 2.0,
    "ping_interval_s": 2.0,
    "http_keep_alive_timeout_s": 2.0,
    # Apart from the keep-alive timeout by more than CLOSE_MARGIN_S, so that which one
    # closed a connection shows.
    "http_read_timeout_s": 5.0,
    "shutdown_timeout_s": 3.0,
}
#: The witnesses' session config: real-time listeners, raw PCM (the playback model's).
WITNESS_CONFIG: Final = {"language": "en", "format": "pcm", "realtime": True}
#: Any single answer the server owes takes far less: longer is a stall.
REPLY_TIMEOUT_S: Final = 10.0
#: A timer of the server fires within this after its deadline (its loop's scheduling).
CLOSE_MARGIN_S: Final = 1.0
#: Process teardown after the shutdown deadline: threads joined, interpreter exit.
SHUTDOWN_MARGIN_S: Final = 2.0
#: After each case: effects that come late (an underrun a second later) are its own.
SETTLE_S: Final = 1.0
#: Longest wait, before each case, for other processes to leave the CPU alone.
QUIET_WAIT_S: Final = 60.0
#: A witness closed by the server waits this long before it reconnects.
RECONNECT_PAUSE_S: Final = 0.5
#: How often server state (``/api/v1/status``) is polled while waiting for it.
POLL_S: Final = 0.1
#: Longest wait for server state to change (slots to fill or free).
STATE_TIMEOUT_S: Final = 30.0
#: A client that stops reading: its socket's receive buffer, so the server's writes
#: block after a few kilobytes.
STALLED_RECEIVE_BUFFER: Final = 4096
#: Every paragraph, once: ~90 s of speech, far more than a stalled client's buffers.
LONG_TEXT: Final = " ".join(PARAGRAPHS)
#: A speech request synthesized in well under a second.
SHORT_SPEECH: Final = {"model": "tts-1", "input": "Hello there.", "voice": "alloy",
                       "response_format": "pcm"}
#: A player streaming a download to a speaker reads it this much faster than real time.
SLOW_READ_PACE: Final = 2.0
#: Bytes per second of audio in the OpenAI API's PCM (24 kHz, 16-bit mono).
OPENAI_PCM_BYTES_PER_S: Final = 24000 * 2
#: Examples of failures kept per case (the counts cover all of them).
MAX_EXAMPLES: Final = 5
CODES: Final = frozenset(code.value for code in ErrorCode)
#: RFC 6455 §7.4.1 close codes the WebSocket library sends for frames it cannot parse.
PROTOCOL_ERROR: Final = 1002
INVALID_PAYLOAD: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
GOING_AWAY: Final = 1001
NORMAL_CLOSURE: Final = 1000
IDLE_REASON: Final = "idle_timeout"
#: The largest body a REST control route reads (``MAX_REST_BODY_BYTES``) and the
#: largest any route reads (``MAX_SPEECH_BODY_BYTES``).
MAX_REST_BODY_BYTES: Final = 64 * 1024
MAX_SPEECH_BODY_BYTES: Final = 1024 * 1024
#: The server's log line for each underrun it counts (``Metrics.count_underrun``).
UNDERRUN_LINE: Final = re.compile(
    rb"underrun session=(?P<session>\S+) request=(?P<request>\S+) "
    rb"silence_ms=(?P<silence_ms>[\d.]+) frame=(?P<frame>\d+) audio_s=(?P<audio_s>[\d.]+) "
    rb"cancelled=(?P<cancelled>yes|no) suppressed=(?P<suppressed>\d+)"
    rb"(?: chunk: held_ms=(?P<held_ms>\d+) wait_ms=(?P<wait_ms>-?\d+) "
    rb"compute_ms=(?P<compute_ms>\d+) cpu_ms=(?P<cpu_ms>\d+))?"
)


@dataclass(frozen=True)
class LoggedUnderrun:
    """One underrun as the server logged it."""

    session: str
    request: str
    silence_ms: float
    frame: int
    audio_s: float
    cancelled: bool
    #: Lines the server's rate limit left out before this one.
    suppressed: int
    #: The late chunk: audio the listener held when it was asked for, its wait for a
    #: worker, its wall and CPU time there (ms; None in an older server's log).
    chunk_ms: tuple[int, int, int, int] | None = None


def parse_underruns(log: bytes) -> list[LoggedUnderrun]:
    """Every underrun line in ``log`` (the server's output), in order."""
    return [
        LoggedUnderrun(
            session=m["session"].decode(),
            request=m["request"].decode(),
            silence_ms=float(m["silence_ms"]),
            frame=int(m["frame"]),
            audio_s=float(m["audio_s"]),
            cancelled=m["cancelled"] == b"yes",
            suppressed=int(m["suppressed"]),
            chunk_ms=None if m["held_ms"] is None else (
                int(m["held_ms"]), int(m["wait_ms"]), int(m["compute_ms"]), int(m["cpu_ms"])
            ),
        )
        for m in UNDERRUN_LINE.finditer(log)
    ]


def attribute_underruns(
    underruns: Sequence[LoggedUnderrun], owners: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Underruns per owner (``owners``: session id → witness name; any other session is
    ``other``, an underrun of no session ``-``): count, how many of them happened to a
    cancelled (interrupted) request, silence, and the lines the log left out."""
    by_owner: dict[str, dict[str, Any]] = {}
    for underrun in underruns:
        owner = "-" if underrun.session == "-" else owners.get(underrun.session, "other")
        entry = by_owner.setdefault(
            owner, {"underruns": 0, "cancelled": 0, "silence_ms": 0.0, "unlogged": 0,
                    "examples": []}
        )
        entry["underruns"] += 1
        entry["cancelled"] += underrun.cancelled
        entry["silence_ms"] = round(entry["silence_ms"] + underrun.silence_ms, 1)
        entry["unlogged"] += underrun.suppressed
        if len(entry["examples"]) < MAX_EXAMPLES:
            chunk = "" if underrun.chunk_ms is None else (
                " (chunk asked with {} ms left: waited {} ms, {} ms in the worker, {} ms "
                "CPU)".format(*underrun.chunk_ms)
            )
            entry["examples"].append(
                f"{underrun.request} frame {underrun.frame} at {underrun.audio_s:g} s: "
                f"{underrun.silence_ms:g} ms{' (cancelled)' if underrun.cancelled else ''}"
                + chunk
            )
    return by_owner


# --- the server under test -------------------------------------------------------------


@dataclass
class Target:
    """Where the server is and what it was configured with."""

    ws_url: str
    http_url: str
    config: ServerConfig
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: For the server's CPU in each case (``/proc``); the spawned process's by default.
    pid: int | None = None

    @property
    def host(self) -> str:
        return self.ws_url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def ws_port(self) -> int:
        return int(self.ws_url.rstrip("/").rsplit(":", 1)[1])

    @property
    def http_port(self) -> int:
        return int(self.http_url.rstrip("/").rsplit(":", 1)[1])

    async def get(self, path: str) -> dict[str, Any]:
        """A JSON GET, off the event loop (the witnesses' timestamps run in it)."""
        return await trio.to_thread.run_sync(http_get_json, self.http_url + path)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path else 0

    def underruns_between(self, start: int, end: int | None = None) -> list[LoggedUnderrun]:
        """Underruns the server logged between byte ``start`` and ``end`` (its end);
        none without its log."""
        if self.log_path is None:
            return []
        with self.log_path.open("rb") as log:
            log.seek(start)
            return parse_underruns(log.read(-1 if end is None else end - start))

    def tracebacks_since(self, offset: int) -> int | None:
        """Tracebacks the server logged after byte ``offset``; None without its log."""
        if self.log_path is None:
            return None
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().count(b"Traceback (most recent call last)")

    async def wait_until(
        self, condition: Callable[[dict[str, Any]], bool], patience_s: float = STATE_TIMEOUT_S
    ) -> dict[str, Any] | None:
        """Poll ``/api/v1/status`` until ``condition`` holds; the last status, or None if
        it did not within ``patience_s``."""
        with trio.move_on_after(patience_s):
            while True:
                status = await self.get("/api/v1/status")
                if condition(status):
                    return status
                await trio.sleep(POLL_S)
        return None


# --- the witnesses ---------------------------------------------------------------------


@dataclass
class Witness:
    """A listener speaking paragraphs back to back for the whole run; its probes keep
    every message with its arrival time, so effects are counted per case window."""

    name: str
    session_id: str = ""
    #: Every session it had (a new one after each reconnect).
    session_ids: list[str] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    traces: list[RequestTrace] = field(default_factory=list)
    #: Connections that could not be opened: (client time, why).
    failures: list[tuple[float, str]] = field(default_factory=list)
    #: Set once its first audio frame has arrived.
    streaming: trio.Event = field(default_factory=trio.Event)

    async def run(
        self, url: str, reconnect: Callable[[], bool], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Stream until cancelled; after a close, reconnect while ``reconnect()``."""
        started = False
        number = 0
        while True:
            try:
                async with open_probe(url) as ws:
                    probe = Probe(ws, self.name)
                    self.probes.append(probe)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(probe.reader)
                        try:
                            connected = await probe.connect(WITNESS_CONFIG)
                            self.session_id = connected.session_id
                            self.session_ids.append(connected.session_id)
                            if not started:
                                started = True
                                task_status.started()
                            number = await self._speak(probe, number)
                        except ProbeError:
                            pass  # closed, or no answer: the probe's log says which
                        nursery.cancel_scope.cancel()
            except (OSError, HandshakeError, ConnectionClosed) as exc:
                self.failures.append((now(), repr(exc)))
            if not reconnect():
                return
            await trio.sleep(RECONNECT_PAUSE_S)

    async def _speak(self, probe: Probe, number: int) -> int:
        previous_end: float | None = None  # when the listener finishes the last one
        while True:
            number += 1
            text = PARAGRAPHS[number % len(PARAGRAPHS)]
            trace = await probe.synthesize(f"{self.name}-{number}", text)
            if previous_end is not None and previous_end > trace.sent_at:
                trace.plays_after = previous_end
            self.traces.append(trace)
            if not self.streaming.is_set():
                await probe.wait_until(partial(_heard_or_done, trace))
                self.streaming.set()
            await probe.wait_done(trace)
            # The next paragraph goes out at audio_end and its player queues it behind
            # this one's audio (``scripts.load --next-on audio_end``): the session is
            # never idle, so no idle timeout can end a witness.
            previous_end = trace.play_end() if trace.ended_at is not None else None
            if trace.error is not None:
                hint = trace.error.details.get("retry_after_ms", 500)
                await trio.sleep(min(2.0, float(hint) / 1000))

    def effects(self, begin: float, end: float) -> dict[str, Any]:
        """What this witness noticed between ``begin`` and ``end`` (client time)."""

        def inside(at: float) -> bool:
            return begin <= at < end

        underruns = [
            silence for trace in self.traces for at, silence in trace.underrun_events()
            if inside(at)
        ]
        errors: Counter[str] = Counter()
        interrupted = 0
        frames = 0
        closes: list[str] = []
        for probe in self.probes:
            for message in probe.log:
                if not inside(message.at):
                    continue
                if isinstance(message.item, bytes):
                    frames += 1
                elif isinstance(message.item, ErrorEvent):
                    errors[message.item.code] += 1
                elif isinstance(message.item, Interrupted):
                    interrupted += 1
            if probe.close is not None and inside(probe.close[0]):
                _, code, reason = probe.close
                closes.append(f"{code} {reason}".strip())
        return {
            "frames": frames,
            "underruns": len(underruns),
            "silence_ms": round(1000 * sum(underruns), 1),
            "errors": dict(errors),
            "interrupted": interrupted,
            "closes": closes,
            "connect_failures": sum(1 for at, _ in self.failures if inside(at)),
        }


def _heard_or_done(trace: RequestTrace) -> bool:
    return bool(trace.frames) or trace.done


# --- cases -----------------------------------------------------------------------------


@dataclass
class CaseResult:
    name: str
    expected: str
    observed: str = ""
    #: Its own expectation held (the witnesses and the server are judged apart).
    held: bool = False
    skipped: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    #: The first few things that went wrong, as examples.
    failures: list[str] = field(default_factory=list)
    #: Close codes the witnesses are expected to get in this case (sigterm: 1001).
    witness_closes: frozenset[int] = frozenset()
    began: float = 0.0
    ended: float = 0.0
    witnesses: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    passed: bool = False

    def fail(self, example: str) -> None:
        if len(self.failures) < MAX_EXAMPLES:
            self.failures.append(example)


@dataclass
class Context:
    target: Target
    witnesses: list[Witness]
    #: The session REST interrupts go to (a streaming witness of its own).
    victim: Witness
    args: argparse.Namespace
    #: Witnesses closed by the server reconnect while this is true (not after SIGTERM).
    reconnect: bool = True


CaseFunction = Callable[[Context, CaseResult], Awaitable[None]]


def _expected_close(data: str | bytes, max_bytes: int) -> frozenset[int]:
    """The close codes a frame must get (empty: it must get replies)."""
    codes: set[int] = set()
    wire = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            codes.add(INVALID_PAYLOAD)
    if len(wire) > max_bytes:
        codes.add(MESSAGE_TOO_BIG)
    return frozenset(codes)


def _short(data: str | bytes, limit: int = 80) -> str:
    text = repr(data[:limit])
    return f"{text}... ({len(data)})" if len(data) > limit else text


def _json(text: str | bytes) -> Any:
    """Strict JSON (NaN and Infinity are not JSON); ValueError otherwise."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class _WsFuzz:
    """The ``ws_fuzz`` case's connection and tallies."""

    def __init__(self, ctx: Context, result: CaseResult) -> None:
        self.target = ctx.target
        self.result = result
        self.ws: RawWebSocket | None = None
        self.outcomes: Counter[str] = Counter()
        self.connections = 0
        self.markers = 0
        self.sent = 0
        self.bad = 0

    async def _connection(self) -> RawWebSocket:
        if self.ws is None or self.ws.closed is not None:
            with trio.fail_after(REPLY_TIMEOUT_S):
                self.ws = await RawWebSocket.open(self.target.host, self.target.ws_port)
            self.connections += 1
        return self.ws

    async def _drop(self) -> None:
        if self.ws is not None:
            await self.ws.aclose()
        self.ws = None

    def _bad(self, example: str) -> None:
        self.bad += 1
        self.result.fail(example)

    def _check_event(self, data: str | bytes, text: str) -> dict[str, Any] | None:
        try:
            event = _json(text)
        except ValueError:
            self._bad(f"{_short(data)}: the server sent text that is not JSON: {text[:80]!r}")
            return None
        kind = event.get("type") if isinstance(event, dict) else None
        if kind not in {"connected", "queued", "audio_start", "audio_end", "interrupted",
                        "error"}:
            self._bad(f"{_short(data)}: unknown event {text[:80]!r}")
            return None
        if kind == "error" and event.get("code") not in CODES:
            self._bad(f"{_short(data)}: undocumented code {event.get('code')!r}")
        return dict(event)

    async def run(self, frames: Sequence[str | bytes]) -> None:
        limit = self.target.config.max_message_bytes
        run: list[str | bytes] = []
        for data in frames:
            if _expected_close(data, limit):
                await self._pipelined(run)
                run = []
                await self._closing(data, _expected_close(data, limit))
            else:
                run.append(data)
        await self._pipelined(run)
        await self._drop()

    async def _pipelined(self, run: Sequence[str | bytes]) -> None:
        """Send ``run`` with a marker after each frame in one write; read the replies."""
        if not run:
            return
        ws = await self._connection()
        wire = bytearray()
        markers = []
        for data in run:
            self.markers += 1
            markers.append(f"zz-reliability-marker-{self.markers}")
            if isinstance(data, bytes):
                wire += frame(BINARY, data, mask_key=b"\x11\x22\x33\x44")
            else:
                payload = data.encode("utf-8", "surrogatepass")
                wire += frame(TEXT, payload, mask_key=b"\x11\x22\x33\x44")
            marker = json.dumps({"type": "interrupt", "reason": markers[-1]})
            wire += frame(TEXT, marker.encode(), mask_key=b"\x55\x66\x77\x88")

        async def send() -> None:
            try:
                await ws.send_raw(bytes(wire))
            except trio.BrokenResourceError:
                pass  # closed: the replies read below say after which frame

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            for index, (data, marker) in enumerate(zip(run, markers, strict=True)):
                answered = await self._answers(ws, data, marker)
                self.sent += 1
                if not answered:
                    unanswered = len(run) - index - 1
                    self.outcomes["unanswered (after an earlier failure)"] += unanswered
                    nursery.cancel_scope.cancel()
                    await self._drop()
                    return

    async def _answers(self, ws: RawWebSocket, data: str | bytes, marker: str) -> bool:
        """Read until ``marker``'s reply; False if the connection is no longer usable."""
        replies = 0
        with trio.move_on_after(REPLY_TIMEOUT_S):
            while True:
                message = await ws.receive()
                if isinstance(message, Closed):
                    self.outcomes[f"unexpected close {message.code}"] += 1
                    self._bad(f"{_short(data)}: closed {message.code} {message.reason!r}")
                    return False
                if isinstance(message, bytes):
                    continue  # audio of a request this frame started
                event = self._check_event(data, message)
                if event is None:
                    continue
                if event["type"] == "interrupted" and event.get("reason") == marker:
                    if replies == 0:
                        self.outcomes["no reply"] += 1
                        self._bad(f"{_short(data)}: no reply")
                    return True
                if event["type"] in {"error", "connected", "queued", "interrupted"}:
                    replies += 1
                    label = f"error {event.get('code')}" if event["type"] == "error" else (
                        event["type"])
                    self.outcomes[label] += 1
        self.outcomes["no reply"] += 1
        self._bad(f"{_short(data)}: no reply within {REPLY_TIMEOUT_S:.0f} s")
        return False

    async def _closing(self, data: str | bytes, expected: frozenset[int]) -> None:
        """A frame that must end the connection, sent alone; its close code checked."""
        ws = await self._connection()
        self.sent += 1
        try:
            if isinstance(data, bytes):
                await ws.send_binary(data)
            else:
                await ws.send_text(data)
        except trio.BrokenResourceError:
            pass  # closed before it read the whole frame: the close frame says why
        with trio.move_on_after(REPLY_TIMEOUT_S):
            while True:
                message = await ws.receive()
                if isinstance(message, Closed):
                    self.outcomes[f"close {message.code}"] += 1
                    if message.code not in expected:
                        self._bad(f"{_short(data)}: close {message.code}, expected "
                                  f"{sorted(expected)}")
                    self.ws = None
                    return
                if isinstance(message, str):
                    self._check_event(data, message)
        self.outcomes["no close"] += 1
        self._bad(f"{_short(data)}: no close within {REPLY_TIMEOUT_S:.0f} s")
        await self._drop()


async def case_ws_fuzz(ctx: Context, result: CaseResult) -> None:
    ids = [w.session_id for w in (*ctx.witnesses, ctx.victim)]
    hostile = HostileInput(ctx.args.seed, session_ids=ids)
    frames = [hostile.ws_frame() for _ in range(ctx.args.ws_messages)]
    fuzz = _WsFuzz(ctx, result)
    await fuzz.run(frames)
    sent = fuzz.sent
    errors = sum(v for k, v in fuzz.outcomes.items() if k.startswith("error "))
    closes = {k: v for k, v in fuzz.outcomes.items() if k.startswith("close ")}
    result.figures |= {
        "frames_sent": sent,
        "connections": fuzz.connections,
        "outcomes": dict(fuzz.outcomes.most_common()),
        "error_codes": len([k for k in fuzz.outcomes if k.startswith("error ")]),
    }
    result.held = fuzz.bad == 0 and sent == len(frames)
    result.observed = (
        f"{sent} frames on {fuzz.connections} connections: {errors} error events "
        f"({result.figures['error_codes']} codes), "
        + ", ".join(f"{k}: {v}" for k, v in sorted(closes.items()))
        + f"; {fuzz.bad} undocumented or unanswered"
    )


_ROUTES: Final = ("sessions", "interrupt", "speech")


def _check_http_error(route: str, response: httpx.Response) -> str | None:
    """Why an error response breaks the surface's contract, or None."""
    status = response.status_code
    if status >= 500 and status != 503:
        return f"status {status}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{status} with content-type {response.headers.get('content-type')!r}"
    try:
        error = _json(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} body is not our JSON: {response.content[:80]!r}"
    if route == "speech":
        if set(error) != {"message", "type", "param", "code"}:
            return f"{status} OpenAI error with fields {sorted(error)}"
    elif not {"code", "message"} <= set(error) <= {"code", "message", "details"}:
        return f"{status} error with fields {sorted(error)}"
    if error.get("code") not in CODES:
        return f"{status} undocumented code {error.get('code')!r}"
    if status == 503 and "retry-after" not in response.headers:
        return "503 without Retry-After"
    return None


async def case_http_fuzz(ctx: Context, result: CaseResult) -> None:
    hostile = HostileInput(ctx.args.seed + 1)
    requests = [
        (route, hostile.http_body(route))
        for route in (_ROUTES[i % len(_ROUTES)] for i in range(ctx.args.http_requests))
    ]
    paths = {"sessions": "/api/v1/sessions", "speech": "/v1/audio/speech"}
    statuses: Counter[str] = Counter()
    bad = 0
    async with httpx.AsyncClient(base_url=ctx.target.http_url, timeout=REPLY_TIMEOUT_S) as client:
        for route, body in requests:
            try:
                # The target's current session (a new one if it was closed and came back).
                path = paths.get(route, f"/api/v1/interrupt/{ctx.victim.session_id}")
                response = await client.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError as exc:
                bad += 1
                statuses[f"{route} {type(exc).__name__}"] += 1
                result.fail(f"{route} {_short(body)}: {exc!r}")
                continue
            statuses[f"{route} {response.status_code}"] += 1
            problem = _check_http_error(route, response) if response.status_code >= 400 else None
            if problem is not None:
                bad += 1
                result.fail(f"{route} {_short(body)}: {problem}")
    result.figures["statuses"] = dict(sorted(statuses.items()))
    result.held = bad == 0
    ok = sum(v for k, v in statuses.items() if k.split()[-1].startswith("2"))
    result.observed = (
        f"{len(requests)} requests: {ok} succeeded, {len(requests) - ok - bad} refused in "
        f"the surface's JSON with a documented code, {bad} otherwise"
    )


@dataclass(frozen=True)
class FrameAttack:
    name: str
    expected: int
    send: Callable[[RawWebSocket], Awaitable[None]]


def _frame_attacks(max_bytes: int) -> list[FrameAttack]:
    hello = b'{"type":"interrupt"}'
    # Three-byte characters under the limit in characters, over it in bytes: 32,768 of
    # them and 31 ASCII ones make 98,335 bytes at the default 65,536 (issue #12).
    too_big = '{"type":"synthesize","text":"' + "€" * (max_bytes // 2) + '"}'

    def attack(name: str, code: int, opcode: int, payload: bytes, **kw: Any) -> FrameAttack:
        return FrameAttack(name, code, lambda ws: ws.send_frame(opcode, payload, **kw))

    return [
        attack("text frame not UTF-8", INVALID_PAYLOAD, TEXT, b'{"type":"interrupt","x":"\xff"}'),
        attack("UTF-8-encoded surrogate", INVALID_PAYLOAD, TEXT, b'{"x":"\xed\xa0\x80"}'),
        attack("RSV1 bit", PROTOCOL_ERROR, TEXT, hello, rsv=4),
        attack("RSV2 and RSV3 bits", PROTOCOL_ERROR, TEXT, hello, rsv=3),
        attack("unmasked frame", PROTOCOL_ERROR, TEXT, hello, masked_frame=False),
        attack("reserved data opcode 0x3", PROTOCOL_ERROR, 0x3, hello),
        attack("reserved control opcode 0xB", PROTOCOL_ERROR, 0xB, b""),
        attack("ping of 126 bytes", PROTOCOL_ERROR, PING, b"p" * 126),
        attack("fragmented ping", PROTOCOL_ERROR, PING, b"p", fin=False),
        attack("close code 1005", PROTOCOL_ERROR, CLOSE, (1005).to_bytes(2, "big")),
        attack("close code 999", PROTOCOL_ERROR, CLOSE, (999).to_bytes(2, "big")),
        attack("close code 5000", PROTOCOL_ERROR, CLOSE, (5000).to_bytes(2, "big")),
        attack("continuation with no message", PROTOCOL_ERROR, CONTINUATION, hello),
        FrameAttack(
            f"{len(too_big.encode()):,}-byte message of {len(too_big):,} characters",
            MESSAGE_TOO_BIG,
            lambda ws: ws.send_text(too_big),
        ),
    ]


async def case_frames(ctx: Context, result: CaseResult) -> None:
    attacks = _frame_attacks(ctx.target.config.max_message_bytes)
    observed: dict[str, str] = {}
    right = 0
    for attack in attacks:
        began = trio.current_time()
        outcome = "no close"
        try:
            with trio.fail_after(REPLY_TIMEOUT_S):
                ws = await RawWebSocket.open(ctx.target.host, ctx.target.ws_port)
                try:
                    await attack.send(ws)
                except trio.BrokenResourceError:
                    pass  # the server stopped reading: its close frame says why
                message = await ws.receive()
                while not isinstance(message, Closed):
                    message = await ws.receive()
            outcome = f"{message.code} {message.reason!r}"
            if message.code == attack.expected:
                right += 1
            else:
                result.fail(f"{attack.name}: got {outcome}, expected {attack.expected}")
        except (trio.TooSlowError, OSError, HandshakeRefused) as exc:
            result.fail(f"{attack.name}: {exc!r}")
            outcome = repr(exc)
        observed[attack.name] = (
            f"{outcome} after {1000 * (trio.current_time() - began):.0f} ms "
            f"(expected {attack.expected})"
        )
    result.figures["attacks"] = observed
    result.held = right == len(attacks)
    result.observed = f"{right} of {len(attacks)} attacks got their close code"


async def _raw_exchange(target: Target, data: bytes) -> HttpReply | None:
    """Write ``data`` to the HTTP port, read until the server closes (or a reply is
    whole); the reply, parsed without h11."""
    stream = await trio.open_tcp_stream(target.host, target.http_port)
    received = bytearray()

    async def send() -> None:
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # refused before the whole request was read

    try:
        with trio.move_on_after(REPLY_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                while True:
                    try:
                        chunk = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        chunk = b""
                    received += chunk
                    reply = parse_raw_reply(bytes(received))
                    length = reply.headers.get("content-length", "") if reply else ""
                    whole = (reply is not None and length.isdigit()
                             and len(reply.body) >= int(length))
                    if not chunk or whole:
                        nursery.cancel_scope.cancel()
                        break
    finally:
        await trio.aclose_forcefully(stream)
    return parse_raw_reply(bytes(received))


async def case_http_limits(ctx: Context, result: CaseResult) -> None:
    host = f"{ctx.target.host}:{ctx.target.http_port}"

    def post(path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    checks = [
        ("speech body over 1 MiB", 413,
         post("/v1/audio/speech", b'{"input":"' + b"a" * MAX_SPEECH_BODY_BYTES + b'"}')),
        ("REST body over 64 KiB", 413,
         post("/api/v1/sessions", b'{"config":{"speaker":"' + b"a" * MAX_REST_BODY_BYTES + b'"}}')),
        ("100 KiB header", 431,
         f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Big: {'b' * 100_000}\r\n\r\n".encode()),
        ("malformed request line", 400, b"GARBAGE\r\n\r\n"),
    ]
    observed: dict[str, str] = {}
    right = 0
    for name, status, data in checks:
        reply = await _raw_exchange(ctx.target, data)
        if reply is None:
            observed[name] = "no HTTP reply"
            result.fail(f"{name}: no HTTP reply")
            continue
        try:
            error = _json(reply.body)["error"]
            shape = "JSON" if isinstance(error, dict) and "message" in error else "other JSON"
            code = error.get("code") if isinstance(error, dict) else None
        except (ValueError, KeyError, TypeError):
            shape, code = f"not JSON ({reply.body[:40]!r})", None
        observed[name] = f"{reply.status} {shape} code {code!r}"
        if reply.status == status and shape == "JSON":
            right += 1
            if code not in CODES:
                # Refusals made by the HTTP framework, not by our routes: reported, the
                # JSON shape is what the issue asks of them.
                observed[name] += " (not an ErrorCode)"
        else:
            result.fail(f"{name}: {observed[name]}, expected {status} JSON")
    result.figures["replies"] = observed
    result.held = right == len(checks)
    result.observed = f"{right} of {len(checks)} got their status with a JSON error body"


async def case_burst(ctx: Context, result: CaseResult) -> None:
    status = await ctx.target.get("/api/v1/status")
    limit, before = int(status["max_connections"]), int(status["connections"])
    expected = max(0, limit - before)
    accepted: list[RawWebSocket] = []
    outcomes: Counter[str] = Counter()

    async def handshake() -> None:
        try:
            with trio.fail_after(REPLY_TIMEOUT_S):
                accepted.append(await RawWebSocket.open(ctx.target.host, ctx.target.ws_port))
            outcomes["accepted"] += 1
        except HandshakeRefused as refused:
            try:
                code = _json(refused.body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            outcomes[f"refused {refused.status} {code}"] += 1
        except (trio.TooSlowError, OSError) as exc:
            outcomes[type(exc).__name__] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(ctx.args.burst):
            nursery.start_soon(handshake)
    during = (await ctx.target.get("/api/v1/status"))["connections"]
    for ws in accepted:
        await ws.aclose()
    freed = await ctx.target.wait_until(lambda s: s["connections"] <= before)
    refused = outcomes.get(f"refused 503 {'max_connections'}", 0)
    result.figures |= {
        "max_connections": limit, "open_before": before, "expected_accepted": expected,
        "outcomes": dict(outcomes), "connections_during": during,
        "slots_freed": freed is not None,
    }
    result.held = (
        outcomes["accepted"] == expected
        and refused == ctx.args.burst - expected
        and freed is not None
    )
    result.observed = (
        f"{outcomes['accepted']} accepted (limit {limit} - {before} open = {expected}), "
        f"{refused} refused with 503 max_connections, "
        f"{ctx.args.burst - outcomes['accepted'] - refused} otherwise; slots "
        + ("freed" if freed is not None else "NOT freed")
    )
    if not result.held:
        result.fail(json.dumps(result.figures["outcomes"]))


@dataclass
class _Timed:
    """One connection of the timeout cases: when the server closed it, against when it
    should have."""

    name: str
    limit_s: float
    #: A close earlier than this is wrong too (0: any time is fine).
    earliest_s: float = 0.0
    seconds: float | None = None
    detail: str = ""

    @property
    def held(self) -> bool:
        return self.seconds is not None and self.earliest_s <= self.seconds <= self.limit_s

    def describe(self) -> str:
        took = "still open" if self.seconds is None else f"closed after {self.seconds:.2f} s"
        return f"{took} (limit {self.limit_s:.1f} s){' ' + self.detail if self.detail else ''}"


async def _ws_until_closed(timed: _Timed, ws: RawWebSocket, began: float) -> None:
    with trio.move_on_after(timed.limit_s + REPLY_TIMEOUT_S):
        message = await ws.receive()
        while not isinstance(message, Closed):
            message = await ws.receive()
        timed.seconds = trio.current_time() - began
        timed.detail = f"{timed.detail} with {message.code} {message.reason!r}".strip()
        if (message.code, message.reason) != (NORMAL_CLOSURE, IDLE_REASON):
            timed.seconds = None  # not the idle close
    await ws.aclose()


async def _stream_until_closed(timed: _Timed, stream: trio.SocketStream, began: float) -> None:
    seconds = await closed_within(stream, timed.limit_s + REPLY_TIMEOUT_S)
    timed.seconds = None if seconds is None else trio.current_time() - began
    await trio.aclose_forcefully(stream)


def _judge_timed(result: CaseResult, timed: Sequence[_Timed]) -> None:
    result.figures["connections"] = {t.name: t.describe() for t in timed}
    for t in timed:
        if not t.held:
            result.fail(f"{t.name}: {t.describe()}")
    right = sum(t.held for t in timed)
    result.held = right == len(timed)
    result.observed = "; ".join(
        f"{t.name}: {'-' if t.seconds is None else f'{t.seconds:.1f}'} s" for t in timed
    )


async def _silent_after_audio(target: Target, timed: _Timed) -> None:
    """Hear a paragraph out, then say nothing: idle from the moment the listener's
    player ran dry (its audio's duration after its first frame)."""
    ws = await RawWebSocket.open(target.host, target.ws_port)
    await ws.send_text(json.dumps({"type": "synthesize", "text": PARAGRAPHS[0],
                                   "config": WITNESS_CONFIG}))
    first: float | None = None
    rate = 0
    audio = 0
    with trio.move_on_after(STATE_TIMEOUT_S * 2):
        while True:
            message = await ws.receive()
            if isinstance(message, bytes):
                first = trio.current_time() if first is None else first
                audio += len(message)
            elif isinstance(message, Closed):
                timed.detail = f"closed {message.code} {message.reason!r} before audio_end"
                return
            else:
                event = _json(message)
                if event.get("type") == "audio_start":
                    rate = int(event["sample_rate"])
                elif event.get("type") in {"audio_end", "error"}:
                    break
    if first is None or not rate:
        timed.detail = "no audio"
        await ws.aclose()
        return
    played_out = first + audio / 2 / rate  # PCM16 mono
    timed.detail = f"after {audio / 2 / rate:.1f} s of audio"
    await _ws_until_closed(timed, ws, played_out)


async def case_idle(ctx: Context, result: CaseResult) -> None:
    config = ctx.target.config
    timed: list[_Timed] = []
    async with trio.open_nursery() as nursery:
        if config.idle_timeout_s > 0:
            limit = config.idle_timeout_s + CLOSE_MARGIN_S
            early = config.idle_timeout_s - CLOSE_MARGIN_S
            for with_session in (False, True):
                name = "WebSocket, session then silence" if with_session else (
                    "WebSocket, no message")
                entry = _Timed(name, limit, early)
                timed.append(entry)
                ws = await RawWebSocket.open(ctx.target.host, ctx.target.ws_port)
                began = trio.current_time()
                if with_session:
                    await ws.send_text('{"type":"connect"}')
                    began = trio.current_time()
                nursery.start_soon(_ws_until_closed, entry, ws, began)
            after_audio = _Timed("WebSocket, silence after a paragraph", limit, early)
            timed.append(after_audio)
            nursery.start_soon(_silent_after_audio, ctx.target, after_audio)
        keep_alive = _Timed("HTTP keep-alive, idle after a response",
                            config.http_keep_alive_timeout_s + CLOSE_MARGIN_S)
        closing = _Timed("HTTP response with Connection: close", CLOSE_MARGIN_S)
        for entry, headers in ((keep_alive, {}), (closing, {"connection": "close"})):
            timed.append(entry)
            http = await HttpConnection.open(ctx.target.host, ctx.target.http_port)
            reply = await http.request("GET", "/health", headers=headers)
            entry.detail = f"after {reply.status}"
            nursery.start_soon(_stream_until_closed, entry, http.stream, trio.current_time())
    _judge_timed(result, timed)


async def case_half_open(ctx: Context, result: CaseResult) -> None:
    config = ctx.target.config
    host = ctx.target.host
    ws_limit = config.handshake_timeout_s + CLOSE_MARGIN_S
    http_limit = math.ceil(config.http_read_timeout_s) + CLOSE_MARGIN_S
    upgrade_head = (f"GET / HTTP/1.1\r\nHost: {host}:{ctx.target.ws_port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n").encode()
    request_head = f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode()
    partial_body = (f"POST /api/v1/sessions HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                    '{"config":').encode()
    plan = [
        (_Timed("WebSocket port, TCP and silence", ws_limit), ctx.target.ws_port, b""),
        (_Timed("WebSocket port, half-sent upgrade", ws_limit), ctx.target.ws_port,
         upgrade_head),
        (_Timed("HTTP port, half-sent request head", http_limit), ctx.target.http_port,
         request_head),
        (_Timed("HTTP port, half-sent body", http_limit), ctx.target.http_port, partial_body),
    ]
    async with trio.open_nursery() as nursery:
        for entry, port, data in plan:
            stream = await trio.open_tcp_stream(host, port)
            if data:
                await stream.send_all(data)
            nursery.start_soon(_stream_until_closed, entry, stream, trio.current_time())
    _judge_timed(result, [entry for entry, _, _ in plan])


async def _stalled_speech(target: Target, text: str) -> HttpConnection:
    """A speech request whose client never reads the response (a tiny receive buffer,
    so the server's writes block almost at once)."""
    http = await HttpConnection.open(target.host, target.http_port,
                                     receive_buffer=STALLED_RECEIVE_BUFFER)
    body = json.dumps({"model": "tts-1", "input": text, "voice": "alloy",
                       "response_format": "pcm"}).encode()
    await http.send_request("POST", "/v1/audio/speech", body,
                            {"content-type": "application/json"})
    return http


def _describe_reply(reply: HttpReply) -> str:
    try:
        code = _json(reply.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    retry = reply.headers.get("retry-after")
    parts = [str(reply.status)]
    if code:
        parts.append(str(code))
    if retry:
        parts.append(f"Retry-After {retry}")
    if reply.status == 200:
        parts.append(f"{len(reply.body)} bytes")
    return " ".join(parts)


def _runs(items: Sequence[str]) -> str:
    """``a, a, b`` as ``a ×2, then b``."""
    groups: list[tuple[str, int]] = []
    for item in items:
        if groups and groups[-1][0] == item:
            groups[-1] = (item, groups[-1][1] + 1)
        else:
            groups.append((item, 1))
    return ", then ".join(f"{item} ×{n}" if n > 1 else item for item, n in groups)


async def case_keepalive_503(ctx: Context, result: CaseResult) -> None:
    downloads = (await ctx.target.get("/api/v1/status"))["downloads"]
    slots, queue = int(downloads["slots"]), int(downloads["queue"])
    holders = [await _stalled_speech(ctx.target, LONG_TEXT) for _ in range(slots + queue)]
    full = await ctx.target.wait_until(
        lambda s: s["downloads"]["running"] >= slots and s["downloads"]["waiting"] >= queue
    )
    replies: list[str] = []
    statuses: list[int] = []
    client = await HttpConnection.open(ctx.target.host, ctx.target.http_port)
    body = json.dumps(SHORT_SPEECH).encode()
    headers = {"content-type": "application/json"}
    # A client obeying Retry-After, but never idle past the keep-alive timeout (the
    # server may close an idle connection then: that is not the stall looked for).
    pause = ctx.target.config.http_keep_alive_timeout_s / 2

    async def ask() -> HttpReply:
        with trio.fail_after(REPLY_TIMEOUT_S):
            reply = await client.request("POST", "/v1/audio/speech", body, headers)
        replies.append(_describe_reply(reply))
        statuses.append(reply.status)
        return reply

    try:
        for _ in range(2):
            await ask()
        for holder in holders:
            await holder.aclose()
        # 503 until the stalled downloads have let go of their slots, then 200.
        for _ in range(math.ceil(STATE_TIMEOUT_S / pause)):
            if (await ask()).status != 503:
                break
            await trio.sleep(pause)
    except trio.TooSlowError:
        replies.append(f"no answer in {REPLY_TIMEOUT_S:.0f} s")
    except ConnectionEnded as exc:
        replies.append(f"connection ended: {exc}")
    finally:
        for holder in holders:
            await holder.aclose()
        await client.aclose()
    first_two_busy = statuses[:2] == [503, 503] and all(
        "Retry-After" in r and "busy" in r for r in replies[:2]
    )
    ended_ok = len(statuses) > 2 and statuses[-1] == 200
    result.figures |= {"slots": slots, "queue": queue, "gate_filled": full is not None,
                       "replies_on_one_connection": replies}
    result.held = full is not None and first_two_busy and ended_ok and len(statuses) == len(
        replies)
    result.observed = (f"{slots + queue} stalled downloads held the gate; one keep-alive "
                       f"connection got: {_runs(replies)}")
    if not result.held:
        result.fail(result.observed)


async def case_slow_reader(ctx: Context, result: CaseResult) -> None:
    text = max(PARAGRAPHS, key=len)
    http = await _stalled_speech(ctx.target, text)
    received = 0
    status: int | None = None
    outcome = "complete"
    began = trio.current_time()
    try:
        with trio.fail_after(REPLY_TIMEOUT_S):
            status = (await http.read_head()).status
        while True:
            with trio.fail_after(REPLY_TIMEOUT_S):
                data = await http.read_data()
            if data is None:
                break
            received += len(data)
            # Read no faster than the player needs: SLOW_READ_PACE x real time.
            due = began + received / OPENAI_PCM_BYTES_PER_S / SLOW_READ_PACE
            await trio.sleep_until(due)
    except ConnectionEnded as exc:
        outcome = f"cut: {exc}"
    except trio.TooSlowError:
        outcome = f"stalled for {REPLY_TIMEOUT_S:.0f} s"
    finally:
        await http.aclose()
    seconds = trio.current_time() - began
    audio_s = received / OPENAI_PCM_BYTES_PER_S
    result.figures |= {"status": status, "outcome": outcome,
                       "audio_s": round(audio_s, 1), "read_s": round(seconds, 1),
                       "http_read_timeout_s": ctx.target.config.http_read_timeout_s}
    result.held = status == 200 and outcome == "complete" and received > 0
    result.observed = (f"{outcome} after {seconds:.1f} s: {audio_s:.1f} s of audio received "
                       f"(read timeout {ctx.target.config.http_read_timeout_s:.0f} s)")
    if not result.held:
        result.fail(result.observed)


async def case_http_flood(ctx: Context, result: CaseResult) -> None:
    before = await ctx.target.get("/api/v1/metrics")
    outcomes: Counter[str] = Counter()
    first_byte_ms: list[float] = []
    audio_bytes = 0

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal audio_bytes
        body = {"model": "tts-1", "input": PARAGRAPHS[index % len(PARAGRAPHS)],
                "voice": "alloy", "response_format": "mp3"}
        sent = now()
        try:
            async with client.stream("POST", "/v1/audio/speech", json=body) as response:
                first_byte_ms.append(1000 * (now() - sent))
                data = await response.aread()
        except httpx.HTTPError as exc:
            outcomes[type(exc).__name__] += 1
            result.fail(f"request {index}: {exc!r}")
            return
        if response.status_code == 200:
            outcomes["200"] += 1
            audio_bytes += len(data)
            return
        problem = _check_http_error("speech", response)
        code = None
        if problem is None:
            code = _json(data)["error"]["code"]
            outcomes[f"{response.status_code} {code}"] += 1
        else:
            outcomes[f"{response.status_code} (bad)"] += 1
            result.fail(f"request {index}: {problem}")
        if response.status_code != 503 or code != ErrorCode.BUSY:
            result.fail(f"request {index}: {response.status_code} {code}")

    limits = httpx.Limits(max_connections=ctx.args.flood)
    timeout = httpx.Timeout(STATE_TIMEOUT_S * 4)
    async with httpx.AsyncClient(base_url=ctx.target.http_url, limits=limits,
                                 timeout=timeout) as client:
        async with trio.open_nursery() as nursery:
            for index in range(ctx.args.flood):
                nursery.start_soon(one, client, index)
    first_byte_ms.sort()
    result.figures |= {
        "outcomes": dict(outcomes),
        "first_byte_ms_p50": first_byte_ms[len(first_byte_ms) // 2] if first_byte_ms else None,
        "first_byte_ms_max": first_byte_ms[-1] if first_byte_ms else None,
        "audio_bytes": audio_bytes,
        "server_underruns_before": before["underruns"],
    }
    refused = outcomes.get(f"503 {ErrorCode.BUSY}", 0)
    result.held = outcomes["200"] + refused == ctx.args.flood
    result.observed = (
        f"{ctx.args.flood} concurrent: {outcomes['200']} × 200 "
        f"({audio_bytes / 1e6:.1f} MB of mp3), {refused} × 503 busy with Retry-After, "
        f"{ctx.args.flood - outcomes['200'] - refused} otherwise; first byte p50 "
        f"{result.figures['first_byte_ms_p50'] or 0:.0f} ms, max "
        f"{result.figures['first_byte_ms_max'] or 0:.0f} ms"
    )


async def case_sigterm(ctx: Context, result: CaseResult) -> None:
    process = ctx.target.process
    if process is None:
        result.skipped = "needs --spawn: SIGTERM ends the server"
        return
    result.witness_closes = frozenset({GOING_AWAY})
    holder = await _stalled_speech(ctx.target, LONG_TEXT)
    streaming = await ctx.target.wait_until(lambda s: s["downloads"]["running"] >= 1)
    ctx.reconnect = False  # the witnesses end at their close
    limit = ctx.target.config.shutdown_timeout_s + SHUTDOWN_MARGIN_S
    began = trio.current_time()
    process.send_signal(signal.SIGTERM)

    def wait_exit() -> int | None:
        try:
            return process.wait(limit + REPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None

    code = await trio.to_thread.run_sync(wait_exit)
    seconds = trio.current_time() - began
    await holder.aclose()
    result.figures |= {"exit_code": code, "exit_s": round(seconds, 2), "limit_s": limit,
                       "unread_response_streaming": streaming is not None}
    result.held = code is not None and seconds <= limit and streaming is not None
    result.observed = (
        f"exited with {code} {seconds:.2f} s after SIGTERM (limit {limit:.1f} s) with an "
        "unread streamed speech response" if code is not None
        else f"still running {seconds:.1f} s after SIGTERM"
    )
    if not result.held:
        result.fail(result.observed)


#: Every case, in the order they run (module docstring).
CASES: Final[dict[str, tuple[str, CaseFunction]]] = {
    "ws_fuzz": ("every frame: a documented error code or reply; close 1007 (not UTF-8) or "
                "1009 (over max_message_bytes)", case_ws_fuzz),
    "http_fuzz": ("every reply 2xx or its surface's JSON error with a documented code; no "
                  "5xx but 503 busy", case_http_fuzz),
    "frames": ("invalid UTF-8: 1007; RSV, unmasked, reserved opcode, bad control frames, "
               "bad close codes: 1002; 98,335 bytes in 32,799 characters: 1009", case_frames),
    "http_limits": ("413 / 413 / 431 / 400, each with a JSON error body", case_http_limits),
    "burst": ("accepted == max_connections - open; the rest 503 max_connections; slots "
              "freed after", case_burst),
    "idle": ("idle WebSockets closed 1000 idle_timeout within idle_timeout_s; idle HTTP "
             "within http_keep_alive_timeout_s; Connection: close at once", case_idle),
    "half_open": ("closed within handshake_timeout_s (WebSocket) / http_read_timeout_s "
                  "(HTTP)", case_half_open),
    "keepalive_503": ("one keep-alive connection: 503 busy + Retry-After twice, then 200 "
                      "with audio", case_keepalive_503),
    "slow_reader": ("a response read at 2x real time for longer than http_read_timeout_s "
                    "arrives whole", case_slow_reader),
    "http_flood": ("each 200 or 503 busy + Retry-After; 0 underruns (server and witnesses)",
                   case_http_flood),
    "sigterm": ("exit within shutdown_timeout_s + 2 s despite an unread streamed response; "
                "witnesses get 1001", case_sigterm),
}


# --- running and judging ---------------------------------------------------------------


def _judge(result: CaseResult, witnesses: Sequence[Witness], victim: Witness) -> None:
    """Fill the witnesses' effects and the verdict of a case that ran."""
    end = result.ended + SETTLE_S
    effects = {w.name: w.effects(result.began, end) for w in witnesses}
    victim_effects = victim.effects(result.began, end)
    noticed = []
    for name, e in {**effects, victim.name: victim_effects}.items():
        interrupted = 0 if name == victim.name else e["interrupted"]
        unexpected_closes = [
            c for c in e["closes"] if int(c.split()[0]) not in result.witness_closes
        ]
        if e["underruns"] or e["errors"] or interrupted or unexpected_closes or e[
                "connect_failures"]:
            noticed.append(f"{name}: {e}")
        if result.witness_closes and not e["closes"]:
            noticed.append(f"{name}: no close {sorted(result.witness_closes)}")
    result.witnesses = {"sessions": effects, "target": victim_effects, "noticed": noticed}
    server = result.server
    clean_server = (
        server.get("underruns", 0) == 0
        and server.get("internal_error", 0) == 0
        and server.get("synthesis_failed", 0) == 0
        and not server.get("tracebacks")
    )
    result.passed = result.held and not noticed and clean_server


def _server_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    errors_before, errors_after = before.get("errors", {}), after.get("errors", {})
    return {
        "underruns": after.get("underruns", 0) - before.get("underruns", 0),
        "internal_error": errors_after.get("internal_error", 0)
        - errors_before.get("internal_error", 0),
        "synthesis_failed": errors_after.get("synthesis_failed", 0)
        - errors_before.get("synthesis_failed", 0),
    }


async def run_cases(
    target: Target, args: argparse.Namespace
) -> tuple[list[CaseResult], dict[str, dict[str, Any]]]:
    """Start the witnesses, run the selected cases one after another, judge each.
    Also returns whose were the underruns the server logged outside the cases'
    windows (the witnesses starting, the pauses between cases)."""
    names = [n for n in CASES if n in args.cases]
    witnesses = [Witness(f"witness-{i + 1}") for i in range(args.witnesses)]
    victim = Witness("target")
    ctx = Context(target, witnesses, victim, args)
    results: list[CaseResult] = []
    outside: list[LoggedUnderrun] = []
    scanned = 0  # of the server's log, bytes already given to a case or to ``outside``
    async with trio.open_nursery() as nursery:
        for witness in (*witnesses, victim):
            await nursery.start(witness.run, target.ws_url, lambda: ctx.reconnect)
        # Everyone is streaming before the first attack.
        with trio.fail_after(REPLY_TIMEOUT_S * 3):
            for witness in (*witnesses, victim):
                await witness.streaming.wait()
        for name in names:
            expected, function = CASES[name]
            result = CaseResult(name, expected)
            print(f"-- {name} ...", flush=True)
            # Other work on the machine makes underruns that are nobody's here.
            other = await trio.to_thread.run_sync(
                partial(wait_for_quiet, [target.pid] if target.pid else [], QUIET_WAIT_S)
            )
            result.figures["other_cpu_pct_before"] = round(other)
            metrics_before = await target.get("/api/v1/metrics")
            log_offset = target.log_size()
            outside += target.underruns_between(scanned, log_offset)
            cpu_before = CpuSample.take(target.pid)
            result.began = now()
            try:
                await function(ctx, result)
            except Exception as exc:  # the case could not finish: a finding, not a crash
                result.held = False
                result.observed = f"the case failed: {exc!r}"
                result.fail(result.observed)
            result.ended = now()
            if target.pid is not None and name != "sigterm":
                cpu = CpuSample.take(target.pid).usage_since(cpu_before)
                result.figures["cpu_pct"] = {
                    k.removesuffix("_cpu_pct"): round(v) for k, v in cpu.items() if k != "wall_s"
                } | {"wall_s": round(cpu["wall_s"], 1)}
            if result.skipped:
                results.append(result)
                print(f"   skipped: {result.skipped}")
                continue
            await trio.sleep(SETTLE_S)
            if name == "sigterm":
                result.server = {"tracebacks": target.tracebacks_since(log_offset)}
            else:
                metrics_after = await target.get("/api/v1/metrics")
                result.server = _server_delta(metrics_before, metrics_after) | {
                    "tracebacks": target.tracebacks_since(log_offset)
                }
            scanned = target.log_size()
            if target.log_path is not None:
                logged = target.underruns_between(log_offset, scanned)
                result.server["underruns_by_session"] = attribute_underruns(
                    logged, _owners(witnesses, victim)
                )
            results.append(result)
            print(f"   {result.observed}")
        nursery.cancel_scope.cancel()
    for result in results:
        if not result.skipped:
            _judge(result, witnesses, victim)
    outside += target.underruns_between(scanned)
    return results, attribute_underruns(outside, _owners(witnesses, victim))


def _owners(witnesses: Sequence[Witness], victim: Witness) -> dict[str, str]:
    """Session id → witness name, for every session each had."""
    return {sid: w.name for w in (*witnesses, victim) for sid in w.session_ids}


# --- report ----------------------------------------------------------------------------


def _witness_cell(result: CaseResult) -> str:
    if result.skipped:
        return "-"
    sessions = result.witnesses["sessions"].values()
    underruns = sum(e["underruns"] for e in sessions)
    silence = sum(e["silence_ms"] for e in sessions)
    errors = sum(sum(e["errors"].values()) for e in sessions)
    closes = Counter(c for e in sessions for c in e["closes"])
    frames = sum(e["frames"] for e in sessions)
    target = result.witnesses["target"]
    cell = (f"{frames} frames; underruns {underruns} ({silence:.0f} ms); errors {errors}; "
            f"closes {dict(closes) or 0}")
    target_errors = sum(target["errors"].values())
    cell += (f"; target: {target['interrupted']} interrupted, errors {target_errors}, "
             f"closes {target['closes'] or 0}")
    return cell


def _server_cell(result: CaseResult) -> str:
    if result.skipped:
        return "-"
    server = result.server
    tracebacks = server.get("tracebacks")
    by_session = server.get("underruns_by_session")
    whose = "" if not by_session else " ({})".format(", ".join(
        f"{owner} {e['underruns']}" + (f", {e['cancelled']} cancelled" if e["cancelled"] else "")
        for owner, e in sorted(by_session.items())
    ))
    parts = [] if "underruns" not in server else [
        f"underruns {server['underruns']}{whose}",
        f"internal_error {server['internal_error']}",
        f"synthesis_failed {server['synthesis_failed']}",
    ]
    parts.append(f"tracebacks {'n/a' if tracebacks is None else tracebacks}")
    return ", ".join(parts)


#: Shorter cases have no meaningful CPU share (``/proc`` counts in 10 ms ticks).
MIN_CPU_WINDOW_S: Final = 0.5


def _cpu_cell(result: CaseResult) -> str:
    cpu = result.figures.get("cpu_pct")
    if not cpu or cpu["wall_s"] < MIN_CPU_WINDOW_S:
        return "-"
    return f"{cpu['server']} / {cpu['client']} / {cpu['other']}"


def _verdict(result: CaseResult) -> str:
    if result.skipped:
        return "skipped"
    return "pass" if result.passed else "**FAIL**"


def report(results: Sequence[CaseResult]) -> str:
    """The per-case table, then each case's figures and failures."""
    rows = [
        [r.name, r.expected, r.skipped or r.observed, _verdict(r), _witness_cell(r),
         _server_cell(r), _cpu_cell(r)]
        for r in results
    ]
    lines = [markdown_table(("case", "expected", "observed", "result",
                             "witnesses in the case's window", "server (Δ metrics, log)",
                             "CPU % server / tool / other"), rows), ""]
    for r in results:
        if r.skipped:
            continue
        lines.append(f"- `{r.name}`: {json.dumps(r.figures, default=str, ensure_ascii=False)}")
        for failure in r.failures:
            lines.append(f"  - failed: {failure}")
        for noticed in r.witnesses.get("noticed", []):
            lines.append(f"  - witness noticed: {noticed}")
        for owner, entry in sorted(r.server.get("underruns_by_session", {}).items()):
            lines.append(f"  - server underruns of {owner}: {json.dumps(entry)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="WebSocket URL of a running server")
    where.add_argument("--spawn", action="store_true",
                       help="start a server on free ports with SPAWN_SERVER's timeouts")
    parser.add_argument("--http-url", help="REST URL of --url's server")
    parser.add_argument("--pid", type=int, help="--url's server pid, for its CPU use")
    parser.add_argument("--config", help="--url's server config file (its timeouts and "
                        "limits; the defaults otherwise)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from: {', '.join(CASES)} (default: all)")
    parser.add_argument("--witnesses", type=int, default=3,
                        help="sessions streaming through every case")
    parser.add_argument("--ws-messages", type=int, default=2000, help="ws_fuzz frames")
    parser.add_argument("--http-requests", type=int, default=600, help="http_fuzz requests")
    parser.add_argument("--burst", type=int, default=400, help="simultaneous handshakes")
    parser.add_argument("--flood", type=int, default=50, help="concurrent speech requests")
    parser.add_argument("--seed", type=int, default=12, help="of the hostile input")
    parser.add_argument("--json", help="write every case's figures here")
    args = parser.parse_args(argv)
    args.cases = {name.strip() for name in args.cases.split(",") if name.strip()}
    unknown = args.cases - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, python {machine['python']}")
    if args.spawn:
        with spawned_server({"server": SPAWN_SERVER}) as server:
            config = parse_config({"server": SPAWN_SERVER}).server
            target = Target(server.ws_url, server.http_url, config, server.process,
                            server.log_path, server.pid)
            results, outside = trio.run(run_cases, target, args)
    else:
        if not args.url or not args.http_url:
            parser.error("--url and --http-url (or --spawn)")
        config = load_config(args.config).server if args.config else ServerConfig()
        target = Target(args.url, args.http_url, config, pid=args.pid)
        results, outside = trio.run(run_cases, target, args)
    print()
    print(report(results))
    if outside:
        print("- server underruns outside the cases' windows (witnesses starting, between "
              f"cases): {json.dumps(outside)}")
    write_json(args.json, {
        "machine": machine,
        "underruns_outside_cases": outside,
        "cases": [
            {k: v for k, v in vars(r).items() if k not in {"began", "ended"}}
            | {"verdict": _verdict(r)}
            for r in results
        ],
    })
    return 0 if all(r.passed or r.skipped for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
