"""Streamed-text contexts in the sans-IO protocol: messages, errors, the context's input
state, timestamps and heard text. No event loop, no sockets."""

from __future__ import annotations

import json

import pytest

from streamer.protocol import (
    CONTEXT_TRANSITIONS,
    MAX_CONTEXT_CHARS,
    MAX_PLAYED_MS,
    AudioConfig,
    AudioStart,
    BufferConfig,
    BufferPolicy,
    Cancel,
    ClientError,
    Close,
    ConnectionState,
    ContextState,
    ErrorCode,
    Flush,
    Flushed,
    Interrupt,
    Interrupted,
    Keepalive,
    LocalProtocolError,
    Priority,
    Queued,
    ServerProtocol,
    StreamedText,
    Text,
    Timestamps,
    WordTimestamp,
    char_alignment,
    check_context_transition,
    heard_char_end,
    parse_client_message,
    render,
)


def parse(obj: object, limit: int = 100) -> object:
    return parse_client_message(json.dumps(obj), max_text_length=limit)


def refused(obj: object, limit: int = 100) -> ClientError:
    with pytest.raises(ClientError) as caught:
        parse(obj, limit)
    return caught.value


# --- messages ------------------------------------------------------------------------


def test_opening_text_with_everything() -> None:
    msg = parse(
        {
            "type": "text",
            "context_id": "c1",
            "text": "Hello, wor",
            "priority": "high",
            "config": {"language": "en", "timestamps": "word"},
            "buffer": {"mode": "auto", "max_delay_ms": 300, "first_min_chars": 5, "max_chars": 100},
            "flush": True,
        }
    )
    assert msg == Text(
        context_id="c1",
        text="Hello, wor",
        flush=True,
        priority=Priority.HIGH,
        config=AudioConfig(language="en", timestamps="word"),
        buffer=BufferConfig(mode="auto", max_delay_ms=300, first_min_chars=5, max_chars=100),
    )


def test_later_text_is_just_text() -> None:
    assert parse({"type": "text", "context_id": "c1", "text": "ld"}) == Text("c1", "ld")


@pytest.mark.parametrize("text", ["", " ", "\n", " world"])
def test_text_may_be_empty_or_spaces(text: str) -> None:
    msg = parse({"type": "text", "context_id": "c1", "text": text})
    assert isinstance(msg, Text) and msg.text == text


def test_control_characters_become_spaces_keeping_offsets() -> None:
    msg = parse({"type": "text", "context_id": "c1", "text": "a\x00b\x07c\td"})
    assert isinstance(msg, Text) and msg.text == "a b c\td"


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"type": "text", "text": "x"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "text", "context_id": "", "text": "x"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "text", "context_id": "a b", "text": "x"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "text", "context_id": 7, "text": "x"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "text", "context_id": "c" * 129, "text": "x"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "text", "context_id": "c1"}, ErrorCode.MISSING_TEXT),
        ({"type": "text", "context_id": "c1", "text": 5}, ErrorCode.INVALID_MESSAGE),
        ({"type": "text", "context_id": "c1", "text": "x" * 101}, ErrorCode.TEXT_TOO_LONG),
        ({"type": "text", "context_id": "c1", "text": "x", "flush": 1}, ErrorCode.INVALID_MESSAGE),
        (
            {"type": "text", "context_id": "c1", "text": "x", "priority": "urgent"},
            ErrorCode.UNKNOWN_PRIORITY,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "config": {"bogus": 1}},
            ErrorCode.INVALID_CONFIG,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "config": {"timestamps": "yes"}},
            ErrorCode.INVALID_CONFIG,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "buffer": "auto"},
            ErrorCode.INVALID_CONFIG,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "buffer": {"mode": "fast"}},
            ErrorCode.INVALID_CONFIG,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "buffer": {"max_chars": 1.5}},
            ErrorCode.INVALID_CONFIG,
        ),
        (
            {"type": "text", "context_id": "c1", "text": "x", "buffer": {"size": 1}},
            ErrorCode.INVALID_CONFIG,
        ),
        ({"type": "flush"}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "flush", "context_id": "c1", "flush_id": ""}, ErrorCode.INVALID_MESSAGE),
        ({"type": "flush", "context_id": "c1", "flush_id": 3}, ErrorCode.INVALID_MESSAGE),
        ({"type": "close", "context_id": None}, ErrorCode.INVALID_REQUEST_ID),
        ({"type": "cancel", "context_id": "c1", "played_ms": -1}, ErrorCode.INVALID_MESSAGE),
        ({"type": "cancel", "context_id": "c1", "played_ms": "5"}, ErrorCode.INVALID_MESSAGE),
        ({"type": "cancel", "context_id": "c1", "played_ms": True}, ErrorCode.INVALID_MESSAGE),
        (
            {"type": "cancel", "context_id": "c1", "played_ms": MAX_PLAYED_MS + 1},
            ErrorCode.INVALID_MESSAGE,
        ),
        ({"type": "interrupt", "played_ms": -5}, ErrorCode.INVALID_MESSAGE),
        ({"type": "keepalive", "context_id": "bad id"}, ErrorCode.INVALID_REQUEST_ID),
    ],
)
def test_bad_context_messages_have_stable_codes(obj: object, code: ErrorCode) -> None:
    error = refused(obj)
    assert error.code is code
    context_id = obj.get("context_id") if isinstance(obj, dict) else None  # type: ignore[union-attr]
    if code not in (ErrorCode.INVALID_REQUEST_ID,) and isinstance(context_id, str):
        assert error.request_id == context_id  # routed to the context's stream


def test_flush_close_cancel_keepalive() -> None:
    assert parse({"type": "flush", "context_id": "c1"}) == Flush("c1")
    assert parse({"type": "flush", "context_id": "c1", "flush_id": "f1"}) == Flush("c1", "f1")
    assert parse({"type": "close", "context_id": "c1"}) == Close("c1")
    assert parse({"type": "cancel", "context_id": "c1"}) == Cancel("c1")
    assert parse({"type": "cancel", "context_id": "c1", "played_ms": 1234}) == Cancel("c1", 1234)
    assert parse({"type": "cancel", "context_id": "c1", "played_ms": 12.6}) == Cancel("c1", 13)
    assert parse({"type": "keepalive"}) == Keepalive()
    assert parse({"type": "keepalive", "context_id": "c1"}) == Keepalive("c1")


def test_interrupt_takes_played_ms() -> None:
    assert parse({"type": "interrupt"}) == Interrupt("user_request")
    assert parse({"type": "interrupt", "played_ms": 900}) == Interrupt("user_request", 900)


def test_timestamps_config_modes() -> None:
    for mode in ("none", "word", "char"):
        msg = parse({"type": "connect", "config": {"timestamps": mode}})
        assert msg.config.timestamps == mode  # type: ignore[attr-defined]


def test_unknown_type_lists_every_type() -> None:
    error = refused({"type": "speak"})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    for name in ("text", "flush", "close", "cancel", "keepalive", "synthesize"):
        assert name in error.message


# --- connection state ---------------------------------------------------------------------


def test_a_text_opens_the_session_like_synthesize() -> None:
    proto = ServerProtocol(max_text_length=100)
    proto.receive('{"type":"text","context_id":"c1","text":"Hi"}')
    assert proto.state is ConnectionState.READY


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"flush","context_id":"c1"}',
        '{"type":"close","context_id":"c1"}',
        '{"type":"cancel","context_id":"c1"}',
        '{"type":"keepalive"}',
    ],
)
def test_context_messages_before_a_session_open_nothing(raw: str) -> None:
    proto = ServerProtocol(max_text_length=100)
    proto.receive(raw)
    assert proto.state is ConnectionState.AWAITING_CONNECT
    proto.receive('{"type":"connect"}')
    proto.receive(raw)
    assert proto.state is ConnectionState.READY


def test_context_transition_table() -> None:
    assert CONTEXT_TRANSITIONS[ContextState.ENDED] == frozenset()
    assert check_context_transition(ContextState.OPEN, ContextState.CLOSED) is ContextState.CLOSED
    with pytest.raises(LocalProtocolError):
        check_context_transition(ContextState.CLOSED, ContextState.OPEN)
    with pytest.raises(LocalProtocolError):
        check_context_transition(ContextState.ENDED, ContextState.CLOSED)


# --- a context's input ---------------------------------------------------------------------


def streamed(idle_s: float = 0.0, **policy: object) -> StreamedText:
    return StreamedText("c1", BufferPolicy(**policy), idle_s=idle_s, now=0.0)  # type: ignore[arg-type]


def texts(segments: list) -> list[str]:  # type: ignore[type-arg]
    return [s.text for s in segments]


def test_segments_carry_offsets_and_release_time() -> None:
    ctx = streamed()
    assert ctx.append("Hi there, my friend", 1.0) == []  # "Hi there," is too short
    segments = ctx.append(",", 2.0)
    assert texts(segments) == ["Hi there, my friend,"]
    assert segments[0].first and segments[0].start == 0 and segments[0].released_at == 2.0
    segments = ctx.append(" bye. Now", 3.0)
    assert texts(segments) == ["bye."] and not segments[0].first
    assert ctx.text[segments[0].start : segments[0].end] == "bye."
    assert ctx.text == "Hi there, my friend, bye. Now"


def test_flush_marks_its_last_segment() -> None:
    ctx = streamed()
    ctx.append("Hello wor", 0.0)
    (segment,) = ctx.flush("f1", 1.0)
    assert segment.text == "Hello wor" and segment.flush_ids == ("f1",)


def test_a_flush_with_nothing_buffered_is_an_empty_marker() -> None:
    ctx = streamed()
    ctx.append("One. ", 0.0)
    ctx.append("Two", 0.0)
    assert texts(ctx.flush(None, 1.0)) == ["Two"]  # "One." went at "Two"
    (marker,) = ctx.flush("f2", 2.0)
    assert marker.text == "" and marker.flush_ids == ("f2",) and marker.start == len(ctx.text)
    assert ctx.flush(None, 3.0) == []


def test_text_with_flush_true() -> None:
    ctx = streamed()
    segments = ctx.append("Hi there", 0.0, flush=True, flush_id=None)
    assert texts(segments) == ["Hi there"]


def test_close_speaks_the_rest_and_refuses_more() -> None:
    ctx = streamed()
    ctx.append("The end", 0.0)
    assert texts(ctx.close(1.0)) == ["The end"]
    assert ctx.state is ContextState.CLOSED and ctx.deadline is None
    for action in (
        lambda: ctx.append("more", 2.0),
        lambda: ctx.flush("f", 2.0),
        lambda: ctx.close(2.0),
    ):
        with pytest.raises(ClientError) as caught:
            action()
        assert caught.value.code is ErrorCode.CONTEXT_CLOSED
        assert caught.value.request_id == "c1"


def test_an_ended_context_refuses_text_too() -> None:
    ctx = streamed()
    ctx.end()
    ctx.end()  # idempotent
    with pytest.raises(ClientError) as caught:
        ctx.append("x", 0.0)
    assert caught.value.code is ErrorCode.CONTEXT_CLOSED and "ended" in caught.value.message


def test_idle_context_is_closed_by_tick() -> None:
    ctx = streamed(idle_s=20.0)
    ctx.append("Half a sentence ", 1.0)
    assert ctx.deadline == pytest.approx(2.0)  # max_delay comes first
    segments, idle = ctx.tick(2.0)
    assert texts(segments) == ["Half a sentence"] and not idle
    assert ctx.deadline == pytest.approx(21.0)
    ctx.keepalive(10.0)
    assert ctx.deadline == pytest.approx(30.0)
    assert ctx.tick(29.0) == ([], False)
    segments, idle = ctx.tick(30.0)
    assert segments == [] and idle and ctx.state is ContextState.CLOSED


def test_idle_close_speaks_what_was_buffered() -> None:
    ctx = streamed(idle_s=5.0, max_delay_ms=0)
    ctx.append("Never finished", 0.0)
    segments, idle = ctx.tick(5.0)
    assert texts(segments) == ["Never finished"] and idle


def test_a_context_holds_at_most_max_context_chars() -> None:
    ctx = streamed()
    ctx.append("x" * (MAX_CONTEXT_CHARS - 1), 0.0)
    with pytest.raises(ClientError) as caught:
        ctx.append("yy", 0.0)
    assert caught.value.code is ErrorCode.TEXT_TOO_LONG
    ctx.append("y", 0.0)


# --- heard text and alignment ---------------------------------------------------------------

WORDS = (
    WordTimestamp("Hello", 0, 400, 0, 5),
    WordTimestamp("there", 450, 800, 7, 12),
    WordTimestamp("friend", 900, 1300, 13, 19),
)


@pytest.mark.parametrize(
    ("played_ms", "end"),
    [(0, 0), (199, 0), (200, 5), (624, 5), (625, 12), (1099, 12), (1100, 19), (99999, 19)],
)
def test_a_word_is_heard_once_half_of_it_played(played_ms: int, end: int) -> None:
    assert heard_char_end(WORDS, played_ms) == end


def test_char_alignment_covers_words_and_gaps() -> None:
    text = "Hello, there friend"
    alignment = char_alignment(text, WORDS)
    assert "".join(alignment.chars) == text
    assert len(alignment.char_start_ms) == len(alignment.char_dur_ms) == len(text)
    assert alignment.char_start_ms[0] == 0 and alignment.char_start_ms[7] == 450
    assert list(alignment.char_start_ms) == sorted(alignment.char_start_ms)
    ends = [s + d for s, d in zip(alignment.char_start_ms, alignment.char_dur_ms, strict=True)]
    assert ends[-1] == 1300


# --- events -----------------------------------------------------------------------------------


def rendered(event: object) -> dict[str, object]:
    return json.loads(render(event))  # type: ignore[arg-type,no-any-return]


def test_timestamps_event_shape() -> None:
    out = rendered(Timestamps("c1", WORDS[:1]))
    assert out == {
        "type": "timestamps",
        "request_id": "c1",
        "words": [{"word": "Hello", "start_ms": 0, "end_ms": 400, "char_start": 0, "char_end": 5}],
    }
    out = rendered(
        Timestamps(
            "c1", WORDS[:1], estimated=True, chars=("H",), char_start_ms=(0,), char_dur_ms=(80,)
        )
    )
    assert out["estimated"] is True and out["chars"] == ["H"] and out["char_dur_ms"] == [80]


def test_flushed_event_shape() -> None:
    assert rendered(Flushed("c1", "f1")) == {
        "type": "flushed",
        "request_id": "c1",
        "flush_id": "f1",
    }


def test_interrupted_keeps_its_old_shape_and_adds_heard_fields() -> None:
    assert rendered(Interrupted("r1", "user_request")) == {
        "type": "interrupted",
        "request_id": "r1",
        "reason": "user_request",
        "dropped": [],
    }
    out = rendered(Interrupted("c1", "cancel", (), 1500, 1200, "", 0, "client"))
    assert out["heard_text"] == "" and out["heard_char_end"] == 0 and out["basis"] == "client"
    assert out["audio_sent_ms"] == 1500 and out["played_ms"] == 1200


def test_context_id_on_queued_and_audio_start() -> None:
    assert rendered(Queued("c1", 0, context_id="c1"))["context_id"] == "c1"
    assert "context_id" not in rendered(Queued("r1", 0))
    start = AudioStart("c1", "pcm", 22050, 1, "normal", "v", context_id="c1")
    assert rendered(start)["context_id"] == "c1"
