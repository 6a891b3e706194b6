"""Every code block in README.md and protocol_docs/ runs as written.

A fenced block's info string says how it is checked:

- ``python runnable`` / ``sh runnable``: run, unchanged but for the ports (8080/8081 and
  Wyoming's 10200 → the test server's), in a scratch directory, against a server on the
  fake engine; it must exit 0. Playback goes to a recording (``TTS_STREAMER_PLAYBACK=record``).
- ``python runnable keyed`` / ``sh runnable keyed``: the same against a server that
  asks for an API key, with the key in ``$TTS_STREAMER_API_KEY``.
- ``sh norun``: a command about the machine (``make``, ``docker``), or a set-up that
  starts a server of its own or has a placeholder to fill (``<key>``); allowed only for
  those commands.
- ``json``: must parse.
- no language: a transcript of messages, not code.

Any other python or shell block fails the test: a new example must say how it runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from streamer.server import RunningServer
from streamer.server.security import create_key
from tests.support import REPO_ROOT
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

REPO = REPO_ROOT
DOCS = [REPO / "README.md", *sorted((REPO / "protocol_docs").glob("*.md"))]
#: A fenced block: its indentation, info string and body.
_FENCE = re.compile(r"^( *)```([^\n`]*)\n(.*?)^\1```\s*$", re.S | re.M)
#: Commands a ``norun`` block may hold: they act on the machine, start a server of their
#: own, or carry a placeholder (``<key>``) for the reader to fill.
NORUN_COMMANDS = ("make ", "docker ", "systemctl ", "tts-streamer ", "TTS_STREAMER_API_KEY=<")
#: Longest one example may take (a server on the fake engine answers in milliseconds).
EXAMPLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: tuple[str, ...]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            indent = match.group(1)
            code = "\n".join(line.removeprefix(indent) for line in match.group(3).splitlines())
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, tuple(match.group(2).split()), code + "\n"))
    return found


BLOCKS = _blocks()
CODE = [b for b in BLOCKS if b.info and b.info[0] in ("python", "sh", "bash", "console")]


def test_the_docs_have_runnable_examples() -> None:
    assert sum("runnable" in b.info for b in CODE) >= 6


@pytest.mark.parametrize("block", CODE, ids=[b.id for b in CODE])
def test_every_code_block_says_how_it_runs(block: Block) -> None:
    assert "runnable" in block.info or "norun" in block.info, block.id
    if "norun" in block.info:
        assert block.info[0] != "python", f"{block.id}: a Python example must run"
        joined = block.code.replace("\\\n", " ")  # continuation lines
        commands = [
            ln for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")
        ]
        assert all(ln.startswith(NORUN_COMMANDS) for ln in commands), block.id


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.info[:1] == ("json",)], ids=lambda b: b.id
)
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.code)


def _with_ports(code: str, server: RunningServer) -> str:
    for host in ("127.0.0.1", "localhost"):
        code = code.replace(f"{host}:8081", f"127.0.0.1:{server.websocket_port}")
        code = code.replace(f"{host}:8080", f"127.0.0.1:{server.http_port}")
        code = code.replace(f"{host}:10200", f"127.0.0.1:{server.wyoming_port}")
    return code


RUNNABLE = [b for b in CODE if "runnable" in b.info]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
async def test_runnable_examples_run_against_a_server(block: Block, tmp_path: Path) -> None:
    key, entry = create_key("docs")
    # The default language (es) and format, as a user gets them; Wyoming on too
    # (protocol_docs/wyoming.md).
    server = {"wyoming_port": 0}
    config = (
        make_config(server=server, security={"api_keys": [entry]})
        if "keyed" in block.info
        else make_config(server=server)
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as server:
        code = _with_ports(block.code, server)
        env = os.environ | {
            "TTS_STREAMER_PLAYBACK": "record",
            "TTS_STREAMER_API_KEY": key,
            "TTS_STREAMER_URL": f"ws://127.0.0.1:{server.websocket_port}",
            "TTS_STREAMER_HTTP": f"http://127.0.0.1:{server.http_port}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        command = [sys.executable, "-c", code] if block.info[0] == "python" else [
            "bash", "-euo", "pipefail", "-c", code
        ]
        with trio.fail_after(EXAMPLE_TIMEOUT_S):
            result = await trio.run_process(
                command, cwd=tmp_path, env=env, capture_stdout=True, capture_stderr=True,
                check=False,
            )
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- code\n{code}\n--- stderr\n"
        + result.stderr.decode(errors="replace")[-3000:]
    )
