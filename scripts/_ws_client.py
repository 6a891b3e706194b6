"""A measuring WebSocket client for the benchmark scripts.

One ``Probe`` is one connection. A reader task timestamps every message the moment it
is taken off the socket and appends it to ``Probe.log``; the measuring code waits on
that log instead of reading the socket itself, so arrival times stay exact while it is
busy (sleeping through playback, sending an interrupt).

Binary frames carry no request id: a frame belongs to the request of the latest
``audio_start`` before it, which is how the protocol defines it (the server never
interleaves two requests' audio on one connection).

Playback model (underruns): a listener starts playing at a request's first frame (or,
for a request sent while the previous one's audio still plays, when that audio ends:
players queue audio, as the server's pacing assumes) and plays each frame's audio right
after the previous one. A frame that arrives after
everything received so far has finished playing is an *underrun*: the listener heard
silence for ``arrival - play_end``; playback resumes with that frame. Durations come
from the byte count of raw PCM (``format: pcm``, 16-bit mono).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

#: Bytes per sample of the ``pcm`` format (s16le, mono).
PCM_SAMPLE_BYTES: Final = 2
#: A frame this late or less is not counted as an underrun: scheduling noise of the
#: client itself (the server uses the same 1 ms in its own underrun counter).
UNDERRUN_TOLERANCE_S: Final = 0.001
#: Frames closer together than this belong to one burst (one engine chunk cut into
#: frames); the listener's buffer is judged when a burst starts, not inside one.
BURST_GAP_S: Final = 0.005
#: trio-websocket's client receive queue. The reader drains it at once; a few messages
#: of slack keep the library answering pings while the reader is being scheduled.
CLIENT_MESSAGE_QUEUE: Final = 64
#: Bound on any single wait for a server event: far beyond any sane latency, so a
#: timeout means something broke, and the script ends instead of hanging.
EVENT_TIMEOUT_S: Final = 60.0


def now() -> float:
    return time.perf_counter()


@dataclass(slots=True)
class Message:
    at: float
    #: ``binary`` or the event's ``type``.
    kind: str
    event: dict[str, Any] | None = None
    nbytes: int = 0


@dataclass(slots=True)
class RequestTrace:
    """Everything seen of one request, in client time (``time.perf_counter``)."""

    request_id: str
    sent_at: float
    queued_at: float | None = None
    audio_start_at: float | None = None
    sample_rate: int = 0
    frames: list[tuple[float, int]] = field(default_factory=list)
    ended_at: float | None = None
    interrupted_at: float | None = None
    error: dict[str, Any] | None = None
    #: When the listener finishes the previous request's audio, if it was still
    #: playing when this one was sent: this request's audio plays after it.
    plays_after: float | None = None

    @property
    def first_response_ms(self) -> float | None:
        return None if self.queued_at is None else (self.queued_at - self.sent_at) * 1000

    @property
    def ttfa_ms(self) -> float | None:
        return (self.frames[0][0] - self.sent_at) * 1000 if self.frames else None

    @property
    def audio_seconds(self) -> float:
        if not self.sample_rate:
            return 0.0
        return sum(n for _, n in self.frames) / PCM_SAMPLE_BYTES / self.sample_rate

    def underrun_offsets(self) -> list[float]:
        """Seconds of this request's audio received before each underrun: where in the
        stream the listener ran dry (small = during the first windows)."""
        if not self.frames or not self.sample_rate:
            return []
        offsets: list[float] = []
        received = 0.0
        play_end = self._start()
        if self.plays_after is not None and play_end == self.frames[0][0]:
            offsets.append(0.0)  # late behind the previous request's audio
        for at, nbytes in self.frames:
            if at - play_end > UNDERRUN_TOLERANCE_S:
                offsets.append(received)
                play_end = at
            duration = nbytes / PCM_SAMPLE_BYTES / self.sample_rate
            received += duration
            play_end += duration
        return offsets

    def _start(self) -> float:
        """When the listener starts playing this request's first frame, had it arrived
        in time: its arrival, or the end of the audio before it."""
        first_at = self.frames[0][0]
        if self.plays_after is not None and first_at <= self.plays_after + UNDERRUN_TOLERANCE_S:
            return self.plays_after
        return first_at

    def play_end(self) -> float | None:
        """When the listener will have heard all of this request's audio received."""
        if not self.frames or not self.sample_rate:
            return None
        _, silence, _, _ = self.playback()
        return self._start() + silence + self.audio_seconds

    def playback(self) -> tuple[int, float, list[float], list[float]]:
        """(underruns, silence seconds, gaps between frames in s, buffers in s)

        ``buffers``: for every burst of frames after the first, the audio the listener
        still had queued when it arrived (negative: it had run dry).
        """
        if not self.frames or not self.sample_rate:
            return 0, 0.0, [], []
        underruns = 0
        silence = 0.0
        gaps: list[float] = []
        buffers: list[float] = []
        first_at, first_bytes = self.frames[0]
        start = self._start()
        if self.plays_after is not None and start == first_at:
            # Queued behind audio that ran out before this request's first frame.
            underruns += 1
            silence += first_at - self.plays_after
        play_end = start + first_bytes / PCM_SAMPLE_BYTES / self.sample_rate
        previous = first_at
        in_first_burst = True
        for at, nbytes in self.frames[1:]:
            gaps.append(at - previous)
            new_burst = at - previous > BURST_GAP_S
            previous = at
            margin = play_end - at
            if new_burst:
                in_first_burst = False
                buffers.append(margin)
            elif not in_first_burst and margin < buffers[-1]:
                buffers[-1] = margin
            if margin < -UNDERRUN_TOLERANCE_S:
                underruns += 1
                silence += -margin
                play_end = at
            play_end += nbytes / PCM_SAMPLE_BYTES / self.sample_rate
        return underruns, silence, gaps, buffers


class ProbeError(Exception):
    """The server answered something unexpected or not at all."""


class Probe:
    """One measuring WebSocket connection."""

    def __init__(self, ws: WebSocketConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.log: list[Message] = []
        self.closed = False
        self.session_id: str | None = None
        self._changed = trio.lowlevel.ParkingLot()
        self._current: RequestTrace | None = None
        self.traces: dict[str, RequestTrace] = {}

    async def reader(self) -> None:
        """Record every message until the connection closes."""
        try:
            while True:
                data = await self.ws.get_message()
                at = now()
                if isinstance(data, bytes):
                    message = Message(at, "binary", nbytes=len(data))
                    if self._current is not None:
                        self._current.frames.append((at, len(data)))
                else:
                    event = json.loads(data)
                    message = Message(at, str(event.get("type")), event=event)
                    self._track(message, event)
                self.log.append(message)
                self._changed.unpark_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._changed.unpark_all()

    def _track(self, message: Message, event: dict[str, Any]) -> None:
        trace = self.traces.get(str(event.get("request_id")))
        kind = message.kind
        if kind == "audio_start":
            self._current = trace
            if trace is not None:
                trace.audio_start_at = message.at
                trace.sample_rate = int(event.get("sample_rate") or 0)
        if trace is None:
            return
        if kind == "queued":
            trace.queued_at = message.at
        elif kind == "audio_end":
            trace.ended_at = message.at
        elif kind == "interrupted":
            trace.interrupted_at = message.at
        elif kind == "error":
            trace.error = event

    async def send(self, message: dict[str, Any]) -> float:
        """Send a JSON message; returns the client time just before it was written."""
        at = now()
        await self.ws.send_message(json.dumps(message))
        return at

    async def connect(self, config: dict[str, Any]) -> dict[str, Any]:
        mark = len(self.log)
        await self.send({"type": "connect", "config": config})
        connected = await self.wait_event("connected", since=mark)
        self.session_id = connected.event.get("session_id") if connected.event else None
        return connected.event or {}

    async def synthesize(
        self,
        request_id: str,
        text: str,
        priority: str = "normal",
        config: dict[str, Any] | None = None,
    ) -> RequestTrace:
        message: dict[str, Any] = {
            "type": "synthesize",
            "text": text,
            "priority": priority,
            "request_id": request_id,
        }
        if config:
            message["config"] = config
        trace = RequestTrace(request_id, sent_at=now())
        self.traces[request_id] = trace
        trace.sent_at = await self.send(message)
        return trace

    async def wait_until(
        self, ready: Callable[[], bool], patience_s: float = EVENT_TIMEOUT_S
    ) -> None:
        """Wait until ``ready()`` is true; ``ProbeError`` on timeout or close."""
        with trio.move_on_after(patience_s):
            while not ready():
                if self.closed:
                    raise ProbeError(f"{self.name}: connection closed")
                await self._changed.park()
            return
        raise ProbeError(f"{self.name}: no answer in {patience_s:.0f} s")

    async def wait_event(
        self,
        kind: str,
        *,
        since: int = 0,
        request_id: str | None = None,
        patience_s: float = EVENT_TIMEOUT_S,
    ) -> Message:
        """The first ``kind`` event at or after log index ``since`` (for ``request_id``)."""
        found: list[Message] = []

        def ready() -> bool:
            for message in self.log[since:]:
                if message.kind == kind and (
                    request_id is None
                    or (message.event or {}).get("request_id") == request_id
                ):
                    found.append(message)
                    return True
                if message.kind == "error" and kind != "error":
                    raise ProbeError(f"{self.name}: server error {message.event}")
            return False

        await self.wait_until(ready, patience_s)
        return found[0]

    async def wait_done(self, trace: RequestTrace, patience_s: float = EVENT_TIMEOUT_S) -> None:
        """Until the request ended: ``audio_end``, ``interrupted`` or ``error``."""

        def done() -> bool:
            return (
                trace.ended_at is not None
                or trace.interrupted_at is not None
                or trace.error is not None
            )

        await self.wait_until(done, patience_s)

    async def wait_played(self, trace: RequestTrace) -> None:
        """Until the request ended and the listener has heard all of its audio (the
        playback model's end), as a client waits before its next turn."""
        await self.wait_done(trace)
        played_at = trace.play_end()
        if played_at is not None:
            await trio.sleep(max(0.0, played_at - now()))

    async def wait_audio(self, trace: RequestTrace, seconds: float) -> None:
        """Until ``seconds`` of the request's audio have been *played* (counting from
        its first frame), or the request ended."""
        await self.wait_until(
            lambda: bool(trace.frames)
            or trace.ended_at is not None
            or trace.error is not None
        )
        if trace.frames:
            remaining = trace.frames[0][0] + seconds - now()
            with trio.move_on_after(max(0.0, remaining)):
                await self.wait_until(lambda: trace.ended_at is not None or trace.error is not None)


def open_probe(url: str) -> Any:
    """``async with open_probe(url) as ws`` — the raw connection for ``Probe``."""
    return open_websocket_url(url, message_queue_size=CLIENT_MESSAGE_QUEUE)
