"""The Pipecat service's end of turn on the wire: ``flush`` then ``close`` of that
context, nothing for a context the server never opened (no socket: a recording one)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from streamer.adapters.pipecat import StreamerTTSService


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))


def test_the_end_of_a_turn_flushes_then_closes_its_context() -> None:
    async def scenario() -> list[dict[str, Any]]:
        service = StreamerTTSService(url="ws://127.0.0.1:1", sample_rate=16000)
        socket = RecordingSocket()
        service._websocket = socket  # type: ignore[assignment]
        service._server_contexts.add("turn-1")
        await service.flush_audio("turn-1")
        await service.flush_audio("never-opened")
        return socket.sent

    sent = asyncio.run(scenario())
    assert sent == [
        {"type": "flush", "context_id": "turn-1"},
        {"type": "close", "context_id": "turn-1"},
    ]
