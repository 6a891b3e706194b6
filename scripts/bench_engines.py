"""Benchmark every engine that loads here: load time, time to first audio, real-time factor.

For each engine and language it speaks among Spanish and English, one short (~30
characters) and one long (~150 characters) sentence are synthesized ``--repeat`` times
after a warm-up, the way the server drives an engine: ``stream()`` then ``next()`` until
exhausted, in one thread. Reported per sentence, as medians:

- first audio: from ``stream()`` to the first chunk (what a listener waits for);
- RTF: total synthesis time / duration of the audio (below 1 is faster than real time).

Engines that fail to import or construct (Piper's or MeloTTS's module not there yet,
MeloTTS not installed) are listed as skipped with the reason.

    python -m scripts.bench_engines            # markdown table
    python -m scripts.bench_engines --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streamer.engines.base import Engine
from streamer.engines.registry import VoiceRegistry, VoiceSelectionError

from ._engine_timing import measure_stream

#: Requested language → (short, long) sentence. English asks for en-US: espeak's bare
#: ``en`` is British, Piper's packaged voice American.
SENTENCES: dict[str, tuple[str, str]] = {
    "es": (
        "Hola, ¿cómo estás hoy, amigo?",
        "El tren de alta velocidad salió de Madrid a las ocho de la mañana, y llegó a "
        "Barcelona poco antes de las once, justo a tiempo para la reunión del equipo.",
    ),
    "en-US": (
        "Hello, how are you doing today?",
        "The high-speed train left the station at eight in the morning, and it reached "
        "the city a little before eleven, just in time for the team's weekly meeting.",
    ),
}
#: Repetitions per sentence; the median is reported, so one slow outlier does not count.
DEFAULT_REPEAT = 5
#: A skipped engine's reason is cut to this length, to keep the table readable.
NOTE_CHARS = 100


@dataclass(frozen=True, slots=True)
class Row:
    engine: str
    voice: str
    language: str
    chars: int
    load_s: float | None
    first_audio_ms: float | None
    rtf: float | None
    audio_s: float | None
    note: str = ""


def _machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _espeak() -> Engine:
    from streamer.engines.espeak import EspeakEngine

    return EspeakEngine()


def _piper(threads: int, streaming: str) -> Callable[[], Engine]:
    def build() -> Engine:
        from streamer.engines.piper import PiperEngine

        return PiperEngine(None, intra_op_threads=threads, streaming=streaming)

    return build


def _melo(checkpoint_dir: Path | None) -> Callable[[], Engine]:
    def build() -> Engine:
        from streamer.engines.melo import MeloEngine

        return MeloEngine(languages=("EN", "ES"), checkpoint_dir=checkpoint_dir)

    return build


def bench(factories: Sequence[tuple[str, Callable[[], Engine]]], repeat: int) -> list[Row]:
    rows: list[Row] = []
    for label, factory in factories:
        try:
            engine = factory()
            status = engine.status()
            if not status.available:
                raise RuntimeError(status.reason or "unavailable")
            start = time.perf_counter()
            engine.load()
            load_s = time.perf_counter() - start
        except Exception as exc:  # a missing or broken engine is reported, not fatal
            note = f"skipped: {type(exc).__name__}: {exc}"[:NOTE_CHARS]
            rows.append(Row(label, "-", "-", 0, None, None, None, None, note))
            continue
        registry = VoiceRegistry([engine])
        measured = False
        for language, texts in SENTENCES.items():
            try:
                voice = registry.resolve(language, 0)
            except VoiceSelectionError:
                continue  # the engine does not speak it
            for text in texts:
                first_ms, rtf, audio_s = measure_stream(engine, voice, text, repeat)
                rows.append(
                    Row(label, voice.id, voice.language, len(text), load_s, first_ms, rtf, audio_s)
                )
                measured = True
        if not measured:
            rows.append(
                Row(
                    label,
                    "-",
                    "-",
                    0,
                    load_s,
                    None,
                    None,
                    None,
                    f"no es/en-US voice ({status.reason or 'none offered'})",
                )
            )
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: Sequence[Row], machine: dict[str, object]) -> str:
    lines = [
        f"Machine: {machine['cpus']} CPUs, {machine['cpu_model']}, Python {machine['python']}",
        "",
        "| engine | voice | lang | chars | load (s) | first audio (ms) | RTF | audio (s) | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.engine} | {row.voice} | {row.language} | {row.chars} "
            f"| {_fmt(row.load_s, '.3f')} | {_fmt(row.first_audio_ms, '.1f')} "
            f"| {_fmt(row.rtf, '.4f')} | {_fmt(row.audio_s, '.2f')} | {row.note} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_engines",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--threads", type=int, default=1, help="Piper intra-op threads")
    parser.add_argument("--piper-streaming", default="windowed", choices=("windowed", "clause"))
    parser.add_argument(
        "--melo-checkpoint-dir",
        type=Path,
        default=None,
        help="MeloTTS models as <dir>/<LANG>/{config.json,checkpoint.pth} (default: the hub)",
    )
    args = parser.parse_args(argv)

    factories: list[tuple[str, Callable[[], Engine]]] = [
        ("espeak", _espeak),
        (
            f"piper ({args.piper_streaming}, {args.threads} thr)",
            _piper(args.threads, args.piper_streaming),
        ),
        ("melo", _melo(args.melo_checkpoint_dir)),
    ]
    machine = _machine()
    rows = bench(factories, max(1, args.repeat))
    if args.json:
        print(json.dumps({"machine": machine, "rows": [asdict(row) for row in rows]}, indent=2))
    else:
        print(markdown(rows, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
