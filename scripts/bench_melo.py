"""Benchmark MeloEngine: load time, time to first audio and real-time factor.

Without ``--checkpoint-dir`` it measures the **MeloTTS tiny random-weight fixture**
(``streamer.testing``: real melo code and front-ends, hidden sizes ~12x smaller
than the published models), built in a temporary directory and run offline. Its
figures bound the text front-end and streaming overhead; they say nothing about the
published models' speed, which no machine here can download.

For each voice, one short and one long sentence (the ones ``bench_engines`` uses) are
synthesized ``--repeat`` times after a warm-up, the way the server drives an engine
(``stream()``, then ``next()`` until exhausted, one thread); medians are reported.

    python -m scripts.bench_melo                    # tiny fixture, 1 torch thread
    python -m scripts.bench_melo --threads 2
    python -m scripts.bench_melo --checkpoint-dir /models/melo   # real models, offline
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamer.engines.base import Voice
from streamer.engines.melo import MeloEngine
from streamer.testing import build_tiny_melo, melo_offline_environment
from streamer.testing import checkpoint_dir as fixture_checkpoint_dir

from ._engine_timing import measure_stream

#: Voice id -> (short, long) sentence, as in ``scripts.bench_engines``.
SENTENCES: dict[str, tuple[str, str]] = {
    "melo-es": (
        "Hola, ¿cómo estás hoy, amigo?",
        "El tren de alta velocidad salió de Madrid a las ocho de la mañana, y llegó a "
        "Barcelona poco antes de las once, justo a tiempo para la reunión del equipo.",
    ),
    "melo-en-us": (
        "Hello, how are you doing today?",
        "The high-speed train left the station at eight in the morning, and it reached "
        "the city a little before eleven, just in time for the team's weekly meeting.",
    ),
}
#: Repetitions per sentence; the median is reported, so one slow outlier does not count.
DEFAULT_REPEAT = 7
FIXTURE_LABEL = "MeloTTS tiny random-weight fixture"


@dataclass(frozen=True, slots=True)
class Row:
    voice: str
    chars: int
    first_audio_ms: float
    rtf: float
    audio_s: float


def _machine() -> str:
    def run(command: str) -> str:
        try:
            return subprocess.run(
                command, shell=True, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return "?"

    model = run("lscpu | grep 'Model name'").split(":", 1)[-1].strip()
    return f"nproc={run('nproc')}, {model}"


@contextlib.contextmanager
def _checkpoints(checkpoint_dir: Path | None) -> Iterator[tuple[Path, str]]:
    """The checkpoint dir to load and its label; builds the fixture when none is given."""
    if checkpoint_dir is not None:
        yield checkpoint_dir, f"MeloTTS checkpoints in {checkpoint_dir}"
        return
    with tempfile.TemporaryDirectory(prefix="bench-melo-") as tmp:
        started = time.perf_counter()
        root = build_tiny_melo(Path(tmp))
        print(f"fixture built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with melo_offline_environment(root):
            yield fixture_checkpoint_dir(root), FIXTURE_LABEL


def _measure(engine: MeloEngine, voice: Voice, text: str, repeat: int) -> Row:
    first_ms, rtf, seconds = measure_stream(engine, voice, text, repeat)
    return Row(voice.id, len(text), first_ms, rtf, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_melo",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    with _checkpoints(args.checkpoint_dir) as (checkpoint_dir, label):
        engine = MeloEngine(
            languages=("EN", "ES"), checkpoint_dir=checkpoint_dir, threads=args.threads
        )
        started = time.perf_counter()
        engine.load()  # includes importing melo and its language front-ends
        load_s = time.perf_counter() - started
        voices = {voice.id: voice for voice in engine.voices()}
        rows: list[Row] = []
        for voice_id, texts in SENTENCES.items():
            voice = voices[voice_id]
            engine.warm_up(voice)
            rows.extend(_measure(engine, voice, text, max(1, args.repeat)) for text in texts)

    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "scripts.bench_melo", *given])
    print(f"{label}; {args.threads} torch thread(s); `{command}`")
    print(f"Machine: {_machine()}")
    print(f"Load (import melo + EN and ES models): {load_s:.2f} s")
    print()
    print("| voice | chars | first audio (ms) | RTF | audio (s) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.voice} | {row.chars} | {row.first_audio_ms:.1f} "
            f"| {row.rtf:.4f} | {row.audio_s:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
