"""Graceful shutdown of the real process: ``python -m streamer`` gets SIGTERM/SIGINT
while a WebSocket client is mid-stream; the client must see close code 1001 and the
process must exit 0 within a bound; a speech client that stops reading must not hold
shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.support import REPO_ROOT

REPO = REPO_ROOT
#: Start-up without preloading takes about a second; allow a slow CI machine.
START_TIMEOUT_S = 60
#: The server's own shutdown bound (config) plus process exit.
SHUTDOWN_TIMEOUT_S = 2.0
EXIT_TIMEOUT_S = 10.0

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    """Ports free right now (bind and release; a tiny race we accept in a test)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=1) as r:
            return bool(json.load(r)["ready"])
    except (urllib.error.URLError, OSError, ValueError):
        return False


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Server]:
    """``python -m streamer`` on free ports, ready (``/health``) when this yields;
    killed on the way out if it is still running."""
    http_port, ws_port = _free_ports(2)
    config = {
        "server": {
            "host": "127.0.0.1",
            "http_port": http_port,
            "websocket_port": ws_port,
            "log_file": None,
            "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S,
        },
        "tts": {"default_language": "es", "piper": {"streaming": "clause"}},
        "performance": {"preload_models": False, "warm_up": False},
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "streamer", "--config", str(config_path)],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, http_port, ws_port, log_path)
    try:
        with trio.fail_after(START_TIMEOUT_S):
            while not await trio.to_thread.run_sync(_healthy, http_port):
                assert process.poll() is None, server.log()
                await trio.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            with trio.move_on_after(5, shield=True):
                await process.wait()


@dataclass
class Server:
    process: trio.Process
    http_port: int
    ws_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    async def exit_code(self) -> int:
        """Wait (bounded) for the process to exit."""
        with trio.fail_after(EXIT_TIMEOUT_S):
            return await self.process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_websockets_with_1001_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with serving(tmp_path) as server:
        close_code: int | None = None
        frames = 0
        with trio.fail_after(START_TIMEOUT_S):
            async with open_websocket_url(f"ws://127.0.0.1:{server.ws_port}") as ws:
                await ws.send_message(json.dumps({"type": "connect", "config": {}}))
                await ws.send_message(
                    json.dumps({"type": "synthesize", "text": "Una frase larga. " * 200})
                )
                try:
                    while True:
                        message = await ws.get_message()
                        if isinstance(message, bytes):
                            frames += 1
                            if frames == 1:
                                server.process.send_signal(signum)  # mid-stream
                except ConnectionClosed as closed:
                    close_code = closed.reason.code
        assert frames >= 1
        assert close_code == 1001, server.log()
        assert await server.exit_code() == 0, server.log()
        assert f"received {signum.name}" in server.log() and "stopped" in server.log()


async def test_a_speech_client_that_stops_reading_does_not_hold_shutdown(
    tmp_path: Path,
) -> None:
    # Hypercorn's graceful shutdown waits on streamed responses; ours is bounded.
    async with serving(tmp_path) as server:
        body = {"model": "tts-1", "voice": "espeak-es", "input": "Una frase larga. " * 250,
                "response_format": "wav"}
        async with httpx.AsyncClient(timeout=START_TIMEOUT_S) as http:
            with trio.fail_after(START_TIMEOUT_S):
                async with http.stream(
                    "POST", f"http://127.0.0.1:{server.http_port}/v1/audio/speech", json=body
                ) as response:
                    assert response.status_code == 200
                    async for _ in response.aiter_raw():
                        break  # then read nothing more
                    started = time.monotonic()
                    server.process.send_signal(signal.SIGTERM)
                    assert await server.exit_code() == 0, server.log()
        assert time.monotonic() - started < EXIT_TIMEOUT_S


async def test_a_second_signal_while_stopping_exits_0_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Ctrl-C reaches a whole process group, so a server under a supervisor (``make
    cluster``) gets SIGINT twice: the second, arriving while it stops, must be taken
    as "already stopping", not re-raised as a KeyboardInterrupt traceback.

    A client that never answers the close keeps the server stopping (for up to
    ``shutdown_timeout_s``) while the second signal arrives."""
    from streamer.testing import RawWebSocket

    async with serving(tmp_path) as server:
        silent = await RawWebSocket.open("127.0.0.1", server.ws_port)
        server.process.send_signal(signal.SIGINT)
        with trio.fail_after(EXIT_TIMEOUT_S):
            while "shutting down" not in server.log():
                assert server.process.poll() is None, "stopped before the second signal"
                await trio.sleep(0.01)  # polling the log: the signal's effect
        assert server.process.poll() is None, "stopped before the second signal"
        server.process.send_signal(signal.SIGINT)
        assert await server.exit_code() == 0, server.log()
        log = server.log()
        assert "stopped" in log and "Traceback" not in log and "KeyboardInterrupt" not in log, log
        del silent
