"""Pipecat: :class:`StreamerTTSService`, our server as a Pipecat TTS service
(``pip install 'mit-tts-streamer[pipecat]'``; protocol_docs/pipecat.md)."""

try:
    from ._tts import StreamerTTSService, StreamerTTSSettings
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if not (exc.name or "").startswith(("pipecat", "websockets")):
        raise
    raise ModuleNotFoundError(
        "streamer.adapters.pipecat needs Pipecat: pip install 'mit-tts-streamer[pipecat]'",
        name=exc.name,
    ) from exc

__all__ = ["StreamerTTSService", "StreamerTTSSettings"]
