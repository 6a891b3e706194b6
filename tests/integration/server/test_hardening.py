"""Issue #12's classes of breakage, each over real sockets against the in-process server
(fake engine): bad frames, byte limits, the connection cap under a burst, idle and
half-open connections, hostile REST bodies, keep-alive after a refusal.

Frame-level cases use a raw TCP client (``RawWebSocket``): a WebSocket library would
refuse to send what these tests must send.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import open_websocket_url

from streamer.protocol import ErrorCode
from streamer.server import RunningServer
from streamer.server.http import TrackedConfig, apply_hypercorn_fixes, create_app
from streamer.server.runtime import ServerState
from streamer.server.session import SessionManager
from tests.support.audio_files import FFPROBE, ffprobe_seconds, soundfile_frames
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import WAIT, rest, running_server, ws_client
from tests.support.services import make_config, make_services

#: Bound on a raw socket read in these tests (a healthy server answers in milliseconds).
RAW_TIMEOUT_S = 10.0


@asynccontextmanager
async def serving(**server: Any) -> AsyncIterator[RunningServer]:
    config = make_config(server=server, tts={"default_language": "en"})
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


# --- a raw WebSocket client --------------------------------------------------------------


class RawWebSocket:
    """Just enough of RFC 6455 to send malformed frames and read the server's close."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawWebSocket]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            raw = cls(stream)
            key = base64.b64encode(os.urandom(16)).decode()
            await stream.send_all(
                (
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await raw._read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            yield raw

    async def _fill(self) -> bool:
        with trio.fail_after(RAW_TIMEOUT_S):
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
        self.buffer += data
        return bool(data)

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self._fill():
                raise EOFError(self.buffer)
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not await self._fill():
                raise EOFError(self.buffer)
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    async def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
    ) -> None:
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, (0x80 if mask else 0) | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
        else:
            header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        await self.stream.send_all(header + payload)

    async def close_code(self) -> int | None:
        """Read frames until a close frame (its code) or the end of the stream (None)."""
        while True:
            try:
                first, second = await self._read_exactly(2)
            except EOFError:
                return None
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._read_exactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._read_exactly(8))
            payload = await self._read_exactly(length)
            if first & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005


#: (name, frame arguments, close code RFC 6455 prescribes)
BAD_FRAMES = [
    ("invalid utf-8 text", {"opcode": 0x1, "payload": b"\xff\xfe"}, 1007),
    ("rsv bits", {"opcode": 0x1, "payload": b"{}", "rsv": 0b100}, 1002),
    ("unmasked frame", {"opcode": 0x1, "payload": b"{}", "mask": False}, 1002),
    ("reserved opcode", {"opcode": 0x3, "payload": b""}, 1002),
    ("oversized ping", {"opcode": 0x9, "payload": b"x" * 126}, 1002),
    ("fragmented ping", {"opcode": 0x9, "payload": b"x", "fin": False}, 1002),
    ("invalid close code", {"opcode": 0x8, "payload": struct.pack("!H", 999)}, 1002),
]


@pytest.mark.parametrize(("name", "frame", "expected"), BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
async def test_a_protocol_error_gets_its_close_frame(
    name: str, frame: dict[str, Any], expected: int
) -> None:
    async with serving() as server, RawWebSocket.connect(server.websocket_port) as raw:
        await raw.send_frame(**frame)
        assert await raw.close_code() == expected, name


async def test_the_message_limit_counts_utf8_bytes() -> None:
    # Under a 65,536 limit counted in characters, far over it in bytes on the wire.
    text = json.dumps({"type": "synthesize", "text": "€" * 32_770}, ensure_ascii=False)
    assert len(text) < 65_536 < len(text.encode())
    async with serving(max_message_bytes=65_536) as server:
        async with ws_client(server) as client:
            await client.ws.send_message(text)
            await client.drain(WAIT)
            assert client.closed_code == 1009


async def test_client_faults_over_the_socket_get_error_codes_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    hostile = [
        '{"type":"synthesize","text":"hi","x":' + "9" * 4301 + "}",
        '{"type":"interrupt","reason":"\\ud800"}',
        '{"type":"connect","config":{"\\udfff":1}}',
        '{"type":"synthesize","text":"a\\u0000b","request_id":"nul"}',
        '{"type":"synthesize","text":"x","text":"y"}',
        '{"type":"synthesize","text":NaN}',
        "[" * 10_000,
    ]
    async with serving() as server, ws_client(server) as client:
        for message in hostile:
            await client.ws.send_message(message)
        await client.send(type="synthesize", text="after", request_id="after")
        await client.until("audio_end", "after")
    codes = [e["code"] for e in client.events("error")]
    assert len(codes) == len(hostile) - 1  # the NUL text is spoken (as a space)
    assert all(code in set(ErrorCode) for code in codes)
    assert [e["request_id"] for e in client.events("audio_end")] == ["nul", "after"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- the connection cap, idle and half-open connections ---------------------------------


async def test_the_connection_cap_holds_under_a_burst_of_handshakes() -> None:
    limit, burst = 4, 40
    accepted = refused = 0
    async with serving(max_connections=limit) as server:
        release = trio.Event()

        async def one() -> None:
            nonlocal accepted, refused
            try:
                async with open_websocket_url(f"ws://127.0.0.1:{server.websocket_port}"):
                    accepted += 1
                    await release.wait()
            except Exception:  # the handshake refused with 503
                refused += 1

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for _ in range(burst):
                    nursery.start_soon(one)
                while accepted + refused < burst:
                    if accepted == limit and refused == burst - limit:
                        break
                    await trio.sleep(0.01)
                release.set()
    assert (accepted, refused) == (limit, burst - limit)


async def test_an_idle_connection_is_closed_with_1000_idle_timeout() -> None:
    async with serving(idle_timeout_s=0.3) as server, ws_client(server) as client:
        await client.drain(WAIT)  # records until the server closes
        assert client.closed_code == 1000
    assert client.close_reason == "idle_timeout"


async def test_a_connection_that_is_speaking_is_not_idle() -> None:
    async with serving(idle_timeout_s=0.2) as server, ws_client(server) as client:
        # Five seconds of audio, paced: the connection is busy well past the timeout.
        await client.send(type="synthesize", text="One. " * 50, request_id="long")
        event = await client.until("audio_end", "long")
        assert event["duration_ms"] >= 1000


async def test_a_peer_that_never_answers_pings_is_dropped() -> None:
    async with serving(ping_interval_s=0.2) as server:
        async with RawWebSocket.connect(server.websocket_port) as raw:
            # Never reads, so never answers: the server aborts it within two intervals.
            with trio.fail_after(WAIT):
                while await raw._fill():
                    pass


async def test_a_half_sent_upgrade_is_dropped_after_the_handshake_timeout() -> None:
    async with serving(handshake_timeout_s=0.2) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.websocket_port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            with trio.fail_after(WAIT):
                assert await stream.receive_some(1024) == b""


async def test_http_connection_close_closes_the_connection() -> None:
    async with serving() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.http_port)
        async with stream:
            await stream.send_all(
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            received = b""
            with trio.fail_after(WAIT):
                while chunk := await stream.receive_some(65536):
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200")


async def test_an_idle_keep_alive_http_connection_is_closed() -> None:
    async with serving(http_keep_alive_timeout_s=0.2) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.http_port)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            with trio.fail_after(WAIT):
                while chunk := await stream.receive_some(65536):
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200")


# --- hostile HTTP -------------------------------------------------------------------------


async def test_a_rest_interrupt_cannot_break_another_clients_connection() -> None:
    async with serving() as server, ws_client(server) as victim, rest(server) as http:
        await victim.send(type="connect", config={})
        session_id = (await victim.next_event("connected"))["session_id"]
        url = f"/api/v1/interrupt/{session_id}"
        for body in (b'{"reason":"\\ud800"}', json.dumps({"reason": "x" * (1 << 20)}).encode()):
            response = await http.post(url, content=body)
            assert response.status_code in (400, 413), response.text
            assert response.json()["error"]["code"] in set(ErrorCode)
        await victim.send(type="synthesize", text="Still here.", request_id="ok")
        assert (await victim.until("audio_end", "ok"))["request_id"] == "ok"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/sessions", b"\xff\xfe{}"),
        ("/api/v1/sessions", b"[" * 100_000),
        ("/api/v1/interrupt/s-none", b"\xc3\x28"),
        ("/api/v1/interrupt/s-none", b"[" * 100_000),
        ("/v1/audio/speech", b'{"model":"tts-1","input":"hi","voice":["a"]}'),
        ("/v1/audio/speech", b'{"model":"tts-1","input":"hi","voice":"fake-en",'
                             b'"response_format":{"a":1}}'),
        ("/v1/audio/speech", b'{"model":"tts-1","input":["hi"],"voice":"fake-en"}'),
        ("/v1/audio/speech", b"\xff"),
    ],
)
async def test_hostile_bodies_get_4xx_in_the_json_shape(path: str, body: bytes) -> None:
    async with serving() as server, rest(server) as http:
        response = await http.post(path, content=body)
        assert 400 <= response.status_code < 500, response.text
        error = response.json()["error"]
        assert error["code"] in set(ErrorCode)
        assert isinstance(error["message"], str)


async def test_oversized_bodies_and_headers_get_json_bodies() -> None:
    async with serving() as server, rest(server) as http:
        too_big = await http.post("/v1/audio/speech", content=b"x" * (2 << 20))
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "message_too_big"
        huge_header = await http.get("/health", headers={"x-big": "y" * 70_000})
        assert huge_header.status_code in (400, 431)
        assert huge_header.json()["error"]["code"] in set(ErrorCode)


def _three_speech_requests(port: int) -> list[int]:
    """Three speech requests on ONE keep-alive connection (blocking; in a thread)."""
    body = {"model": "tts-1", "voice": "fake-en", "input": "Hello.", "response_format": "pcm"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        return [http.post("/v1/audio/speech", json=body).status_code for _ in range(3)]


async def test_refusals_do_not_stall_a_keep_alive_connection() -> None:
    # The HTTP app alone, not ready yet (models loading): 503 not_ready, on one
    # connection, must not stall the request after it.
    config = make_config(tts={"default_language": "en"})
    state = ServerState(ready=False)
    app = create_app(SessionManager(make_services(config, [FakeEngine()])), state)
    apply_hypercorn_fixes()
    hconfig = TrackedConfig()
    hconfig.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        serve = partial(hypercorn_serve, app, hconfig, shutdown_trigger=stop.wait)
        binds = await nursery.start(serve)
        port = int(binds[0].rsplit(":", 1)[1])
        with trio.fail_after(WAIT):
            assert await trio.to_thread.run_sync(_three_speech_requests, port) == [503] * 3
            state.ready = True
            assert await trio.to_thread.run_sync(_three_speech_requests, port) == [200] * 3
        stop.set()


# --- everyday use (issue #19) on the HTTP surfaces -------------------------------------


async def test_rest_voices_for_an_unknown_language_answers_like_the_websocket() -> None:
    async with serving() as server, rest(server) as http:
        response = await http.get("/api/v1/voices", params={"language": "zz"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unknown_language"
        assert "en-US" in response.json()["error"]["details"]["available"]
        assert (await http.get("/api/v1/voices", params={"language": "en"})).json()["count"]


async def test_openai_flac_is_a_whole_file_with_its_real_length() -> None:
    import io

    import soundfile as sf

    async with serving() as server, rest(server) as http:
        body = {"model": "tts-1", "voice": "fake-en", "input": "One. Two. Three.",
                "response_format": "flac"}
        response = await http.post("/v1/audio/speech", json=body)
        assert response.status_code == 200
        data, rate = sf.read(io.BytesIO(response.content))
        assert rate == 24000
        assert abs(len(data) / rate - 0.3) < 0.05  # 3 segments x 2 chunks x 50 ms


async def test_language_auto_speaks_the_texts_language() -> None:
    async with serving() as server, ws_client(server) as client:
        await client.send(type="connect", config={"language": "auto"})
        await client.next_event("connected")
        await client.send(type="synthesize", request_id="es",
                          text="Hola, ¿cómo estás? Espero que tengas un buen día hoy.")
        await client.send(type="synthesize", request_id="en",
                          text="Hello, how are you? I hope you have a good day today.")
        await client.until("audio_end", "en")
        starts = {e["request_id"]: e["voice"] for e in client.events("audio_start")}
    assert starts == {"es": "fake-es", "en": "fake-en"}


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_openai_responses_open_in_the_usual_readers(fmt: str, tmp_path: Path) -> None:
    """Every response_format, read back as a file: soundfile (where libsndfile reads the
    format) agrees on the length; ffprobe reads it; flac states its exact length; wav is
    streamed as OpenAI's is (both sizes "unknown": ``wave`` reports 2^31 - 1 frames)."""
    async with serving() as server, rest(server) as http:
        body = {"model": "tts-1", "voice": "fake-en", "input": "One. Two. Three.",
                "response_format": fmt}
        response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 200
    if fmt == "pcm":  # raw 24 kHz s16le, as OpenAI documents
        assert abs(len(response.content) / 2 / 24000 - 0.3) < 0.05
        return
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(response.content)
    if fmt in ("mp3", "opus", "flac", "wav"):
        assert abs(soundfile_frames(path) / 24000 - 0.3) < 0.1
    if FFPROBE is not None:
        if fmt == "flac":
            assert ffprobe_seconds(path) * 24000 == soundfile_frames(path)
        done = await trio.run_process(
            [FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "json",
             str(path)], capture_stdout=True, capture_stderr=True,
        )
        assert json.loads(done.stdout)["format"]
    if fmt == "wav":
        with wave.open(str(path), "rb") as reader:
            assert reader.getnframes() == 0x7FFFFFFF


async def test_idleness_counts_from_the_end_of_the_audio_not_the_last_message() -> None:
    # Busy for longer than the timeout, then silent: closed only a full timeout after
    # its listener's audio ran out (found by scripts.reliability: it closed at once).
    async with serving(idle_timeout_s=0.5) as server, ws_client(server) as client:
        await client.send(type="synthesize", text="One. " * 10, request_id="r1")  # 1 s
        await client.until("audio_end", "r1")
        ended = trio.current_time()
        await client.drain(WAIT)
        closed_after = trio.current_time() - ended
    assert client.closed_code == 1000 and client.close_reason == "idle_timeout"
    # The audio (1 s, sent at once: paced 2 s ahead) plays on after audio_end; the close
    # comes 0.5 s after it runs out, not when it runs out. (A lower bound: a slow or
    # paused machine only makes it later.)
    assert closed_after >= 1.0 + 0.5 - 0.2


async def test_a_half_sent_http_body_is_dropped_after_the_read_timeout() -> None:
    async with serving(http_read_timeout_s=0.5) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.http_port)
        async with stream:
            await stream.send_all(
                b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}"
            )
            with trio.fail_after(WAIT):
                while await stream.receive_some(65536):
                    pass  # the server may answer 4xx first; then it must close
