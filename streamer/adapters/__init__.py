"""Our TTS inside the voice-agent frameworks and Home Assistant.

One subpackage per framework, each optional and imported only by whoever uses it:

- ``streamer.adapters.pipecat``: :class:`~streamer.adapters.pipecat.StreamerTTSService`,
  a Pipecat WebSocket TTS service (``pip install 'mit-tts-streamer[pipecat]'``).
- ``streamer.adapters.livekit``: :class:`~streamer.adapters.livekit.StreamerTTS`, a
  LiveKit Agents ``tts.TTS`` plugin (``pip install 'mit-tts-streamer[livekit]'``).
- ``streamer.adapters.wyoming``: a Wyoming protocol server for Home Assistant
  (``tts-streamer wyoming``, or ``server.wyoming_port`` in the server's process;
  ``pip install 'mit-tts-streamer[wyoming]'``).

Pipecat and LiveKit are clients over the WebSocket protocol (protocol_docs/websocket.md,
*Streamed text*): an LLM turn is one context, its text goes out as it streams, word
timestamps come back as the framework's word timings, and a barge-in is a ``cancel`` of
that context on the same connection. They know nothing of the server's internals; they
build on ``streamer.client``. Wyoming is a surface of the server itself: it shares the
engines, the inference scheduler and admission, and only the composition root
(``streamer.server.app``) starts it, when configured.
"""
