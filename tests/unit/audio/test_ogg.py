"""The Ogg muxer: checksum, lacing, page header fields and flags, packets across pages."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf

from streamer.audio._ogg import NO_GRANULE, OggStream, lacing_values, ogg_crc
from tests.support.audio_streams import crc32_ogg_reference, ogg_packets, parse_ogg, sine


def zero_crc(raw: bytes) -> bytes:
    return raw[:22] + bytes(4) + raw[26:]


def test_crc_check_value() -> None:
    # CRC-32/POSIX (cksum) is the same CRC with a final inversion; its catalogued check
    # value for "123456789" is 0x765E7680, so Ogg's is its complement.
    assert ogg_crc(b"123456789") == 0x765E7680 ^ 0xFFFFFFFF == 0x89A1897F
    assert ogg_crc(b"") == 0


@pytest.mark.parametrize("size", [1, 2, 3, 27, 255, 256, 4096])
def test_crc_matches_the_bitwise_definition(size: int) -> None:
    data = os.urandom(size)
    assert ogg_crc(data) == crc32_ogg_reference(data)
    assert ogg_crc(bytearray(data)) == ogg_crc(data)


def test_crc_matches_pages_libogg_wrote() -> None:
    # libsndfile writes Ogg Vorbis through libogg: recompute each of its page checksums.
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 22050, 1, format="OGG", subtype="VORBIS") as file:
        file.write(sine(1.0, 22050))
    pages = parse_ogg(buffer.getvalue())
    assert len(pages) >= 3
    for page in pages:
        assert ogg_crc(zero_crc(page.raw)) == page.crc


@pytest.mark.parametrize(
    ("length", "table"),
    [(0, [0]), (1, [1]), (254, [254]), (255, [255, 0]), (300, [255, 45]), (510, [255, 255, 0])],
)
def test_lacing(length: int, table: list[int]) -> None:
    assert list(lacing_values(length)) == table


def test_pages_carry_one_packet_each_with_flags_and_numbers() -> None:
    stream = OggStream(serial=0xDEADBEEF)
    packets = [b"head", b"tags", bytes(range(200)), b"x" * 255, b"", b"last"]
    granules = [0, 0, 960, 1920, 2880, 3000]
    data = b""
    for index, (packet, granule) in enumerate(zip(packets, granules, strict=True)):
        data += stream.packet(packet, granule, eos=index == len(packets) - 1)
    pages = parse_ogg(data)
    assert len(pages) == len(packets) == stream.pages_out
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert {p.serial for p in pages} == {0xDEADBEEF}
    assert [p.bos for p in pages] == [True] + [False] * (len(pages) - 1)
    assert [p.eos for p in pages] == [False] * (len(pages) - 1) + [True]
    assert not any(p.continued for p in pages)
    assert [p.granule for p in pages] == granules
    assert ogg_packets(pages) == list(zip(packets, granules, strict=True))
    for page in pages:
        assert crc32_ogg_reference(zero_crc(page.raw)) == page.crc
    assert stream.ended


def test_a_long_packet_continues_on_the_next_pages() -> None:
    stream = OggStream(serial=7)
    big = os.urandom(255 * 255 * 2 + 17)  # three pages' worth of segments
    data = stream.packet(b"head", 0) + stream.packet(big, 5000, eos=True)
    pages = parse_ogg(data)
    assert len(pages) == 1 + 3
    assert [len(p.lacing) for p in pages[1:]] == [255, 255, 1]
    assert [p.continued for p in pages] == [False, False, True, True]
    # Only the page on which the packet completes has a granule position.
    assert [p.granule for p in pages] == [0, NO_GRANULE, NO_GRANULE, 5000]
    assert [p.eos for p in pages] == [False, False, False, True]
    assert ogg_packets(pages) == [(b"head", 0), (big, 5000)]


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        OggStream(serial=1 << 32)
    stream = OggStream(serial=1)
    stream.packet(b"a", 960)
    with pytest.raises(ValueError, match="granule"):
        stream.packet(b"b", 959)
    stream.packet(b"c", 960, eos=True)
    with pytest.raises(RuntimeError, match="end"):
        stream.packet(b"d", 1920)


def test_granules_of_a_real_stream_never_decrease() -> None:
    stream = OggStream(serial=3)
    rng = np.random.default_rng(0)
    granule = 0
    data = b""
    for _ in range(50):
        granule += int(rng.integers(0, 2000))
        data += stream.packet(os.urandom(int(rng.integers(0, 1500))), granule)
    granules = [p.granule for p in parse_ogg(data)]
    assert granules == sorted(granules)
