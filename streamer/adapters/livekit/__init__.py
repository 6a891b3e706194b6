"""LiveKit Agents: :class:`StreamerTTS`, our server as a ``tts.TTS`` plugin
(``pip install 'mit-tts-streamer[livekit]'``; protocol_docs/livekit.md)."""

try:
    from ._tts import StreamerChunkedStream, StreamerSynthesizeStream, StreamerTTS
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if not (exc.name or "").startswith(("livekit", "websockets")):
        raise
    raise ModuleNotFoundError(
        "streamer.adapters.livekit needs LiveKit Agents: pip install 'mit-tts-streamer[livekit]'",
        name=exc.name,
    ) from exc

__all__ = ["StreamerChunkedStream", "StreamerSynthesizeStream", "StreamerTTS"]
