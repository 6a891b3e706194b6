"""What a client may ask of the audio output, and what it actually gets.

A request names an output ``format`` plus optional knobs (``sample_rate``, ``chunk_size``,
``bitrate``, ``volume``, ``trim_silence``). :func:`validate_spec` rejects what no voice
could honour, with a stable error code. :func:`resolve_stream_format` then turns the
request and the voice's native rate into the effective parameters announced in
``audio_start``: codecs with a fixed set of rates (Opus, MP3, AAC) are moved to the
next allowed rate at or above the one asked for, never rejected, and the announcement
says so in ``note``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

#: The codes an :class:`AudioSpecError` can carry; stable, clients may switch on them.
AudioSpecErrorCode = Literal[
    "unknown_format",
    "unsupported_sample_rate",
    "invalid_chunk_size",
    "invalid_bitrate",
    "invalid_volume",
]


class AudioSpecError(Exception):
    """The client asked for audio output that cannot be produced.

    The blame is the client's: the server answers with a protocol ``error`` event that
    carries ``code`` (one of :data:`AudioSpecErrorCode`) and ``message`` (for humans).
    """

    def __init__(self, code: AudioSpecErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: AudioSpecErrorCode = code
        self.message: str = message


#: Lowest output rate: G.711's telephone rate and Opus's narrowband; below it speech
#: loses intelligibility and no codec here has a mode for it.
MIN_SAMPLE_RATE: Final = 8000
#: Highest output rate: the top of Opus and MP3; more only costs bandwidth for speech.
MAX_SAMPLE_RATE: Final = 48000

#: Samples per binary frame for raw formats when the client does not say: 46 ms at
#: 22050 Hz, small enough to start playback early, large enough to keep frames few.
DEFAULT_CHUNK_SIZE: Final = 1024
#: Smallest frame: 1.3 ms at 48 kHz; smaller frames cost more in per-message overhead
#: (WebSocket header, one event per frame on both sides) than they save in latency.
MIN_CHUNK_SIZE: Final = 64
#: Largest frame: one second at the top rate; bounds how long framing may hold raw audio.
MAX_CHUNK_SIZE: Final = 48000

#: Gain range: 0 mutes; 4.0 (+12 dB) lifts a quiet voice, beyond that speech only clips.
MIN_VOLUME: Final = 0.0
MAX_VOLUME: Final = 4.0

#: Rates Opus encodes at (RFC 6716); libopus refuses any other.
OPUS_SAMPLE_RATES: Final = (8000, 12000, 16000, 24000, 48000)
#: Rates MP3 frames can carry: MPEG-2.5, MPEG-2 and MPEG-1, three rates each.
MP3_SAMPLE_RATES: Final = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: AAC's standard rates from 8 to 48 kHz (ADTS sampling-frequency indices 3-11); the
#: others (7350, 64000 and up) are outside the range served.
AAC_SAMPLE_RATES: Final = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: G.711 is a telephone codec: 8 kHz unless the client asks for another rate.
G711_DEFAULT_SAMPLE_RATE: Final = 8000

#: MP3 default: clear speech at any rate, 8 kB/s on the wire.
DEFAULT_MP3_BITRATE_KBPS: Final = 64
#: Opus default: PESQ-WB 4.2 on TTS speech at 24 kHz (libopus voip), 4 kB/s on the wire.
DEFAULT_OPUS_BITRATE_KBPS: Final = 32
#: AAC default: PESQ-WB 4.4 on TTS speech at 24 kHz (FFmpeg's aac, fast coder); at
#: Opus's 32 kbit/s AAC-LC scores only 3.3.
DEFAULT_AAC_BITRATE_KBPS: Final = 64
#: Accepted MP3 request range: MPEG-2.5's lowest to MPEG-1's highest bitrate; the value is
#: then snapped to one the effective rate's MPEG version can carry.
MIN_MP3_BITRATE_KBPS: Final = 8
MAX_MP3_BITRATE_KBPS: Final = 320
#: Accepted Opus range: 6 kbit/s still carries intelligible narrowband speech; 256 is far
#: past transparent for one voice (libopus itself takes 0.5-512).
MIN_OPUS_BITRATE_KBPS: Final = 6
MAX_OPUS_BITRATE_KBPS: Final = 256
#: Accepted AAC range: below 16 kbit/s AAC-LC (no SBR) is muffled for speech; 256 is past
#: transparent for mono. The value is then capped at what the rate can carry (below).
MIN_AAC_BITRATE_KBPS: Final = 16
MAX_AAC_BITRATE_KBPS: Final = 256
#: An AAC-LC frame of 1024 samples holds at most 6144 bits per channel, so the bitrate
#: tops out at 6 bit/s per Hz of sample rate (48 kbit/s at 8 kHz); FFmpeg clamps to it.
_AAC_MAX_BITS_PER_SAMPLE: Final = 6

#: CBR bitrates (kbps) LAME writes, by MPEG version, i.e. by sample rate. MPEG-2.5 could
#: signal up to 160 but LAME caps it at 64; measured with lameenc 1.9.
_MPEG1_MIN_RATE: Final = 32000  # MPEG-1: 32000/44100/48000 Hz
_MPEG2_MIN_RATE: Final = 16000  # MPEG-2: 16000/22050/24000 Hz; below: MPEG-2.5
_MP3_BITRATES_MPEG25: Final = (8, 16, 24, 32, 40, 48, 56, 64)
_MP3_BITRATES_MPEG2: Final = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_BITRATES_MPEG1: Final = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)

#: libsndfile emits Vorbis audio only in full ~4 KiB Ogg pages (see _encoders.py).
_VORBIS_LATENCY_NOTE: Final = (
    "ogg_vorbis audio is sent in ~4 KiB Ogg pages (0.5-1 s of speech each): "
    "use opus for low latency"
)


@dataclass(frozen=True, slots=True)
class _Bitrate:
    default_kbps: int
    min_kbps: int
    max_kbps: int


@dataclass(frozen=True, slots=True)
class _FormatTraits:
    """What the rest of the module needs to know about one client-visible format."""

    name: str
    mime_type: str
    description: str
    compressed: bool = False
    lossless: bool = False
    #: Rates the codec can carry; ``None`` for any rate in [MIN, MAX]_SAMPLE_RATE.
    sample_rates: tuple[int, ...] | None = None
    #: Rate used when the client gives none; ``None`` for the voice's native rate.
    default_sample_rate: int | None = None
    bitrate: _Bitrate | None = None


_MP3_BITRATE: Final = _Bitrate(DEFAULT_MP3_BITRATE_KBPS, MIN_MP3_BITRATE_KBPS, MAX_MP3_BITRATE_KBPS)
_OPUS_BITRATE: Final = _Bitrate(
    DEFAULT_OPUS_BITRATE_KBPS, MIN_OPUS_BITRATE_KBPS, MAX_OPUS_BITRATE_KBPS
)
_AAC_BITRATE: Final = _Bitrate(DEFAULT_AAC_BITRATE_KBPS, MIN_AAC_BITRATE_KBPS, MAX_AAC_BITRATE_KBPS)


def _ogg_opus(name: str) -> _FormatTraits:
    # "ogg" and "opus" are two names for the same stream.
    return _FormatTraits(
        name,
        "audio/ogg;codecs=opus",
        "Ogg Opus, VBR, one 20 ms packet per page, each sent as soon as it is encoded",
        compressed=True,
        sample_rates=OPUS_SAMPLE_RATES,
        bitrate=_OPUS_BITRATE,
    )


_FORMATS: Final[dict[str, _FormatTraits]] = {
    t.name: t
    for t in (
        _FormatTraits(
            "wav",
            "audio/wav",
            "RIFF/WAVE PCM 16-bit; the first frame starts with a 44-byte header "
            "whose sizes are 0xFFFFFFFF (unknown length)",
            lossless=True,
        ),
        _FormatTraits(
            "pcm",
            "audio/pcm;encoding=s16le",
            "raw PCM, signed 16-bit little-endian, mono, no header",
            lossless=True,
        ),
        _FormatTraits(
            "pcm_f32",
            "audio/pcm;encoding=f32le",
            "raw PCM, 32-bit float little-endian in [-1, 1], mono, no header",
            lossless=True,
        ),
        _FormatTraits(
            "mp3",
            "audio/mpeg",
            "MPEG-1/2/2.5 layer III, CBR",
            compressed=True,
            sample_rates=MP3_SAMPLE_RATES,
            bitrate=_MP3_BITRATE,
        ),
        _ogg_opus("ogg"),
        _ogg_opus("opus"),
        _FormatTraits(
            "aac",
            "audio/aac",
            "AAC-LC in ADTS frames of 1024 samples, VBR around the bitrate; starts with "
            "1024 samples of encoder priming, and the first audio leaves after 3 frames",
            compressed=True,
            sample_rates=AAC_SAMPLE_RATES,
            bitrate=_AAC_BITRATE,
        ),
        _FormatTraits(
            "ogg_vorbis",
            "audio/ogg;codecs=vorbis",
            "Ogg Vorbis, VBR; " + _VORBIS_LATENCY_NOTE,
            compressed=True,
        ),
        _FormatTraits(
            "flac",
            "audio/flac",
            "FLAC 16-bit, 1152-sample frames; the header leaves the length unknown",
            compressed=True,
            lossless=True,
        ),
        _FormatTraits(
            "mulaw",
            "audio/PCMU",
            "G.711 mu-law, one byte per sample, no header",
            default_sample_rate=G711_DEFAULT_SAMPLE_RATE,
        ),
        _FormatTraits(
            "alaw",
            "audio/PCMA",
            "G.711 A-law, one byte per sample, no header",
            default_sample_rate=G711_DEFAULT_SAMPLE_RATE,
        ),
    )
}

#: Every ``format`` value a client may send.
SUPPORTED_FORMATS: Final[tuple[str, ...]] = tuple(_FORMATS)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """The audio a client asked for, as parsed from its request.

    ``sample_rate`` ``None`` means the voice's native rate (the format's default for
    G.711: 8000 Hz). ``chunk_size`` is in samples at the output rate. ``bitrate`` is in
    kbit/s and only MP3, Opus and AAC take one. ``volume`` is a linear gain.
    """

    format: str
    sample_rate: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    bitrate: int | None = None
    volume: float = 1.0
    trim_silence: bool = False


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """The effective parameters of one request's audio stream, for ``audio_start``.

    ``format`` echoes the request; ``sample_rate`` is the rate actually encoded;
    ``bitrate`` the kbit/s actually used, the target for Opus and AAC (which are VBR),
    ``None`` for raw and lossless formats and Vorbis;
    ``note`` explains where the effective values differ from the request, else ``None``.
    """

    format: str
    sample_rate: int
    channels: int
    bitrate: int | None
    mime_type: str
    note: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "bitrate": self.bitrate,
            "mime_type": self.mime_type,
            "note": self.note,
        }


def _is_int(value: object) -> bool:
    # bool is an int subclass; a JSON ``true`` must not pass for a rate of 1.
    return isinstance(value, int) and not isinstance(value, bool)


def validate_spec(spec: OutputSpec) -> None:
    """Raise :class:`AudioSpecError` if no voice could honour ``spec``; else return.

    Checks each field on its own (type and range); rates that a codec cannot carry are
    not errors, they are snapped by :func:`resolve_stream_format`.
    """
    traits = _FORMATS.get(spec.format) if isinstance(spec.format, str) else None
    if traits is None:
        raise AudioSpecError(
            "unknown_format",
            f"unknown format {spec.format!r}; supported: {', '.join(SUPPORTED_FORMATS)}",
        )
    rate = spec.sample_rate
    if rate is not None and (not _is_int(rate) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
        raise AudioSpecError(
            "unsupported_sample_rate",
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz,"
            f" got {rate!r}",
        )
    chunk = spec.chunk_size
    if not _is_int(chunk) or not MIN_CHUNK_SIZE <= chunk <= MAX_CHUNK_SIZE:
        raise AudioSpecError(
            "invalid_chunk_size",
            f"chunk_size must be an integer from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}"
            f" samples, got {chunk!r}",
        )
    bitrate = spec.bitrate
    if bitrate is not None:
        if traits.bitrate is None:
            raise AudioSpecError("invalid_bitrate", f"format {spec.format!r} takes no bitrate")
        lo, hi = traits.bitrate.min_kbps, traits.bitrate.max_kbps
        if not _is_int(bitrate) or not lo <= bitrate <= hi:
            raise AudioSpecError(
                "invalid_bitrate",
                f"bitrate for {spec.format!r} must be an integer from {lo} to {hi} kbit/s,"
                f" got {bitrate!r}",
            )
    volume = spec.volume
    if (
        not isinstance(volume, (int, float))
        or isinstance(volume, bool)
        or not math.isfinite(volume)
        or not MIN_VOLUME <= volume <= MAX_VOLUME
    ):
        raise AudioSpecError(
            "invalid_volume",
            f"volume must be a number from {MIN_VOLUME} to {MAX_VOLUME}, got {volume!r}",
        )


def snap_sample_rate(rate: int, allowed: tuple[int, ...]) -> int:
    """The lowest rate in ``allowed`` at or above ``rate``, else the highest one.

    Rounding up never removes bandwidth the voice has; ``allowed`` is sorted ascending.
    """
    for candidate in allowed:
        if candidate >= rate:
            return candidate
    return allowed[-1]


def mp3_bitrates(sample_rate: int) -> tuple[int, ...]:
    """The CBR bitrates (kbit/s) an MP3 stream at ``sample_rate`` can carry."""
    if sample_rate >= _MPEG1_MIN_RATE:
        return _MP3_BITRATES_MPEG1
    if sample_rate >= _MPEG2_MIN_RATE:
        return _MP3_BITRATES_MPEG2
    return _MP3_BITRATES_MPEG25


def _snap_mp3_bitrate(kbps: int, sample_rate: int) -> int:
    # LAME picks the nearest table entry, the lower one on a tie; do the same so that
    # audio_start announces what the frame headers will say.
    return min(mp3_bitrates(sample_rate), key=lambda b: (abs(b - kbps), b))


def aac_max_bitrate(sample_rate: int) -> int:
    """The highest bitrate (kbit/s, rounded down) mono AAC-LC carries at ``sample_rate``."""
    return _AAC_MAX_BITS_PER_SAMPLE * sample_rate // 1000


def resolve_stream_format(spec: OutputSpec, source_rate: int) -> StreamFormat:
    """The effective output for ``spec`` from a voice speaking at ``source_rate`` Hz.

    Call after :func:`validate_spec`. Rate policy: the requested rate, else the format's
    default (8000 Hz for G.711), else the voice's native rate brought into
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]; for Opus, MP3 and AAC that rate is then moved up
    to the next rate the codec allows (the top one if none is higher). MP3 bitrates snap
    to the nearest one the effective rate's MPEG version carries; AAC bitrates are capped
    at what the effective rate carries (:func:`aac_max_bitrate`).
    """
    if not _is_int(source_rate) or source_rate <= 0:
        raise ValueError(f"source_rate must be a positive integer, got {source_rate!r}")
    traits = _FORMATS[spec.format]
    notes: list[str] = []

    if spec.sample_rate is not None:
        wanted = spec.sample_rate
    elif traits.default_sample_rate is not None:
        wanted = traits.default_sample_rate
    else:
        wanted = min(max(source_rate, MIN_SAMPLE_RATE), MAX_SAMPLE_RATE)
    rate = wanted
    if traits.sample_rates is not None:
        rate = snap_sample_rate(wanted, traits.sample_rates)
        if rate != wanted:
            allowed = "/".join(str(r) for r in traits.sample_rates)
            notes.append(f"{spec.format} carries only {allowed} Hz: {wanted} Hz sent as {rate} Hz")

    bitrate: int | None = None
    if traits.bitrate is not None:
        asked = spec.bitrate if spec.bitrate is not None else traits.bitrate.default_kbps
        bitrate = asked
        if traits.name == "mp3":
            bitrate = _snap_mp3_bitrate(asked, rate)
            if bitrate != asked:
                notes.append(f"mp3 at {rate} Hz carries no {asked} kbit/s: sent at {bitrate}")
        elif traits.name == "aac":
            bitrate = min(asked, aac_max_bitrate(rate))
            if bitrate != asked:
                notes.append(f"aac at {rate} Hz carries at most {bitrate} kbit/s, not {asked}")
    if traits.name == "ogg_vorbis":
        notes.append(_VORBIS_LATENCY_NOTE)

    return StreamFormat(
        format=spec.format,
        sample_rate=rate,
        channels=1,
        bitrate=bitrate,
        mime_type=traits.mime_type,
        note="; ".join(notes) if notes else None,
    )


def format_traits(name: str) -> _FormatTraits:
    """The traits of a supported format (KeyError for others: validate first)."""
    return _FORMATS[name]


def format_info() -> list[dict[str, object]]:
    """One JSON-ready entry per supported format, for the REST status endpoint.

    ``sample_rates`` lists the only rates the format carries (others are snapped up), or
    is ``null`` for any integer rate in [``min_sample_rate``, ``max_sample_rate``];
    ``default_sample_rate`` ``null`` means the voice's native rate.
    """
    info: list[dict[str, object]] = []
    for t in _FORMATS.values():
        info.append(
            {
                "name": t.name,
                "mime_type": t.mime_type,
                "description": t.description,
                "compressed": t.compressed,
                "lossless": t.lossless,
                "sample_rates": list(t.sample_rates) if t.sample_rates is not None else None,
                "min_sample_rate": MIN_SAMPLE_RATE,
                "max_sample_rate": MAX_SAMPLE_RATE,
                "default_sample_rate": t.default_sample_rate,
                "bitrate_kbps": (
                    None
                    if t.bitrate is None
                    else {
                        "default": t.bitrate.default_kbps,
                        "min": t.bitrate.min_kbps,
                        "max": t.bitrate.max_kbps,
                    }
                ),
                "chunk_size": {
                    "default": DEFAULT_CHUNK_SIZE,
                    "min": MIN_CHUNK_SIZE,
                    "max": MAX_CHUNK_SIZE,
                },
            }
        )
    return info
