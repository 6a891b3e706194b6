"""One HTTP/1.1 connection under the tool's control, for what ``httpx`` hides: which
TCP connection a request goes on (keep-alive), a client that stops reading a response,
a socket's receive buffer, and bytes that are not HTTP.

Requests and responses are framed by ``h11`` (the parser under Hypercorn); ``send_raw``
writes anything at all.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final

import h11
import trio

#: Bytes read from the socket at a time.
RECEIVE_BYTES: Final = 65536


@dataclass(slots=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    #: The server said it will close the connection after this response.
    closing: bool = False


class ConnectionEnded(Exception):
    """The server closed the connection before a complete response."""


@dataclass
class HttpConnection:
    """One TCP connection speaking HTTP/1.1 as a client, one request at a time."""

    stream: trio.SocketStream
    host: str
    _h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))

    @classmethod
    async def open(
        cls, host: str, port: int, *, receive_buffer: int | None = None
    ) -> HttpConnection:
        """Connect; ``receive_buffer`` (bytes) sets ``SO_RCVBUF`` before the connect, so
        that a client that stops reading stops the server's writes after that much."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock), f"{host}:{port}")

    async def send_request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send one whole request (with ``Content-Length``)."""
        all_headers = {"host": self.host, "content-length": str(len(body)), **(headers or {})}
        request = h11.Request(method=method, target=target, headers=list(all_headers.items()))
        data = self._h11.send(request) or b""
        if body:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)

    async def read_head(self) -> HttpReply:
        """The status line and headers of the response (the body is left unread)."""
        event = await self._next_event()
        while isinstance(event, h11.InformationalResponse):
            event = await self._next_event()
        if not isinstance(event, h11.Response):
            raise ConnectionEnded(f"expected a response, got {event!r}")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        closing = headers.get("connection", "").lower() == "close"
        return HttpReply(event.status_code, headers, closing=closing)

    async def read_data(self) -> bytes | None:
        """The next piece of the response body; None at its end (``read_head`` first)."""
        event = await self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return None
        raise ConnectionEnded(f"response body ended with {event!r}")

    async def read_reply(self) -> HttpReply:
        """A whole response; afterwards the connection is ready for the next request
        (unless the server is closing it: ``closing``)."""
        reply = await self.read_head()
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise ConnectionEnded(f"response body ended with {event!r}")
        reply.body = bytes(body)
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:
            reply.closing = True
        return reply

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> HttpReply:
        await self.send_request(method, target, body, headers)
        return await self.read_reply()

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. closed in the middle of a body
                raise ConnectionEnded(str(exc)) from None
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionEnded("the server closed the connection")
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11's sentinels are types
            try:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            except trio.BrokenResourceError:
                data = b""
            self._h11.receive_data(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def closed_within(stream: trio.SocketStream, seconds: float) -> float | None:
    """Read and discard until the server closes ``stream``: seconds it took, or None if
    it was still open after ``seconds``."""
    start = trio.current_time()
    with trio.move_on_after(seconds):
        while True:
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                return trio.current_time() - start
    return None


def parse_raw_reply(data: bytes) -> HttpReply | None:
    """A response read off the wire without ``h11`` (after bytes h11 would not send):
    status, headers and the body after them; None if it is not HTTP."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpReply(int(parts[1]), headers, body)
