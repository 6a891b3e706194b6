"""The same client for asyncio programs (most voice-agent frameworks are asyncio).

    from streamer.client.asyncio_client import AsyncioTTSStreamingClient

    async with AsyncioTTSStreamingClient("ws://127.0.0.1:8081") as client:
        await client.connect(language="en", format="pcm")
        async for item in client.synthesize("Hello there"):
            ...

The original specification's form runs too, under its name (``TTSStreamingClient``
here is this class):

    client = TTSStreamingClient("ws://localhost:8081")
    await client.connect()                 # opens the connection, then the session
    await client.synthesize_and_play("Hola mundo", priority="normal")
    await client.close()

Why a native asyncio client rather than the Trio client behind a thread: the routing
and the whole public API live in the loop-independent :class:`BaseStreamingClient`
(over the sans-IO :class:`ClientProtocol`); only the socket, the reader task and the
waiting primitive differ. Here they come from the ``websockets`` library
(``pip install 'mit-tts-streamer[client]'``), so an asyncio program gets plain
coroutines on its own loop: no second event loop, no thread hand-off per frame, and
cancellation works the asyncio way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from ._base import (
    CONNECT_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    REPLY_TIMEOUT_S,
    BaseStreamingClient,
    connection_closed,
)
from ._events import TTSClientError, TTSConnectionError, TTSTimeoutError
from ._protocol import Waitable
from .playback import PlaybackSink

log = logging.getLogger(__name__)

T = TypeVar("T")

#: websockets' receive queue (messages); the reader empties it at once.
MAX_QUEUE: Final = 16
#: Bound on our close handshake.
CLOSE_TIMEOUT_S: Final = 2.0


def _websockets() -> Any:
    try:
        from websockets.asyncio import client
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the asyncio client needs the websockets package: "
            "pip install 'mit-tts-streamer[client]'"
        ) from exc
    return client


class AsyncioTTSStreamingClient(BaseStreamingClient):
    """Streaming TTS client for asyncio; same methods as ``TTSStreamingClient``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reply_timeout: float = REPLY_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        max_message_size: int = MAX_MESSAGE_BYTES,
        sink: PlaybackSink | None = None,
    ) -> None:
        super().__init__(url, reply_timeout=reply_timeout, sink=sink)
        #: Sent as ``Authorization: Bearer`` at the handshake.
        self.api_key = api_key
        #: Verifies a ``wss://`` server (None: the system's CAs, or ``$SSL_CERT_FILE``).
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self._ws: Any = None
        self._reader_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        if self._ws is not None:
            raise RuntimeError("AsyncioTTSStreamingClient is already open")
        await self._open()
        return self

    async def _open_if_needed(self) -> None:
        if self._ws is None:
            await self._open()

    async def _open(self) -> None:
        """Open the WebSocket and start the reader task."""
        client = _websockets()
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        try:
            self._ws = await asyncio.wait_for(
                client.connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.api_key}"}
                    if self.api_key
                    else None,
                    **({"ssl": self.ssl_context} if self.ssl_context is not None else {}),
                    max_size=self.max_message_size,
                    max_queue=MAX_QUEUE,
                    open_timeout=None,
                    # The server does not ping; our pings would only add traffic.
                    ping_interval=None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise TTSTimeoutError(
                f"no WebSocket handshake from {self.url} within {self.connect_timeout} s"
            ) from None
        except InvalidURI as exc:
            raise TTSConnectionError("invalid_url", f"invalid URL {self.url!r}: {exc}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = (exc.response.body or b"").decode("utf-8", "replace")[:200]
            raise TTSConnectionError(
                "handshake_rejected",
                f"{self.url} refused the WebSocket with HTTP {status}: {body}",
                status=status,
            ) from None
        except InvalidHandshake as exc:
            raise TTSConnectionError("handshake_rejected", f"{self.url}: {exc}") from None
        except OSError as exc:
            raise TTSConnectionError(
                "connection_refused", f"cannot connect to {self.url}: {exc.strerror or exc}"
            ) from None
        self._reader_task = asyncio.create_task(self._reader(), name="tts-client-reader")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (code 1000) and end every stream; idempotent."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)
        self._connection_lost(TTSConnectionError("connection_closed", "the client closed"))
        task = self._reader_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reader(self) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = self._ws
        try:
            async for data in ws:
                await self._dispatch(data)
        except ConnectionClosed:
            pass  # close_code below says how
        except Exception:
            log.exception("client reader failed; closing the connection")
            self._connection_lost(TTSClientError("internal_error", "client reader failed"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1011), CLOSE_TIMEOUT_S)
            return
        self.close_code = ws.close_code
        self._connection_lost(connection_closed(ws.close_code, ws.close_reason))

    async def _send_text(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        if self._lost is not None:
            raise self._lost
        if self._ws is None:
            raise TTSConnectionError(
                "not_open",
                "not connected: `await client.connect()` first, or use"
                " `async with AsyncioTTSStreamingClient(url) as client:`",
            )
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            raise connection_closed(self._ws.close_code, self._ws.close_reason) from None

    async def _wait(self, waitable: Waitable, within: float | None) -> bool:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        waitable.subscribe(wake)
        try:
            await asyncio.wait_for(future, within)
        except TimeoutError:
            return False
        return True

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)


#: The original specification's name for its client, which was an asyncio one: its examples run with
#: ``from streamer.client.asyncio_client import TTSStreamingClient``.
TTSStreamingClient = AsyncioTTSStreamingClient
