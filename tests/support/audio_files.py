"""Test helpers: what three independent readers say a saved audio file holds.

libsndfile (``soundfile``), Python's ``wave`` and ``ffprobe`` each parse the header
their own way; a file "opens everywhere" when they agree with each other and with the
samples actually in it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import pytest
import soundfile as sf

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe (ffmpeg) not installed")


def soundfile_frames(path: Path) -> int:
    """Frames in the header (``info``) — and checks that many can actually be read."""
    frames = sf.info(str(path)).frames
    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    assert data.shape[0] == frames, f"soundfile: header says {frames}, read {data.shape[0]}"
    return int(frames)


def wave_frames(path: Path) -> int:
    """Frames in the header (``getnframes``) — and checks they are all there."""
    with wave.open(str(path), "rb") as reader:
        frames = reader.getnframes()
        read = len(reader.readframes(frames + 1)) // (reader.getsampwidth() * reader.getnchannels())
    assert read == frames, f"wave: header says {frames}, read {read}"
    return frames


def ffprobe_seconds(path: Path) -> Fraction:
    """The first audio stream's duration as ffprobe states it (exact, from its time base)."""
    assert FFPROBE is not None
    done = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "a:0",
         "-show_entries", "stream=duration_ts,time_base,duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )
    stream = json.loads(done.stdout)["streams"][0]
    assert "duration_ts" in stream, f"ffprobe knows no duration for {path.name}: {stream}"
    return Fraction(stream["time_base"]) * int(stream["duration_ts"])
