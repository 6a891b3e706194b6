"""The Wyoming server on Trio: the same process, engines, inference scheduler and
admission as the WebSocket and HTTP servers, speaking the Wyoming protocol over TCP.

Why not the ``wyoming`` package's own server: it is asyncio, and running a second event
loop in a thread would put every request behind a hop between loops and keep the
scheduler and admission (Trio objects) out of its reach. The protocol is small, so it is
spoken here natively: ``_wire`` frames bytes into the package's ``Event`` objects (and
writes ours with its ``write_event``), ``_protocol`` decides what each event means,
and this module does the I/O.

One connection is one nursery owned by ``_Connection.run``:

- the **reader** (the function itself) reads bytes, turns them into events and the
  events into actions; it answers ``describe`` and ``ping`` at once and queues requests;
- the **worker** runs the queued requests one after another, so answers come in order;
  each starts through the shared start policy (``resolve_config``, ``check_can_start``,
  ``new_job``: ``_start_job`` is the one place) and plays through ``run_job``;
- the **ticker** releases a stream's buffered text when its deadline passes;
- the **writer** is the only task that writes the socket; every event reaches it through
  one bounded channel, so a client that stops reading slows synthesis down and, after
  ``server.write_timeout_s``, is cut off.

A one-shot ``synthesize`` is a download (the client usually wants the whole file before
playing: Home Assistant's does): synthesized as fast as the scheduler allows, in the
background class, holding a slot of the shared ``DownloadGate`` like the OpenAI route.
A stream is a real-time listener (its client plays audio as it arrives): it passes
real-time admission and is paced ``performance.realtime_lead_ms`` ahead of playback,
like a WebSocket context.

Every request ends with its usual last event, also when it fails: ``audio-stop`` for
``synthesize``, ``synthesize-stopped`` for a stream (after ``audio-stop`` when audio was
sent). The ``error`` event comes first; a client that only waits for the end (Home
Assistant's) is not left hanging, and one that reads errors knows the audio is short.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.ping import Pong
from wyoming.tts import SynthesizeStopped

from ...engines.base import EngineError
from ...protocol import AudioConfig, ClientError, ErrorCode, Priority
from ...server.runtime import RequestOutcome, Services
from ...server.session import (
    ResolvedConfig,
    SegmentFeed,
    StartDecision,
    SynthesisJob,
    check_can_start,
    extend,
    new_job,
    release,
    resolve_config,
    run_job,
    wait_to_start,
)
from ._errors import WyomingCode, WyomingError
from ._info import PROGRAM_NAME, info_event
from ._protocol import (
    Action,
    EndStream,
    OpenStream,
    SendInfo,
    SendPong,
    Speak,
    StreamSegments,
    VoiceChoice,
    WyomingProtocol,
)
from ._wire import EventReader, encode_event

log = logging.getLogger(__name__)

#: Bytes asked of the socket at once: a few events of text, or one of audio.
RECEIVE_BYTES: Final = 65536
#: An event whose first byte has arrived must arrive whole within this long: a client
#: that sends half a header (or lies about a length) holds a task and a buffer.
EVENT_TIMEOUT_S: Final = 30.0
#: A connection with no event and no request for this long is closed: Home Assistant
#: opens one per request, so an idle one is forgotten, and each holds a socket.
IDLE_TIMEOUT_S: Final = 300.0
#: Events queued for the writer. Audio events are ``tts.chunk_size`` samples (~46 ms at
#: 22 kHz): 16 keep the socket busy while the next chunk is made, and are few enough
#: that a client that stops reading stops synthesis soon.
OUTGOING_EVENTS: Final = 16
#: Sending the last events (an error before closing) to a client that may not read.
CLOSE_FLUSH_S: Final = 2.0
#: PCM16 mono: what the ``pcm`` format is, in Wyoming's terms.
SAMPLE_WIDTH: Final = 2
CHANNELS: Final = 1
#: Both kinds of request compete as any client's normal request.
PRIORITY: Final = Priority.NORMAL

_connection_ids = itertools.count(1)


class _Closed(Exception):
    """The socket is gone (the peer went away, or stopped reading past the timeout)."""


@dataclass(slots=True)
class WyomingStats:
    """Connections open now, against the limit."""

    limit: int
    open: int = 0


@dataclass(slots=True, eq=False)
class _Stream:
    """A stream's audio side: its text arrives as segments in ``feed``."""

    number: int
    voice: VoiceChoice
    received_at: float
    feed: SegmentFeed = field(default_factory=SegmentFeed)
    input_ended: trio.Event = field(default_factory=trio.Event)
    #: The text received before the stream starts (what admission estimates it from).
    text: str = ""
    #: Once started: admission's decision and the settings, so later text grows the
    #: stream's claim (``extend``), as a WebSocket context's does.
    start: tuple[StartDecision, ResolvedConfig] | None = None


@dataclass(frozen=True, slots=True)
class _OneShot:
    speak: Speak
    received_at: float


async def serve_wyoming(
    services: Services,
    host: str,
    port: int,
    *,
    ready: Callable[[], bool] = lambda: True,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve Wyoming on ``host``:``port`` until cancelled; ``task_status.started`` gets
    the bound port (``port`` 0 picks one). ``ready``: False while models load (requests
    then get ``not_ready``; ``describe`` works). No connection's failure ends it."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # A name with several addresses ("localhost": ::1 and 127.0.0.1) would get a
        # different free port on each; serve the first, whose port we report.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound = listeners[0].socket.getsockname()[1]
    stats = WyomingStats(limit=services.config.server.max_connections)
    log.info("serving Wyoming on tcp://%s:%d", host, bound)
    task_status.started(bound)
    await trio.serve_listeners(partial(_handle, services, ready, stats), listeners)


async def _handle(
    services: Services,
    ready: Callable[[], bool],
    stats: WyomingStats,
    stream: trio.SocketStream,
) -> None:
    """One connection, start to end; never raises (it runs in the listener's nursery)."""
    name = f"wyoming-{next(_connection_ids)}"
    try:
        peer = stream.socket.getpeername()
    except OSError:
        peer = "?"
    try:
        if stats.open >= stats.limit:
            log.warning("%s from %s refused: %d connections open", name, peer, stats.open)
            refusal = WyomingError(
                WyomingCode.TOO_MANY_CONNECTIONS,
                f"the server holds its limit of {stats.limit} connections; retry later",
            )
            services.metrics.count_error(refusal.code)
            with trio.move_on_after(CLOSE_FLUSH_S):
                await stream.send_all(encode_event(Error(refusal.text, refusal.code).event()))
            return
        stats.open += 1
        try:
            log.debug("%s: connected from %s", name, peer)
            await _Connection(stream, services, ready, name).run()
        finally:
            stats.open -= 1
    except (trio.BrokenResourceError, trio.ClosedResourceError, _Closed):
        pass  # the peer went away: nothing to report
    except Exception:
        log.exception("%s: connection failed", name)
    finally:
        with trio.move_on_after(CLOSE_FLUSH_S, shield=True) as cleanup:
            await stream.aclose()
        if cleanup.cancelled_caught:
            log.warning("%s: socket close timed out", name)


class _Connection:
    """One Wyoming connection's tasks (module docstring)."""

    def __init__(
        self, stream: trio.SocketStream, services: Services, ready: Callable[[], bool], name: str
    ) -> None:
        self.stream = stream
        self.services = services
        self.ready = ready
        self.name = name
        config = services.config
        self.protocol = WyomingProtocol(
            program=PROGRAM_NAME,
            max_text_chars=config.tts.max_text_length,
            idle_s=config.tts.context_idle_s,
        )
        self.reader = EventReader()
        self.send, self.receive = trio.open_memory_channel[bytes](OUTGOING_EVENTS)
        self.requests: deque[_OneShot | _Stream] = deque()
        self.streams: dict[int, _Stream] = {}
        #: Wakes the worker (a request queued), the ticker (a deadline moved) and the
        #: reader waiting for the last answers.
        self.changed = trio.lowlevel.ParkingLot()
        self.read_scope: trio.CancelScope | None = None
        self.worker_scope = trio.CancelScope()
        self.connection_scope = trio.CancelScope()
        self.writer_done = trio.Event()

    # --- the connection --------------------------------------------------------------
    async def run(self) -> None:
        """Serve until the peer closes, a fatal error, a timeout or a failed write. Our
        bugs propagate (the caller logs them); the peer's doings do not."""
        with self.connection_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._worker)
                nursery.start_soon(self._ticker)
                try:
                    finished = await self._read()
                    if finished:
                        # The peer has sent everything: answer what it asked, then close.
                        while self.requests:
                            await self.changed.park()
                except _Closed:
                    self._gone()
                    return
                self.worker_scope.cancel()  # after a fatal error: drop the request
                await self.send.aclose()  # the writer sends what is queued, then ends
                with trio.move_on_after(CLOSE_FLUSH_S):
                    await self.writer_done.wait()
                    if not finished:
                        await self._linger()
                nursery.cancel_scope.cancel()  # the ticker

    async def _linger(self) -> None:
        """After a fatal error: end our side, then read (and drop) what the client
        still sends until it closes. Closing a socket with unread input sends a reset,
        which can destroy the error event before the client reads it. The caller
        bounds this with ``CLOSE_FLUSH_S``."""
        try:
            await self.stream.send_eof()
            while await self.stream.receive_some(RECEIVE_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _gone(self) -> None:
        """The socket failed: end every task of the connection."""
        self.connection_scope.cancel()

    async def _read(self) -> bool:
        """Read and act on events. Returns True at the peer's end of input, False after
        a fatal error or a timeout (already answered)."""
        while True:
            with trio.CancelScope(deadline=self._read_deadline()) as scope:
                self.read_scope = scope
                try:
                    data = await self.stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise _Closed from None
            self.read_scope = None
            if scope.cancelled_caught:
                mid = self.reader.mid_event
                await self._fail(
                    WyomingError(
                        WyomingCode.EVENT_TIMEOUT if mid else WyomingCode.IDLE_TIMEOUT,
                        f"no whole event within {EVENT_TIMEOUT_S:g} s; closing"
                        if mid
                        else f"idle for {IDLE_TIMEOUT_S:g} s; closing",
                        fatal=True,
                    )
                )
                return False
            if not data:
                # The client will send nothing more: an open stream speaks what it got.
                self._apply(self.protocol.finish(trio.current_time()))
                return True
            self.reader.feed(data)
            while True:
                try:
                    event = self.reader.next_event()
                    if event is None:
                        break
                    await self._on_event(event)
                except WyomingError as error:
                    await self._fail(error)
                    if error.fatal:
                        return False

    def _read_deadline(self) -> float:
        if self.reader.mid_event:
            return trio.current_time() + EVENT_TIMEOUT_S
        if self.requests:
            return math.inf  # a request runs; a stream has its own idle limit
        return trio.current_time() + IDLE_TIMEOUT_S

    async def _on_event(self, event: Event) -> None:
        actions = self.protocol.receive(event, trio.current_time())
        for action in actions:
            if isinstance(action, SendInfo):
                voices = self.services.registry.voices()
                await self._send_event(info_event(voices))
            elif isinstance(action, SendPong):
                await self._send_event(Pong(text=action.text).event())
        self._apply(actions)

    def _apply(self, actions: list[Action]) -> None:
        """The actions that queue or feed requests (synchronous: order is kept)."""
        now = trio.current_time()
        for action in actions:
            if isinstance(action, Speak):
                self.requests.append(_OneShot(action, now))
            elif isinstance(action, OpenStream):
                stream = _Stream(action.stream, action.voice, now)
                self.streams[action.stream] = stream
                self.requests.append(stream)
            elif isinstance(action, StreamSegments):
                stream = self.streams[action.stream]
                text = "".join(segment.text for segment in action.segments)
                if stream.start is None:
                    stream.text += text
                else:
                    extend(self.services, *stream.start, text)
                stream.feed.put(action.segments)
            elif isinstance(action, EndStream):
                ended = self.streams.pop(action.stream)
                ended.feed.close()
                ended.input_ended.set()
        self.changed.unpark_all()  # a request queued; the ticker's deadline moved

    async def _fail(self, error: WyomingError) -> None:
        """Answer a client's mistake (or a refused request) with an ``error`` event."""
        self.services.metrics.count_error(error.code)
        log.info("%s: %s", self.name, error)
        await self._send_event(Error(text=error.text, code=error.code).event())

    async def _send_event(self, event: Event) -> None:
        try:
            await self.send.send(encode_event(event))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Closed from None

    # --- tasks -----------------------------------------------------------------------
    async def _writer(self) -> None:
        """The only task that writes the socket. A write is never cancelled midway
        (shielded); one that takes longer than ``server.write_timeout_s`` ends the
        connection, as does a failed one."""
        timeout = self.services.config.server.write_timeout_s
        try:
            async with self.receive:
                async for data in self.receive:
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(timeout) as write:
                            try:
                                await self.stream.send_all(data)
                            except (trio.BrokenResourceError, trio.ClosedResourceError):
                                write.cancel()
                    if write.cancelled_caught:
                        log.info("%s: the client is gone or stopped reading; closing", self.name)
                        self._gone()
                        return
        finally:
            self.writer_done.set()

    async def _ticker(self) -> None:
        """Release stream text at its buffer deadline (``max_delay_ms``, idle limit)."""
        while True:
            deadline = self.protocol.deadline
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self.changed.park()
                continue
            self._apply(self.protocol.tick(trio.current_time()))

    async def _worker(self) -> None:
        """Run the queued requests in order, each to its last event."""
        with self.worker_scope:
            while True:
                while not self.requests:
                    await self.changed.park()
                request = self.requests[0]
                try:
                    if isinstance(request, _Stream):
                        await self._play_stream(request)
                    else:
                        await self._play_one_shot(request)
                except _Closed:
                    self._gone()
                    return
                finally:
                    self.requests.popleft()
                    self.protocol.request_done()
                    scope = self.read_scope
                    if scope is not None:  # idle from now, unless more is queued
                        scope.deadline = self._read_deadline()
                    self.changed.unpark_all()

    # --- requests --------------------------------------------------------------------
    async def _play_one_shot(self, request: _OneShot) -> None:
        speak = request.speak
        audio = _Audio()
        try:
            async with self._start_job(speak.voice, speak.text, request.received_at) as job:
                await self._play(job, audio)
        except WyomingError as error:
            await self._fail(error)
        # Every synthesize ends with audio-stop, even with no audio (see the docstring).
        await self._send_event(AudioStop(timestamp=audio.end_ms).event())

    async def _play_stream(self, stream: _Stream) -> None:
        audio = _Audio()
        try:
            async with self._start_job(
                stream.voice, stream.text, stream.received_at, stream
            ) as job:
                await self._play(job, audio)
        except WyomingError as error:
            if audio.started:
                await self._send_event(AudioStop(timestamp=audio.end_ms).event())
            await self._fail(error)
            # A stream is answered with synthesize-stopped once its input has ended.
            await stream.input_ended.wait()
        else:
            if audio.started:
                await self._send_event(AudioStop(timestamp=audio.end_ms).event())
        await self._send_event(SynthesizeStopped().event())

    @asynccontextmanager
    async def _start_job(
        self,
        voice: VoiceChoice,
        text: str,
        received_at: float,
        stream: _Stream | None = None,
    ) -> AsyncIterator[SynthesisJob]:
        """The job for a request, through the one start policy every surface shares
        (``resolve_config``, ``check_can_start``, ``new_job``, ``wait_to_start``, and
        ``release`` however it ends); a one-shot (a download) holds a download slot
        while it runs. Raises ``WyomingError`` when the request cannot start
        (``not_ready``, an unknown voice, ``busy``...)."""
        services = self.services
        streaming = stream is not None
        borrower: object | None = None
        decision: StartDecision | None = None
        try:
            try:
                if not self.ready():
                    raise ClientError(
                        ErrorCode.NOT_READY, "models are still loading; retry shortly"
                    )
                resolved = resolve_config(
                    services,
                    AudioConfig(
                        voice_id=voice.name,
                        language=voice.language,
                        speaker=voice.speaker,
                        format="pcm",
                        realtime=streaming,
                    ),
                    None,
                    text or None,
                )
                # A stream is judged when its first segment is ready, as a WebSocket
                # context is (``check_can_start``): it has nothing to say before.
                decision = check_can_start(
                    services, resolved, PRIORITY, None, text, new_stream=True,
                    text_to_come=streaming,
                )  # fmt: skip
                job = new_job(
                    services,
                    resolved,
                    text,
                    PRIORITY,
                    received_at,
                    feed=stream.feed if stream is not None else None,
                    reservation=decision.reservation,
                )
                # A context job asks the engine for word timings (for timestamps and
                # the heard text of an interrupt); Wyoming has neither: a stream doesn't.
                job.timed = False
                if stream is not None:
                    stream.start = (decision, resolved)
                    await stream.feed.wait_ready()
                    await wait_to_start(services, decision, f"wyoming-{stream.number}", job)
                else:
                    borrower = object()
                    await services.downloads.admit(borrower)
            except ClientError as exc:
                raise WyomingError.from_client_error(exc) from None
            yield job
        finally:
            if borrower is not None:
                services.downloads.release(borrower)
            if decision is not None:
                release(services, decision)

    async def _play(self, job: SynthesisJob, audio: _Audio) -> None:
        """Speak ``job`` as ``audio-start`` then ``audio-chunk``s (``audio`` keeps what
        was sent; the last event is the caller's). Raises ``WyomingError
        (synthesis_failed)`` when the engine fails, ``_Closed`` when the client is gone."""
        rate = job.open().sample_rate
        metrics = self.services.metrics

        async def emit(frame: bytes) -> bool:
            try:
                if not audio.started:
                    start = AudioStart(rate, SAMPLE_WIDTH, CHANNELS, timestamp=0)
                    await self.send.send(encode_event(start.event()))
                    audio.started = True
                chunk = AudioChunk(
                    rate=rate,
                    width=SAMPLE_WIDTH,
                    channels=CHANNELS,
                    audio=frame,
                    timestamp=audio.samples * 1000 // rate,
                )
                await self.send.send(encode_event(chunk.event()))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False  # the writer is gone: so is the client
            audio.rate = rate
            audio.samples += len(frame) // (SAMPLE_WIDTH * CHANNELS)
            return True

        outcome = RequestOutcome.ABANDONED
        try:
            if await run_job(job, emit, self.services.inference, metrics, self.services.admission):
                outcome = RequestOutcome.FINISHED
        except Exception as exc:
            outcome = RequestOutcome.FAILED
            if isinstance(exc, EngineError):
                log.warning("%s: synthesis with %s failed: %s", self.name, job.voice.id, exc)
            else:
                log.exception("%s: synthesis with %s failed", self.name, job.voice.id)
            raise WyomingError(ErrorCode.SYNTHESIS_FAILED, "synthesis failed") from None
        finally:
            metrics.count_request(outcome)
        if outcome is RequestOutcome.ABANDONED:
            raise _Closed


@dataclass(slots=True)
class _Audio:
    """What one request has sent of its audio stream."""

    started: bool = False
    samples: int = 0
    rate: int = 0

    @property
    def end_ms(self) -> int | None:
        return self.samples * 1000 // self.rate if self.rate else None
