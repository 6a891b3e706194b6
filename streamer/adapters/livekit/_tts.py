"""A LiveKit Agents TTS plugin that speaks through our WebSocket server.

How LiveKit's TTS API maps to the protocol (protocol_docs/livekit.md):

- ``tts.stream()`` is one of our *contexts* (id: the stream's request id):
  ``push_text`` → ``text`` (the first opens it with the voice, PCM at the plugin's
  rate, ``timestamps: "word"`` and ``buffer: auto``, so the server cuts the clauses),
  ``flush`` → ``flush``, ``end_input`` → ``close``;
- our ``timestamps`` become ``TimedString`` word timings on the audio frames (each
  covering the text from the previous word's end to its own, so the strings add up to
  the text as pushed and LiveKit's transcript synchronizer shows exactly it);
- closing the stream before its end (``aclose()``: an interruption) sends ``cancel``
  for the context; nothing of it follows the server's reply, so the connection goes
  back to the pool for the next stream;
- ``tts.synthesize(text)`` is one ``synthesize`` request (a ``ChunkedStream``).

Connections come from LiveKit's ``ConnectionPool``: a stream holds one while it runs
(one context plays at a time per connection), and returns it when it ends or is
cancelled. The client is ``streamer.client``'s asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Final, Never

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tts,
    utils,
)
from livekit.agents.types import TimedString

from streamer.client import (
    AudioEnd,
    AudioStart,
    ContextStream,
    Timestamps,
    TTSClientError,
    TTSConnectionError,
    TTSServerError,
    TTSTimeoutError,
    Word,
)
from streamer.client.asyncio_client import AsyncioTTSStreamingClient

from .._options import DEFAULT_URL, VoiceOptions

log = logging.getLogger(__name__)

#: LiveKit's usual output rate (rooms carry 48 kHz Opus; its plugins default to 24 kHz).
DEFAULT_SAMPLE_RATE: Final = 24000
#: The MIME type of the audio we ask for (16-bit little-endian PCM, mono).
PCM_MIME: Final = "audio/pcm"
#: Bound on sending ``cancel`` when a stream is closed early: the send is a local
#: write; a connection that cannot take it within this is dropped from the pool.
CANCEL_SEND_TIMEOUT_S: Final = 2.0
#: Server error codes a retry may cure (capacity, not the request).
RETRYABLE_CODES: Final = frozenset({"busy", "queue_full", "rate_limited", "server_overloaded"})


@contextlib.contextmanager
def _api_errors() -> Iterator[None]:
    """Our client's errors as LiveKit's, by blame (LiveKit retries the retryable)."""
    try:
        yield
    except TTSTimeoutError as exc:
        raise APITimeoutError(str(exc)) from exc
    except TTSConnectionError as exc:
        raise APIConnectionError(str(exc)) from exc
    except TTSServerError as exc:
        raise APIStatusError(
            exc.message,
            status_code=503 if exc.code in RETRYABLE_CODES else 400,
            request_id=exc.request_id,
            body={"code": exc.code, "details": exc.details},
            retryable=exc.code in RETRYABLE_CODES,
        ) from exc
    except TTSClientError as exc:
        raise APIError(str(exc), retryable=False) from exc


class _Transcript:
    """The text sent so far and how far the timed words have covered it, so that each
    ``TimedString`` carries the text since the previous word's end (spaces and
    punctuation included) and their concatenation is the text as sent."""

    def __init__(self) -> None:
        self.text = ""
        self._covered = 0

    def timed(self, words: tuple[Word, ...]) -> list[TimedString]:
        out = []
        for word in words:
            end = max(word.char_end, self._covered)
            out.append(
                TimedString(
                    self.text[self._covered : end],
                    start_time=word.start_ms / 1000,
                    end_time=word.end_ms / 1000,
                )
            )
            self._covered = end
        return out

    def rest(self, at_s: float) -> TimedString | None:
        """What no word covered (trailing punctuation), timed at the end."""
        if self._covered >= len(self.text):
            return None
        rest = TimedString(self.text[self._covered :], start_time=at_s, end_time=at_s)
        self._covered = len(self.text)
        return rest


class StreamerTTS(tts.TTS[Never]):
    """LiveKit Agents TTS over the MIT-TTS-Streamer WebSocket (module docstring).

    Args:
        url: the server's WebSocket URL (``ws://`` or ``wss://``).
        voice: a voice id from ``GET /api/v1/voices`` or an index in the language's
            list (0 = best); None: the server's default.
        language: BCP-47 (``en``, ``es-MX``); None: the server's default.
        speed: speaking rate, 0.5–2.0.
        sample_rate: the rate of the frames LiveKit gets (the server resamples).
        api_key: sent as ``Authorization: Bearer`` at the handshake.
    """

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        voice: int | str | None = None,
        language: str | None = None,
        speed: float | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        api_key: str | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=True),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._url = url
        self._api_key = api_key
        self._voice = VoiceOptions(voice=voice, language=language, speed=speed)
        self._pool = utils.ConnectionPool[AsyncioTTSStreamingClient](
            connect_cb=self._connect, close_cb=self._close
        )

    @property
    def model(self) -> str:
        return str(self._voice.voice) if self._voice.voice is not None else "default"

    @property
    def provider(self) -> str:
        return "mit-tts-streamer"

    async def _connect(self, within_s: float) -> AsyncioTTSStreamingClient:
        client = AsyncioTTSStreamingClient(
            self._url, api_key=self._api_key, connect_timeout=within_s, reply_timeout=within_s
        )
        with _api_errors():
            try:
                await client.connect(**self._voice.audio_options(self.sample_rate))
            except BaseException:
                await client.aclose()
                raise
        return client

    @staticmethod
    async def _close(client: AsyncioTTSStreamingClient) -> None:
        await client.aclose()

    @asynccontextmanager
    async def _connection(self, within_s: float) -> AsyncIterator[AsyncioTTSStreamingClient]:
        """A pooled connection; one that was lost (the server closes idle ones after
        ``server.idle_timeout_s``) is dropped instead of used or returned."""
        client = await self._pool.get(timeout=within_s)
        while client.closed:
            self._pool.remove(client)
            client = await self._pool.get(timeout=within_s)
        try:
            yield client
        finally:
            if client.closed:
                self._pool.remove(client)
            else:
                self._pool.put(client)

    def prewarm(self) -> None:
        self._pool.prewarm()

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> StreamerChunkedStream:
        return StreamerChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> StreamerSynthesizeStream:
        return StreamerSynthesizeStream(tts=self, conn_options=conn_options)

    async def aclose(self) -> None:
        await self._pool.aclose()


class StreamerChunkedStream(tts.ChunkedStream):
    """``synthesize(text)``: one ``synthesize`` request, its word timings included."""

    def __init__(self, *, tts: StreamerTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._streamer = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid("tts-")
        streamer = self._streamer
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=streamer.sample_rate,
            num_channels=1,
            mime_type=PCM_MIME,
        )
        transcript = _Transcript()
        transcript.text = self.input_text
        with _api_errors():
            async with streamer._connection(self._conn_options.timeout) as client:
                ended = False
                try:
                    async for item in client.synthesize(
                        self.input_text,
                        request_id=request_id,
                        **streamer._voice.audio_options(streamer.sample_rate),
                    ):
                        if isinstance(item, bytes):
                            output_emitter.push(item)
                        elif isinstance(item, Timestamps):
                            output_emitter.push_timed_transcript(transcript.timed(item.words))
                        elif isinstance(item, AudioEnd):
                            ended = True
                finally:
                    if not ended:
                        # Closed early: stop the request, so that the connection goes
                        # back to the pool with nothing playing.
                        await _interrupt(client)
        output_emitter.flush()


class StreamerSynthesizeStream(tts.SynthesizeStream):
    """``stream()``: one context, text in as the LLM writes it (module docstring)."""

    def __init__(self, *, tts: StreamerTTS, conn_options: APIConnectOptions):
        super().__init__(tts=tts, conn_options=conn_options)
        self._streamer = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid("ctx-")
        streamer = self._streamer
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=streamer.sample_rate,
            num_channels=1,
            mime_type=PCM_MIME,
            stream=True,
        )
        with _api_errors():
            async with streamer._connection(self._conn_options.timeout) as client:
                context = client.stream(
                    context_id=request_id,
                    buffer={"mode": "auto"},
                    **streamer._voice.audio_options(streamer.sample_rate),
                )
                try:
                    await self._speak(context, output_emitter)
                finally:
                    if context.end is None and context.interrupted is None:
                        await _cancel(context)

    async def _speak(self, context: ContextStream, output_emitter: tts.AudioEmitter) -> None:
        transcript = _Transcript()
        #: Set at the first text sent (there is a context to read), or at the end of an
        #: input that had none (there is nothing to read).
        ready = asyncio.Event()

        async def send() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    if transcript.text:
                        await context.flush()
                    continue
                if not transcript.text:
                    output_emitter.start_segment(segment_id=context.context_id)
                self._mark_started()
                transcript.text += data
                await context.send_text(data)
                ready.set()
            if transcript.text:
                await context.close()
            ready.set()

        async def receive() -> None:
            await ready.wait()
            if not transcript.text:
                return
            async for item in context:
                if isinstance(item, bytes):
                    output_emitter.push(item)
                elif isinstance(item, Timestamps):
                    output_emitter.push_timed_transcript(transcript.timed(item.words))
                elif isinstance(item, AudioStart) and item.sample_rate != self._tts.sample_rate:
                    raise APIError(f"server sent {item.sample_rate} Hz audio", retryable=False)
            if context.end is not None:
                rest = transcript.rest(context.end.duration_ms / 1000)
                if rest is not None:
                    output_emitter.push_timed_transcript(rest)
            output_emitter.end_segment()

        tasks = [
            asyncio.create_task(send(), name="streamer-tts-send"),
            asyncio.create_task(receive(), name="streamer-tts-receive"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await utils.aio.cancel_and_wait(*tasks)


async def _interrupt(client: AsyncioTTSStreamingClient) -> None:
    try:
        await asyncio.wait_for(client.interrupt("closed", wait=False), CANCEL_SEND_TIMEOUT_S)
    except (TTSClientError, TimeoutError) as exc:
        log.debug("interrupt not sent: %s", exc)


async def _cancel(context: ContextStream) -> None:
    """Barge-in: ``cancel`` the context without waiting for the reply (nothing of it
    follows the reply, so the connection can serve the next stream at once)."""
    try:
        await asyncio.wait_for(context.cancel(wait=False), CANCEL_SEND_TIMEOUT_S)
    except (TTSClientError, TimeoutError) as exc:
        log.debug("cancel of %s not sent: %s", context.context_id, exc)
