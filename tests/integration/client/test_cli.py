"""``tts-streamer`` (one parser: ``serve`` and ``say|voices|status``) against the real
server (fake engine).

``cli.main`` runs its own ``trio.run``, so each call runs in a worker thread while the
server runs in the test's event loop.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import pytest
import soundfile as sf
import trio

from streamer import cli
from streamer.client import RecordingSink
from streamer.client import cli as cli_client
from streamer.server.app import RunningServer
from tests.support import REPO_ROOT
from tests.support.audio_files import ffprobe_seconds, needs_ffprobe, soundfile_frames, wave_frames
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

WAIT = 30
REPO = REPO_ROOT


@dataclass
class Run:
    code: int
    out: str
    err: str


async def run_cli(*argv: str, sink: RecordingSink | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(WAIT):
        code = await trio.to_thread.run_sync(
            partial(cli.main, list(argv), stdout=out, stderr=err, sink=sink)
        )
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


def ws(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.websocket_port}"


def http(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


async def test_say_writes_a_wav_file_with_a_summary(server: RunningServer, tmp_path: Path) -> None:
    target = tmp_path / "hello.wav"
    run = await run_cli("say", "Hello there. Bye.", "-o", str(target), "--url", ws(server))
    assert run.code == 0, run.err
    data = target.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert not (tmp_path / "hello.wav.part").exists()
    assert run.err.startswith(f"wrote {target}: ") and "voice fake-en" in run.err


async def test_say_takes_the_format_from_the_suffix_and_shows_progress(
    server: RunningServer, tmp_path: Path
) -> None:
    target = tmp_path / "long.mp3"
    text = " ".join(["This is a sentence."] * 30)
    run = await run_cli("say", text, "-o", str(target), "--url", ws(server), "--progress",
                        "--language", "es", "--priority", "critical")
    assert run.code == 0, run.err
    data = target.read_bytes()
    assert data[0] == 0xFF and data[1] & 0xE0 == 0xE0  # an MPEG audio frame header
    assert "s of audio received" in run.err
    assert "mp3" in run.err and "voice fake-es" in run.err


async def test_say_reports_a_server_error_with_status_1_and_writes_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    target = tmp_path / "x.wav"
    run = await run_cli("say", "hi", "--voice", "nobody", "-o", str(target), "--url", ws(server))
    assert run.code == 1
    assert "server error unknown_voice" in run.err and "fake-en" in run.err
    assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_say_plays_through_the_sink(server: RunningServer) -> None:
    sink = RecordingSink()
    run = await run_cli("say", "Play this.", "--play", "--url", ws(server), sink=sink)
    assert run.code == 0, run.err
    assert sink.formats[0].sample_rate == FAKE_RATE and len(sink.audio) > 0
    assert sink.drained == 1
    assert run.err.startswith("played ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["say", "hi"], "one of the arguments -o/--output --play is required"),
        (["say", "hi", "-o", "x.wav", "--priority", "urgent"], "invalid choice"),
        (["say", "   ", "-o", "x.wav"], "no text to say"),
        (["say", "hi", "--play", "--format", "mp3"], "--play needs --format pcm"),
        (["dance"], "invalid choice"),
    ],
)
async def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    run = await run_cli(*argv)
    assert run.code == 2 and message in run.err


async def test_connection_refused_exits_2(tmp_path: Path) -> None:
    port = _free_port()
    run = await run_cli("say", "hi", "-o", str(tmp_path / "x.wav"),
                        "--url", f"ws://127.0.0.1:{port}")
    assert run.code == 2 and f"cannot connect to ws://127.0.0.1:{port}" in run.err
    assert list(await trio.Path(tmp_path).iterdir()) == []
    run = await run_cli("voices", "--http", f"http://127.0.0.1:{port}")
    assert run.code == 2 and "cannot reach" in run.err


async def test_voices_and_status(server: RunningServer) -> None:
    run = await run_cli("voices", "--http", http(server))
    assert run.code == 0
    lines = run.out.splitlines()
    assert lines[0].split() == [
        "ID", "TAG", "ENGINE", "QUALITY", "RATE", "SPEAKERS", "DEFAULT", "LANGUAGE", "NAME"
    ]
    # Language names, not bare codes; the default of its tag marked.
    assert any(
        line.startswith("fake-es") and "ana,luis" in line and " yes " in line
        and "Spanish" in line
        for line in lines
    )
    spanish = await run_cli("voices", "--language", "es", "--http", http(server))
    assert [line.split()[0] for line in spanish.out.splitlines()[1:]] == ["fake-es"]
    raw = await run_cli("voices", "--json", "--http", http(server))
    assert '"count": 2' in raw.out

    status = await run_cli("status", "--http", http(server))
    assert status.code == 0
    assert f"websocket:  ws://127.0.0.1:{server.websocket_port}" in status.out
    assert "ready" in status.out and "fake (loaded)" in status.out


def test_the_console_script_dispatches_client_commands(tmp_path: Path) -> None:
    # Through ``python -m streamer``: streamer/cli.py hands say/voices/status over.
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "say", "hi", "-o", str(tmp_path / "x.wav"),
         "--url", f"ws://127.0.0.1:{port}"],
        cwd=REPO, capture_output=True, text=True, timeout=WAIT, check=False,
    )
    assert done.returncode == 2 and "cannot connect" in done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "streamer", "say", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=WAIT, check=False,
    )
    assert helped.returncode == 0 and "--play" in helped.stdout


# --- one command root ---------------------------------------------------------------


async def test_one_parser_lists_serve_and_the_client_commands() -> None:
    run = await run_cli("--help")
    assert run.code == 0
    for command in ("serve", "say", "voices", "status"):
        assert f"    {command} " in run.out


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "missing.json"],  # no command: serve, as the seed ran it
        ["serve", "--config", "missing.json"],
        ["--config", "missing.json", "serve"],  # the root's --config reaches serve
    ],
)
async def test_serve_is_the_default_command_and_takes_config_either_side(
    argv: list[str],
) -> None:
    run = await run_cli(*argv)
    assert run.code == 2 and "config file missing.json not found" in run.err


def test_the_client_commands_do_not_import_the_server_nor_the_server_the_client() -> None:
    probe = (
        "import sys, streamer.cli, streamer.client.cli, streamer.client.asyncio_client\n"
        # `keys create` is the one server room the command root loads (key making);
        # nothing of the transports, sessions or engines comes with it.
        "loaded = [m for m in sys.modules if m.startswith('streamer.server')]\n"
        "assert not [m for m in loaded if m != 'streamer.server'\n"
        "            and not m.startswith('streamer.server.security')], loaded\n"
        "assert not [m for m in sys.modules if m.startswith(('hypercorn', 'streamer.engines'))]\n"
        "for m in [m for m in sys.modules if m.startswith('streamer')]: del sys.modules[m]\n"
        "import streamer.server.app\n"
        "assert not [m for m in sys.modules if m.startswith(('streamer.client', 'streamer.cli'))]\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=WAIT, check=False)
    assert done.returncode == 0, done.stderr


# --- say -o: the file is what its suffix says, with an exact header ------------------

TEXT = "Hello there. Bye."


async def _samples_sent(server: RunningServer, tmp_path: Path) -> int:
    """Samples the fake engine makes for TEXT, counted from a raw 16-bit download."""
    raw = tmp_path / "reference.pcm"
    run = await run_cli("say", TEXT, "-o", str(raw), "--url", ws(server))
    assert run.code == 0, run.err
    return raw.stat().st_size // 2


def _opus_pre_skip(data: bytes) -> int:
    head = data.index(b"OpusHead")
    return int.from_bytes(data[head + 10 : head + 12], "little")


@needs_ffprobe
@pytest.mark.parametrize(
    "suffix", [".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".aac"]
)
async def test_saved_files_open_everywhere_with_the_same_length(
    server: RunningServer, tmp_path: Path, suffix: str
) -> None:
    count = await _samples_sent(server, tmp_path)
    target = tmp_path / f"x{suffix}"
    run = await run_cli("say", TEXT, "-o", str(target), "--url", ws(server))
    assert run.code == 0, run.err
    fmt = cli_client.FORMAT_BY_SUFFIX[suffix]
    assert f" {fmt} {FAKE_RATE} Hz" in run.err
    seconds = ffprobe_seconds(target)
    if suffix == ".wav":
        assert wave_frames(target) == soundfile_frames(target) == count
        assert seconds == Fraction(count, FAKE_RATE)
    elif suffix in (".flac", ".oga"):
        assert soundfile_frames(target) == count and seconds == Fraction(count, FAKE_RATE)
    elif suffix in (".ogg", ".opus"):
        # ffprobe counts the decoder's pre-skip (48 kHz) in; libsndfile trims it.
        assert soundfile_frames(target) == count
        pre_skip = _opus_pre_skip(target.read_bytes())
        assert seconds == Fraction(count, FAKE_RATE) + Fraction(pre_skip, 48000)
    elif suffix == ".mp3":
        # No gapless tag in a stream: both readers include LAME's delay and padding.
        frames = soundfile_frames(target)
        assert seconds == Fraction(frames, FAKE_RATE)
        assert count <= frames < count + 3 * 576
    else:  # ADTS AAC: whole 1024-sample frames, one of encoder priming first
        assert count + 1024 <= seconds * FAKE_RATE < count + 3 * 1024
        assert target.read_bytes()[:2] in (b"\xff\xf1", b"\xff\xf9")


@pytest.mark.parametrize(
    ("suffix", "subtype", "width"),
    [(".pcm", "PCM_16", 2), (".raw", "PCM_16", 2), (".f32", "FLOAT", 4),
     (".ulaw", "ULAW", 1), (".mulaw", "ULAW", 1), (".alaw", "ALAW", 1)],
)
async def test_raw_files_hold_exactly_the_samples(
    server: RunningServer, tmp_path: Path, suffix: str, subtype: str, width: int
) -> None:
    count = await _samples_sent(server, tmp_path)
    target = tmp_path / f"x{suffix}"
    run = await run_cli("say", TEXT, "-o", str(target), "--url", ws(server),
                        "--sample-rate", str(FAKE_RATE))
    assert run.code == 0, run.err
    assert target.stat().st_size == count * width
    data, _ = sf.read(str(target), format="RAW", subtype=subtype, samplerate=FAKE_RATE,
                      channels=1)
    assert data.shape == (count,)


@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".webm", ".vorbis", ".xyz", ".MP4"])
async def test_a_suffix_of_a_format_not_produced_is_refused(
    server: RunningServer, tmp_path: Path, suffix: str
) -> None:
    target = tmp_path / f"hola{suffix}"
    run = await run_cli("say", "Hola", "-o", str(target), "--url", ws(server))
    assert run.code == 2
    assert suffix.lower() in run.err and "--format" in run.err
    assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_no_suffix_is_wav_and_format_overrides_the_suffix(
    server: RunningServer, tmp_path: Path
) -> None:
    plain = tmp_path / "speech"
    assert (await run_cli("say", TEXT, "-o", str(plain), "--url", ws(server))).code == 0
    assert plain.read_bytes()[:4] == b"RIFF" and wave_frames(plain) > 0
    forced = tmp_path / "speech.m4a"
    run = await run_cli("say", TEXT, "-o", str(forced), "--format", "aac", "--url", ws(server))
    assert run.code == 0, run.err
    assert forced.read_bytes()[:2] in (b"\xff\xf1", b"\xff\xf9")


# --- a closed stdout -------------------------------------------------------------------


async def _with_closed_stdout(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m streamer ARGV`` with stdout a pipe nobody reads any more (what
    ``| head -5`` leaves once head has its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with trio.fail_after(WAIT):
            return await trio.run_process(
                [sys.executable, "-m", "streamer", *argv], cwd=REPO, stdout=write_end,
                capture_stderr=True, check=False,
            )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", ["voices", "status"])
async def test_a_closed_stdout_ends_quietly(server: RunningServer, command: str) -> None:
    done = await _with_closed_stdout(command, "--http", http(server))
    assert done.stderr == b""  # no BrokenPipeError traceback
    assert done.returncode == 141


async def test_say_to_a_closed_stdout_ends_quietly(server: RunningServer) -> None:
    done = await _with_closed_stdout("say", TEXT, "-o", "-", "-q", "--url", ws(server))
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
    assert done.returncode == 141
