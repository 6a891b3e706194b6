"""The WebSocket side: one nursery per connection, owned by ``serve_connection``.

Tasks of a connection:

- reader (the body of ``_Connection.serve``): drains the socket promptly —
  trio-websocket stops answering pings and close frames while its one-message queue is
  full — parses each message with the sans-IO protocol and hands it to the session;
- writer: the only task that writes the socket. Its sends are shielded and bounded by
  a write deadline: a cancelled send would leave a torn frame on the wire, so a client
  that stops reading is aborted instead;
- scheduler (``Session.run``) and one synthesis task per playing request.

No exception escapes into the server nursery: trio-websocket would end every other
connection with it. A bug in one connection is logged and closes only that one (1011).

Two limits end a connection whose client does not read, both logged as the client's
fault without a traceback: a client whose unread events reach
``Outbox.MAX_QUEUED_EVENTS`` is closed with 1008 ``too_many_messages`` (the close frame
follows the events already queued), and one that leaves a frame unread for
``server.write_timeout_s`` is aborted.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from ...protocol import (
    AudioConfig,
    Cancel,
    ClientError,
    Close,
    CloseCode,
    Connect,
    Error,
    ErrorCode,
    Flush,
    Interrupt,
    Interrupted,
    Keepalive,
    ServerError,
    ServerProtocol,
    Synthesize,
    Text,
    render,
)
from ..cluster import NOTHING, ControlPlane, Receipt
from ..runtime import DRAINING_RETRY_MS, draining_refusal
from ..security import REFUSAL_STATUS, Caller, refusal_body, refusal_headers
from ..session import MAX_QUEUED_EVENTS, CloseRequest, Outbox, OutboxClosed, Session, SessionManager
from ._connections import Connections

log = logging.getLogger(__name__)

#: Bound on a close handshake we start: a dead peer must not hold the connection.
CLOSE_TIMEOUT_S: Final = 2.0
#: The close reason (code 1000) of a connection closed for ``server.idle_timeout_s``.
IDLE_CLOSE_REASON: Final = "idle_timeout"
#: While its session is busy, the idle watchdog looks again this often (cheap: one
#: wake-up per busy connection per second).
IDLE_RECHECK_S: Final = 1.0
#: Counted (errors_total) when a peer does not answer a ping in time.
PING_TIMEOUT: Final = "ping_timeout"
#: The close reason (code 1001) of a connection a draining server lets go.
DRAIN_CLOSE_REASON: Final = "server draining"
#: While draining, a connection whose session still speaks looks again this often.
DRAIN_RECHECK_S: Final = 0.1
#: The handshake refusal body for a server at ``max_connections``.
_FULL_BODY: Final = (
    b'{"error":{"code":"max_connections","message":"server is at max_connections; retry later"}}'
)


class _Connection:
    """State of one accepted WebSocket connection."""

    def __init__(
        self,
        ws: WebSocketConnection,
        manager: SessionManager,
        caller: Caller,
        plane: ControlPlane | None = None,
    ) -> None:
        self.ws = ws
        self.manager = manager
        #: Asked before acting when other replicas share the sessions (else None).
        self.plane = plane if plane is not None and plane.distributed else None
        #: Who authenticated at the handshake: owns the sessions this connection creates.
        self.caller = caller
        config = manager.services.config
        self.protocol = ServerProtocol(
            max_text_length=config.tts.max_text_length,
            max_message_bytes=config.server.max_message_bytes,
        )
        self.outbox = Outbox(on_overflow=self._overflowed)
        self.session: Session | None = None
        self.write_timeout = config.server.write_timeout_s
        self.idle_timeout = config.server.idle_timeout_s
        self.ping_interval = config.server.ping_interval_s
        #: trio clock of the last message read from the client (idle timeout).
        self.last_message_at = trio.current_time()

    @property
    def session_id(self) -> str:
        return self.session.id if self.session else "-"

    def _overflowed(self) -> None:
        """The outbox hit its event limit and is closing with 1008."""
        log.warning(
            "session %s: client sent messages faster than it read the replies "
            "(%d events unread); closing with %d %s",
            self.session_id,
            MAX_QUEUED_EVENTS,
            CloseCode.POLICY_VIOLATION,
            ErrorCode.TOO_MANY_MESSAGES,
        )
        self.manager.services.metrics.count_error(ErrorCode.TOO_MANY_MESSAGES)

    async def writer(self, cancel_connection: trio.CancelScope) -> None:
        """Send queued frames in order until the outbox closes; then end the connection."""
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, CloseRequest):
                    await _close(self.ws, item.code, item.reason)
                    return
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self.write_timeout) as deadline:
                        await self.ws.send_message(item)
                    self.outbox.sent()
                if deadline.cancelled_caught:
                    log.warning(
                        "session %s: client left a frame unread for %.1f s; aborting",
                        self.session_id,
                        self.write_timeout,
                    )
                    await _abort(self.ws)
                    return
        except (ConnectionClosed, OutboxClosed):
            return
        finally:
            cancel_connection.cancel()

    def _attach(
        self, nursery: trio.Nursery, session_id: str | None, config: AudioConfig
    ) -> Session:
        if session_id is not None:
            session = self.manager.get(session_id, self.caller)
            if session.attached:
                raise ClientError(
                    ErrorCode.SESSION_IN_USE,
                    f"session {session.id} is attached to another connection",
                )
            session.configure(config)
        else:
            session = self.manager.create(config, self.caller)
        session.outbox = self.outbox
        self.session = session
        nursery.start_soon(session.run)
        return session

    def dispatch(self, nursery: trio.Nursery, data: str | bytes, received_at: float) -> None:
        """Handle one client message synchronously; client faults become ``error``."""
        try:
            self._handle(nursery, self.protocol.receive(data), received_at)
        except ClientError as error:
            self._report(error)

    async def dispatch_clustered(
        self, nursery: trio.Nursery, data: str | bytes, received_at: float
    ) -> None:
        """``dispatch`` on a replica of a cluster: first the control plane, which may
        have to claim the session a ``connect`` names (created on another replica) or
        charge the text to the key's cluster-wide ``chars_per_minute``; then the same
        synchronous handling. A message the session then refuses is refunded (a
        ``connect`` refused after its claim gives the claim back)."""
        assert self.plane is not None
        receipt: Receipt = NOTHING
        try:
            message = self.protocol.receive(data)
            if isinstance(message, Connect) and message.session_id is not None:
                receipt = await self.plane.claim(message.session_id, self.caller)
            elif isinstance(message, Synthesize | Text) and message.text:
                request_id = message.request_id if isinstance(message, Synthesize) else (
                    message.context_id
                )
                receipt = await self.plane.charge(self.caller, len(message.text), request_id)
            try:
                self._handle(nursery, message, received_at)
            except ClientError:
                receipt.release()
                raise
        except ClientError as error:
            self._report(error)
        except ServerError as error:
            # The control plane is unreachable: this message cannot be served now; the
            # session goes on.
            self._report(ClientError(error.code, error.message, details=error.details))

    def _handle(self, nursery: trio.Nursery, message: object, received_at: float) -> None:
        if isinstance(message, Connect):
            session = self._attach(nursery, message.session_id, message.config)
            self.outbox.put_event(render(session.configure(AudioConfig())))
        elif isinstance(message, Synthesize):
            session = self.session or self._attach(nursery, None, AudioConfig())
            session.submit(message, received_at)
        elif isinstance(message, Interrupt):
            if self.session is None:
                self.outbox.put_event(render(Interrupted(None, message.reason)))
            else:
                self.session.interrupt(message.reason, received_at, message.played_ms)
        elif isinstance(message, Text):
            session = self.session or self._attach(nursery, None, AudioConfig())
            session.text(message, received_at)
        elif isinstance(message, Keepalive):
            # The connection's idle timer was reset when the message was read.
            if self.session is not None:
                self.session.keepalive(message, received_at)
            elif message.context_id is not None:
                raise _no_context(message.context_id)
        elif isinstance(message, Flush | Close | Cancel):
            if self.session is None:
                raise _no_context(message.context_id)
            if isinstance(message, Flush):
                self.session.flush(message, received_at)
            elif isinstance(message, Close):
                self.session.close_context(message, received_at)
            else:
                self.session.cancel(message, received_at)

    def _report(self, error: ClientError) -> None:
        """Answer a refused message: an ``error`` event, or a close where it says so."""
        if error.close_code is not None:  # e.g. 1009 message_too_big: the socket ends
            log.info("session %s: closing with %d %s", self.session_id, error.close_code,
                     error.code)
            self.manager.services.metrics.count_error(error.code)
            self.outbox.close_with(error.close_code, error.code, drop_audio=True)
            return
        if self.session is not None:
            self.session.send_error(error)
            return
        self.manager.services.metrics.count_error(error.code)
        self.protocol.session_refused()
        self.outbox.put_event(
            render(Error(error.code, error.message, error.request_id, error.details))
        )

    async def close_when_drained(self, draining: trio.Event) -> None:
        """Once the server drains, close (1001) as soon as the session has nothing
        queued or playing and its listener's player is dry: its client reconnects,
        through the load balancer, to a replica that stays."""
        await draining.wait()
        while True:
            session = self.session
            if session is None or not session.active(trio.current_time()):
                log.info("session %s: server draining; closing", self.session_id)
                self.outbox.close_with(CloseCode.GOING_AWAY, DRAIN_CLOSE_REASON, drop_audio=False)
                return
            await trio.sleep(DRAIN_RECHECK_S)

    async def close_when_idle(self) -> None:
        """Close the connection (1000 ``idle_timeout``) once, for ``idle_timeout``, the
        client has sent nothing and the session has done nothing (nothing queued or
        playing, its listener's player dry): an idle socket must not hold a connection
        slot forever. Idleness counts from the latest of the two."""
        while True:
            now = trio.current_time()
            session = self.session
            if session is not None and session.active(now):
                await trio.sleep(min(self.idle_timeout, IDLE_RECHECK_S))
                continue
            since = self.last_message_at
            if session is not None:
                since = max(since, session.idle_since())
            due = since + self.idle_timeout
            if now >= due:
                log.info(
                    "session %s: idle for %.0f s; closing", self.session_id, self.idle_timeout
                )
                self.outbox.close_with(CloseCode.NORMAL, IDLE_CLOSE_REASON, drop_audio=False)
                return
            await trio.sleep_until(due)

    async def keep_pinging(self) -> None:
        """Ping every ``ping_interval``; a peer that has not answered the previous ping by
        then is gone (a dead network path sends no close and no RST) and is aborted.

        Pings are control frames written by trio-websocket under its own send lock, so
        they never interleave with the writer's frames; a ping task is only ever
        cancelled with the connection itself.
        """
        answered = True

        async def ping() -> None:
            nonlocal answered
            answered = False
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return
            answered = True

        async with trio.open_nursery() as pings:
            while True:
                await trio.sleep(self.ping_interval)
                if not answered:
                    log.warning(
                        "session %s: no pong within %.0f s; aborting",
                        self.session_id,
                        self.ping_interval,
                    )
                    self.manager.services.metrics.count_error(PING_TIMEOUT)
                    await _abort(self.ws)
                    pings.cancel_scope.cancel()
                    return
                pings.start_soon(ping)

    async def serve(self, draining: trio.Event | None = None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer, nursery.cancel_scope)
            if draining is not None:
                nursery.start_soon(self.close_when_drained, draining)
            if self.idle_timeout > 0:
                nursery.start_soon(self.close_when_idle)
            if self.ping_interval > 0:
                nursery.start_soon(self.keep_pinging)
            while True:
                try:
                    data = await self.ws.get_message()
                except ConnectionClosed:
                    break
                self.last_message_at = trio.current_time()
                if self.outbox.closed:
                    # The writer is closing the connection; keep reading so that
                    # trio-websocket sees the client's close frame, but act on nothing.
                    continue
                try:
                    if self.plane is None:
                        self.dispatch(nursery, data, trio.current_time())
                    else:
                        await self.dispatch_clustered(nursery, data, trio.current_time())
                except OutboxClosed:
                    pass  # this message's reply overflowed the outbox, which now closes
            # The client closed: stop synthesis; nothing more can be delivered.
            nursery.cancel_scope.cancel()


def _no_context(context_id: str) -> ClientError:
    return ClientError(
        ErrorCode.UNKNOWN_CONTEXT,
        f"no context {context_id}: this connection has no session yet",
        request_id=context_id,
    )


async def _close(ws: WebSocketConnection, code: int, reason: str) -> None:
    with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True) as scope:
        await ws.aclose(code, reason)
    if scope.cancelled_caught:
        await _abort(ws)


async def _abort(ws: WebSocketConnection) -> None:
    """Drop the TCP connection without a close handshake (the peer sees 1006)."""
    # aclose() in an already-cancelled scope skips the handshake but still closes the
    # underlying stream in its ``finally``.
    with trio.CancelScope(shield=True) as scope:
        scope.cancel()
        await ws.aclose(CloseCode.INTERNAL_ERROR)


async def _refuse(request: WebSocketRequest, refusal: ClientError) -> None:
    """Answer the handshake with the refusal's status, headers and JSON body (503 with
    ``Retry-After`` for a draining server)."""
    status = REFUSAL_STATUS.get(refusal.code, 503)
    extra = refusal_headers(refusal)
    if status == 503:
        extra["Retry-After"] = str(max(1, DRAINING_RETRY_MS // 1000))
    headers = [(b"content-type", b"application/json")] + [
        (name.lower().encode(), value.encode()) for name, value in extra.items()
    ]
    try:
        await request.reject(status, extra_headers=headers, body=refusal_body(refusal))
    except ConnectionClosed:
        pass


async def serve_connection(
    request: WebSocketRequest,
    manager: SessionManager,
    connections: Connections,
    plane: ControlPlane | None = None,
) -> None:
    """Handle one WebSocket connection from handshake to close. Never raises."""
    if connections.draining.is_set():
        manager.services.metrics.count_error(ErrorCode.DRAINING)
        await _refuse(request, draining_refusal())
        return
    # Origin, credentials and the key's session slot, before anything is accepted.
    try:
        handshake = manager.services.security.admit_websocket(
            {name.decode("latin-1").lower(): value.decode("latin-1")
             for name, value in request.headers},
            request.path,
            request.proposed_subprotocols,
            time.time(),
        )
    except ClientError as refusal:
        log.info("WebSocket handshake from %s refused: %s", request.remote, refusal.code)
        manager.services.metrics.count_error(refusal.code)
        await _refuse(request, refusal)
        return
    slot: Receipt = NOTHING
    try:
        if plane is not None and plane.distributed:
            # The key's max_sessions across every replica (its slot here is taken).
            try:
                slot = await plane.open_slot(handshake.caller)
            except ClientError as refusal:
                log.info("WebSocket handshake from %s refused: %s", request.remote, refusal.code)
                manager.services.metrics.count_error(refusal.code)
                await _refuse(request, refusal)
                return
        await _serve_admitted(request, manager, connections, handshake.caller,
                              handshake.subprotocol, plane)
    finally:
        handshake.lease.release()
        slot.release()


async def _serve_admitted(
    request: WebSocketRequest,
    manager: SessionManager,
    connections: Connections,
    caller: Caller,
    subprotocol: str | None,
    plane: ControlPlane | None,
) -> None:
    if not connections.reserve():
        manager.services.metrics.count_error("max_connections")
        try:
            await request.reject(
                503,
                extra_headers=[(b"retry-after", b"1"), (b"content-type", b"application/json")],
                body=_FULL_BODY,
            )
        except ConnectionClosed:
            pass
        return
    connection: _Connection | None = None
    try:
        try:
            ws = await request.accept(subprotocol=subprotocol)
        except ConnectionClosed:
            return
        connection = _Connection(ws, manager, caller, plane)
        connections.add(connection.outbox)
        await connection.serve(connections.draining)
    except Exception:
        log.exception(
            "session %s: connection failed; closing it with 1011",
            connection.session_id if connection else "-",
        )
        if connection is not None:
            await _close(connection.ws, CloseCode.INTERNAL_ERROR, "internal server error")
    finally:
        if connection is None:
            connections.unreserve()  # the handshake never became a connection
        else:
            connections.discard(connection.outbox)
            connection.outbox.close()
            connection.protocol.close()
            if connection.session is not None:
                manager.remove(connection.session)
