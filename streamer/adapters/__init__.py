"""Our TTS inside the voice-agent frameworks and Home Assistant.

One subpackage per framework, each imported only by whoever uses it (the server and
the CLI never import them):

- ``streamer.adapters.pipecat``: :class:`~streamer.adapters.pipecat.StreamerTTSService`,
  a Pipecat WebSocket TTS service (``pip install 'mit-tts-streamer[pipecat]'``).
- ``streamer.adapters.livekit``: :class:`~streamer.adapters.livekit.StreamerTTS`, a
  LiveKit Agents ``tts.TTS`` plugin (``pip install 'mit-tts-streamer[livekit]'``).

Both are clients over the WebSocket protocol (protocol_docs/websocket.md, *Streamed
text*): an LLM turn is one context, its text goes out as it streams, word timestamps
come back as the framework's word timings, and a barge-in is a ``cancel`` of that
context on the same connection. They know nothing of the server's internals; they
build on ``streamer.client``.
"""
