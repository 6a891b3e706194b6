"""Clients that do not read what the server sends, over real sockets (port 0).

Two limits keep such a client from holding server memory: the outbox's event limit
(a client that floods messages, each answered with an event, and reads none) and the
writer's ``server.write_timeout_s`` (a client that stops reading while audio streams).
Either way only that connection ends, it is blamed on the client, and its session is
freed; other clients go on.

The stalled client is a trio-websocket client on a socket with a tiny receive buffer:
its reader task takes one message, then stops reading the socket, so the server's
writer blocks as soon as the kernel buffers between them are full.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    wrap_client_stream,
)

from streamer.protocol import CloseCode, ErrorCode
from streamer.server.app import RunningServer
from tests.support.fake_engine import FakeEngine
from tests.support.polling import wait_until
from tests.support.server_harness import WAIT, rest, running_server, ws_client
from tests.support.services import make_config, make_services

#: SO_RCVBUF of the stalled client (the kernel doubles it and has a floor of a few KiB):
#: small, so the server's writer blocks after little has been sent.
TINY_RECEIVE_BUFFER = 4096
#: Bad messages sent between two looks at the server's error count.
FLOOD_BATCH = 64
#: Give up flooding after this many messages: far beyond the outbox's event limit plus
#: any kernel buffering of their (~80-byte) replies; reaching it fails the test.
FLOOD_LIMIT = 200_000
#: A write timeout no step of the flood test comes near, so only the event limit acts.
UNREACHED_WRITE_TIMEOUT_S = 600.0
#: The write timeout under test: small, so the test is quick; the test asserts no bound.
WRITE_TIMEOUT_S = 0.5


@asynccontextmanager
async def stalled_client(server: RunningServer) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket client that takes in almost nothing until the test reads from it."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RECEIVE_BUFFER)
    await sock.connect(("127.0.0.1", server.websocket_port))
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, trio.SocketStream(sock), "127.0.0.1", "/")
        try:
            yield ws
        finally:
            with trio.move_on_after(WAIT, shield=True):
                await ws.aclose()


def event(message: str | bytes) -> dict[str, Any]:
    assert isinstance(message, str), "expected a text event"
    parsed: dict[str, Any] = json.loads(message)
    return parsed


async def read_until_closed(ws: WebSocketConnection) -> tuple[list[str | bytes], int, str | None]:
    """Everything the client still receives, then the close code and reason it sees."""
    received: list[str | bytes] = []
    reason: CloseReason | None = None
    with trio.fail_after(WAIT):
        while reason is None:
            try:
                received.append(await ws.get_message())
            except ConnectionClosed as closed:
                reason = closed.reason
    return received, reason.code, reason.reason


async def wait_until_freed(server: RunningServer, session_id: str) -> None:
    """Wait for the session's connection to end, then check REST no longer lists it."""
    with trio.fail_after(WAIT):
        await wait_until(lambda: session_id not in server.manager.sessions)
    async with rest(server) as http:
        response = await http.get("/api/v1/sessions")
    assert session_id not in {s["session_id"] for s in response.json()["sessions"]}


async def test_flooding_client_is_closed_with_1008_and_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        server={"write_timeout_s": UNREACHED_WRITE_TIMEOUT_S},
    )
    services = make_services(config, [FakeEngine()])
    caplog.set_level(logging.INFO, logger="streamer")
    async with (
        running_server(config, services) as server,
        ws_client(server) as other,
        stalled_client(server) as flooder,
    ):
        await other.send(type="connect", config={})
        await other.next_event("connected")
        await flooder.send_message('{"type": "connect", "config": {}}')
        session_id = event(await flooder.get_message())["session_id"]

        sent = 0
        with trio.fail_after(WAIT):
            while services.metrics.errors[ErrorCode.TOO_MANY_MESSAGES] == 0:
                assert sent < FLOOD_LIMIT, "the outbox never overflowed"
                for _ in range(FLOOD_BATCH):
                    await flooder.send_message("not json")
                sent += FLOOD_BATCH

        # The other session is untouched while the flooder's connection winds down.
        await other.send(type="synthesize", text="Still here.", request_id="o1")
        end = await other.until("audio_end", "o1")
        assert end["bytes"] == len(other.audio("o1")) > 0

        # Reading now, the flooder gets the replies queued before the limit, then 1008.
        received, code, reason = await read_until_closed(flooder)
        assert (code, reason) == (CloseCode.POLICY_VIOLATION, ErrorCode.TOO_MANY_MESSAGES)
        assert 0 < len(received) < sent
        assert all(event(m)["code"] == ErrorCode.INVALID_JSON for m in received)

        await wait_until_freed(server, session_id)

    blamed = [r for r in caplog.records if session_id in r.getMessage()]
    assert any("too_many_messages" in r.getMessage() for r in blamed)
    assert all(r.levelno <= logging.WARNING and r.exc_info is None for r in blamed)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_client_that_stops_reading_is_aborted_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm"},
        server={"write_timeout_s": WRITE_TIMEOUT_S},
    )
    # Seconds-long chunks produced at once: megabytes of audio, more than the kernel
    # buffers between server and client hold.
    services = make_services(config, [FakeEngine(chunks_per_segment=4, chunk_seconds=1.0)])
    long_text = " ".join(f"Sentence number {n} is here." for n in range(100))
    caplog.set_level(logging.INFO, logger="streamer")
    async with running_server(config, services) as server:
        async with stalled_client(server) as stalled:
            await stalled.send_message('{"type": "connect", "config": {}}')
            session_id = event(await stalled.get_message())["session_id"]
            await stalled.send_message(
                '{"type": "synthesize", "request_id": "long", "config": {"realtime": false},'
                f' "text": "{long_text}"}}'
            )
            # It reads nothing more. Meanwhile another client is served as usual.
            async with ws_client(server) as other:
                await other.send(type="synthesize", text="Still here.", request_id="o1")
                end = await other.until("audio_end", "o1")
                assert end["bytes"] == len(other.audio("o1")) > 0

            await wait_until_freed(server, session_id)

            # Aborted, not closed: what the kernel still held arrives, then no close frame.
            _, code, _ = await read_until_closed(stalled)
            assert code == 1006

    blamed = [r for r in caplog.records if session_id in r.getMessage()]
    assert any(
        r.levelno == logging.WARNING and f"{WRITE_TIMEOUT_S:.1f} s" in r.getMessage()
        for r in blamed
    )
    assert all(r.exc_info is None for r in blamed)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
