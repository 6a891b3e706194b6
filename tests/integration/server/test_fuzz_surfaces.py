"""Property-based fuzzing of the WebSocket, REST and OpenAI surfaces over real sockets
(issue #12), while two bystander sessions of the same server stream.

One in-process server on the fake engine. Each Hypothesis example is a batch of
WebSocket frames and a batch of HTTP requests, sent at the same time:

- the frames go out on one raw connection (``scripts._raw_websocket``: it can send
  text that is not UTF-8), reused across examples and reopened when the server closes
  it. Each frame is followed by a marker (an ``interrupt`` whose reason only this test
  sends), so the replies between two markers belong to one frame, and a batch is
  pipelined in one write. A frame that must end the connection (not UTF-8: 1007; over
  ``server.max_message_bytes`` UTF-8 bytes: 1009) is sent alone, after the replies to
  the frames before it, and its close code is checked;
- the requests go to ``POST /api/v1/sessions``, ``POST /api/v1/interrupt/{id}`` with the
  id of the interruptible bystander, and ``POST /v1/audio/speech``, on one keep-alive
  connection, with bodies that are hostile JSON, route-shaped JSON with hostile fields,
  or bytes that are not UTF-8.

Asserted: every frame gets a documented ``error.code`` (an ``ErrorCode``) or a
documented close code; every HTTP error is our JSON shape with a documented code and
no 500; no traceback or ERROR is logged; and the bystanders keep streaming in order
(each request's audio arrives, ``audio_end`` ends it, nothing is out of order, and the
connection stays open). The interruptible bystander's requests may also end with
``interrupted``: a well-formed REST interrupt is allowed to stop them.

Size: ``TTS_FUZZ_EXAMPLES`` examples (see tests/support/hostile_input.py), each of
``WS_BATCH`` frames and ``HTTP_BATCH`` requests: 10,200 messages by default.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from streamer.config import ServerConfig
from streamer.protocol import MAX_REASON_CHARS, CloseCode, ErrorCode
from streamer.server.app import RunningServer
from streamer.testing import Closed, RawWebSocket, frame, wire_bytes
from tests.support.fake_engine import FakeEngine
from tests.support.hostile_input import (
    FUZZ,
    FUZZ_EXAMPLES,
    Pairs,
    as_bytes,
    config_values,
    hostile_bytes,
    hostile_field,
    hostile_strings,
    hostile_texts,
    hostile_values,
    to_json,
    weighted,
)
from tests.support.server_harness import WAIT, rest, running_server
from tests.support.services import make_config, make_services

#: Frames per example on the WebSocket (markers not counted).
WS_BATCH: Final = 30
#: Requests per example over HTTP.
HTTP_BATCH: Final = 4
#: The default (``server.max_message_bytes``): the longest strings and deepest nesting
#: of the strategies cross it.
MAX_MESSAGE_BYTES: Final = ServerConfig().max_message_bytes
#: Small, so that long texts are refused before the fake engine turns them into audio.
MAX_TEXT_LENGTH: Final = 200
CODES: Final = frozenset(code.value for code in ErrorCode)
#: What the server may send on a WebSocket, besides binary audio frames.
EVENT_TYPES: Final = frozenset(
    {"connected", "queued", "audio_start", "audio_end", "interrupted", "error"}
)
#: The events that answer a message (the others belong to audio that plays).
REPLY_TYPES: Final = frozenset({"connected", "queued", "interrupted", "error"})
#: RFC 6455 §7.4.1: the close code for a text frame that is not UTF-8 (the server's
#: WebSocket library sends it; not in ``CloseCode``, which lists the server's own).
INVALID_PAYLOAD: Final = 1007
MARKER_PREFIX: Final = "zz-fuzz-marker-"
#: Two sentences: two segments of the fake engine, a few frames of audio each.
WITNESS_TEXT: Final = "Hello there. How are you?"


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> object:
        raise AssertionError(f"the server sent {name}, which is not JSON: {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def check_reason(reason: object) -> None:
    """An interrupt reason as sent back (protocol_docs: 1-128 printable characters)."""
    assert isinstance(reason, str) and reason.isprintable(), reason
    assert 1 <= len(reason) <= MAX_REASON_CHARS, len(reason)


def check_event(event: dict[str, Any]) -> None:
    """A text event the server may send, with a documented code if it is an error."""
    assert event.get("type") in EVENT_TYPES, event
    if event["type"] == "error":
        assert event["code"] in CODES and isinstance(event["message"], str), event
    elif event["type"] == "interrupted":
        check_reason(event["reason"])


# --- the bystanders --------------------------------------------------------------------


@dataclass
class Witness:
    """A listener that streams one request after another until ``stop`` and notes
    everything out of order (it never raises: the fuzz goes on and the test reports)."""

    name: str
    #: REST interrupts target this one: ``interrupted`` may end its requests.
    interruptible: bool = False
    session_id: str = ""
    stop: trio.Event = field(default_factory=trio.Event)
    finished: int = 0
    interrupted: int = 0
    audio_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    async def run(self, server: RunningServer, *, task_status: trio.TaskStatus[None]) -> None:
        url = f"ws://127.0.0.1:{server.websocket_port}"
        async with open_websocket_url(url) as ws:
            with trio.fail_after(WAIT):
                await ws.send_message('{"type":"connect"}')
                connected = _strict_json(str(await ws.get_message()))
            assert connected["type"] == "connected", connected
            self.session_id = connected["session_id"]
            task_status.started()
            try:
                number = 0
                while not self.stop.is_set() and not self.problems:
                    number += 1
                    request_id = f"{self.name}-{number}"
                    with trio.fail_after(WAIT):
                        await ws.send_message(
                            json.dumps({"type": "synthesize", "text": WITNESS_TEXT,
                                        "request_id": request_id})
                        )
                        await self._follow(ws, request_id)
            except ConnectionClosed as closed:
                self.problems.append(f"{self.name}: connection closed: {closed.reason}")
            except trio.TooSlowError:
                self.problems.append(f"{self.name}: no audio_end in {WAIT:.0f} s")
            except Exception as exc:  # a surprise is a finding, not a crash of the fuzz
                self.problems.append(f"{self.name}: {exc!r}")

    async def _follow(self, ws: WebSocketConnection, request_id: str) -> None:
        """Receive one request's events: queued, audio_start, audio, audio_end in this
        order (or, if interruptible, ``interrupted`` at any point)."""
        expected = "queued"
        audio = 0
        while True:
            message = await ws.get_message()
            if isinstance(message, bytes):
                if expected != "audio_end":
                    self.problems.append(f"{self.name}: audio before audio_start of {request_id}")
                audio += len(message)
                continue
            event = _strict_json(message)
            check_event(event)
            kind = event["type"]
            if kind == "interrupted" and self.interruptible:
                if event.get("request_id") == request_id or request_id in event["dropped"]:
                    self.interrupted += 1
                    return
                continue  # an interrupt between two requests: nothing to stop
            if kind != expected or event.get("request_id") != request_id:
                self.problems.append(f"{self.name}: expected {expected} of {request_id}, got "
                                     f"{json.dumps(event)[:300]}")
                return
            if kind == "queued":
                expected = "audio_start"
            elif kind == "audio_start":
                expected = "audio_end"
            else:
                if audio == 0 or event["bytes"] != audio:
                    self.problems.append(f"{self.name}: {request_id} ended with {audio} bytes "
                                         f"of audio received, audio_end says {event['bytes']}")
                self.audio_bytes += audio
                self.finished += 1
                return


# --- what is sent ----------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
    """One WebSocket frame to send: text (a ``str``, lone surrogates possible) or
    binary."""

    data: str | bytes

    def __repr__(self) -> str:
        kind = "binary" if isinstance(self.data, bytes) else "text"
        shown = self.data[:120]
        cut = "..." if len(self.data) > len(shown) else ""
        return f"Out({kind}, {len(self.wire)} bytes: {shown!r}{cut})"

    @property
    def wire(self) -> bytes:
        return self.data if isinstance(self.data, bytes) else wire_bytes(self.data)

    def closes_with(self) -> frozenset[int]:
        """The close codes this frame must get; empty if it must get replies instead."""
        codes: set[int] = set()
        if isinstance(self.data, str):
            try:
                self.data.encode("utf-8")
            except UnicodeEncodeError:
                codes.add(INVALID_PAYLOAD)
        if len(self.wire) > MAX_MESSAGE_BYTES:
            codes.add(CloseCode.MESSAGE_TOO_BIG)
        return frozenset(codes)


def _padded_synthesize(size: int) -> str:
    """A valid ``synthesize`` of exactly ``size`` UTF-8 bytes, mostly 3-byte characters
    (fewer characters than bytes: the limit counts bytes)."""
    head = '{"type":"synthesize","text":"€","pad":"'
    room = size - len((head + '"}').encode())
    return head + "€" * (room // 3) + "a" * (room % 3) + '"}'


def ws_frames(witness_ids: Sequence[str]) -> st.SearchStrategy[Out]:
    """Mostly hostile text frames; sometimes binary ones, a ``connect`` to another
    client's session (it must get ``session_in_use``, never the session), or a
    ``synthesize`` just under or over the size limit in bytes."""
    return weighted(
        (20, hostile_texts().map(Out)),
        (2, hostile_texts().map(lambda text: Out(as_bytes(text)))),  # as a binary frame
        (1, st.binary(max_size=64).map(Out)),
        (2, st.sampled_from(witness_ids).map(
            lambda sid: Out(json.dumps({"type": "connect", "session_id": sid}))
        )),
        (1, st.integers(MAX_MESSAGE_BYTES - 2, MAX_MESSAGE_BYTES + 2).map(
            lambda n: Out(_padded_synthesize(n))
        )),
    )


def _marker(number: int) -> str:
    return json.dumps({"type": "interrupt", "reason": f"{MARKER_PREFIX}{number}"})


def _speech_field(plausible: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    # Mostly plausible: a body is valid only if every field is.
    return weighted((3, plausible), (1, hostile_field(plausible)))


_speech_fields: Final = {
    "model": _speech_field(st.sampled_from(["tts-1", "gpt-4o-mini-tts", " "])),
    "input": _speech_field(st.sampled_from(["Hello.", "Hi there. Bye.", "a\x00b", "x" * 201])),
    "voice": _speech_field(
        st.sampled_from(["alloy", "fake-en", "fake-es", "nope", Pairs((("id", "fake-en"),))])
    ),
    "response_format": _speech_field(st.sampled_from(["mp3", "wav", "pcm", "opus", "mp4"])),
    "speed": _speech_field(st.sampled_from([1.0, 0.75, 1.5, 0.25, 4.0])),
    "instructions": _speech_field(st.sampled_from(["calm", ""])),
    "stream_format": _speech_field(st.sampled_from(["audio", "sse", "ws"])),
}


#: The fields an OpenAI client must send; the others are optional.
_SPEECH_REQUIRED: Final = ("model", "input", "voice")


@st.composite
def _speech_body(draw: st.DrawFn) -> Pairs:
    """A speech request that is often valid (so that some are synthesized while the
    rest are refused): each field plausible, hostile or absent, required ones mostly
    present, optional ones mostly absent."""
    pairs: list[tuple[str, object]] = []
    for name, values in _speech_fields.items():
        present = 9 if name in _SPEECH_REQUIRED else 4
        if draw(st.integers(0, 9)) < present:
            pairs.append((name, draw(values)))
    if draw(st.integers(0, 3)) == 0:
        pairs.append((draw(hostile_strings), draw(hostile_values)))
    return Pairs(tuple(draw(st.permutations(pairs))))


_session_body: Final = st.one_of(
    config_values.map(lambda config: Pairs((("config", config),))),
    st.tuples(hostile_strings, hostile_values).map(lambda pair: Pairs((pair,))),
)
_interrupt_body: Final = hostile_field(st.sampled_from(["stop", "user_request"])).map(
    lambda reason: Pairs((("reason", reason),))
)
ROUTES: Final = ("sessions", "interrupt", "speech")
_shaped: Final = {"sessions": _session_body, "interrupt": _interrupt_body, "speech": _speech_body()}


@dataclass(frozen=True)
class HttpRequest:
    route: str
    body: bytes
    content_type: str | None


@st.composite
def http_requests(draw: st.DrawFn) -> HttpRequest:
    route = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 2)):
        body = as_bytes(to_json(draw(_shaped[route]), ascii_only=draw(st.booleans())))
    else:
        body = draw(hostile_bytes)
    content_type = draw(st.sampled_from(["application/json", "text/plain", None]))
    return HttpRequest(route, body, content_type)


# --- the two fuzzers -------------------------------------------------------------------


@dataclass
class WebSocketFuzzer:
    port: int
    ws: RawWebSocket | None = None
    sent: int = 0
    connections: int = 0
    markers: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    async def _connection(self) -> RawWebSocket:
        if self.ws is None or self.ws.closed is not None:
            with trio.fail_after(WAIT):
                self.ws = await RawWebSocket.open("127.0.0.1", self.port)
            self.connections += 1
        return self.ws

    async def exchange(self, batch: Sequence[Out]) -> None:
        """Send ``batch`` and check what comes back (``AssertionError`` naming the
        frame otherwise)."""
        try:
            run: list[Out] = []
            for out in batch:
                if out.closes_with():
                    await self._pipelined(run)
                    run = []
                    await self._closing(out)
                else:
                    run.append(out)
            await self._pipelined(run)
        except BaseException:
            # Replies may still be on their way: the next example starts afresh, so
            # that Hypothesis can replay this one alone.
            if self.ws is not None:
                await self.ws.aclose()
            self.ws = None
            raise

    async def _pipelined(self, run: Sequence[Out]) -> None:
        if not run:
            return
        ws = await self._connection()
        data = bytearray()
        numbers = []
        for out in run:
            self.markers += 1
            numbers.append(self.markers)
            opcode = 0x2 if isinstance(out.data, bytes) else 0x1
            data += frame(opcode, out.wire, mask_key=b"\x5a\x17\x00\xc3")
            data += frame(0x1, _marker(self.markers).encode(), mask_key=b"\x01\x02\x03\x04")

        async def send() -> None:
            try:
                await ws.send_raw(bytes(data))
            except trio.BrokenResourceError:
                pass  # the server closed: the replies read below say after which frame

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                for out, number in zip(run, numbers, strict=True):
                    events = await self._until_marker(ws, out, number)
                    self.sent += 1
                    self._check_replies(out, events)

    async def _until_marker(
        self, ws: RawWebSocket, out: Out, number: int
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        marker = f"{MARKER_PREFIX}{number}"
        while True:
            message = await ws.receive()
            if isinstance(message, Closed):
                raise AssertionError(f"{out!r} closed the connection: {message}")
            if isinstance(message, bytes):
                continue  # audio of a request this frame started
            event = _strict_json(message)
            if event.get("type") == "interrupted" and event.get("reason") == marker:
                return events
            events.append(event)

    def _check_replies(self, out: Out, events: list[dict[str, Any]]) -> None:
        for event in events:
            check_event(event)
            if event["type"] == "error":
                self.outcomes[f"error {event['code']}"] += 1
        replies = [e for e in events if e["type"] in REPLY_TYPES]
        assert replies, f"no reply to {out!r}: {events}"
        if isinstance(out.data, bytes):
            assert replies[0] == {
                "type": "error",
                "code": ErrorCode.BINARY_NOT_SUPPORTED,
                "message": replies[0]["message"],
            }, (out, replies)
        self.outcomes.update(e["type"] for e in replies if e["type"] != "error")

    async def _closing(self, out: Out) -> None:
        """Send a frame that must end the connection, alone; check its close code."""
        ws = await self._connection()
        with trio.fail_after(WAIT):
            opcode = 0x2 if isinstance(out.data, bytes) else 0x1
            try:
                await ws.send_frame(opcode, out.wire)
            except trio.BrokenResourceError:
                pass  # closed before it read the whole frame: the close frame says why
            while True:
                message = await ws.receive()
                if isinstance(message, Closed):
                    break
                if isinstance(message, str):
                    event = _strict_json(message)
                    check_event(event)
                    assert event["type"] != "error", (out, event)
        self.sent += 1
        assert message.code in out.closes_with(), (out, message)
        self.outcomes[f"close {message.code}"] += 1
        self.ws = None


_PATHS: Final = {"sessions": "/api/v1/sessions", "speech": "/v1/audio/speech"}


@dataclass
class HttpFuzzer:
    client: httpx.AsyncClient
    #: The interruptible bystander's session: the target of the REST interrupts.
    victim: str
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    async def exchange(self, batch: Sequence[HttpRequest]) -> None:
        for request in batch:
            path = _PATHS.get(request.route, f"/api/v1/interrupt/{self.victim}")
            headers = {"content-type": request.content_type} if request.content_type else {}
            with trio.fail_after(WAIT):
                response = await self.client.post(path, content=request.body, headers=headers)
            self.sent += 1
            self._check(request, response)

    def _check(self, request: HttpRequest, response: httpx.Response) -> None:
        status = response.status_code
        self.outcomes[f"{request.route} {status}"] += 1
        if status < 400:
            if request.route == "speech":
                assert status == 200 and response.content, (request, response)
                return
            body = _strict_json(response.text)
            if request.route == "sessions":
                assert status == 201 and body["session_id"].startswith("s-"), (request, body)
            else:
                assert status == 200 and body["session_id"] == self.victim, (request, body)
                check_reason(body["reason"])
            return
        # A client's fault: 4xx, or 503 when busy; never 500.
        assert status < 500 or status == 503, (request, status, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), (request, response)
        error = _strict_json(response.text)["error"]
        if request.route == "speech":
            assert set(error) == {"message", "type", "param", "code"}, (request, error)
            assert error["type"] in {"invalid_request_error", "server_error"}, (request, error)
            assert error["param"] is None or isinstance(error["param"], str), (request, error)
        else:
            assert set(error) <= {"code", "message", "details"}, (request, error)
        assert isinstance(error["message"], str), (request, error)
        assert error["code"] in CODES, (request, error)
        self.outcomes[f"{request.route} {error['code']}"] += 1


# --- the test --------------------------------------------------------------------------


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(chunk_seconds=0.05)


async def test_hostile_frames_and_bodies_get_documented_answers_and_bystanders_stream(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    config = make_config(
        tts={"default_language": "en", "default_format": "pcm",
             "max_text_length": MAX_TEXT_LENGTH},
        server={"max_message_bytes": MAX_MESSAGE_BYTES},
    )
    steady, target = Witness("steady"), Witness("target", interruptible=True)
    async with (
        running_server(config, make_services(config, [engine])) as server,
        rest(server) as client,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(steady.run, server)
        await nursery.start(target.run, server)
        ws_fuzzer = WebSocketFuzzer(server.websocket_port)
        http_fuzzer = HttpFuzzer(client, target.session_id)
        token = trio.lowlevel.current_trio_token()

        async def exchange(frames: list[Out], requests: list[HttpRequest]) -> None:
            async with trio.open_nursery() as both:
                both.start_soon(ws_fuzzer.exchange, frames)
                both.start_soon(http_fuzzer.exchange, requests)

        @FUZZ
        @given(
            frames=st.lists(
                ws_frames([steady.session_id, target.session_id]),
                min_size=WS_BATCH, max_size=WS_BATCH,
            ),
            requests=st.lists(http_requests(), min_size=HTTP_BATCH, max_size=HTTP_BATCH),
        )
        def hostile_input_gets_documented_answers(
            frames: list[Out], requests: list[HttpRequest]
        ) -> None:
            trio.from_thread.run(exchange, frames, requests, trio_token=token)

        # Hypothesis runs in a thread: each example is exchanged in this event loop,
        # where the server and the bystanders keep running between examples.
        await trio.to_thread.run_sync(hostile_input_gets_documented_answers)
        steady.stop.set()
        target.stop.set()

    summary = (
        f"websocket: {ws_fuzzer.sent} frames on {ws_fuzzer.connections} connections "
        f"{dict(ws_fuzzer.outcomes)}; http: {http_fuzzer.sent} requests "
        f"{dict(http_fuzzer.outcomes)}; steady: {steady.finished} requests; target: "
        f"{target.finished} finished, {target.interrupted} interrupted"
    )
    print(summary)
    assert steady.problems == [] and target.problems == [], summary
    assert steady.finished > 0 and target.finished + target.interrupted > 0, summary
    assert ws_fuzzer.sent + http_fuzzer.sent >= FUZZ_EXAMPLES * (WS_BATCH + HTTP_BATCH), summary
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
