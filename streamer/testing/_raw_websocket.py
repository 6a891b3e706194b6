"""A WebSocket client that can write any frame, valid or not: the attacker's half.

``trio-websocket`` (like every library) only writes frames RFC 6455 allows, and refuses
to send a text message that is not UTF-8. Hostile clients are not so polite, so this
client writes its own frames (``frame``: any opcode, RSV bits, FIN, masked or not, any
payload) and uses ``wsproto`` only for what a client must get right to be heard at all:
the upgrade request, and parsing what the server sends back.

Everything the server sends comes out of ``RawWebSocket.receive`` in order as ``str``
(a text message), ``bytes`` (a binary message) or ``Closed`` (its close frame's code
and reason, 1006 when the TCP connection ended without one). Pings are answered
inside ``receive``: a client that never pongs is, to the server, a dead peer.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Final

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

#: Frame opcodes (RFC 6455 §5.2); 0x3-0x7 and 0xB-0xF are reserved.
CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
#: RFC 6455 §7.4.1: the close code of a connection that ended without a close frame.
ABNORMAL_CLOSURE: Final = 1006
#: Bytes read from the socket at a time.
RECEIVE_BYTES: Final = 65536


@dataclass(frozen=True, slots=True)
class Closed:
    """The server's close frame (or 1006 and "" when the TCP connection just ended)."""

    code: int
    reason: str


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status (``status``, ``body``), or
    closed the TCP connection before answering (``status`` None)."""

    def __init__(self, status: int | None, body: bytes) -> None:
        super().__init__(f"handshake refused: {status}")
        self.status = status
        self.body = body


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
) -> bytes:
    """One frame on the wire (RFC 6455 §5.2). ``rsv``: the three RSV bits as a number
    0-7. ``mask_key`` None writes an unmasked frame (illegal from a client); a client's
    frames are masked with a random key by ``RawWebSocket.send_frame``."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    mask_bit = 0x80 if mask_key is not None else 0
    length = len(payload)
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask_key is None:
        return header + payload
    return header + mask_key + masked(payload, mask_key)


def masked(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (masking and unmasking alike)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def wire_bytes(text: str) -> bytes:
    """``text`` as a careless client encodes it: lone surrogates become the 3-byte
    sequences UTF-8 forbids (so the frame is not UTF-8, and the server must say 1007)."""
    return text.encode("utf-8", "surrogatepass")


class RawWebSocket:
    """One client connection (see the module docstring). Not safe for two tasks sending
    at once; one task may send while another receives."""

    def __init__(self, stream: trio.SocketStream, protocol: WSConnection) -> None:
        self.stream = stream
        self._protocol = protocol
        self._pending: deque[Event] = deque()
        self._text: list[str] = []
        self._binary: list[bytes] = []
        self._send_lock = trio.Lock()
        #: Set once the connection has ended (the server's close, or 1006).
        self.closed: Closed | None = None

    @classmethod
    async def open(cls, host: str, port: int, *, target: str = "/") -> RawWebSocket:
        """Connect and complete the upgrade; ``HandshakeRefused`` if the server refuses
        it (its HTTP status and body) or hangs up."""
        stream = await trio.open_tcp_stream(host, port)
        try:
            protocol = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(protocol.send(Request(host=f"{host}:{port}", target=target)))
            client = cls(stream, protocol)
            await client._handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return client

    async def _handshake(self) -> None:
        status: int | None = None
        body = b""
        while True:
            data = await self._read()
            self._protocol.receive_data(data)
            for event in self._protocol.events():
                if isinstance(event, AcceptConnection):
                    self._pending.extend(self._protocol.events())
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeRefused(status, body)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise HandshakeRefused(status, body)
            if data is None:
                raise HandshakeRefused(status, body)

    async def _read(self) -> bytes | None:
        """Bytes from the socket; None at its end (EOF or reset)."""
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except trio.BrokenResourceError:
            return None
        return data or None

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is (frames, parts of frames, garbage)."""
        async with self._send_lock:
            await self.stream.send_all(data)

    async def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        rsv: int = 0,
        masked_frame: bool = True,
    ) -> None:
        """One frame, masked with a random key unless ``masked_frame`` is False."""
        key = os.urandom(4) if masked_frame else None
        await self.send_raw(frame(opcode, payload, fin=fin, rsv=rsv, mask_key=key))

    async def send_text(self, text: str | bytes) -> None:
        """A text frame of ``text`` (a ``str`` goes through ``wire_bytes``; ``bytes``
        are sent as they are, UTF-8 or not)."""
        await self.send_frame(TEXT, wire_bytes(text) if isinstance(text, str) else text)

    async def send_binary(self, data: bytes) -> None:
        await self.send_frame(BINARY, data)

    async def receive(self) -> str | bytes | Closed:
        """The next message from the server, or how the connection ended (every call
        after the end returns the same ``Closed``)."""
        while True:
            while self._pending:
                message = await self._handle(self._pending.popleft())
                if message is not None:
                    return message
            if self.closed is not None:
                return self.closed
            data = await self._read()
            if data is None:
                self._protocol.receive_data(None)  # queues CloseConnection(1006)
            else:
                self._protocol.receive_data(data)
            self._pending.extend(self._protocol.events())

    async def _handle(self, event: Event) -> str | bytes | Closed | None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                text, self._text = "".join(self._text), []
                return text
        elif isinstance(event, BytesMessage):
            self._binary.append(bytes(event.data))
            if event.message_finished:
                data, self._binary = b"".join(self._binary), []
                return data
        elif isinstance(event, Ping):
            try:
                await self.send_raw(self._protocol.send(event.response()))
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                # The server is gone, or its close frame came right after the ping:
                # receive() reports how the connection ended when it gets there.
                pass
        elif isinstance(event, CloseConnection):
            self.closed = Closed(event.code, event.reason or "")
            self._pending.clear()
            await self._end(event)
            return self.closed
        return None

    async def _end(self, event: CloseConnection) -> None:
        """Answer the server's close frame (RFC 6455 §5.5.1), then close the socket."""
        if event.code != ABNORMAL_CLOSURE:
            try:
                await self.send_raw(self._protocol.send(event.response()))
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                pass  # best effort: the server may be gone already
        await trio.aclose_forcefully(self.stream)

    async def aclose(self, code: int = 1000) -> None:
        """Close from our side (a close frame, best effort) and drop the socket."""
        if self.closed is None:
            self.closed = Closed(code, "")
            try:
                await self.send_raw(frame(CLOSE, code.to_bytes(2, "big"), mask_key=os.urandom(4)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(self.stream)
