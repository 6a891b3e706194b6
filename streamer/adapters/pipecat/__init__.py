"""Pipecat: :class:`StreamerTTSService`, our server as a Pipecat TTS service
(``pip install 'mit-tts-streamer[pipecat]'``; protocol_docs/pipecat.md)."""

from ._tts import StreamerTTSService, StreamerTTSSettings

__all__ = ["StreamerTTSService", "StreamerTTSSettings"]
