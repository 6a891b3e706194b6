"""The sans-IO protocol: no event loop, no sockets."""

from __future__ import annotations

import json

import pytest

from streamer.protocol import (
    REQUEST_TRANSITIONS,
    AudioConfig,
    AudioEnd,
    AudioStart,
    ClientError,
    Connect,
    ConnectionState,
    Error,
    ErrorCode,
    Interrupt,
    Interrupted,
    LocalProtocolError,
    Priority,
    Queued,
    RequestState,
    ServerProtocol,
    Synthesize,
    check_request_transition,
    parse_client_message,
    render,
)


def parse(obj: object, limit: int = 100) -> object:
    return parse_client_message(json.dumps(obj), max_text_length=limit)


def test_connect_with_the_seed_shape() -> None:
    msg = parse(
        {
            "type": "connect",
            "config": {"language": "es", "voice_id": 0, "format": "wav", "sample_rate": 22050},
        }
    )
    assert msg == Connect(
        config=AudioConfig(language="es", voice_id=0, format="wav", sample_rate=22050)
    )


def test_synthesize_with_the_seed_shape() -> None:
    msg = parse(
        {
            "type": "synthesize",
            "text": "Hola",
            "priority": "critical",
            "request_id": "r-1",
            "config": {"speed": 1.25, "chunk_size": 512, "language": "en", "voice_id": "x"},
        }
    )
    assert msg == Synthesize(
        text="Hola",
        priority=Priority.CRITICAL,
        request_id="r-1",
        config=AudioConfig(speed=1.25, chunk_size=512, language="en", voice_id="x"),
    )


def test_defaults() -> None:
    msg = parse({"type": "synthesize", "text": "x"})
    assert isinstance(msg, Synthesize)
    assert msg.priority is Priority.NORMAL and msg.request_id is None
    assert parse({"type": "interrupt"}) == Interrupt(reason="user_request")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        ('{"type": "sing"}', ErrorCode.UNKNOWN_TYPE),
        ('{"text": "no type"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "synthesize"}', ErrorCode.MISSING_TEXT),
        ('{"type": "synthesize", "text": null}', ErrorCode.MISSING_TEXT),
        ('{"type": "synthesize", "text": "   "}', ErrorCode.EMPTY_TEXT),
        ('{"type": "synthesize", "text": 5}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "synthesize", "text": "' + "a" * 101 + '"}', ErrorCode.TEXT_TOO_LONG),
        ('{"type": "synthesize", "text": "a", "priority": "urgent"}', ErrorCode.UNKNOWN_PRIORITY),
        ('{"type": "synthesize", "text": "a", "priority": 2}', ErrorCode.UNKNOWN_PRIORITY),
        ('{"type": "synthesize", "text": "a", "request_id": "a b"}', ErrorCode.INVALID_REQUEST_ID),
        ('{"type": "synthesize", "text": "a", "config": {"speed": -1}}', ErrorCode.INVALID_SPEED),
        ('{"type": "synthesize", "text": "a", "config": {"speed": 3}}', ErrorCode.INVALID_SPEED),
        ('{"type": "synthesize", "text": "a", "config": {"speed": "x"}}', ErrorCode.INVALID_SPEED),
        ('{"type": "synthesize", "text": "a", "config": {"format": 1}}', ErrorCode.UNKNOWN_FORMAT),
        ('{"type": "synthesize", "text": "a", "config": {"colour": 1}}', ErrorCode.INVALID_CONFIG),
        ('{"type": "synthesize", "text": "a", "config": []}', ErrorCode.INVALID_CONFIG),
        ('{"type": "connect", "config": {"voice_id": -1}}', ErrorCode.UNKNOWN_VOICE),
        ('{"type": "connect", "config": {"language": ""}}', ErrorCode.UNKNOWN_LANGUAGE),
        ('{"type": "connect", "config": {"sample_rate": 1.5}}', ErrorCode.UNSUPPORTED_SAMPLE_RATE),
        ('{"type": "connect", "config": {"chunk_size": true}}', ErrorCode.INVALID_CHUNK_SIZE),
        ('{"type": "connect", "session_id": 7}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "interrupt", "reason": ""}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "interrupt", "reason": 7}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "connect", "session_id": "s 1"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "connect", "config": {"speed": NaN}}', ErrorCode.INVALID_JSON),
        ('{"type": "interrupt", "type": "connect"}', ErrorCode.INVALID_JSON),
        ('{"type": "interrupt", "reason": "\\ud800"}', ErrorCode.INVALID_JSON),
    ],
)
def test_bad_input_has_a_stable_code(raw: str, code: ErrorCode) -> None:
    with pytest.raises(ClientError) as info:
        parse_client_message(raw, max_text_length=100)
    assert info.value.code is code
    assert info.value.message


def test_error_keeps_request_id_when_known() -> None:
    with pytest.raises(ClientError) as info:
        parse({"type": "synthesize", "text": "", "request_id": "abc"})
    assert info.value.request_id == "abc"


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ClientError) as info:
        parse_client_message(b"\x00\x01", max_text_length=10)
    assert info.value.code is ErrorCode.BINARY_NOT_SUPPORTED


def test_message_size_is_checked_when_given() -> None:
    assert ServerProtocol(max_text_length=50).receive(
        '{"type": "interrupt", "x": "' + "é" * 600 + '"}'
    )
    with pytest.raises(ClientError) as info:
        ServerProtocol(max_text_length=50, max_message_bytes=1024).receive(
            '{"type": "interrupt", "x": "' + "é" * 600 + '"}'
        )
    assert info.value.code is ErrorCode.MESSAGE_TOO_BIG


def test_connection_state_machine() -> None:
    proto = ServerProtocol(max_text_length=50)
    assert proto.state is ConnectionState.AWAITING_CONNECT
    proto.receive('{"type": "interrupt"}')
    assert proto.state is ConnectionState.AWAITING_CONNECT
    proto.receive('{"type": "connect"}')
    assert proto.state is ConnectionState.READY
    with pytest.raises(ClientError) as info:
        proto.receive('{"type": "connect"}')
    assert info.value.code is ErrorCode.ALREADY_CONNECTED
    assert proto.state is ConnectionState.READY  # a refused message changes nothing
    proto.receive('{"type": "synthesize", "text": "hi"}')
    proto.close()
    with pytest.raises(LocalProtocolError):
        proto.receive('{"type": "interrupt"}')


def test_synthesize_first_connects_implicitly_and_refusal_allows_retry() -> None:
    proto = ServerProtocol(max_text_length=50)
    proto.receive('{"type": "synthesize", "text": "hi"}')
    assert proto.state is ConnectionState.READY
    proto.session_refused()
    assert proto.state is ConnectionState.AWAITING_CONNECT
    proto.receive('{"type": "connect"}')


def test_request_transition_table() -> None:
    assert check_request_transition(RequestState.QUEUED, RequestState.PLAYING)
    assert check_request_transition(RequestState.PLAYING, RequestState.INTERRUPTED)
    with pytest.raises(LocalProtocolError):
        check_request_transition(RequestState.FINISHED, RequestState.PLAYING)
    with pytest.raises(LocalProtocolError):
        check_request_transition(RequestState.QUEUED, RequestState.FINISHED)
    terminal = [s for s, nxt in REQUEST_TRANSITIONS.items() if not nxt]
    assert set(terminal) == {
        RequestState.FINISHED,
        RequestState.INTERRUPTED,
        RequestState.DROPPED,
        RequestState.FAILED,
        RequestState.REFUSED,
    }


def test_audio_config_merge() -> None:
    base = AudioConfig(language="es", format="wav", speed=1.0)
    merged = base.merged(AudioConfig(format="mp3", speed=1.5))
    assert merged == AudioConfig(language="es", format="mp3", speed=1.5)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Queued("r1", 0), {"type": "queued", "request_id": "r1", "position": 0}),
        (
            Interrupted("r1", "user_request", ("r2",)),
            {
                "type": "interrupted",
                "request_id": "r1",
                "reason": "user_request",
                "dropped": ["r2"],
            },
        ),
        (
            Interrupted(None, "user_request"),
            {"type": "interrupted", "reason": "user_request", "dropped": []},
        ),
        (
            AudioEnd("r1", 3, 100, 250),
            {
                "type": "audio_end",
                "request_id": "r1",
                "chunks": 3,
                "bytes": 100,
                "duration_ms": 250,
            },
        ),
        (
            Error(ErrorCode.BUSY, "later", details={"retry_after_ms": 5}),
            {"type": "error", "code": "busy", "message": "later", "details": {"retry_after_ms": 5}},
        ),
    ],
)
def test_render(event: object, expected: dict[str, object]) -> None:
    assert json.loads(render(event)) == expected  # type: ignore[arg-type]


def test_audio_start_renders_format_fields() -> None:
    out = json.loads(render(AudioStart("r", "mp3", 24000, 1, "high", "v", bitrate=64)))
    assert out == {
        "type": "audio_start",
        "request_id": "r",
        "format": "mp3",
        "sample_rate": 24000,
        "channels": 1,
        "priority": "high",
        "voice": "v",
        "bitrate": 64,
    }
