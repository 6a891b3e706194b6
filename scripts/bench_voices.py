"""Benchmark the natural voices: Kokoro (one call per segment, and one call for the whole
text), SVOX Pico, and kokoro-onnx (PyPI) on the same text, voice and threads.

Spanish throughout (the server's default language); one engine at a time, in this
process, driven as the server drives it (``stream()``, then ``next()`` until exhausted,
one onnxruntime thread per synthesis). Per engine:

- load: constructing and loading the engine (Kokoro without its real-time calibration,
  which is timed apart);
- first audio for a 30- and a 150-character sentence (median of ``--repeat``): from the
  request to the first chunk, what a listener waits for;
- CPU per audio second (thread CPU time / audio: what admission control counts) and the
  wall-clock real-time factor;
- capacity: real-time streams two worker threads sustain (the server's inference pool on
  the 2-core machine): seconds of audio made per wall second while two threads
  synthesize the 150-character text back to back for ``--capacity-s``.

The machine is shared: the CPU other processes used during each run is reported beside
its figures (``other cpu %``, of one core), since it makes every latency worse.

    python -m scripts.bench_voices              # markdown
    python -m scripts.bench_voices --json       # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from streamer.engines.base import SynthesisOptions, Voice
from streamer.engines.kokoro import KokoroEngine

from ._common import REPO_ROOT, machine_busy_seconds, machine_info, process_cpu_seconds

#: 30 characters, one clause: first audio is one whole call of it (Kokoro's calibration
#: sentence).
TEXT_30: Final = "Mañana vamos juntos al parque."
#: 150 characters in two clauses and a sentence.
TEXT_150: Final = (
    "El tren de alta velocidad salió de Madrid a las ocho, y llegó a Barcelona poco "
    "antes de las once. Los pasajeros bajaron con prisa hacia la reunión."
)
KOKORO_VOICE: Final = "ef_dora"
PICO_VOICE: Final = "pico-es-ES"
DEFAULT_REPEAT: Final = 5
#: Long enough for several 150-character syntheses per thread at Kokoro's speed here.
DEFAULT_CAPACITY_S: Final = 12.0
#: Worker threads in the capacity run: the server's inference workers on 2 cores.
CAPACITY_WORKERS: Final = 2


@dataclass(frozen=True, slots=True)
class Row:
    engine: str
    load_s: float | None
    first_30_ms: float | None
    first_150_ms: float | None
    cpu_per_audio_s: float | None
    rtf_wall: float | None
    capacity_streams: float | None
    other_cpu_pct: float
    note: str = ""


class _Synth:
    """What is timed: ``chunks(text)`` yields the audio of ``text`` as its engine would
    stream it, and ``rate`` is its sample rate."""

    def __init__(self, rate: int, chunks: Callable[[str], Iterator[np.ndarray]]) -> None:
        self.rate = rate
        self.chunks = chunks


def _kokoro_engine() -> tuple[KokoroEngine, Voice, float]:
    started = time.perf_counter()
    engine = KokoroEngine(REPO_ROOT / "models" / "kokoro", device="cpu", calibrate=False)
    if not engine.status().available:
        raise RuntimeError(engine.status().reason)
    engine.load()
    load_s = time.perf_counter() - started
    voice = next(v for v in engine.voices() if v.id == f"kokoro-{KOKORO_VOICE}")
    return engine, voice, load_s


def kokoro_segments() -> tuple[_Synth, float]:
    engine, voice, load_s = _kokoro_engine()
    return _Synth(voice.sample_rate, lambda t: engine.stream(voice, t, SynthesisOptions())), load_s


def kokoro_whole() -> tuple[_Synth, float]:
    """Kokoro with one model call for the whole text (no streaming at all): what the
    first audio would be without the cut into segments."""
    engine, voice, load_s = _kokoro_engine()
    run = engine._run  # the engine's own call, timed on purpose
    entry = engine._table()[voice.id]
    phonemes = engine._phonemes

    def whole(text: str) -> Iterator[np.ndarray]:
        yield run(entry, phonemes(entry, text), 1.0)[0]

    return _Synth(voice.sample_rate, whole), load_s


def pico() -> tuple[_Synth, float]:
    from streamer.engines.pico import PicoEngine

    started = time.perf_counter()
    engine = PicoEngine()
    if not engine.status().available:
        raise RuntimeError(engine.status().reason)
    engine.load()
    load_s = time.perf_counter() - started
    voice = next(v for v in engine.voices() if v.id == PICO_VOICE)
    return _Synth(voice.sample_rate, lambda t: engine.stream(voice, t, SynthesisOptions())), load_s


def kokoro_onnx() -> tuple[_Synth, float]:
    """kokoro-onnx 0.6.1 on the same model file, voice and thread count (its session built
    with one intra-op thread, as ours). Its ``create`` returns a whole text at once."""
    import onnxruntime
    from kokoro_onnx import Kokoro

    model_dir = REPO_ROOT / "models" / "kokoro"
    voices = Path(tempfile.mkdtemp(prefix="bench-voices-")) / "voices.npz"
    style = np.fromfile(model_dir / "voices" / f"{KOKORO_VOICE}.bin", dtype=np.float32)
    styles: dict[str, Any] = {KOKORO_VOICE: style.reshape(-1, 1, 256)}
    np.savez(voices, **styles)
    started = time.perf_counter()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model_dir / "kokoro-v1.0.int8.onnx"), options, providers=["CPUExecutionProvider"]
    )
    kokoro = Kokoro.from_session(session, str(voices))
    load_s = time.perf_counter() - started

    def chunks(text: str) -> Iterator[np.ndarray]:
        audio, _ = kokoro.create(text, voice=KOKORO_VOICE, speed=1.0, lang="es")
        yield np.asarray(audio, dtype=np.float32)

    return _Synth(24000, chunks), load_s


ENGINES: Final[dict[str, Callable[[], tuple[_Synth, float]]]] = {
    "kokoro (one call per segment: the server's)": kokoro_segments,
    "kokoro (one call for the whole text)": kokoro_whole,
    "kokoro-onnx 0.6.1 (create)": kokoro_onnx,
    "pico": pico,
}


def _first_and_cost(synth: _Synth, text: str, repeat: int) -> tuple[float, float, float]:
    """Median ms to the first chunk, CPU s per audio s, wall RTF (after one warm-up)."""
    for _ in synth.chunks(text):
        pass
    firsts: list[float] = []
    cpu = wall = audio = 0.0
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.thread_time()
        first: float | None = None
        samples = 0
        for chunk in synth.chunks(text):
            if first is None:
                first = time.perf_counter() - started
            samples += chunk.size
        wall += time.perf_counter() - started
        cpu += time.thread_time() - cpu_started
        audio += samples / synth.rate
        firsts.append(1000 * (first or 0.0))
    return statistics.median(firsts), cpu / audio, wall / audio


def _capacity(synth: _Synth, seconds: float) -> float:
    """Audio seconds per wall second that ``CAPACITY_WORKERS`` threads make together."""
    deadline = time.perf_counter() + seconds
    made = [0.0] * CAPACITY_WORKERS

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            made[index] += sum(c.size for c in synth.chunks(TEXT_150)) / synth.rate

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(CAPACITY_WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(made) / (time.perf_counter() - started)


def bench(names: Sequence[str], repeat: int, capacity_s: float) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        wall0, machine0, own0 = time.perf_counter(), machine_busy_seconds(), _own_cpu()
        try:
            synth, load_s = ENGINES[name]()
            first_30, _, _ = _first_and_cost(synth, TEXT_30, repeat)
            first_150, cpu, rtf = _first_and_cost(synth, TEXT_150, repeat)
            capacity = _capacity(synth, capacity_s)
        except Exception as exc:  # a missing engine is reported, not fatal
            rows.append(Row(name, None, None, None, None, None, None, 0.0, f"skipped: {exc}"))
            continue
        wall = time.perf_counter() - wall0
        other = 100 * (machine_busy_seconds() - machine0 - (_own_cpu() - own0)) / wall
        rows.append(Row(name, load_s, first_30, first_150, cpu, rtf, capacity, max(0.0, other)))
    return rows


def _own_cpu() -> float:
    return process_cpu_seconds(os.getpid())


def calibration() -> dict[str, Any]:
    """What the Kokoro engine measures when it loads (the real-time rule), timed."""
    engine = KokoroEngine(REPO_ROOT / "models" / "kokoro", device="cpu")
    if not engine.status().available:
        return {"skipped": engine.status().reason}
    started = time.perf_counter()
    engine.load()
    result = engine.calibration
    assert result is not None
    return {
        "load_and_calibration_s": round(time.perf_counter() - started, 2),
        "first_audio_s": round(result.first_audio_s, 3),
        "streams_per_core": round(result.streams_per_core, 2),
        "realtime": result.realtime,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: Sequence[Row], machine: dict[str, object], rule: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cores']} cores, {machine['cpu']}, onnxruntime "
        f"{machine['onnxruntime']}; one onnxruntime thread per synthesis.",
        f"Kokoro's real-time rule as measured at load: {rule}",
        "",
        "| engine | load (s) | first audio 30 ch (ms) | first audio 150 ch (ms) "
        "| CPU s / audio s | wall RTF | capacity (streams, 2 workers) | other cpu % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.engine} | {_fmt(row.load_s, '.2f')} | {_fmt(row.first_30_ms, '.0f')} "
            f"| {_fmt(row.first_150_ms, '.0f')} | {_fmt(row.cpu_per_audio_s, '.3f')} "
            f"| {_fmt(row.rtf_wall, '.3f')} | {_fmt(row.capacity_streams, '.1f')} "
            f"| {row.other_cpu_pct:.0f} | {row.note} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_voices",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--capacity-s", type=float, default=DEFAULT_CAPACITY_S)
    parser.add_argument(
        "--engine", action="append", choices=sorted(ENGINES), help="only these (repeatable)"
    )
    args = parser.parse_args(argv)
    names = args.engine or list(ENGINES)
    machine = machine_info()
    rule = calibration()
    rows = bench(names, max(1, args.repeat), args.capacity_s)
    if args.json:
        data = {"machine": machine, "rule": rule, "rows": [asdict(row) for row in rows]}
        print(json.dumps(data, indent=2))
    else:
        print(markdown(rows, machine, rule))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
