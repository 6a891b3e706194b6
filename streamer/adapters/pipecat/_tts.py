"""A Pipecat TTS service that speaks through our WebSocket server.

How Pipecat's turn maps to the protocol (protocol_docs/pipecat.md):

- a turn (``LLMFullResponseStartFrame`` … ``EndFrame``) is one Pipecat audio context and
  one of our *contexts*, under the same id; its first ``text`` opens it with the
  voice, PCM at the pipeline's rate and ``timestamps: "word"``;
- each piece of text Pipecat hands to :meth:`run_tts` is a ``text`` message: a
  sentence in Pipecat's sentence mode (``buffer`` ``none``: we speak it as sent), a
  token in its token mode (``buffer`` ``auto``: the server cuts the clauses);
- the end of the turn (:meth:`flush_audio`) is ``flush`` then ``close``: the server
  speaks what it still buffers at once (``flushed`` says when its audio is all sent)
  and ends the context with ``audio_end``;
- our ``timestamps`` become Pipecat word timestamps, so its output transport releases
  each word as it is played and the assistant context holds what was spoken;
- an interruption (:meth:`on_audio_context_interrupted`) is a ``cancel`` of that
  context on the same connection: nothing of it follows the server's reply, so there
  is no reconnect and the next turn starts at once.

The connection opens at pipeline start (``setup``) and carries every turn; routing of
untagged audio frames to their context is ``streamer.client.ClientProtocol``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Final

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, WebsocketTTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.types import NOT_GIVEN, NotGiven
from websockets.protocol import State

from streamer.client import (
    AudioEnd,
    ClientProtocol,
    Delivery,
    ErrorEvent,
    Interrupted,
    Timestamps,
)

from .._options import DEFAULT_URL, VoiceOptions, auth_headers

log = logging.getLogger(__name__)

#: Largest message we accept: a binary frame is ``chunk_size`` samples (≤ 48000 ×
#: 4 bytes) and a ``timestamps`` event a few kB, so 1 MiB leaves room and bounds memory.
MAX_MESSAGE_BYTES: Final = 1 << 20
#: How often an idle connection says ``keepalive``: well inside the server's
#: ``server.idle_timeout_s`` (300 s by default), so a quiet agent keeps its connection.
KEEPALIVE_INTERVAL_S: Final = 60.0
#: How long Pipecat waits for the next audio of a context before it takes the context
#: as finished (its ``stop_frame_timeout_s``, 3 s by default, a guard against providers
#: that never say "done"). Ours always do: every context ends with ``audio_end``,
#: ``interrupted`` or an error (an open one gets no text for ``tts.context_idle_s``,
#: 20 s: ``context_idle``, then ``audio_end``). A turn whose LLM pauses for a tool call,
#: or a loaded machine, can leave more than 3 s between two segments' audio; cut there,
#: the rest of the turn would be lost. So the guard waits out the server's own rule.
AUDIO_GAP_TIMEOUT_S: Final = 30.0
#: ``buffer.mode`` per Pipecat aggregation mode: Pipecat already cut the sentences, so
#: the server speaks each as sent; tokens are cut by the server's own rules.
BUFFER_MODES: Final = {TextAggregationMode.SENTENCE: "none", TextAggregationMode.TOKEN: "auto"}


@dataclass
class StreamerTTSSettings(TTSSettings):
    """Runtime settings (``TTSUpdateSettingsFrame``): ``voice``, ``language`` and
    ``speed`` (0.5–2.0). A change applies from the next context (turn) on."""

    speed: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


class StreamerTTSService(WebsocketTTSService):
    """Pipecat TTS over the MIT-TTS-Streamer WebSocket (see the module docstring).

    Args:
        url: the server's WebSocket URL (``ws://`` or ``wss://``).
        voice: a voice id from ``GET /api/v1/voices`` or an index in the language's
            list (0 = best); None: the server's default.
        language: BCP-47 (``en``, ``es-MX``) or a Pipecat ``Language``.
        speed: speaking rate, 0.5–2.0.
        sample_rate: output rate; None (the usual): the pipeline's
            ``audio_out_sample_rate``. The server resamples to it.
        api_key: sent as ``Authorization: Bearer`` at the handshake.
        text_aggregation_mode: Pipecat's: ``SENTENCE`` (default) or ``TOKEN``.
    """

    Settings = StreamerTTSSettings
    _settings: StreamerTTSSettings

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        voice: int | str | None = None,
        language: Language | str | None = None,
        speed: float | None = None,
        sample_rate: int | None = None,
        api_key: str | None = None,
        text_aggregation_mode: TextAggregationMode | None = None,
        settings: StreamerTTSSettings | None = None,
        **kwargs: Any,
    ) -> None:
        defaults = StreamerTTSSettings(
            model=None,
            voice=None if voice is None else str(voice),
            language=language,
            speed=speed,
        )
        if settings is not None:
            defaults.apply_update(settings)
        kwargs.setdefault("stop_frame_timeout_s", AUDIO_GAP_TIMEOUT_S)
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            # Words come timed from the server: Pipecat pushes them as they play.
            push_text_frames=False,
            push_start_frame=True,
            sample_rate=sample_rate,
            settings=defaults,
            **kwargs,
        )
        self._url = url
        self._api_key = api_key
        self._protocol = ClientProtocol()
        #: Contexts opened on the server (a ``text`` sent) that have not ended.
        self._server_contexts: set[str] = set()
        self._receive_task: asyncio.Task[None] | None = None

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        # The server takes BCP-47 and forgives case and "_"; Pipecat's codes are BCP-47.
        return str(language.value)

    # --- connection ----------------------------------------------------------------------
    # Pipecat's FrameProcessor narrows BaseObject.setup's argument; we keep its signature.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        await self._connect()

    async def _connect(self) -> None:
        await super()._connect()
        await self._connect_websocket()
        if self._websocket is not None and self._receive_task is None:
            self._receive_task = self.create_task(self._receive_task_handler(self._report_error))
        self._create_keepalive_task(KEEPALIVE_INTERVAL_S)

    async def _disconnect(self) -> None:
        await super()._disconnect()
        await self._cancel_keepalive_task()
        if self._receive_task is not None:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        await self._disconnect_websocket()

    async def _connect_websocket(self) -> None:
        if self._websocket is not None and self._websocket.state is State.OPEN:
            return
        try:
            self._websocket = await self._websocket_connect(
                self._url,
                additional_headers=auth_headers(self._api_key) or None,
                max_size=MAX_MESSAGE_BYTES,
                # The server does not ping; ours would only add traffic.
                ping_interval=None,
            )
        except Exception as exc:
            self._websocket = None
            await self.push_error(error_msg=f"cannot connect to {self._url}: {exc}", exception=exc)
            await self._call_event_handler("on_connection_error", str(exc))
            return
        # A new connection is a new server session: no context of the old one lives on.
        self._protocol = ClientProtocol()
        self._server_contexts.clear()
        await self._websocket.send(
            self._protocol.connect_message(self._voice().audio_options(self.sample_rate), None)
        )
        await self._call_event_handler("on_connected")

    async def _disconnect_websocket(self) -> None:
        try:
            await self.stop_all_metrics()
            if self._websocket is not None:
                await self._websocket.close()
        except Exception as exc:  # a connection already gone
            log.debug("closing the connection to %s: %s", self._url, exc)
        finally:
            self._websocket = None
            self._server_contexts.clear()
            await self._call_event_handler("on_disconnected")

    async def _send_keepalive(self) -> None:
        await self._send(self._protocol.keepalive_message())

    async def _send(self, message: str) -> None:
        if self._websocket is None:
            raise ConnectionError(f"not connected to {self._url}")
        await self._websocket.send(message)

    # --- text in -------------------------------------------------------------------------
    def _voice(self) -> VoiceOptions:
        settings = self._settings

        def given(value: Any) -> Any:
            return None if isinstance(value, NotGiven) else value

        language = given(settings.language)
        return VoiceOptions(
            voice=given(settings.voice),
            language=None if language is None else str(language),
            speed=given(settings.speed),
        )

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Send ``text`` to the turn's context (opening it with the first piece); the
        audio arrives on the receive task."""
        try:
            if self._websocket is None or self._websocket.state is not State.OPEN:
                await self._connect()
            if context_id in self._server_contexts:
                message = self._protocol.text_message(context_id, text)
            else:
                message = self._protocol.text_message(
                    context_id,
                    text,
                    config=self._voice().audio_options(self.sample_rate),
                    buffer={"mode": BUFFER_MODES[self._text_aggregation_mode]},
                )
                self._protocol.context(context_id)
                self._server_contexts.add(context_id)
            await self._send(message)
            await self.start_tts_usage_metrics(text)
        except Exception as exc:
            yield ErrorFrame(error=f"{self}: sending text failed: {exc}")
            yield TTSStoppedFrame(context_id=context_id)
            return
        yield None

    async def flush_audio(self, context_id: str | None = None) -> None:
        """End of the turn: ``flush`` the context (speak what the server still buffers
        now, whatever its buffer rule), then ``close`` it (``audio_end`` after the
        last audio). The two go out back to back; ``close`` alone would speak the rest
        too, but the ``flush`` marks the turn's end in the stream (``flushed``) the
        way every framework's TTS protocol does."""
        context_id = context_id or self.get_active_audio_context_id()
        if context_id in self._server_contexts:
            try:
                await self._send(self._protocol.flush_message(context_id))
                await self._send(self._protocol.close_message(context_id))
            except Exception as exc:  # the connection is gone; its contexts with it
                await self.push_error(error_msg=f"{self}: closing the turn failed: {exc}")

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Barge-in: ``cancel`` the context. Nothing of it follows the server's reply,
        so the connection goes on serving the next turn."""
        await self.stop_all_metrics()
        if context_id in self._server_contexts:
            self._server_contexts.discard(context_id)
            try:
                await self._send(self._protocol.cancel_message(context_id))
            except Exception as exc:  # the connection is gone: nothing to cancel
                log.debug("cancel of %s not sent: %s", context_id, exc)
        await super().on_audio_context_interrupted(context_id)

    # --- audio and events out -------------------------------------------------------------
    async def _receive_messages(self) -> None:
        if self._websocket is None:
            return
        async for message in self._websocket:
            for delivery in self._protocol.receive(message):
                await self._deliver(delivery)

    async def _deliver(self, delivery: Delivery) -> None:
        item, context_id = delivery.item, delivery.request_id
        if context_id is None:
            if isinstance(item, ErrorEvent):
                # A refused connect (unknown_language…): every context would fail alike.
                await self.push_error(error_msg=f"{self}: {item.code}: {item.message}")
            return
        if delivery.terminal:
            self._server_contexts.discard(context_id)
        if not self.audio_context_available(context_id):
            return  # a context Pipecat dropped (interrupted): its tail is not played
        if isinstance(item, bytes):
            await self.append_to_audio_context(
                context_id, TTSAudioRawFrame(item, self.sample_rate, 1, context_id=context_id)
            )
        elif isinstance(item, Timestamps):
            await self.add_word_timestamps(
                [(word.word, word.start_ms / 1000) for word in item.words], context_id
            )
        elif isinstance(item, ErrorEvent):
            # context_closed, context_idle… concern one message; synthesis_failed, busy
            # (no room by the time its text was ready) and a refused opening (terminal)
            # end the context.
            await self.push_error(error_msg=f"{self}: {item.code}: {item.message}")
        if delivery.terminal and isinstance(item, (AudioEnd, Interrupted, ErrorEvent)):
            await self.stop_ttfb_metrics()
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            await self.remove_audio_context(context_id)
