"""Config resolution: a client's ``AudioConfig`` checked against the voices and formats
this server has. Shared by WebSocket sessions and the HTTP speech routes."""

from __future__ import annotations

from dataclasses import dataclass

from ...audio import AudioSpecError, OutputSpec, validate_spec
from ...engines.base import SynthesisOptions, Voice
from ...engines.registry import VoiceSelectionError
from ...langdetect import AUTO_LANGUAGE, detect_language
from ...protocol import AudioConfig, ClientError, ErrorCode
from ..runtime import Services


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """An ``AudioConfig`` checked against the registry and the audio formats."""

    voice: Voice
    spec: OutputSpec
    options: SynthesisOptions
    realtime: bool


def resolve_config(
    services: Services, cfg: AudioConfig, request_id: str | None, text: str | None = None
) -> ResolvedConfig:
    """Check ``cfg`` (already merged over the session's) against what the server has.

    ``language: "auto"`` picks the language of ``text`` among the voices' languages
    (``streamer.langdetect``); without a text (a ``connect``) it stands for the default
    language.

    Raises ``ClientError`` with ``unknown_language`` / ``unknown_voice`` (listing what is
    available), ``unknown_speaker`` or an audio code (``unknown_format``…).
    """
    tts = services.config.tts
    if cfg.language is None and cfg.voice_id is None:
        language, voice_id = tts.default_language, tts.default_voice_id
    else:
        language = cfg.language or tts.default_language
        voice_id = cfg.voice_id if cfg.voice_id is not None else 0
    if language == AUTO_LANGUAGE:
        language = tts.default_language
        if text is not None:
            candidates = services.registry.languages()
            language = detect_language(text, candidates, fallback=language).language
    try:
        voice = services.registry.resolve(language, voice_id)
    except VoiceSelectionError as exc:  # unknown_language / unknown_voice
        raise ClientError(
            ErrorCode(exc.code),
            exc.message,
            request_id=request_id,
            details={"available": list(exc.available)},
        ) from None
    if cfg.speaker is not None and cfg.speaker not in voice.speakers:
        raise ClientError(
            ErrorCode.UNKNOWN_SPEAKER,
            f"voice {voice.id} has no speaker {cfg.speaker!r}",
            request_id=request_id,
            details={"available": list(voice.speakers)},
        )
    spec = OutputSpec(
        format=cfg.format or tts.default_format,
        sample_rate=cfg.sample_rate,
        chunk_size=cfg.chunk_size or tts.chunk_size,
        bitrate=cfg.bitrate,
        volume=1.0 if cfg.volume is None else cfg.volume,
        trim_silence=bool(cfg.trim_silence),
    )
    try:
        validate_spec(spec)
    except AudioSpecError as exc:
        raise ClientError(ErrorCode(exc.code), exc.message, request_id=request_id) from None
    return ResolvedConfig(
        voice=voice,
        spec=spec,
        options=SynthesisOptions(speed=cfg.speed or 1.0, speaker=cfg.speaker),
        realtime=cfg.realtime is not False,
    )
