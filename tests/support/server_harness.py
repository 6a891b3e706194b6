"""Start the real server on 127.0.0.1 port 0 inside a test, and talk to it.

Configs and services come from ``tests.support.services``; ``production_server`` wires
them as production does instead (``build_services``), for the tests of that wiring."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from streamer.config import Config
from streamer.server import build_services
from streamer.server.app import RunningServer, run_server
from streamer.server.runtime import Services
from tests.support.services import make_config

WAIT = 30.0


@asynccontextmanager
async def running_server(
    config: Config, services: Services | None = None
) -> AsyncIterator[RunningServer]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            server: RunningServer = await nursery.start(
                lambda task_status: run_server(config, services=services, task_status=task_status)
            )
        try:
            yield server
        finally:
            server.shutdown()


@asynccontextmanager
async def production_server(
    *, warm_up: bool, **sections: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    """The server with its services built as production builds them (``build_services``
    from the config), every model loaded before it listens (and run once first with
    ``warm_up``), and audio sent as fast as it is made (``realtime_lead_ms`` 0: tests
    want all the audio now, not paced to playback). ``sections`` go to ``make_config``."""
    config = make_config(
        performance={"realtime_lead_ms": 0, "preload_models": True, "warm_up": warm_up},
        **sections,
    )
    async with running_server(config, build_services(config)) as running:
        yield running


@dataclass
class Client:
    """A WebSocket client that records everything it receives, in order."""

    ws: WebSocketConnection
    received: list[dict[str, Any] | bytes] = field(default_factory=list)
    closed_code: int | None = None
    close_reason: str | None = None

    async def send(self, **message: Any) -> None:
        await self.ws.send_message(json.dumps(message))

    async def receive_one(self) -> None:
        """Record the next message, text or binary."""
        with trio.fail_after(WAIT):
            message = await self.ws.get_message()
        self.received.append(message if isinstance(message, bytes) else json.loads(message))

    async def next_event(self, kind: str | None = None) -> dict[str, Any]:
        """Receive until a text event (of ``kind``) arrives; binary frames are recorded."""
        with trio.fail_after(WAIT):
            while True:
                message = await self.ws.get_message()
                if isinstance(message, bytes):
                    self.received.append(message)
                    continue
                event: dict[str, Any] = json.loads(message)
                self.received.append(event)
                if kind is None or event["type"] == kind:
                    return event

    async def until(self, kind: str, request_id: str | None = None) -> dict[str, Any]:
        while True:
            event = await self.next_event(kind)
            if request_id is None or event.get("request_id") == request_id:
                return event

    async def drain(self, seconds: float) -> None:
        """Record whatever arrives for ``seconds`` (or until the socket closes)."""
        with trio.move_on_after(seconds):
            try:
                while True:
                    message = await self.ws.get_message()
                    self.received.append(
                        message if isinstance(message, bytes) else json.loads(message)
                    )
            except ConnectionClosed as exc:
                self.closed_code = exc.reason.code
                self.close_reason = exc.reason.reason

    async def interrupt_once_audio_flows(self, request_id: str, quiet_s: float) -> dict[str, Any]:
        """Wait for ``request_id``'s first audio, interrupt it, and return the
        ``interrupted`` reply, having checked that nothing at all (no audio, no event)
        arrives in the ``quiet_s`` after it."""
        while not self.audio(request_id):
            await self.receive_one()
        await self.send(type="interrupt", reason="user_request")
        reply = await self.next_event("interrupted")
        mark = len(self.received)
        await self.drain(quiet_s)
        assert self.received[mark:] == [], "something arrived after the interrupted reply"
        return reply

    def audio(self, request_id: str) -> bytes:
        """The binary frames between ``request_id``'s audio_start and its end."""
        out: list[bytes] = []
        current: str | None = None
        for message in self.received:
            if isinstance(message, bytes):
                if current == request_id:
                    out.append(message)
            elif message["type"] == "audio_start":
                current = message["request_id"]
        return b"".join(out)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if isinstance(m, dict) and m["type"] == kind]


@asynccontextmanager
async def ws_client(server: RunningServer) -> AsyncIterator[Client]:
    async with open_websocket_url(f"ws://127.0.0.1:{server.websocket_port}") as ws:
        yield Client(ws)


def rest(server: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=WAIT)
