"""The Wyoming server (``streamer/adapters/wyoming``) end to end: the ``wyoming``
package's own asyncio client (as Home Assistant uses it) against our server on port 0,
with the real Piper voice checked by ear (Whisper tiny.en); hostile bytes on raw
sockets against the fake engine.

The client is asyncio and the server Trio: each conversation runs the client in a
worker thread with its own event loop, which is how any Wyoming client sees us."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import numpy as np
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from streamer.adapters.wyoming import (
    MAX_HEADER_BYTES,
    WyomingAddress,
    WyomingCode,
    encode_event,
    run_wyoming,
)
from streamer.protocol import ErrorCode
from streamer.server import RunningServer, build_services
from streamer.server.runtime import RequestOutcome
from tests.support.fake_engine import FakeEngine
from tests.support.hostile_input import (
    FUZZ,
    Pairs,
    as_bytes,
    hostile_strings,
    hostile_texts,
    hostile_values,
    to_json,
)
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

#: Longest one conversation may take (a few seconds of speech on a loaded machine).
WAIT = 60.0
PIPER_VOICE = "piper-en_US-joe-medium"
SENTENCE = "Hello world, this is a streaming test."
STREAMED = "The kitchen lights are now off. Good night, and sleep well."


def ends_with(kind: str) -> Callable[[Event], bool]:
    return lambda event: event.type == kind


async def converse(
    port: int, events: Sequence[Event], until: Callable[[Event], bool]
) -> list[Event]:
    """Send ``events`` with the ``wyoming`` package's ``AsyncTcpClient`` and return
    what the server answers, up to the first event ``until`` accepts."""

    async def session() -> list[Event]:
        async with AsyncTcpClient("127.0.0.1", port, read_timeout=WAIT) as client:
            for event in events:
                await client.write_event(event)
            received: list[Event] = []
            while (event := await client.read_event()) is not None:
                received.append(event)
                if until(event):
                    break
            return received

    with trio.fail_after(WAIT + 5):
        return await trio.to_thread.run_sync(lambda: asyncio.run(session()))


def audio_of(events: Sequence[Event]) -> tuple[np.ndarray, int]:
    """The PCM of the audio events, checked for Wyoming's shape: one ``audio-start``
    first, chunks in its format, ``audio-stop`` last."""
    kinds = [e.type for e in events if e.type.startswith("audio-")]
    assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop", kinds
    assert set(kinds[1:-1]) == {"audio-chunk"}, kinds
    start = AudioStart.from_event(next(e for e in events if AudioStart.is_type(e.type)))
    assert (start.width, start.channels) == (2, 1)
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert all((c.rate, c.width, c.channels) == (start.rate, 2, 1) for c in chunks)
    pcm = b"".join(c.audio for c in chunks)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768, start.rate


def assert_heard(audio: np.ndarray, rate: int, words: Sequence[str], at_least: int) -> None:
    from tests.support.asr import transcribe

    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0.1
    heard = transcribe(audio, rate).split()
    # Whisper tiny mishears a word now and then under load: most content words suffice;
    # noise or a wrong voice never gives them.
    assert sum(w in heard for w in words) >= at_least, heard


# --- the real voice ----------------------------------------------------------------------


@pytest.fixture
async def piper() -> AsyncIterator[RunningServer]:
    config = make_config(
        server={"wyoming_port": 0},
        tts={"default_language": "en"},
        performance={"preload_models": True, "warm_up": True},
    )
    async with running_server(config, build_services(config)) as running:
        yield running


@pytest.mark.slow
async def test_describe_lists_our_voices_with_streaming(piper: RunningServer) -> None:
    assert piper.wyoming_port is not None
    (event,) = await converse(piper.wyoming_port, [Describe().event()], ends_with("info"))
    (program,) = Info.from_event(event).tts
    assert program.supports_synthesize_streaming and program.installed
    voices = {v.name: v for v in program.voices}
    assert voices[PIPER_VOICE].languages == ["en-US"]
    assert "English" in (voices[PIPER_VOICE].description or "")
    assert "espeak-es" in voices  # every installed voice, not only the default's language


@pytest.mark.slow
async def test_one_shot_synthesize_is_intelligible(piper: RunningServer) -> None:
    assert piper.wyoming_port is not None
    request = Synthesize(text=SENTENCE, voice=SynthesizeVoice(name=PIPER_VOICE))
    events = await converse(piper.wyoming_port, [request.event()], ends_with("audio-stop"))
    audio, rate = audio_of(events)
    assert rate == 22050
    assert AudioStop.from_event(events[-1]).timestamp == len(audio) * 1000 // rate
    assert_heard(audio, rate, ("hello", "world", "streaming", "test"), at_least=3)
    # Shared with the other surfaces: the same metrics saw the request.
    assert piper.manager.services.metrics.requests[RequestOutcome.FINISHED] >= 1


@pytest.mark.slow
async def test_streamed_text_is_spoken_once_and_ends_with_synthesize_stopped(
    piper: RunningServer,
) -> None:
    assert piper.wyoming_port is not None
    tokens = [t + " " for t in STREAMED.split()]
    events = [
        SynthesizeStart(voice=SynthesizeVoice(name=PIPER_VOICE)).event(),
        *(SynthesizeChunk(text=t).event() for t in tokens),
        # What Home Assistant sends "for backwards compatibility": must not speak twice.
        Synthesize(text=STREAMED, voice=SynthesizeVoice(name=PIPER_VOICE)).event(),
        SynthesizeStop().event(),
    ]
    received = await converse(piper.wyoming_port, events, ends_with("synthesize-stopped"))
    assert SynthesizeStopped.is_type(received[-1].type)
    assert not [e for e in received if Error.is_type(e.type)]
    audio, rate = audio_of(received[:-1])
    assert_heard(audio, rate, ("kitchen", "lights", "off", "good", "night", "sleep"), at_least=4)
    # Once, not twice: ~3.5 s of speech for this text at Piper's pace.
    assert len(audio) / rate < 6.0


@pytest.mark.slow
async def test_one_connection_serves_requests_in_order(piper: RunningServer) -> None:
    assert piper.wyoming_port is not None
    events = [
        Describe().event(),
        Synthesize(text="First.").event(),
        Event("no-such-event"),
        Synthesize(text="Second one.").event(),
    ]
    stops = 0

    def second_stop(event: Event) -> bool:
        nonlocal stops
        stops += AudioStop.is_type(event.type)
        return stops == 2

    received = await converse(piper.wyoming_port, events, second_stop)
    kinds = [e.type for e in received if e.type != "audio-chunk"]
    # describe and the error are answered at once; the requests in order.
    assert kinds.count("info") == 1 and kinds.count("error") == 1
    requests = [k for k in kinds if k.startswith("audio-")]
    assert requests == ["audio-start", "audio-stop", "audio-start", "audio-stop"]


@pytest.mark.slow
async def test_tts_streamer_wyoming_serves_alone() -> None:
    # What `tts-streamer wyoming` runs: its own engines, no WebSocket or HTTP server.
    config = make_config(tts={"default_language": "en"})
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: run_wyoming(
                config, WyomingAddress("127.0.0.1", 0), task_status=task_status
            )
        )
        request = Synthesize(text="Hi there.").event()
        events = await converse(port, [request], ends_with("audio-stop"))
        audio, rate = audio_of(events)
        assert rate == 22050 and len(audio) > rate // 4
        nursery.cancel_scope.cancel()


# --- the fake engine: errors and hostile clients -----------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[RunningServer]:
    config = make_config(server={"wyoming_port": 0}, tts={"default_language": "en"})
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


def _not_json(name: str) -> object:
    raise AssertionError(f"the server sent {name}, which is not JSON")


class RawClient:
    """Bytes to the server, events back. The server's events are read as any Wyoming
    client reads them (``json.loads``, no NaN), not by our strict reader: an error's
    text may quote what the client sent (a noncharacter, say), which is JSON still."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(65536)
            if not data:
                return False
            self.buffer += data
        return True

    async def next(self) -> Event | None:
        """The next event; None when the server closed the connection."""
        with trio.fail_after(WAIT):
            while (end := self.buffer.find(b"\n")) < 0:
                if not await self._fill(len(self.buffer) + 1):
                    return None
            header = json.loads(self.buffer[:end], parse_constant=_not_json)
            del self.buffer[: end + 1]
            data_length = header.get("data_length") or 0
            payload_length = header.get("payload_length") or 0
            assert await self._fill(data_length + payload_length), "an event cut short"
            data = header.get("data") or {}
            if data_length:
                data |= json.loads(self.buffer[:data_length], parse_constant=_not_json)
            payload = bytes(self.buffer[data_length : data_length + payload_length])
            del self.buffer[: data_length + payload_length]
            return Event(header["type"], data, payload or None)

    async def until(self, kind: str) -> list[Event]:
        out: list[Event] = []
        while (event := await self.next()) is not None:
            out.append(event)
            if event.type == kind:
                return out
        raise AssertionError(f"closed before {kind}: {[e.type for e in out]}")


async def raw(server: RunningServer) -> RawClient:
    assert server.wyoming_port is not None
    return RawClient(await trio.open_tcp_stream("127.0.0.1", server.wyoming_port))


def error_of(event: Event | None) -> Error:
    assert event is not None and Error.is_type(event.type), event
    return Error.from_event(event)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not json\n", "invalid_json"),
        (b'{"type": "synthesize", "data": {"text": 5}}\n', "invalid_message"),
        (b'{"type": "synthesize", "data": {"text": "hi", "voice": {"name": "nope"}}}\n',
         "unknown_voice"),
        (b'{"type": "synthesize", "data": {"text": "hi", "voice": {"language": "xx"}}}\n',
         "unknown_language"),
        (encode_event(Event("detect")), "unknown_type"),
        (encode_event(SynthesizeChunk(text="orphan").event()), "no_stream"),
        (b'{"type": "audio-chunk", "payload_length": 3}\nabc', "unknown_type"),
    ],
)  # fmt: skip
async def test_a_bad_event_gets_an_error_and_the_connection_goes_on(
    fake: RunningServer, data: bytes, code: str
) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(data)
        error = error_of(await client.next())
        assert error.code == code and error.text
        if code in ("unknown_voice", "unknown_language"):
            # A refused synthesize still ends with audio-stop (Home Assistant waits for it).
            assert (await client.next()) == AudioStop(timestamp=None).event()
        await client.send(encode_event(Ping(text="still there?").event()))
        assert (await client.next()) == Event("pong", {"text": "still there?"})


@pytest.mark.parametrize(
    "data",
    [
        b"x" * (MAX_HEADER_BYTES + 10),
        json.dumps({"type": "synthesize", "payload_length": 10**12}).encode() + b"\n",
        json.dumps({"type": "synthesize", "data_length": "lots"}).encode() + b"\n",
    ],
)
async def test_a_broken_frame_gets_an_error_then_the_connection_closes(
    fake: RunningServer, data: bytes
) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(data)
        error = error_of(await client.next())
        assert error.code in ("message_too_big", "invalid_message")
        assert await client.next() is None
    # The server serves the next connection.
    assert fake.wyoming_port is not None
    (info,) = await converse(fake.wyoming_port, [Describe().event()], ends_with("info"))
    assert Info.from_event(info).tts[0].voices


async def test_a_stream_refused_at_start_still_ends_with_synthesize_stopped(
    fake: RunningServer,
) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(
            encode_event(SynthesizeStart(voice=SynthesizeVoice(name="missing")).event())
            + encode_event(SynthesizeChunk(text="Hello there. ").event())
            + encode_event(SynthesizeStop().event())
        )
        events = await client.until("synthesize-stopped")
        assert [e.type for e in events] == ["error", "synthesize-stopped"]
        assert error_of(events[0]).code == "unknown_voice"


async def test_a_failing_synthesis_reports_synthesis_failed_and_audio_stop(
    fake: RunningServer,
) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(encode_event(Synthesize(text="please FAIL now").event()))
        events = await client.until("audio-stop")
        assert [e.type for e in events] == ["error", "audio-stop"]
        assert error_of(events[0]).code == "synthesis_failed"


async def test_a_stream_speaks_its_text_when_the_client_half_closes(fake: RunningServer) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(
            encode_event(SynthesizeStart().event())
            + encode_event(SynthesizeChunk(text="Never stopped").event())
        )
        await client.stream.send_eof()
        events = await client.until("synthesize-stopped")
        assert [e.type for e in events if e.type != "audio-chunk"] == [
            "audio-start", "audio-stop", "synthesize-stopped"
        ]  # fmt: skip
        # The stream was admitted as a real-time listener and gave its claim back
        # before synthesize-stopped went out.
        assert fake.manager.services.admission.streams == 0
        assert await client.next() is None  # then the server closes


async def test_too_many_pipelined_requests_get_queue_full(fake: RunningServer) -> None:
    client = await raw(fake)
    async with client.stream:
        await client.send(b"".join(encode_event(Synthesize(text="hi").event()) for _ in range(6)))
        seen: list[str] = []
        while seen.count("audio-stop") < 4:
            event = await client.next()
            assert event is not None
            seen.append(event.type if event.type != "error" else error_of(event).code or "")
        assert seen.count("queue_full") == 2


async def test_a_client_that_never_finishes_an_event_is_cut_off(
    fake: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamer.adapters.wyoming import _server

    monkeypatch.setattr(_server, "EVENT_TIMEOUT_S", 0.2)  # 30 s in production
    client = await raw(fake)
    async with client.stream:
        await client.send(b'{"type": "describe"')  # no newline, ever
        error = error_of(await client.next())
        assert error.code == "event_timeout"
        assert await client.next() is None


async def test_the_server_shuts_down_with_a_wyoming_stream_open() -> None:
    # An open stream waits for text that never comes: shutdown must not wait for it.
    config = make_config(
        server={"wyoming_port": 0, "shutdown_timeout_s": 1.0}, tts={"context_idle_s": 0}
    )
    with trio.fail_after(WAIT):
        async with running_server(config, make_services(config, [FakeEngine()])) as server:
            client = await raw(server)
            await client.send(
                encode_event(SynthesizeStart().event())
                + encode_event(SynthesizeChunk(text="Still talking, ").event())
            )
            assert (await client.next()) == Event(
                "audio-start", {"rate": 16000, "width": 2, "channels": 1, "timestamp": 0}
            )
        # The server is gone: its end of the connection closed.
        while (event := await client.next()) is not None:
            assert event.type == "audio-chunk"
        await client.stream.aclose()


async def test_the_adapter_is_not_imported_unless_used() -> None:
    code = (
        "import sys, streamer.cli, streamer.server.app;"
        "assert not [m for m in sys.modules if m.startswith(('wyoming', 'streamer.adapters'))]"
    )
    import sys

    result = await trio.run_process([sys.executable, "-c", code], check=False)
    assert result.returncode == 0



# --- property-based: hostile input while a bystander speaks ------------------------------

#: Every code an ``error`` event may carry (protocol_docs/wyoming.md, "Errors").
DOCUMENTED_CODES: Final = frozenset(ErrorCode) | frozenset(WyomingCode)
#: What the server may send at all.
SERVER_EVENTS: Final = frozenset(
    {"error", "pong", "info", "audio-start", "audio-chunk", "audio-stop", "synthesize-stopped"}
)
WYOMING_TYPES: Final = (
    "synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop", "describe",
    "ping", "select-program", "audio-chunk", "transcribe",
)  # fmt: skip
#: Events per example, pipelined in one write.
BATCH: Final = 8


def _line(text: str) -> bytes:
    return as_bytes(text).replace(b"\n", b" ") + b"\n"


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """One event's bytes: Wyoming-shaped with hostile data, any JSON-ish line, a header
    whose lengths cannot be honoured (fatal), or random bytes. Each ends its line: bytes
    left open would join the marker ``ping``'s header line, and its data part would
    then read as a header that never ends (``event_timeout`` after 30 s, which
    test_a_client_that_never_finishes_an_event_is_cut_off covers)."""
    choice = draw(st.integers(0, 9))
    if choice <= 4:
        kind = draw(st.one_of(st.sampled_from(WYOMING_TYPES), hostile_strings))
        fields = st.sampled_from(["text", "voice", "name", "language", "speaker", "text_format"])
        data = Pairs(tuple(draw(st.lists(st.tuples(fields, hostile_values), max_size=3))))
        return _line(to_json(Pairs((("type", kind), ("data", data))), ascii_only=False))
    if choice <= 6:
        return _line(draw(hostile_texts()))
    if choice == 7:
        length = draw(st.one_of(st.integers(-9, -1), st.integers(2**21, 2**40), hostile_strings))
        key = draw(st.sampled_from(["data_length", "payload_length"]))
        return _line(json.dumps({"type": "synthesize", key: length}))
    return draw(st.binary(max_size=200)) + b"\n"


class Fuzzer:
    """Sends batches on one raw connection, reopened when the server closes it; each
    batch ends with a ``ping`` whose text marks the end of its answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client: RawClient | None = None
        self.sent = self.connections = self.marks = 0
        self.codes: Counter[str] = Counter()

    async def exchange(self, batch: list[bytes]) -> None:
        if self.client is None:
            self.client = RawClient(await trio.open_tcp_stream("127.0.0.1", self.port))
            self.connections += 1
        self.marks += 1
        mark = f"mark-{self.marks}"
        self.sent += len(batch)
        try:
            await self.client.send(b"".join(batch) + encode_event(Ping(text=mark).event()))
            while (event := await self.client.next()) is not None:
                assert event.type in SERVER_EVENTS, event
                if Error.is_type(event.type):
                    error = Error.from_event(event)
                    assert error.code in DOCUMENTED_CODES and error.text, error
                    self.codes[error.code] += 1
                if event == Event("pong", {"text": mark}):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # closed while we wrote: a fatal error came first
        await self.client.stream.aclose()
        self.client = None  # a fatal error closed it: the next batch opens another


class Bystander:
    """Speaks one-shot requests on its own connection until told to stop, checking
    each answer is whole and in order."""

    def __init__(self) -> None:
        self.finished = 0
        self.problems: list[str] = []
        self.stop = trio.Event()

    async def run(self, port: int, *, task_status: trio.TaskStatus[None]) -> None:
        client = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
        task_status.started()
        async with client.stream:
            while not self.stop.is_set():
                await client.send(encode_event(Synthesize(text="I am a bystander.").event()))
                kinds = [e.type for e in await client.until("audio-stop")]
                if kinds[0] != "audio-start" or set(kinds[1:-1]) != {"audio-chunk"}:
                    self.problems.append(f"answer {self.finished}: {kinds}")
                self.finished += 1


async def test_hostile_events_get_documented_errors_and_a_bystander_does_not_notice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    config = make_config(server={"wyoming_port": 0}, tts={"default_language": "en"})
    engine = FakeEngine(chunk_seconds=0.02)
    bystander = Bystander()
    async with (
        running_server(config, make_services(config, [engine])) as server,
        trio.open_nursery() as nursery,
    ):
        assert server.wyoming_port is not None
        await nursery.start(bystander.run, server.wyoming_port)
        fuzzer = Fuzzer(server.wyoming_port)
        token = trio.lowlevel.current_trio_token()

        @FUZZ
        @given(st.lists(hostile_events(), min_size=BATCH, max_size=BATCH))
        def hostile_events_get_documented_errors(batch: list[bytes]) -> None:
            trio.from_thread.run(fuzzer.exchange, batch, trio_token=token)

        # Hypothesis runs in a thread; each batch is exchanged in this event loop, where
        # the server and the bystander keep running between examples.
        await trio.to_thread.run_sync(hostile_events_get_documented_errors)
        bystander.stop.set()
    summary = (
        f"{fuzzer.sent} events on {fuzzer.connections} connections, errors "
        f"{dict(fuzzer.codes)}; bystander: {bystander.finished} answers"
    )
    print(summary)
    assert bystander.problems == [] and bystander.finished > 0, summary
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
