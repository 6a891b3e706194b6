"""The client's behaviour, independent of the event loop.

:class:`BaseStreamingClient` holds the routing state (one :class:`Inbox` per request,
the replies ``connect``/``interrupt`` wait for) and implements the public API on four
loop-specific primitives a subclass supplies: send one text message, wait on a
:class:`Waitable` with a timeout, run a blocking call in a thread, and the reader task
that feeds :meth:`_dispatch`. The Trio client and the asyncio client are those four
things and a connection.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar, Unpack

from ._events import (
    AudioEnd,
    AudioOptions,
    AudioStart,
    BufferOptions,
    Connected,
    ErrorEvent,
    Event,
    Interrupted,
    Queued,
    StreamItem,
    Timestamps,
    TTSClientError,
    TTSConnectionError,
    TTSServerError,
    TTSTimeoutError,
    Word,
)
from ._protocol import ClientProtocol, Inbox, Reply, Waitable
from .playback import PCM_FORMATS, PcmFormat, PlaybackSink

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long ``connect`` and ``interrupt`` wait for their reply. The server answers both
#: without waiting for inference (milliseconds); ten seconds of silence means it is gone.
REPLY_TIMEOUT_S: Final = 10.0
#: Bound on opening the connection (TCP + WebSocket handshake).
CONNECT_TIMEOUT_S: Final = 10.0
#: How often a reader waiting for room in an inbox re-checks it, for a stream that was
#: garbage-collected (which cannot wake the reader's loop from the collector).
ROOM_RECHECK_S: Final = 0.5
#: Largest message the client accepts: a frame of one second of 48 kHz float PCM is
#: 192 kB; anything far beyond is not from our server.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


@dataclass(slots=True)
class SynthesisResult:
    """What one request produced. ``audio`` is the concatenated frames: a complete file
    of ``start.format`` when ``completed``."""

    request_id: str
    audio: bytes
    queued: Queued | None
    start: AudioStart | None
    end: AudioEnd | None
    interrupted: Interrupted | None

    @property
    def completed(self) -> bool:
        return self.end is not None


class SynthesisStream:
    """One request's audio frames (``bytes``) and events, in order, as an async iterator.

    Yields :class:`Queued`, :class:`AudioStart`, the frames, then :class:`AudioEnd` or
    :class:`Interrupted` and stops. An ``error`` event for the request raises
    :class:`TTSServerError`; a lost connection :class:`TTSConnectionError`.

    The request is sent by :meth:`send` (``client.submit`` calls it) or, for a stream
    from ``client.synthesize``, on the first iteration. Leaving the loop early is safe:
    :meth:`close` (also run by ``async with`` and on garbage collection) makes the reader
    drop the rest of its audio. It does not stop synthesis: ``client.interrupt`` does.

    ``await stream`` reads it whole: the same as ``await stream.collect()``. With
    ``audio_only`` (``client.synthesize_streaming``) iteration yields only the frames;
    the events are still kept in ``queued``, ``start``, ``end`` and ``interrupted``.
    """

    def __init__(
        self,
        client: BaseStreamingClient,
        request_id: str,
        message: str,
        *,
        audio_only: bool = False,
    ) -> None:
        self._client = client
        self.request_id = request_id
        self._message = message
        self._inbox = Inbox(request_id)
        self._sent = False
        self._audio_only = audio_only
        self.queued: Queued | None = None
        self.start: AudioStart | None = None
        self.end: AudioEnd | None = None
        self.interrupted: Interrupted | None = None

    async def send(self) -> None:
        """Send the request now (idempotent)."""
        if self._sent:
            return
        self._sent = True
        self._client._register(self._inbox)
        await self._client._send_text(self._message)

    def __aiter__(self) -> SynthesisStream:
        return self

    def __await__(self) -> Generator[Any, None, SynthesisResult]:
        return self.collect().__await__()

    async def __anext__(self) -> StreamItem:
        while True:
            item = await self._next_item()
            if not self._audio_only or isinstance(item, bytes):
                return item

    async def _next_item(self) -> StreamItem:
        await self.send()
        while True:
            item = self._inbox.take()
            if item == "wait":
                await self._client._wait(self._inbox, None)
                continue
            if item == "end":
                if self._inbox.error is not None:
                    raise self._inbox.error
                raise StopAsyncIteration
            if isinstance(item, ErrorEvent):
                raise TTSServerError(item)
            if isinstance(item, Queued):
                self.queued = item
            elif isinstance(item, AudioStart):
                self.start = item
            elif isinstance(item, AudioEnd):
                self.end = item
            elif isinstance(item, Interrupted):
                self.interrupted = item
            return item

    async def collect(self) -> SynthesisResult:
        """Read the whole stream; the result holds every frame."""
        frames: list[bytes] = []
        while True:
            try:
                item = await self._next_item()
            except StopAsyncIteration:
                break
            if isinstance(item, bytes):
                frames.append(item)
        return SynthesisResult(
            self.request_id, b"".join(frames), self.queued, self.start, self.end, self.interrupted
        )

    def close(self) -> None:
        """Stop receiving this request's audio (the reader drops it from now on)."""
        self._inbox.discard_audio()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> SynthesisStream:
        await self.send()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Abandoned without close(): never let the reader wait for room in our inbox.
        # Only a flag: the collector may run this in any thread, where waking the
        # reader's loop is not allowed; the reader re-checks every ROOM_RECHECK_S.
        self._inbox.discarding = True


@dataclass(slots=True)
class ContextResult:
    """What one context produced: its audio (one stream of ``start.format``), its words
    (when timestamps were asked for), the non-fatal errors (``context_idle``…) and how
    it ended: ``end`` (every frame sent) or ``interrupted`` (with the heard text)."""

    context_id: str
    audio: bytes
    words: list[Word]
    start: AudioStart | None
    end: AudioEnd | None
    interrupted: Interrupted | None
    errors: list[ErrorEvent]

    @property
    def completed(self) -> bool:
        return self.end is not None


class ContextStream:
    """One streamed-text context: send text as it comes, read its audio and events.

    ::

        async with client.stream(context_id="turn-1", timestamps="word") as ctx:
            async for token in llm_tokens():
                await ctx.send_text(token)
            await ctx.close()  # end of input: the rest is spoken, then audio_end
            async for item in ctx:
                ...

    Sending and reading usually run in two tasks. Iterating yields the frames
    (``bytes``) and events: :class:`Queued`, :class:`AudioStart`, :class:`Timestamps`
    (also gathered in :attr:`words`), :class:`Flushed`, :class:`ErrorEvent` for an
    error that concerns one message (the context goes on), and last :class:`AudioEnd`
    or :class:`Interrupted`. An error that ends it (refused when opening,
    ``synthesis_failed``, ``busy`` when no room came by the time its text was ready)
    raises :class:`TTSServerError`.

    ``priority``, ``config`` and ``buffer`` go with the first :meth:`send_text`, which
    opens the context on the server. Leaving ``async with`` closes the input (the
    server speaks the rest); leaving it with an exception cancels the context.
    """

    def __init__(
        self,
        client: BaseStreamingClient,
        context_id: str,
        *,
        priority: str,
        config: AudioOptions,
        buffer: BufferOptions | None,
    ) -> None:
        self._client = client
        self.context_id = context_id
        self._priority = priority
        self._config = config
        self._buffer = buffer
        # Validates the opening fields now, not at the first token.
        client._protocol.text_message(
            context_id, "", priority=priority, config=config, buffer=buffer
        )
        self._inbox = Inbox(context_id)
        client._register(self._inbox)
        client._protocol.context(context_id)
        self._opened = False
        self.input_closed = False
        self.queued: Queued | None = None
        self.start: AudioStart | None = None
        self.end: AudioEnd | None = None
        self.interrupted: Interrupted | None = None
        #: Every word timed so far (``timestamps`` asked for), in order.
        self.words: list[Word] = []
        #: Errors that concerned one message; the context went on.
        self.errors: list[ErrorEvent] = []

    # --- input ---------------------------------------------------------------------------
    async def send_text(self, text: str, *, flush: bool = False) -> None:
        """Append ``text`` exactly as given (a token, a word, a sentence); the first
        call opens the context. ``flush``: speak what is buffered now."""
        if self.input_closed or self._inbox.terminated:
            raise TTSClientError(
                "context_closed", f"context {self.context_id} was closed or has ended"
            )
        protocol = self._client._protocol
        if self._opened:
            message = protocol.text_message(self.context_id, text, flush=flush)
        else:
            message = protocol.text_message(
                self.context_id,
                text,
                flush=flush,
                priority=self._priority,
                config=self._config,
                buffer=self._buffer,
            )
            self._opened = True
        await self._client._send_text(message)

    async def flush(self, flush_id: str | None = None) -> None:
        """Speak what is buffered now; a :class:`Flushed` with ``flush_id`` follows its
        audio."""
        await self._ensure_open()
        await self._client._send_text(
            self._client._protocol.flush_message(self.context_id, flush_id)
        )

    async def close(self) -> None:
        """End of input: the rest is spoken, then :class:`AudioEnd`. Idempotent."""
        if self.input_closed:
            return
        await self._ensure_open()
        self.input_closed = True
        await self._client._send_text(self._client._protocol.close_message(self.context_id))

    async def keepalive(self) -> None:
        """Keep the context open through a pause in its text (``tts.context_idle_s``)."""
        await self._ensure_open()
        await self._client._send_text(
            self._client._protocol.keepalive_message(self.context_id)
        )

    async def cancel(
        self, played_ms: int | None = None, *, wait: bool = True
    ) -> Interrupted | None:
        """Barge-in on this context: audio buffered here is dropped at once; the server
        stops it and answers with :class:`Interrupted`, whose ``heard_text`` is what the
        listener heard (by ``played_ms``, the milliseconds of this context's audio the
        caller played, when given; else by the server's clock). With ``wait``, returns
        that reply; the stream also ends with it. None when it had already ended (its
        end may still be read from the stream)."""
        self.input_closed = True
        self._inbox.discard_audio()
        if not self._opened or self._inbox.terminated:
            return None  # nothing was sent, or it is over: there is nothing to cancel
        client = self._client
        reply = Reply("cancel", self.context_id) if wait else None
        if reply is not None:
            client._replies.append(reply)
        await client._send_text(client._protocol.cancel_message(self.context_id, played_ms))
        if reply is None:
            return None
        event = await client._await_reply(reply)
        if not isinstance(event, Interrupted):
            return None  # it had ended before the cancel reached the server
        self.interrupted = event
        return event

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self.send_text("")

    # --- output --------------------------------------------------------------------------
    def __aiter__(self) -> ContextStream:
        return self

    async def __anext__(self) -> StreamItem:
        while True:
            item = self._inbox.take()
            if item == "wait":
                await self._client._wait(self._inbox, None)
                continue
            if item == "end":
                if self._inbox.error is not None:
                    raise self._inbox.error
                raise StopAsyncIteration
            if isinstance(item, ErrorEvent):
                if item is self._inbox.terminal_item:
                    raise TTSServerError(item)
                self.errors.append(item)
            elif isinstance(item, Queued):
                self.queued = item
            elif isinstance(item, AudioStart):
                self.start = item
            elif isinstance(item, Timestamps):
                self.words.extend(item.words)
            elif isinstance(item, AudioEnd):
                self.end = item
            elif isinstance(item, Interrupted):
                self.interrupted = item
            return item

    async def collect(self) -> ContextResult:
        """Read the context to its end (another task sends its text)."""
        frames: list[bytes] = []
        async for item in self:
            if isinstance(item, bytes):
                frames.append(item)
        return ContextResult(
            self.context_id,
            b"".join(frames),
            self.words,
            self.start,
            self.end,
            self.interrupted,
            self.errors,
        )

    def discard(self) -> None:
        """Stop receiving this context's audio (it is not cancelled: see ``cancel``)."""
        self._inbox.discard_audio()

    async def __aenter__(self) -> ContextStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client.closed or self._inbox.terminated:
            return
        if exc is not None:
            if self._opened:
                await self.cancel(wait=False)
            return
        await self.close()

    def __del__(self) -> None:
        self._inbox.discarding = True  # see SynthesisStream.__del__


class BaseStreamingClient(abc.ABC):
    """Client API shared by the Trio and asyncio clients (see their docstrings).

    ``sink`` is where :meth:`synthesize_and_play` plays when it is given none (``None``:
    the default sound device, opened when first needed).
    """

    def __init__(
        self,
        url: str,
        *,
        reply_timeout: float = REPLY_TIMEOUT_S,
        sink: PlaybackSink | None = None,
    ) -> None:
        self.url = url
        self.reply_timeout = reply_timeout
        self.sink = sink
        self._protocol = ClientProtocol()
        self._inboxes: dict[str, Inbox] = {}
        self._replies: list[Reply] = []
        # Sinks playing now, aborted by interrupt(); a list: sinks need not be hashable.
        self._sinks: list[PlaybackSink] = []
        self._lost: TTSClientError | None = None
        #: The session this connection is attached to (after ``connect``).
        self.session_id: str | None = None
        #: The session's effective config (after ``connect``).
        self.config: dict[str, Any] = {}
        #: The WebSocket close code once the connection has ended (1001: server shutdown).
        self.close_code: int | None = None

    # --- loop-specific primitives ------------------------------------------------
    @abc.abstractmethod
    async def _send_text(self, text: str) -> None:
        """Send one text message; raise ``TTSConnectionError`` if the connection is gone."""

    @abc.abstractmethod
    async def _wait(self, waitable: Waitable, within: float | None) -> bool:
        """Wait until ``waitable`` notifies; False if ``within`` seconds passed first."""

    @abc.abstractmethod
    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (a sink's write) in a worker thread."""

    async def _open_if_needed(self) -> None:  # noqa: B027 - optional hook
        """Open the connection if it is not open yet (``connect`` without ``async with``);
        clients that can only open it in ``async with`` leave this as it is."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connection (code 1000) and end every stream; idempotent."""

    async def close(self) -> None:
        """The same as :meth:`aclose` (the original specification's name)."""
        await self.aclose()

    # --- reader side -------------------------------------------------------------
    def _register(self, inbox: Inbox) -> None:
        if self._lost is not None:
            raise self._lost
        if inbox.request_id in self._inboxes:
            raise ValueError(f"request_id {inbox.request_id!r} is in use on this connection")
        self._inboxes[inbox.request_id] = inbox

    async def _dispatch(self, data: str | bytes) -> None:
        """Route one received message. Waits only for room in the playing request's
        inbox (back-pressure on downloads); an interrupt frees that room at once."""
        for delivery in self._protocol.receive(data):
            if delivery.request_id is None:
                self._resolve_reply(delivery.item)
                continue
            inbox = self._inboxes.get(delivery.request_id)
            if inbox is None:
                if isinstance(delivery.item, ErrorEvent):
                    self._resolve_reply(delivery.item)  # a cancel that came too late
                continue  # a request of another client of this session, or forgotten
            if isinstance(delivery.item, bytes):
                while not inbox.has_room:
                    await self._wait(inbox, ROOM_RECHECK_S)
            inbox.put(delivery.item, terminal=delivery.terminal)
            if delivery.terminal:
                del self._inboxes[delivery.request_id]

    def _resolve_reply(self, item: StreamItem) -> None:
        if isinstance(item, bytes):
            return
        for reply in self._replies:
            if reply.matches(item):
                self._replies.remove(reply)
                reply.resolve(item)
                return
        if isinstance(item, ErrorEvent):
            log.warning("server error not tied to a request: %s: %s", item.code, item.message)

    def _connection_lost(self, error: TTSClientError) -> None:
        """End every stream and reply with ``error``; later calls raise it."""
        if self._lost is None:
            self._lost = error
        for inbox in list(self._inboxes.values()):
            inbox.fail(error)
        self._inboxes.clear()
        for reply in self._replies:
            reply.fail(error)
        self._replies.clear()

    async def _await_reply(self, reply: Reply) -> Event:
        limit = self.reply_timeout
        while not reply.done:
            if not await self._wait(reply, limit):
                if reply in self._replies:
                    self._replies.remove(reply)
                raise TTSTimeoutError(f"no answer to {reply.kind} within {limit} s")
        if reply.error is not None:
            raise reply.error
        assert reply.event is not None
        return reply.event

    # --- public API ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._lost is not None

    async def connect(
        self,
        *,
        session_id: str | None = None,
        **config: Unpack[AudioOptions],
    ) -> Connected:
        """Open (or, with ``session_id``, attach to) a session with ``config``.

        Optional, and only as the first message of a connection: a ``synthesize``
        without it opens a session with the server defaults, and a second ``connect``
        is refused (``already_connected``); one refused for bad settings may be retried.
        The asyncio client also opens the connection here when ``async with`` has not
        (then :meth:`close` it). Raises :class:`TTSConnectionError` when the server
        cannot be reached, :class:`TTSServerError` (``unknown_language``,
        ``unknown_session``…), or :class:`TTSTimeoutError` after ``reply_timeout``
        seconds without an answer.
        """
        if self._lost is not None:
            raise self._lost
        await self._open_if_needed()
        reply = Reply("connect")
        self._replies.append(reply)
        await self._send_text(self._protocol.connect_message(config, session_id))
        event = await self._await_reply(reply)
        if isinstance(event, ErrorEvent):
            raise TTSServerError(event)
        assert isinstance(event, Connected)
        self.session_id = event.session_id
        self.config = event.config
        return event

    def synthesize(
        self,
        text: str,
        *,
        priority: str = "normal",
        request_id: str | None = None,
        **config: Unpack[AudioOptions],
    ) -> SynthesisStream:
        """A stream for ``text``, sent when iteration starts::

            async for item in client.synthesize("Hola", language="es"):
                if isinstance(item, bytes): ...

        ``priority`` is ``normal``, ``high`` or ``critical`` (pre-empts what plays);
        ``config`` overrides the session's settings for this request only.
        """
        request_id = request_id or self._protocol.new_request_id()
        message = self._protocol.synthesize_message(text, priority, request_id, config)
        return SynthesisStream(self, request_id, message)

    def synthesize_streaming(
        self,
        text: str,
        *,
        priority: str = "normal",
        request_id: str | None = None,
        **config: Unpack[AudioOptions],
    ) -> SynthesisStream:
        """Like :meth:`synthesize`, but iterating yields only the audio frames (the
        original specification's name for long texts; every request streams here,
        clause by clause)::

            async for chunk in client.synthesize_streaming(long_text):
                player.feed(chunk)

        ``await client.synthesize_streaming(text)`` returns the whole result.
        """
        request_id = request_id or self._protocol.new_request_id()
        message = self._protocol.synthesize_message(text, priority, request_id, config)
        return SynthesisStream(self, request_id, message, audio_only=True)

    async def submit(
        self,
        text: str,
        *,
        priority: str = "normal",
        request_id: str | None = None,
        **config: Unpack[AudioOptions],
    ) -> SynthesisStream:
        """Like :meth:`synthesize`, but the request is sent (queued) before returning,
        so several can be queued before any is read."""
        stream = self.synthesize(text, priority=priority, request_id=request_id, **config)
        await stream.send()
        return stream

    def stream(
        self,
        context_id: str | None = None,
        *,
        priority: str = "normal",
        buffer: BufferOptions | None = None,
        **config: Unpack[AudioOptions],
    ) -> ContextStream:
        """A streamed-text context (one utterance whose text arrives in pieces, as an
        LLM writes it): see :class:`ContextStream`. ``context_id`` is made up when not
        given; ``config`` (``timestamps="word"`` included) and ``priority`` apply to it
        alone; ``buffer`` sets how the server cuts the text (``max_delay_ms``…)."""
        context_id = context_id or self._protocol.new_request_id()
        return ContextStream(self, context_id, priority=priority, config=config, buffer=buffer)

    async def interrupt(
        self, reason: str = "user_request", *, wait: bool = True, played_ms: int | None = None
    ) -> Interrupted | None:
        """Barge-in: stop the playing request and drop the queued ones.

        Audio already buffered here is dropped at once and playing sinks are aborted,
        before the message is even sent; the streams then end with :class:`Interrupted`.
        Safe to call from inside an ``async for`` over a stream. With ``wait``, returns
        the server's acknowledgement (the first ``interrupted`` event with ``reason``),
        which says what the listener heard of the playing request (``heard_text``);
        ``played_ms``, the milliseconds of it the caller played, makes that exact.
        """
        message = self._protocol.interrupt_message(reason, played_ms)
        if self._lost is not None:
            raise self._lost
        for inbox in self._inboxes.values():
            inbox.discard_audio()
        for sink in list(self._sinks):
            _abort_quietly(sink)
        reply = Reply("interrupt", reason) if wait else None
        if reply is not None:
            self._replies.append(reply)
        await self._send_text(message)
        if reply is None:
            return None
        event = await self._await_reply(reply)
        assert isinstance(event, Interrupted)
        return event

    async def synthesize_and_play(
        self,
        text: str,
        *,
        sink: PlaybackSink | None = None,
        priority: str = "normal",
        request_id: str | None = None,
        **config: Unpack[AudioOptions],
    ) -> SynthesisResult:
        """Speak ``text`` through ``sink`` (else the client's ``sink``, else the default
        output device) as it arrives; returns when it has played (or was interrupted).

        The audio is requested as raw PCM (``format`` ``pcm`` unless ``pcm_f32`` is
        given) at the voice's rate, which any sink can play without decoding. Raises
        :class:`PlaybackUnavailableError` when there is no output device. The returned
        result holds no audio: the sink had it.
        """
        fmt = config.get("format", "pcm")
        if fmt not in PCM_FORMATS:
            raise ValueError(f"playback needs a raw format ({', '.join(PCM_FORMATS)}), got {fmt}")
        config["format"] = fmt
        if sink is None:
            sink = self.sink
        if sink is None:
            from .playback import default_sink

            sink = default_sink()
        stream = await self.submit(text, priority=priority, request_id=request_id, **config)
        finished = False
        try:
            async for item in stream:
                if isinstance(item, bytes):
                    if stream.start is not None and not stream._inbox.discarding:
                        await self._in_thread(sink.write, item)
                elif isinstance(item, AudioStart):
                    await self._in_thread(
                        sink.start,
                        PcmFormat(item.sample_rate, item.channels, PCM_FORMATS[item.format]),
                    )
                    self._sinks.append(sink)
                elif isinstance(item, AudioEnd):
                    await self._in_thread(sink.drain)
                    finished = True
                elif isinstance(item, Interrupted):
                    sink.abort()
                    finished = True
        finally:
            self._sinks = [s for s in self._sinks if s is not sink]
            if not finished and stream.start is not None:
                _abort_quietly(sink)
        return SynthesisResult(
            stream.request_id, b"", stream.queued, stream.start, stream.end, stream.interrupted
        )


def _abort_quietly(sink: PlaybackSink) -> None:
    try:
        sink.abort()
    except Exception:
        log.exception("aborting playback failed")


def connection_closed(code: int | None, reason: str | None) -> TTSConnectionError:
    """The error streams end with when the server closes the connection."""
    explain = {1001: "the server is shutting down", 1011: "server error", 1000: "closed"}
    text = explain.get(code or 0, "connection closed")
    if reason:
        text += f" ({reason})"
    return TTSConnectionError(
        "connection_closed", f"{text}; close code {code}", close_code=code
    )
