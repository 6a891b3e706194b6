"""Measurement tools: every figure in BENCHMARKS.md comes from one of them.

Run from the repository root as ``python -m scripts.<tool>`` (``--help`` for the
options); ``make bench`` is ``python -m scripts.latency --spawn``. Tests never measure
wall-clock time: these tools do.

Through a server (spawned on free ports with ``--spawn``, or one at ``--url``):

- ``latency``: first response, time to first audio, interrupt reply, pre-emption and
  underruns as a client sees them, with N sessions speaking at once.
- ``agent_latency``: a voice agent's answers streamed into contexts at an LLM's pace:
  first audio after the token that completes the first clause, underruns between
  segments, the cost of word timestamps; one session or many speaking.
- ``load``: scenarios against the server, with its own underrun and ``busy`` counts:
  ``load`` (S connected sessions, K speaking continuously for T seconds: underruns,
  TTFA, CPU, memory), ``burst`` (20 simultaneous starts, against an in-process
  whole-sentence FIFO) and ``mixed`` (WebSocket speakers beside HTTP downloads); raw
  throughput measured in the same run; ``--slowdown`` for a slower CPU;
  ``--find-capacity`` steps K up until the first underrun or ``busy``.
- ``soak_memory``: the server's memory under ``load``'s load for many minutes, and
  what grows (``/proc``, glibc malloc, tracemalloc).
- ``baseline``: what the server is measured against: the engine in-process (floor),
  raw throughput, Piper's own HTTP server (peer), and our server's overhead over both.
- ``bench_wyoming``: our Wyoming server beside ``wyoming-piper`` (same Piper voice):
  first audio and total time, one-shot and streamed text, as Home Assistant asks.
- ``bench_adapters``: time to first audio through the Pipecat and LiveKit Agents
  adapters against the raw asyncio client, and each path's own time at the socket.
- ``reliability``: attacks (fuzzed WebSocket frames and HTTP bodies, bad frames, a
  handshake burst, idle and half-open sockets, HTTP floods, SIGTERM mid-response) while
  witness sessions stream; per case expected, observed, pass or fail, and what the
  witnesses and the server noticed (RELIABILITY.md).
- ``cluster``: a local cluster on loopback ports (Redis, N replicas, HAProxy) until
  Ctrl-C (``make cluster``); the cluster tests start theirs with it.
- ``bench_cluster``: what the cluster costs: interrupt reply routed to another replica
  vs local, time to first audio through HAProxy vs direct, capacity of 2 replicas x 1
  worker vs 1 replica x 2 workers.

In-process, no server:

- ``bench_engines``: load time, first audio and real-time factor of every engine here.
- ``bench_engines_piper``: Piper's cut model part by part, windowed vs clause mode.
- ``bench_melo``: MeloTTS, on the tiny random-weight checkpoint of ``streamer.testing``
  or on real checkpoints.
- ``bench_audio``: the encoders: CPU per second of audio and first-byte delay per format.
- ``bench_gil``: how long the event loop waits for the GIL behind an inference thread.
- ``bench_voices``: Kokoro (per segment and whole), SVOX Pico and kokoro-onnx: load,
  first audio, CPU per audio second, real-time streams on two workers.

Shared, private: ``_common`` (texts, statistics, ``/proc``, a spawned server),
``_scenarios`` (``load``'s burst and mixed scenarios and the FIFO baseline),
``_probe`` (a timestamping WebSocket connection on ``streamer.client``'s protocol code,
and the listener's playback model), ``_engine_timing`` (an engine timed as the server
drives it), ``_hostile`` (hostile frames and bodies from a seeded generator),
``_raw_http`` (one HTTP/1.1 connection under the tool's control, on ``h11``). The raw
WebSocket client the attacks need is ``streamer.testing.RawWebSocket``, shared with the
tests. The tools import only public modules of ``streamer`` (``baseline`` and
``bench_gil`` do reach into ``PiperEngine``'s loaded voice, and ``bench_voices`` into
``KokoroEngine``'s model call, on purpose: they time their parts), never ``tests/``,
and need no change to the import path.
"""
