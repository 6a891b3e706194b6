"""LiveKit Agents: :class:`StreamerTTS`, our server as a ``tts.TTS`` plugin
(``pip install 'mit-tts-streamer[livekit]'``; protocol_docs/livekit.md)."""

from ._tts import StreamerChunkedStream, StreamerSynthesizeStream, StreamerTTS

__all__ = ["StreamerChunkedStream", "StreamerSynthesizeStream", "StreamerTTS"]
