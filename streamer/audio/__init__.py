"""Audio output stage: engine PCM to the byte stream a client asked for.

The public surface is re-exported here; the modules behind it are private.
"""

from ._encoders import AudioEncoder, make_encoder, wav_header
from ._files import PATCHED_FORMATS, StreamHeaderError, complete_file, complete_header
from ._g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ._pipeline import RESAMPLE_QUALITY, AudioPipeline
from ._spec import (
    AAC_SAMPLE_RATES,
    DEFAULT_AAC_BITRATE_KBPS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MP3_BITRATE_KBPS,
    DEFAULT_OPUS_BITRATE_KBPS,
    G711_DEFAULT_SAMPLE_RATE,
    MAX_CHUNK_SIZE,
    MAX_SAMPLE_RATE,
    MAX_VOLUME,
    MIN_CHUNK_SIZE,
    MIN_SAMPLE_RATE,
    MIN_VOLUME,
    MP3_SAMPLE_RATES,
    OPUS_SAMPLE_RATES,
    SUPPORTED_FORMATS,
    AudioSpecError,
    AudioSpecErrorCode,
    OutputSpec,
    StreamFormat,
    format_info,
    resolve_stream_format,
    snap_sample_rate,
    validate_spec,
)
from ._trim import TRIM_PAD_SECONDS, TRIM_THRESHOLD, SilenceTrimmer

__all__ = [
    "AAC_SAMPLE_RATES",
    "DEFAULT_AAC_BITRATE_KBPS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MP3_BITRATE_KBPS",
    "DEFAULT_OPUS_BITRATE_KBPS",
    "G711_DEFAULT_SAMPLE_RATE",
    "MAX_CHUNK_SIZE",
    "MAX_SAMPLE_RATE",
    "MAX_VOLUME",
    "MIN_CHUNK_SIZE",
    "MIN_SAMPLE_RATE",
    "MIN_VOLUME",
    "MP3_SAMPLE_RATES",
    "OPUS_SAMPLE_RATES",
    "PATCHED_FORMATS",
    "RESAMPLE_QUALITY",
    "SUPPORTED_FORMATS",
    "TRIM_PAD_SECONDS",
    "TRIM_THRESHOLD",
    "AudioEncoder",
    "AudioPipeline",
    "AudioSpecError",
    "AudioSpecErrorCode",
    "OutputSpec",
    "SilenceTrimmer",
    "StreamFormat",
    "StreamHeaderError",
    "alaw_decode",
    "alaw_encode",
    "complete_file",
    "complete_header",
    "format_info",
    "make_encoder",
    "resolve_stream_format",
    "snap_sample_rate",
    "ulaw_decode",
    "ulaw_encode",
    "validate_spec",
    "wav_header",
]
