"""Hostile input to the sans-IO protocol (issue #12): each case becomes a typed message
or a ``ClientError`` with a documented code, and whatever is echoed encodes as UTF-8."""

from __future__ import annotations

import json

import pytest

from streamer.protocol import (
    MAX_JSON_DEPTH,
    MAX_NUMBER_CHARS,
    MAX_REASON_CHARS,
    AudioConfig,
    ClientError,
    CloseCode,
    Connect,
    ConnectionState,
    Error,
    ErrorCode,
    Interrupt,
    Interrupted,
    Priority,
    ServerProtocol,
    Synthesize,
    check_message_size,
    parse_client_message,
    parse_interrupt_reason,
    parse_json_object,
    parse_synthesis_text,
    quote,
    render,
)


def receive(raw: str | bytes, *, max_bytes: int | None = None) -> object:
    return ServerProtocol(max_text_length=100, max_message_bytes=max_bytes).receive(raw)


def refused(raw: str | bytes, *, max_bytes: int | None = None) -> ClientError:
    """The ``ClientError`` for ``raw``, after checking that its reply encodes as UTF-8."""
    with pytest.raises(ClientError) as info:
        receive(raw, max_bytes=max_bytes)
    error = info.value
    assert isinstance(error.code, ErrorCode)
    render(Error(error.code, error.message, error.request_id, error.details)).encode("utf-8")
    return error


# --- numbers -------------------------------------------------------------------------


def test_a_4301_digit_integer_is_invalid_json_not_a_value_error() -> None:
    error = refused('{"type":"synthesize","text":"hi","x":' + "1" * 4301 + "}")
    assert error.code is ErrorCode.INVALID_JSON
    assert "4301 characters" in error.message


def test_numbers_are_bounded_in_characters() -> None:
    fits = "1" + "0" * (MAX_NUMBER_CHARS - 1)
    assert isinstance(receive('{"type":"interrupt","x":' + fits + "}"), Interrupt)
    error = refused('{"type":"interrupt","x":' + fits + "0}")
    assert error.code is ErrorCode.INVALID_JSON
    error = refused('{"type":"interrupt","x":0.' + "5" * MAX_NUMBER_CHARS + "}")
    assert error.code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "template",
    [
        '{{"type":"connect","config":{{"speed":{}}}}}',
        '{{"type":"synthesize","text":"hi","x":{}}}',
        '{{"type":"interrupt","x":[1,{}]}}',
    ],
)
def test_nan_and_infinity_are_not_json(literal: str, template: str) -> None:
    error = refused(template.format(literal))
    assert error.code is ErrorCode.INVALID_JSON
    assert literal in error.message


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1.5e400"])
def test_numbers_beyond_a_double_are_invalid_json(literal: str) -> None:
    error = refused('{"type":"synthesize","text":"hi","x":' + literal + "}")
    assert error.code is ErrorCode.INVALID_JSON


# --- strings that are not Unicode text -----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"interrupt","reason":"\\ud800"}',
        '{"type":"connect","config":{"\\udfff":1}}',
        '{"type":"synthesize","text":"a\\udc00b"}',
        '{"type":"synthesize","text":"hi","request_id":"\\ud800"}',
        '{"type":"connect","session_id":"\\udbff"}',
        '{"type":"interrupt","ignored":["ok",{"deep":"\\ud800"}]}',
        '{"type":"interrupt","\\ud800":1}',
        '{"type":"synthesize","text":"hi","priority":"\\ud83d"}',
        # A low surrogate before a high one is not a pair.
        '{"type":"synthesize","text":"\\ude00\\ud83d"}',
        # Raw (unescaped) surrogates in a str, as a test or another caller may pass.
        '{"type":"interrupt","reason":"\ud800"}',
        # Noncharacters (RFC 7493 §2.1).
        '{"type":"synthesize","text":"\\uffff"}',
        '{"type":"synthesize","text":"\\ufdd0"}',
        '{"type":"synthesize","text":"\U0010fffe"}',
    ],
)
def test_strings_with_surrogates_or_noncharacters_are_invalid_json(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_JSON
    assert "U+" in error.message


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    message = receive('{"type":"synthesize","text":"\\ud83d\\ude00 hi"}')
    assert isinstance(message, Synthesize) and message.text == "\U0001f600 hi"


# --- control characters in text ------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "spoken"),
    [
        ("a\\u0000b", "a b"),
        ("a\\u001bb", "a b"),
        ("a\\u007fb\\u0085c", "a b c"),
        ("tab\\tand\\nnew\\rline", "tab\tand\nnew\rline"),
    ],
)
def test_control_characters_in_text_become_spaces(escaped: str, spoken: str) -> None:
    message = receive('{"type":"synthesize","text":"' + escaped + '"}')
    assert isinstance(message, Synthesize) and message.text == spoken


def test_a_text_of_only_control_characters_is_empty() -> None:
    error = refused('{"type":"synthesize","text":"\\u0000\\u0001","request_id":"r"}')
    assert error.code is ErrorCode.EMPTY_TEXT and error.request_id == "r"


def test_synthesis_text_helper_names_its_field() -> None:
    assert parse_synthesis_text("a\x00b", max_chars=10, field="input") == "a b"
    with pytest.raises(ClientError) as info:
        parse_synthesis_text(["x"], max_chars=10, field="input")
    assert info.value.code is ErrorCode.INVALID_MESSAGE and "'input'" in info.value.message
    with pytest.raises(ClientError) as info:
        parse_synthesis_text(None, max_chars=10, field="input")
    assert info.value.code is ErrorCode.MISSING_TEXT


# --- nesting ---------------------------------------------------------------------------


def test_nesting_is_bounded_before_parsing() -> None:
    # The message object is one level; MAX_JSON_DEPTH - 1 arrays inside it fit.
    fits = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert isinstance(receive('{"type":"interrupt","x":' + fits + "}"), Interrupt)
    error = refused('{"type":"interrupt","x":[' + fits + "]}")
    assert error.code is ErrorCode.INVALID_JSON
    assert f"{MAX_JSON_DEPTH + 1} levels" in error.message


@pytest.mark.parametrize("raw", ["[" * 100_000, "{" * 100_000, '{"a":' * 50_000, "[{" * 40_000])
def test_deep_nesting_is_invalid_json_without_recursion(raw: str) -> None:
    error = refused(raw)
    # Refused by the depth check before parsing, not by a RecursionError half-way
    # down (which depends on how much stack the caller left).
    assert error.code is ErrorCode.INVALID_JSON and "levels deep" in error.message


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[{" * 20 + '\\"]' + "}]" * 5
    message = receive('{"type":"synthesize","text":"' + text + '"}')
    assert isinstance(message, Synthesize) and message.text.startswith("[{[{")


# --- duplicate keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"interrupt","type":"synthesize","text":"hi"}',
        '{"type":"synthesize","text":"hi","text":"bye"}',
        '{"type":"connect","config":{"format":"wav","format":"mp3"}}',
        '{"type":"interrupt","x":[{"a":1,"a":1}]}',
    ],
)
def test_duplicate_keys_are_invalid_json(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_JSON
    assert "duplicate key" in error.message


# --- over-long and unprintable fields ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("language", "e" * 129, ErrorCode.UNKNOWN_LANGUAGE),
        ("language", "en\n", ErrorCode.UNKNOWN_LANGUAGE),
        ("voice_id", "v" * 100_000, ErrorCode.UNKNOWN_VOICE),
        ("voice_id", "voice\u200b", ErrorCode.UNKNOWN_VOICE),
        ("speaker", "\x00", ErrorCode.UNKNOWN_SPEAKER),
        ("format", "wav\t", ErrorCode.UNKNOWN_FORMAT),
    ],
)
def test_config_strings_are_short_and_printable(field: str, value: str, code: ErrorCode) -> None:
    raw = json.dumps({"type": "connect", "config": {field: value}})
    error = refused(raw)
    assert error.code is code
    assert len(error.message) < 200


def test_config_strings_may_be_any_printable_text() -> None:
    message = receive(json.dumps({"type": "connect", "config": {"speaker": "Zoë 2"}}))
    assert message == Connect(config=AudioConfig(speaker="Zoë 2"))


@pytest.mark.parametrize("value", ["s-" + "a" * 127, "s 1", "s-1\n", "s-ü", "", ["s-1"]])
def test_session_ids_have_the_syntax_of_ours(value: object) -> None:
    error = refused(json.dumps({"type": "connect", "session_id": value}))
    assert error.code is ErrorCode.INVALID_MESSAGE


def test_a_request_id_may_not_end_in_a_newline() -> None:
    error = refused('{"type":"synthesize","text":"hi","request_id":"r1\\n"}')
    assert error.code is ErrorCode.INVALID_REQUEST_ID


@pytest.mark.parametrize("value", ["hıgh", "HİGH", "normal\n"])
def test_priorities_are_ascii_names(value: str) -> None:
    error = refused(json.dumps({"type": "synthesize", "text": "hi", "priority": value}))
    assert error.code is ErrorCode.UNKNOWN_PRIORITY


def test_null_priority_and_reason_are_the_defaults() -> None:
    message = receive('{"type":"synthesize","text":"hi","priority":null}')
    assert isinstance(message, Synthesize) and message.priority is Priority.NORMAL
    assert receive('{"type":"interrupt","reason":null}') == Interrupt("user_request")


def test_client_input_is_quoted_short_in_error_messages() -> None:
    for raw in (
        json.dumps({"type": "x" * 100_000}),
        json.dumps({"type": "synthesize", "text": "hi", "priority": ["p" * 100_000]}),
        json.dumps({"type": "connect", "config": {"k" * 100_000: 1}}),
    ):
        assert len(refused(raw).message) < 300
    assert quote("a" * 1000) == '"' + "a" * 36 + "..."
    assert quote(object()) == "<object>"


# --- interrupt reason (WebSocket and REST) -------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["\ud800", "x" * (MAX_REASON_CHARS + 1), "x" * (1 << 20), "a\nb", "\x00", "   ", "", 7, ["r"]],
)
def test_interrupt_reasons_are_short_printable_strings(value: object) -> None:
    with pytest.raises(ClientError) as info:
        parse_interrupt_reason(value)
    assert info.value.code is ErrorCode.INVALID_MESSAGE
    render(Error(info.value.code, info.value.message)).encode("utf-8")


def test_interrupt_reason_defaults_and_accepts_text() -> None:
    assert parse_interrupt_reason(None) == "user_request"
    assert parse_interrupt_reason("r" * MAX_REASON_CHARS) == "r" * MAX_REASON_CHARS
    assert parse_interrupt_reason("usuario habló") == "usuario habló"


# --- message size: UTF-8 bytes, not characters ---------------------------------------


def test_message_size_counts_utf8_bytes() -> None:
    # 3 bytes per character: under the limit in characters, over it in bytes.
    raw = '{"type":"synthesize","text":"' + "€" * 30 + '"}'
    size = len(raw.encode("utf-8"))
    assert len(raw) < size - 1
    assert isinstance(receive(raw, max_bytes=size), Synthesize)
    error = refused(raw, max_bytes=size - 1)
    assert error.code is ErrorCode.MESSAGE_TOO_BIG
    assert error.close_code is CloseCode.MESSAGE_TOO_BIG
    assert f"{size} bytes" in error.message


def test_a_message_too_big_changes_no_state() -> None:
    proto = ServerProtocol(max_text_length=100, max_message_bytes=1024)
    with pytest.raises(ClientError):
        proto.receive('{"type":"connect","config":{"speaker":"' + "ü" * 600 + '"}}')
    assert proto.state is ConnectionState.AWAITING_CONNECT


def test_binary_size_is_checked_before_the_frame_type() -> None:
    assert refused(b"x" * 11, max_bytes=10).code is ErrorCode.MESSAGE_TOO_BIG
    assert refused(b"x" * 10, max_bytes=10).code is ErrorCode.BINARY_NOT_SUPPORTED


def test_other_client_errors_do_not_ask_for_a_close() -> None:
    assert refused("{").close_code is None
    check_message_size("é" * 5, 10)  # 10 bytes: fits


# --- REST bodies -----------------------------------------------------------------------


def test_json_body_parses_an_object() -> None:
    assert parse_json_object(b'{"reason":"stop"}') == {"reason": "stop"}
    assert parse_json_object(b"") == {}
    assert parse_json_object(b" \r\n") == {}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"reason":"\xff"}', ErrorCode.INVALID_JSON),
        (b'{"reason":"\xed\xa0\x80"}', ErrorCode.INVALID_JSON),  # a UTF-8-encoded surrogate
        (b"[" * 100_000, ErrorCode.INVALID_JSON),
        (b'{"config":{"speed":NaN}}', ErrorCode.INVALID_JSON),
        (b'{"reason":"a","reason":"b"}', ErrorCode.INVALID_JSON),
        (b'{"reason":"\\ud800"}', ErrorCode.INVALID_JSON),
        (b'{"x":' + b"9" * 5000 + b"}", ErrorCode.INVALID_JSON),
        (b"\xef\xbb\xbf{}", ErrorCode.INVALID_JSON),  # a byte-order mark is not JSON
        (b"[]", ErrorCode.INVALID_MESSAGE),
        (b'"text"', ErrorCode.INVALID_MESSAGE),
        (b"null", ErrorCode.INVALID_MESSAGE),
    ],
)
def test_json_body_refusals(raw: bytes, code: ErrorCode) -> None:
    with pytest.raises(ClientError) as info:
        parse_json_object(raw, max_bytes=1 << 20)
    assert info.value.code is code
    info.value.message.encode("utf-8")


def test_json_body_size_is_bytes() -> None:
    with pytest.raises(ClientError) as info:
        parse_json_object(b"{}   ", max_bytes=4)
    assert info.value.code is ErrorCode.MESSAGE_TOO_BIG


# --- what is echoed encodes as UTF-8 -------------------------------------------------


def test_render_escapes_lone_surrogates_instead_of_raising_later() -> None:
    text = render(Interrupted(None, "stop\ud800"))
    text.encode("utf-8")
    assert json.loads(text)["reason"] == "stop\ud800"


def test_render_keeps_other_text_as_it_is() -> None:
    assert render(Interrupted("r", "¿ya?")) == (
        '{"type":"interrupted","request_id":"r","reason":"¿ya?","dropped":[]}'
    )


def test_render_never_raises_on_details_json_cannot_carry() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    details: dict[str, object] = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "set": {1},
        "huge": 10**5000,
        "cycle": cycle,
        "object": object,
        "bytes": b"\xff",
        "\udc80": "key",
    }
    text = render(Error(ErrorCode.BUSY, "x\udfff", details=details))
    text.encode("utf-8")
    out = json.loads(text, parse_constant=pytest.fail)
    assert out["details"]["nan"] is None and out["details"]["set"] == [1]
    assert out["details"]["huge"] is None


def test_client_error_text_is_made_safe_once() -> None:
    error = ClientError(ErrorCode.INVALID_MESSAGE, "bad \ud800", request_id="r\udfff")
    error.message.encode("utf-8")
    assert error.message == "bad \\ud800" and error.request_id == "r\\udfff"
    str(error).encode("utf-8")


def test_parse_client_message_raises_nothing_else_for_the_issue_cases() -> None:
    cases = [
        '{"type":"synthesize","text":"hi","x":' + "1" * 4301 + "}",
        '{"type":"interrupt","reason":"\\ud800"}',
        '{"type":"connect","config":{"\\udfff":1}}',
        "[" * 100_000,
    ]
    for raw in cases:
        with pytest.raises(ClientError):
            parse_client_message(raw, max_text_length=100)
