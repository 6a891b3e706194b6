"""The hostile client's frames (``streamer.testing.frame``) are what RFC 6455 says, as
wsproto's server-side parser reads them: valid ones decode, invalid ones are refused
with the close code the server would send."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed

from streamer.testing import BINARY, PING, TEXT, frame, masked, wire_bytes

KEY = b"\x01\x02\x03\x04"


def parsed(data: bytes) -> list[tuple[Opcode, object]]:
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(data)
    return [(f.opcode, f.payload) for f in server.received_frames()]


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 70000])
def test_masked_frames_of_every_length_encoding_decode(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    assert parsed(frame(BINARY, payload, mask_key=KEY)) == [(Opcode.BINARY, payload)]


def test_masking_is_its_own_inverse() -> None:
    assert masked(masked(b"hello, world", KEY), KEY) == b"hello, world"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (
            frame(TEXT, wire_bytes('{"x":"\ud800"}'), mask_key=KEY),
            CloseReason.INVALID_FRAME_PAYLOAD_DATA,
        ),
        (frame(TEXT, b"{}", rsv=4, mask_key=KEY), CloseReason.PROTOCOL_ERROR),
        (frame(TEXT, b"{}"), CloseReason.PROTOCOL_ERROR),  # unmasked
        (frame(0x3, b"{}", mask_key=KEY), CloseReason.PROTOCOL_ERROR),
        (frame(PING, b"p" * 126, mask_key=KEY), CloseReason.PROTOCOL_ERROR),
        (frame(PING, b"p", fin=False, mask_key=KEY), CloseReason.PROTOCOL_ERROR),
    ],
)
def test_invalid_frames_are_refused_with_the_rfc_code(data: bytes, code: CloseReason) -> None:
    with pytest.raises(ParseFailed) as info:
        parsed(data)
    assert info.value.code is code


def test_lone_surrogates_go_out_as_the_bytes_utf8_forbids() -> None:
    assert wire_bytes("a\ud800") == b"a\xed\xa0\x80"
