"""``tts-streamer say|voices|status`` against the real server (fake engine).

``cli.main`` runs its own ``trio.run``, so each call runs in a worker thread while the
server runs in the test's event loop.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from streamer.client import RecordingSink, cli
from streamer.server.app import RunningServer
from tests.support import REPO_ROOT
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
    assert lines[0].split() == ["ID", "LANGUAGE", "ENGINE", "QUALITY", "RATE", "SPEAKERS", "NAME"]
    assert any(line.startswith("fake-es") and "ana,luis" in line for line in lines)
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
