"""The Trio client: one WebSocket, one reader task, per-request streams.

    async with TTSStreamingClient("ws://127.0.0.1:8081") as client:
        await client.connect(language="es", format="pcm")
        async for item in client.synthesize("Hola, ¿qué tal?"):
            if isinstance(item, bytes):
                play(item)

The reader task drains the socket promptly (trio-websocket stops answering pings and
close frames while its receive queue is full) and routes every message into the inbox
of its request, so a consumer may call ``interrupt()`` from inside its ``async for``:
the reply is routed by the reader while the consumer waits for it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

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

#: trio-websocket's receive queue. The reader empties it at once; a few messages of
#: slack keep the library's own reader (pings, close frames) from ever stalling.
MESSAGE_QUEUE_SIZE: Final = 16
#: Bound on sending one (small, JSON) message: a server that reads nothing for this
#: long is gone, and a send must not be cancelled half-way (it would tear the frame).
SEND_TIMEOUT_S: Final = 10.0
#: Bound on our close handshake; a dead server must not hold ``aclose``.
CLOSE_TIMEOUT_S: Final = 2.0


class TTSStreamingClient(BaseStreamingClient):
    """Streaming TTS client for Trio. Use as an async context manager.

    Methods (from :class:`BaseStreamingClient`): ``connect(**config)``,
    ``synthesize(text, priority=, request_id=, **config)`` (async iterator of ``bytes``
    frames and events; ``await`` it for the whole result), ``synthesize_streaming``
    (frames only), ``submit`` (sent at once), ``interrupt(reason)``,
    ``synthesize_and_play(text, sink=)``; ``aclose()`` / ``close()``. Raises
    :class:`TTSConnectionError` when the server cannot be reached (``status`` 401: no or
    a wrong ``api_key``).

    ``api_key`` is sent as ``Authorization: Bearer`` at the handshake; ``ssl_context``
    verifies a ``wss://`` server (default: the system's CAs, or ``$SSL_CERT_FILE``).

    Unlike the asyncio client, ``connect()`` does not open the connection by itself:
    the reader task needs a nursery, which only ``async with`` gives it in Trio.
    """

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
        self.api_key = api_key
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self._ws: WebSocketConnection | None = None
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._send_lock = trio.Lock()

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("TTSStreamingClient is already open")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            try:
                ws = await self._open(nursery)
            except BaseException:
                nursery.cancel_scope.cancel()
                raise
        except BaseException as exc:
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                # trio-websocket raises a refused handshake (401, 503...) in its reader
                # task, so it leaves through our nursery rather than from _open().
                matched, _ = group.split(ConnectionRejected)
                refused: BaseException | None = matched
                while isinstance(refused, BaseExceptionGroup):
                    refused = refused.exceptions[0]
                if isinstance(refused, ConnectionRejected):
                    raise _rejected(self.url, refused) from None
                raise _only_error(group, exc) from None
            raise
        self._stack, self._nursery, self._ws = stack, nursery, ws
        nursery.start_soon(self._reader, ws)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # Trio wraps the body's exception in a group as it leaves our nursery; the
            # caller wrote no nursery, so give them back the exception they raised.
            if exc is not None and _only_error(group, exc) is exc:
                return  # returning falsy re-raises ``exc`` unchanged
            raise

    async def _open(self, nursery: trio.Nursery) -> WebSocketConnection:
        try:
            with trio.fail_after(self.connect_timeout):
                return await connect_websocket_url(
                    nursery,
                    self.url,
                    self.ssl_context,
                    extra_headers=[(b"authorization", f"Bearer {self.api_key}".encode())]
                    if self.api_key
                    else None,
                    message_queue_size=MESSAGE_QUEUE_SIZE,
                    max_message_size=self.max_message_size,
                )
        except trio.TooSlowError:
            raise TTSTimeoutError(
                f"no WebSocket handshake from {self.url} within {self.connect_timeout} s"
            ) from None
        except ConnectionRejected as exc:
            raise _rejected(self.url, exc) from None
        except HandshakeError as exc:
            raise TTSConnectionError("handshake_rejected", f"{self.url}: {exc}") from None
        except OSError as exc:
            raise TTSConnectionError(
                "connection_refused", f"cannot connect to {self.url}: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:
            raise TTSConnectionError("invalid_url", f"invalid URL {self.url!r}: {exc}") from None

    async def aclose(self) -> None:
        """Close the connection (code 1000) and end every stream; idempotent."""
        ws = self._ws
        if ws is not None and not ws.closed:
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await ws.aclose()
        self._connection_lost(TTSConnectionError("connection_closed", "the client closed"))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _reader(self, ws: WebSocketConnection) -> None:
        """Route every message until the connection ends; never raises (an exception
        here would surface inside the caller's ``async with``)."""
        try:
            while True:
                data = await ws.get_message()
                await self._dispatch(data)
        except ConnectionClosed as exc:
            reason = exc.reason
            self.close_code = reason.code if reason is not None else None
            self._connection_lost(
                connection_closed(self.close_code, reason.reason if reason else None)
            )
        except Exception:
            log.exception("client reader failed; closing the connection")
            self._connection_lost(TTSClientError("internal_error", "client reader failed"))
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await ws.aclose(1011)

    async def _send_text(self, text: str) -> None:
        if self._lost is not None:
            raise self._lost
        ws = self._ws
        if ws is None:
            raise TTSConnectionError(
                "not_open", "use `async with TTSStreamingClient(url) as client:`"
            )
        async with self._send_lock:
            # Shielded: a send cancelled mid-frame would corrupt the stream.
            with trio.CancelScope(shield=True), trio.move_on_after(SEND_TIMEOUT_S) as scope:
                try:
                    await ws.send_message(text)
                except ConnectionClosed as exc:
                    reason = exc.reason
                    raise connection_closed(
                        reason.code if reason else None, reason.reason if reason else None
                    ) from None
        if scope.cancelled_caught:
            raise TTSTimeoutError(f"the server read nothing for {SEND_TIMEOUT_S} s")

    async def _wait(self, waitable: Waitable, within: float | None) -> bool:
        event = trio.Event()
        waitable.subscribe(event.set)
        with trio.move_on_after(float("inf") if within is None else within):
            await event.wait()
            return True
        return False

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args))


def _rejected(url: str, exc: ConnectionRejected) -> TTSConnectionError:
    body = (exc.body or b"").decode("utf-8", "replace")[:200]
    return TTSConnectionError(
        "handshake_rejected",
        f"{url} refused the WebSocket with HTTP {exc.status_code}: {body}",
        status=exc.status_code,
    )


def _only_error(group: BaseExceptionGroup[BaseException], exc: BaseException) -> BaseException:
    """``exc`` if it is the only exception in ``group`` (nested groups flattened) other
    than cancellations, else the group."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
        elif not isinstance(e, trio.Cancelled) or e is exc:
            leaves.append(e)

    walk(group)
    return exc if leaves == [exc] else group
