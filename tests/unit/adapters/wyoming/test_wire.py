"""The Wyoming wire format, sans-IO: framing, limits and recovery, fed byte by byte or
all at once; no event loop, no socket."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wyoming.audio import AudioChunk
from wyoming.event import Event, read_event
from wyoming.tts import Synthesize, SynthesizeVoice

from streamer.adapters.wyoming import (
    MAX_DATA_BYTES,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    EventReader,
    WyomingError,
    encode_event,
)


def events_of(data: bytes, *, step: int | None = None) -> list[Event | WyomingError]:
    """Everything a reader makes of ``data`` (fed ``step`` bytes at a time), errors
    included, stopping at a fatal one."""
    reader = EventReader()
    out: list[Event | WyomingError] = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        reader.feed(piece)
        while True:
            try:
                event = reader.next_event()
            except WyomingError as error:
                out.append(error)
                if error.fatal:
                    return out
                continue
            if event is None:
                break
            out.append(event)
    return out


def codes(items: list[Event | WyomingError]) -> list[str]:
    return [i.code if isinstance(i, WyomingError) else i.type for i in items]


SYNTHESIZE = Synthesize(text="Hello there.", voice=SynthesizeVoice(name="v1")).event()
CHUNK = AudioChunk(rate=22050, width=2, channels=1, audio=bytes(range(256)) * 4).event()


@pytest.mark.parametrize("step", [None, 1, 7])
def test_what_the_wyoming_package_writes_reads_back_whole(step: int | None) -> None:
    wire = encode_event(SYNTHESIZE) + encode_event(CHUNK)
    first, second = events_of(wire, step=step)
    assert isinstance(first, Event) and isinstance(second, Event)
    assert first.type == "synthesize"
    assert first.data == {"text": "Hello there.", "voice": {"name": "v1"}}
    assert second.payload == CHUNK.payload
    assert second.data["rate"] == 22050


def test_what_we_write_the_wyoming_package_reads() -> None:
    stream = io.BytesIO(encode_event(CHUNK) + encode_event(SYNTHESIZE))
    chunk, synthesize = read_event(stream), read_event(stream)
    assert chunk is not None and chunk.payload == CHUNK.payload
    assert synthesize is not None and synthesize.data["text"] == "Hello there."


def test_data_inline_in_the_header_and_in_the_data_part_are_merged() -> None:
    data = b'{"text": "from the data part"}'
    header = {"type": "synthesize", "data": {"text": "inline", "x": 1}, "data_length": len(data)}
    (event,) = events_of(json.dumps(header).encode() + b"\n" + data)
    assert isinstance(event, Event)
    assert event.data == {"text": "from the data part", "x": 1}


def test_blank_lines_between_events_are_no_events() -> None:
    wire = b"\n\r\n" + encode_event(SYNTHESIZE) + b"\n"
    assert codes(events_of(wire)) == ["synthesize"]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "invalid_json"),
        (b'{"type": "synthesize", "type": "x"}', "invalid_json"),  # duplicate key
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_message"),
        (b'{"data": {}}', "invalid_message"),
        (b'{"type": 7}', "invalid_message"),
        (b'{"type": ""}', "invalid_message"),
        (b'{"type": "synthesize", "data": [1]}', "invalid_message"),
    ],
)
def test_a_bad_header_is_dropped_and_the_next_event_still_reads(line: bytes, code: str) -> None:
    items = events_of(line + b"\n" + encode_event(SYNTHESIZE))
    assert codes(items) == [code, "synthesize"]
    assert isinstance(items[0], WyomingError) and not items[0].fatal


def test_a_bad_type_with_a_body_skips_exactly_that_body() -> None:
    header = json.dumps({"type": 5, "payload_length": 3}).encode()
    items = events_of(header + b"\n" + b"abc" + encode_event(SYNTHESIZE))
    assert codes(items) == ["invalid_message", "synthesize"]


def test_a_data_part_that_is_not_an_object_is_dropped_with_its_payload() -> None:
    header = json.dumps({"type": "synthesize", "data_length": 3, "payload_length": 2}).encode()
    items = events_of(header + b"\n[1]xy" + encode_event(SYNTHESIZE))
    assert codes(items) == ["invalid_message", "synthesize"]


@pytest.mark.parametrize(
    "header",
    [
        {"type": "x", "data_length": -1},
        {"type": "x", "payload_length": "10"},
        {"type": "x", "payload_length": True},
        {"type": "x", "payload_length": 1.5},
        {"type": "x", "data_length": MAX_DATA_BYTES + 1},
        {"type": "x", "payload_length": MAX_PAYLOAD_BYTES + 1},
    ],
)
def test_a_length_that_cannot_be_honoured_is_fatal(header: dict[str, object]) -> None:
    items = events_of(json.dumps(header).encode() + b"\n" + encode_event(SYNTHESIZE))
    (error,) = items
    assert isinstance(error, WyomingError) and error.fatal
    assert error.code in ("invalid_message", "message_too_big")


@pytest.mark.parametrize("step", [None, 4096])
def test_a_header_line_over_the_limit_is_fatal_without_waiting_for_its_end(
    step: int | None,
) -> None:
    items = events_of(b"x" * (MAX_HEADER_BYTES + 1), step=step)
    (error,) = items
    assert isinstance(error, WyomingError) and error.fatal and error.code == "message_too_big"


def test_a_header_line_at_the_limit_is_read() -> None:
    text = "a" * (MAX_HEADER_BYTES - 100)
    line = json.dumps({"type": "synthesize", "data": {"text": text}}).encode()
    line += b" " * (MAX_HEADER_BYTES - len(line))
    (event,) = events_of(line + b"\n")
    assert isinstance(event, Event) and event.data["text"] == text


def test_a_payload_that_lies_long_waits_and_the_reader_says_it_is_mid_event() -> None:
    reader = EventReader()
    assert not reader.mid_event
    reader.feed(json.dumps({"type": "audio-chunk", "payload_length": 100}).encode() + b"\n")
    reader.feed(b"short")
    assert reader.next_event() is None
    assert reader.mid_event  # the connection's event timeout applies


def test_a_payload_that_lies_short_turns_the_rest_into_a_bad_header() -> None:
    header = json.dumps({"type": "audio-chunk", "payload_length": 2}).encode()
    items = events_of(header + b"\nabcdef\n" + encode_event(SYNTHESIZE))
    assert codes(items) == ["audio-chunk", "invalid_json", "synthesize"]


def test_a_partial_header_is_mid_event() -> None:
    reader = EventReader()
    reader.feed(b'{"type": "desc')
    assert reader.next_event() is None
    assert reader.mid_event


@given(st.binary(max_size=2000))
def test_any_bytes_give_events_or_errors_never_a_crash(data: bytes) -> None:
    for item in events_of(data):
        assert isinstance(item, (Event, WyomingError))
        if isinstance(item, WyomingError):
            item.text.encode("utf-8")  # always sendable


@given(st.lists(st.text(max_size=50), max_size=5), st.integers(1, 64))
def test_events_survive_any_split(texts: list[str], step: int) -> None:
    wire = b"".join(encode_event(Synthesize(text=t).event()) for t in texts)
    items = events_of(wire, step=step)
    assert [i.data.get("text") for i in items if isinstance(i, Event)] == texts
