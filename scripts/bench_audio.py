"""Benchmark the audio output stage: encoding cost and first-byte delay per format.

For each format, a speech-like 22050 Hz signal (a voice's native rate) goes through
AudioPipeline with the format's defaults:

- cost: ``--seconds`` of audio pushed in 0.3 s chunks (clause-sized), then finish();
  CPU ms per second of audio and the real-time factor (best of ``--repeat``).
- first byte: wall time of the first push() of a 0.3 s first chunk into a fresh
  pipeline, and of push_iter() until its first frame (medians of ``--trials``); the
  latter minus the raw ``pcm`` baseline is the delay the format adds before its first
  byte can be sent. Setup (the constructor) is reported apart: the server builds the
  pipeline when the request arrives, before the engine's first chunk.
- held: how much of that first chunk is not yet decodable from the bytes out so far
  (resampler delay, codec look-ahead and paging; see streamer/audio/_encoders.py). For
  AAC the priming frame does not count as audio.

Usage: python -m scripts.bench_audio [--seconds 10] [--repeat 3] [--trials 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamer.audio import SUPPORTED_FORMATS, AudioPipeline, OutputSpec

VOICE_RATE = 22050
FIRST_CHUNK_S = 0.3  # a first clause, as the engines cut them
Pcm = npt.NDArray[np.float32]


@dataclass
class Row:
    case: str
    rate: int
    cpu_ms_per_s: float
    realtime_x: float
    setup_ms: float
    first_push_ms: float
    first_frame_ms: float
    added_first_byte_ms: float
    held_ms: float | None


def speech_like(seconds: float, rate: int, seed: int = 0) -> Pcm:
    """Voiced harmonics with a wandering pitch, noise bursts and syllable envelopes."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    noise = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 1.3 * t) > 0.6)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = envelope * (0.25 * voiced + 0.08 * noise)
    pcm: Pcm = (0.6 * signal / np.max(np.abs(signal))).astype(np.float32)
    return pcm


def decodable_seconds(name: str, data: bytes, rate: int) -> float | None:
    """Audio decodable from a stream's first bytes, by parsing its container."""
    if name in ("pcm", "wav"):
        return (len(data) - (44 if name == "wav" else 0)) / 2 / rate
    if name == "pcm_f32":
        return len(data) / 4 / rate
    if name in ("mulaw", "alaw"):
        return len(data) / rate
    if name in ("ogg", "opus", "ogg_vorbis"):
        granule, preskip, offset = 0, 0, 0
        while offset + 27 <= len(data):
            segments = data[offset + 26]
            body_start = offset + 27 + segments
            body_len = sum(data[offset + 27 : body_start])
            if data[body_start : body_start + 8] == b"OpusHead":
                preskip = struct.unpack_from("<H", data, body_start + 10)[0]
            granule = max(granule, struct.unpack_from("<q", data, offset + 6)[0])
            offset = body_start + body_len
        if name == "ogg_vorbis":
            return granule / rate
        return max(0, granule - preskip) / 48000  # Opus granules are 48 kHz samples
    if name == "mp3":
        frames, offset = 0, 0
        while offset + 4 <= len(data):
            b1, b2 = data[offset + 1], data[offset + 2]
            lsf = ((b1 >> 3) & 3) != 3
            kbps = (
                (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
                if lsf
                else (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
            )[b2 >> 4]
            offset += (72 if lsf else 144) * kbps * 1000 // rate + ((b2 >> 1) & 1)
            frames += 1
        # LAME's encoder delay plus the decoder's: 576 + 529 samples before the audio.
        return max(0, frames * (576 if lsf else 1152) - 1105) / rate if frames else 0.0
    if name == "aac":
        frames, offset = 0, 0
        while offset + 7 <= len(data):
            offset += (int.from_bytes(data[offset + 3 : offset + 6], "big") >> 5) & 0x1FFF
            frames += 1
        return max(0, frames - 1) * 1024 / rate  # the first frame is the encoder's priming
    return None  # flac: frames are not self-delimiting without decoding


def measure(name: str, spec: OutputSpec, signal: Pcm, args: argparse.Namespace) -> Row:
    chunk = round(FIRST_CHUNK_S * VOICE_RATE)
    chunks = [signal[i : i + chunk] for i in range(0, signal.size, chunk)]
    seconds = signal.size / VOICE_RATE

    cpu_best = float("inf")
    for _ in range(args.repeat):
        pipeline = AudioPipeline(spec, VOICE_RATE)
        start = time.process_time()
        for piece in chunks:
            pipeline.push(piece)
        pipeline.finish()
        cpu_best = min(cpu_best, time.process_time() - start)

    setups, pushes, firsts, held = [], [], [], []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        pipeline = AudioPipeline(spec, VOICE_RATE)
        t1 = time.perf_counter()
        frames = pipeline.push(chunks[0])
        t2 = time.perf_counter()
        pipeline.close()
        setups.append(t1 - t0)
        pushes.append(t2 - t1)
        # The same with push_iter(): time until the first frame can be sent.
        pipeline = AudioPipeline(spec, VOICE_RATE)
        t3 = time.perf_counter()
        next(pipeline.push_iter(chunks[0]), None)
        firsts.append(time.perf_counter() - t3)
        pipeline.close()
        rate = pipeline.stream_format.sample_rate
        out = decodable_seconds(spec.format, b"".join(frames), rate)
        if out is not None:
            held.append(FIRST_CHUNK_S - out)
    return Row(
        case=name,
        rate=pipeline.stream_format.sample_rate,
        cpu_ms_per_s=1000 * cpu_best / seconds,
        realtime_x=seconds / cpu_best,
        setup_ms=1000 * statistics.median(setups),
        first_push_ms=1000 * statistics.median(pushes),
        first_frame_ms=1000 * statistics.median(firsts),
        added_first_byte_ms=0.0,
        held_ms=1000 * statistics.median(held) if held else None,
    )


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_audio", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)

    signal = speech_like(args.seconds, VOICE_RATE)
    cases: list[tuple[str, OutputSpec]] = [(name, OutputSpec(name)) for name in SUPPORTED_FORMATS]
    cases += [
        ("pcm 48 kHz (resampled)", OutputSpec("pcm", sample_rate=48000)),
        ("pcm trim+volume", OutputSpec("pcm", trim_silence=True, volume=1.5)),
        ("mp3 44.1 kHz 128k", OutputSpec("mp3", sample_rate=44100, bitrate=128)),
        ("opus 48 kHz", OutputSpec("opus", sample_rate=48000)),
        ("aac 48 kHz", OutputSpec("aac", sample_rate=48000)),
    ]
    rows = [measure(name, spec, signal, args) for name, spec in cases]
    baseline = next(row.first_frame_ms for row in rows if row.case == "pcm")
    for row in rows:
        row.added_first_byte_ms = row.first_frame_ms - baseline

    if args.json:
        print(json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2))
        return
    print(f"Machine: {machine()}; {args.seconds:g} s of 22050 Hz speech-like audio,")
    print(f"pushed in {FIRST_CHUNK_S} s chunks.\n")
    print(
        "| format | out Hz | CPU ms / s audio | × real time | setup ms "
        "| push() ms | first frame ms | added first-byte ms | first chunk held ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        held = "n/a" if r.held_ms is None else f"{r.held_ms:.0f}"
        print(
            f"| {r.case} | {r.rate} | {r.cpu_ms_per_s:.2f} | {r.realtime_x:.0f} "
            f"| {r.setup_ms:.2f} | {r.first_push_ms:.2f} | {r.first_frame_ms:.2f} "
            f"| {r.added_first_byte_ms:+.2f} "
            f"| {held} |"
        )


if __name__ == "__main__":
    main()
