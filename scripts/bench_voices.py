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
  synthesize the 150-character text back to back for ``--capacity-s``; and the same
  from CPU time alone (2 / CPU per audio second), which other work on the machine
  disturbs far less.

Then why Kokoro is not decoded in windows as Piper is: its decoder (everything after
the text encoder and the prosody predictor, cut out of the pinned model by tensor name)
is run once over a sentence and over windows with context on both sides; the SNR of
the windows' audio against the one-call audio is printed per window and context size.

The machine is shared: before each engine the tool waits (up to 3 minutes) for other
processes to go quiet, and the CPU they used during its run is reported beside its
figures (``other cpu %``, of one core), since it makes every latency worse.

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

from ._common import (
    REPO_ROOT,
    machine_busy_seconds,
    machine_info,
    process_cpu_seconds,
    wait_for_quiet,
)

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
    cpu_capacity_streams: float | None
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


def bench(names: Sequence[str], repeat: int, capacity_s: float, quiet: bool) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        if quiet:
            wait_for_quiet()
        wall0, machine0, own0 = time.perf_counter(), machine_busy_seconds(), _own_cpu()
        try:
            synth, load_s = ENGINES[name]()
            first_30, _, _ = _first_and_cost(synth, TEXT_30, repeat)
            first_150, cpu, rtf = _first_and_cost(synth, TEXT_150, repeat)
            capacity = _capacity(synth, capacity_s)
        except Exception as exc:  # a missing engine is reported, not fatal
            rows.append(Row(name, None, None, None, None, None, None, None, 0.0, f"skipped: {exc}"))
            continue
        wall = time.perf_counter() - wall0
        other = 100 * (machine_busy_seconds() - machine0 - (_own_cpu() - own0)) / wall
        by_cpu = CAPACITY_WORKERS / cpu if cpu else None
        rows.append(
            Row(name, load_s, first_30, first_150, cpu, rtf, capacity, by_cpu, max(0.0, other))
        )
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


#: The decoder's inputs in the pinned model (sha256 6e742170...06cb), found by reading the
#: graph: the text features aligned to frames (``asr``, [1, 512, T]), F0 and energy
#: ([1, 2T]), and the style; its output is the audio (600 samples per frame).
DECODER_INPUTS: Final = (
    "/encoder/MatMul_1_output_0",
    "/encoder/Reshape_output_0",
    "/encoder/Reshape_1_output_0",
    "style",
)
#: (window, context each side) in frames of 25 ms: Piper's sizes and larger.
DECODER_WINDOWS: Final = ((16, 8), (32, 16), (64, 32), (128, 64))


def windowed_decoder_snr() -> dict[str, Any]:
    """SNR (dB) of Kokoro's decoder run over windows with context against its one call,
    for ``TEXT_150``'s first sentence."""
    import onnx
    import onnx.utils
    import onnxruntime

    model_dir = REPO_ROOT / "models" / "kokoro"
    source = model_dir / "kokoro-v1.0.int8.onnx"
    if not source.is_file():
        return {"skipped": f"no Kokoro model in {model_dir}"}
    engine, voice, _ = _kokoro_engine()
    entry = engine._table()[voice.id]  # the engine's phonemes, on purpose
    tokens = engine._phonemes(entry, TEXT_150.split(". ")[0] + ".")
    vocab = engine._ensure_model().vocab
    ids = [0, *(vocab[t] for t in tokens), 0]
    style = engine._style(entry)[len(tokens) - 1]
    work = Path(tempfile.mkdtemp(prefix="bench-voices-"))
    model = onnx.load(str(source))
    for name in DECODER_INPUTS[:3]:
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    onnx.save(model, str(work / "whole.onnx"))
    onnx.utils.extract_model(
        str(source), str(work / "decoder.onnx"), list(DECODER_INPUTS), ["audio"],
        check_model=False,
    )  # fmt: skip
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    whole = onnxruntime.InferenceSession(str(work / "whole.onnx"), options)
    decoder = onnxruntime.InferenceSession(str(work / "decoder.onnx"), options)
    audio, asr, f0, energy = whole.run(
        None,
        {
            "tokens": np.asarray([ids], dtype=np.int64),
            "style": style,
            "speed": np.asarray([1.0], dtype=np.float32),
        },
    )
    frames = asr.shape[-1]
    per_frame = f0.shape[-1] // frames
    reference = np.asarray(audio, dtype=np.float64).reshape(-1)
    alone = decoder.run(
        None, {DECODER_INPUTS[0]: asr, DECODER_INPUTS[1]: f0, DECODER_INPUTS[2]: energy,
               "style": style},
    )[0].reshape(-1)  # fmt: skip
    # The cut is right: the decoder alone over every frame is the one-call audio.
    result: dict[str, Any] = {
        "frames": frames,
        "decoder alone equals one call": bool(np.array_equal(alone, reference)),
    }
    for window, context in DECODER_WINDOWS:
        pieces = []
        for start in range(0, frames, window):
            end = min(frames, start + window)
            lo, hi = max(0, start - context), min(frames, end + context)
            out = decoder.run(
                None,
                {
                    DECODER_INPUTS[0]: asr[..., lo:hi],
                    DECODER_INPUTS[1]: f0[..., lo * per_frame : hi * per_frame],
                    DECODER_INPUTS[2]: energy[..., lo * per_frame : hi * per_frame],
                    "style": style,
                },
            )[0].reshape(-1)
            samples = out.size // (hi - lo)
            pieces.append(out[(start - lo) * samples : (end - lo) * samples])
        windowed = np.concatenate(pieces)[: reference.size]
        noise = float(np.sum((reference[: windowed.size] - windowed) ** 2))
        snr = 10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-30))
        result[f"window {window}, context {context}"] = round(float(snr), 1)
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: Sequence[Row], machine: dict[str, object], rule: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cores']} cores, {machine['cpu']}, onnxruntime "
        f"{machine['onnxruntime']}; one onnxruntime thread per synthesis.",
        f"Kokoro's real-time rule as measured at load: {rule}",
        "",
        "| engine | load (s) | first audio 30 ch (ms) | first audio 150 ch (ms) "
        "| CPU s / audio s | wall RTF | streams, 2 workers (measured) "
        "| streams, 2 cores (by CPU time) | other cpu % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.engine} | {_fmt(row.load_s, '.2f')} | {_fmt(row.first_30_ms, '.0f')} "
            f"| {_fmt(row.first_150_ms, '.0f')} | {_fmt(row.cpu_per_audio_s, '.3f')} "
            f"| {_fmt(row.rtf_wall, '.3f')} | {_fmt(row.capacity_streams, '.1f')} "
            f"| {_fmt(row.cpu_capacity_streams, '.1f')} | {row.other_cpu_pct:.0f} | {row.note} |"
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
    parser.add_argument(
        "--skip-decoder-snr", action="store_true", help="skip the windowed-decoder SNR"
    )
    parser.add_argument(
        "--no-wait-quiet",
        action="store_true",
        help="do not wait (up to 3 min) for other processes to go quiet before each engine",
    )
    args = parser.parse_args(argv)
    names = args.engine or list(ENGINES)
    machine = machine_info()
    if not args.no_wait_quiet:
        wait_for_quiet()
    rule = calibration()
    rows = bench(names, max(1, args.repeat), args.capacity_s, not args.no_wait_quiet)
    snr = {} if args.skip_decoder_snr else windowed_decoder_snr()
    if args.json:
        data = {
            "machine": machine,
            "rule": rule,
            "rows": [asdict(row) for row in rows],
            "windowed_decoder_snr_db": snr,
        }
        print(json.dumps(data, indent=2))
    else:
        print(markdown(rows, machine, rule))
        if snr:
            print(f"\nKokoro decoder in windows vs one call, SNR in dB: {snr}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
