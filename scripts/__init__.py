"""Measurement tools: every figure in BENCHMARKS.md comes from one of them.

Run from the repository root as ``python -m scripts.<tool>`` (``--help`` for the
options); ``make bench`` is ``python -m scripts.latency --spawn``. Tests never measure
wall-clock time: these tools do.

Through a server (spawned on free ports with ``--spawn``, or one at ``--url``):

- ``latency``: first response, time to first audio, interrupt reply, pre-emption and
  underruns as a client sees them, with N sessions speaking at once.
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

In-process, no server:

- ``bench_engines``: load time, first audio and real-time factor of every engine here.
- ``bench_engines_piper``: Piper's cut model part by part, windowed vs clause mode.
- ``bench_melo``: MeloTTS, on the tiny random-weight checkpoint of ``streamer.testing``
  or on real checkpoints.
- ``bench_audio``: the encoders: CPU per second of audio and first-byte delay per format.
- ``bench_gil``: how long the event loop waits for the GIL behind an inference thread.

Shared, private: ``_common`` (texts, statistics, ``/proc``, a spawned server),
``_scenarios`` (``load``'s burst and mixed scenarios and the FIFO baseline),
``_probe`` (a timestamping WebSocket connection on ``streamer.client``'s protocol code,
and the listener's playback model), ``_engine_timing`` (an engine timed as the server
drives it). The tools import only public modules of ``streamer`` (``baseline`` and
``bench_gil`` do reach into ``PiperEngine``'s loaded voice, on purpose: they time its
parts), never ``tests/``, and need no change to the import path.
"""
