"""A measuring WebSocket connection for the tools, on ``streamer.client``'s protocol code.

One ``Probe`` is one connection. Messages are built and received messages routed by
``streamer.client.ClientProtocol`` (the sans-IO half of the Python client), so the
tools speak exactly the client's protocol. What the probe adds is the clock: a reader
task timestamps every message the moment it is taken off the socket and appends it to
``Probe.log``; the measuring code waits on that log instead of reading the socket
itself, so arrival times stay exact while it is busy (sleeping through playback,
sending an interrupt). That is why the tools do not use ``TTSStreamingClient``: its
consumer sees an item when it gets round to iterating, not when it arrived.

Binary frames carry no request id: ``ClientProtocol`` gives each to the request whose
``audio_start`` came last, as the protocol defines it (the server never interleaves two
requests' audio on one connection).

Playback model (underruns): a listener starts playing at a request's first frame (or,
for a request sent while the previous one's audio still plays, when that audio ends:
players queue audio, as the server's pacing assumes) and plays each frame's audio right
after the previous one. A frame that arrives after everything received so far has
finished playing is an *underrun*: the listener heard silence for ``arrival -
play_end``; playback resumes with that frame. Durations come from the byte count of raw
PCM (``format: pcm``, 16-bit mono).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from streamer.client import (
    AudioEnd,
    AudioStart,
    ClientProtocol,
    Connected,
    ErrorEvent,
    Event,
    Interrupted,
    Queued,
    StreamItem,
)

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
#: timeout means something broke, and the tool ends instead of hanging.
EVENT_TIMEOUT_S: Final = 60.0

E = TypeVar("E", bound=Event)


def now() -> float:
    return time.perf_counter()


@dataclass(frozen=True, slots=True)
class Message:
    """One received message: when it came off the socket, and what it was (an audio
    frame as ``bytes``, or the parsed event)."""

    at: float
    item: StreamItem

    @property
    def nbytes(self) -> int:
        """Bytes of an audio frame; 0 for an event."""
        return len(self.item) if isinstance(self.item, bytes) else 0


@dataclass(slots=True)
class RequestTrace:
    """Everything seen of one request, in client time (``time.perf_counter``)."""

    request_id: str
    sent_at: float
    queued_at: float | None = None
    #: ``queued.admission_wait_ms``: it waits for room to start, at most this long.
    admission_wait_ms: int | None = None
    audio_start_at: float | None = None
    sample_rate: int = 0
    frames: list[tuple[float, int]] = field(default_factory=list)
    ended_at: float | None = None
    interrupted_at: float | None = None
    error: ErrorEvent | None = None
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

    @property
    def done(self) -> bool:
        """The request ended: ``audio_end``, ``interrupted`` or ``error``."""
        return (
            self.ended_at is not None or self.interrupted_at is not None or self.error is not None
        )

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
        silences, gaps, buffers = self._judge()
        return len(silences), sum(s for _, s in silences), gaps, buffers

    def underrun_events(self) -> list[tuple[float, float]]:
        """Each underrun as (client time the late frame arrived, seconds of silence the
        listener heard before it): to tell which underruns fell in a time window."""
        return self._judge()[0]

    def _judge(self) -> tuple[list[tuple[float, float]], list[float], list[float]]:
        """The playback model run over the frames: (underruns as (arrival, silence),
        gaps between frames, buffers at each burst)."""
        if not self.frames or not self.sample_rate:
            return [], [], []
        silences: list[tuple[float, float]] = []
        gaps: list[float] = []
        buffers: list[float] = []
        first_at, first_bytes = self.frames[0]
        start = self._start()
        if self.plays_after is not None and start == first_at:
            # Queued behind audio that ran out before this request's first frame.
            silences.append((first_at, first_at - self.plays_after))
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
                silences.append((at, -margin))
                play_end = at
            play_end += nbytes / PCM_SAMPLE_BYTES / self.sample_rate
        return silences, gaps, buffers

    def truncated(self, before: float) -> RequestTrace:
        """A copy holding only the frames that arrived before ``before`` (what a
        listener heard of a request it interrupted at that moment)."""
        return RequestTrace(
            self.request_id,
            self.sent_at,
            sample_rate=self.sample_rate,
            frames=[f for f in self.frames if f[0] < before],
            plays_after=self.plays_after,
        )


class ProbeError(Exception):
    """The server answered something unexpected or not at all."""


class Probe:
    """One measuring WebSocket connection (see the module docstring).

    ``ws`` may be None for a probe fed by :meth:`record` alone (the tests do that):
    everything but sending works without a socket.
    """

    def __init__(self, ws: WebSocketConnection | None, name: str) -> None:
        self.ws = ws
        self.name = name
        self.log: list[Message] = []
        self.closed = False
        #: How the connection ended, once it has: (client time, code, reason).
        self.close: tuple[float, int, str] | None = None
        self.session_id: str | None = None
        self.traces: dict[str, RequestTrace] = {}
        self._protocol = ClientProtocol()
        self._changed = trio.lowlevel.ParkingLot()

    async def reader(self) -> None:
        """Record every message until the connection closes."""
        assert self.ws is not None
        try:
            while True:
                data = await self.ws.get_message()
                self.record(data, now())
        except ConnectionClosed as exc:
            reason = exc.reason
            self.close = (now(), int(reason.code) if reason else 1006,
                          (reason.reason if reason else None) or "")
        finally:
            self.closed = True
            self._changed.unpark_all()

    def record(self, data: str | bytes, at: float) -> None:
        """Route one received message (arrived at ``at``) into the log and the traces
        of the requests it belongs to, and wake whoever waits on the log."""
        deliveries = self._protocol.receive(data)
        if isinstance(data, bytes):
            self.log.append(Message(at, data))
            for delivery in deliveries:
                trace = self.traces.get(delivery.request_id or "")
                if trace is not None:
                    trace.frames.append((at, len(data)))
        elif deliveries:  # every delivery of one text message carries the same event
            event = deliveries[0].item
            assert not isinstance(event, bytes)
            self.log.append(Message(at, event))
            for delivery in deliveries:
                trace = self.traces.get(delivery.request_id or "")
                if trace is not None:
                    _track(trace, event, at)
        self._changed.unpark_all()

    async def send_text(self, text: str) -> float:
        """Send one message; returns the client time just before it was written."""
        if self.ws is None:
            raise ProbeError(f"{self.name}: no connection to send on")
        at = now()
        try:
            await self.ws.send_message(text)
        except ConnectionClosed:
            raise ProbeError(f"{self.name}: connection closed") from None
        return at

    async def connect(self, config: Mapping[str, Any]) -> Connected:
        mark = len(self.log)
        await self.send_text(ClientProtocol.connect_message(config, None))
        connected = (await self.wait_event(Connected, since=mark)).item
        assert isinstance(connected, Connected)
        self.session_id = connected.session_id
        return connected

    async def synthesize(
        self,
        request_id: str,
        text: str,
        priority: str = "normal",
        config: Mapping[str, Any] | None = None,
    ) -> RequestTrace:
        """Send a ``synthesize``; its events and frames are recorded in the returned
        trace as they arrive."""
        message = ClientProtocol.synthesize_message(text, priority, request_id, config or {})
        trace = RequestTrace(request_id, sent_at=now())
        self.traces[request_id] = trace
        trace.sent_at = await self.send_text(message)
        return trace

    async def interrupt(
        self, reason: str, patience_s: float = EVENT_TIMEOUT_S
    ) -> tuple[float, Message]:
        """Send an ``interrupt`` and wait for the ``interrupted`` reply: (when it was
        sent, the reply)."""
        mark = len(self.log)
        sent = await self.send_text(ClientProtocol.interrupt_message(reason))
        return sent, await self.wait_event(Interrupted, since=mark, patience_s=patience_s)

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
        self, kind: type[E], *, since: int = 0, patience_s: float = EVENT_TIMEOUT_S
    ) -> Message:
        """The first ``kind`` event at or after log index ``since``; an ``error`` event
        before it is a ``ProbeError``."""
        found: list[Message] = []

        def ready() -> bool:
            for message in self.log[since:]:
                if isinstance(message.item, kind):
                    found.append(message)
                    return True
                if isinstance(message.item, ErrorEvent):
                    raise ProbeError(f"{self.name}: server error {message.item}")
            return False

        await self.wait_until(ready, patience_s)
        return found[0]

    async def wait_done(self, trace: RequestTrace, patience_s: float = EVENT_TIMEOUT_S) -> None:
        """Until the request ended: ``audio_end``, ``interrupted`` or ``error``."""
        await self.wait_until(lambda: trace.done, patience_s)

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
            lambda: bool(trace.frames) or trace.ended_at is not None or trace.error is not None
        )
        if trace.frames:
            remaining = trace.frames[0][0] + seconds - now()
            with trio.move_on_after(max(0.0, remaining)):
                await self.wait_until(lambda: trace.ended_at is not None or trace.error is not None)


def _track(trace: RequestTrace, event: Event, at: float) -> None:
    """Note ``event``'s arrival in the trace of a request it was routed to."""
    if isinstance(event, Queued):
        trace.queued_at = at
        trace.admission_wait_ms = event.admission_wait_ms
    elif isinstance(event, AudioStart):
        trace.audio_start_at = at
        trace.sample_rate = event.sample_rate
    elif isinstance(event, AudioEnd):
        trace.ended_at = at
    elif isinstance(event, Interrupted):
        trace.interrupted_at = at
    elif isinstance(event, ErrorEvent):
        trace.error = event


def open_probe(
    url: str, api_key: str | None = None
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """``async with open_probe(url) as ws`` — the raw connection for ``Probe``;
    ``api_key`` is sent as ``Authorization: Bearer`` (a server with keys)."""
    headers = [(b"authorization", f"Bearer {api_key}".encode())] if api_key else None
    return open_websocket_url(
        url, message_queue_size=CLIENT_MESSAGE_QUEUE, extra_headers=headers
    )
