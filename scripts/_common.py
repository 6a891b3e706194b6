"""Shared by the tools: the texts, a spawned server, percentiles, /proc.

The tools measure from the outside, like a client would, so none of this imports the
server; it starts one as a separate process (``python -m streamer --config FILE``) on
free ports of 127.0.0.1 and stops it with SIGINT (its graceful shutdown), then SIGKILL
if that hangs.

CPU and memory come from ``/proc`` (Linux): per-process CPU seconds (all threads, so
onnxruntime's too), RSS, and the machine's total busy time, from which the tools
report the CPU that neither the server nor the client used (other work on the machine,
which makes every latency figure worse and must be written next to it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: The repository root: spawned servers and the tools' own child processes run from it,
#: so ``streamer`` and ``scripts`` are imported from this tree.
REPO_ROOT: Final = Path(__file__).resolve().parent.parent

# -- texts ------------------------------------------------------------------------------

#: ~30 characters, one clause: first audio is one short encoder call and one window.
TEXT_EN_SHORT: Final = "Hello there, how are you today?"
#: ~150 characters, split at its first comma by the engine.
TEXT_EN_LONG: Final = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away into "
    "the deep dark forest where nobody can ever find it again, not even hunters."
)
#: Spanish goes to espeak-ng (no Spanish Piper voice is bundled): the secondary row.
TEXT_ES_SHORT: Final = "Hola, ¿cómo estás hoy, amigo?"
TEXT_ES_LONG: Final = (
    "El rápido zorro marrón salta sobre el perro perezoso, y luego corre muy lejos "
    "hacia el bosque oscuro donde nadie puede encontrarlo, ni siquiera los cazadores."
)
#: What a voice assistant says in one turn: several sentences, 15-35 s of speech each.
PARAGRAPHS: Final = (
    "Sure, I can help with that. Your next appointment is on Thursday at half past "
    "three, with Doctor Alvarez at the downtown clinic. Would you like me to add a "
    "reminder the evening before, or send the address to your phone?",
    "The weather today will be mostly sunny, with a high of twenty-four degrees and a "
    "light breeze from the west. In the evening, clouds will move in from the coast, "
    "and there is a small chance of rain after midnight. Tomorrow looks cooler.",
    "Here is a quick summary of the article. Researchers found that people who walked "
    "for at least twenty minutes a day slept better and reported less stress. The "
    "effect was strongest in the first month, and it held for most age groups.",
    "To reset your router, first unplug it from the wall and wait about thirty seconds. "
    "Then plug it back in and wait for the lights on the front to turn steady green. "
    "If the internet light stays orange, call your provider and give them this code.",
    "Your order has shipped and should arrive on Monday. The package contains the "
    "blue running shoes in size ten and two pairs of socks. You can track it from the "
    "link in your email, and returns are free for thirty days if anything does not fit.",
    "Good morning! You have three meetings today. The first one starts at nine with the "
    "design team, then lunch with Maria at noon, and a call with the London office at "
    "four. Traffic on your usual route is light, so leaving at eight thirty is fine.",
)

# -- statistics ---------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``ordered``: the smallest value with at least
    ``q`` % of the samples at or below it (so p99 of 20 samples is the maximum)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max and mean of ``values`` (empty: None for each)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats with one decimal."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def stats_row(name: str, values_ms: Sequence[float]) -> list[object]:
    """``name | n | p50 | p95 | p99 | max`` for a latency table."""
    s = summarize(values_ms)
    return [name, s["count"], s["p50"], s["p95"], s["p99"], s["max"]]


LATENCY_HEADERS: Final = ("figure", "n", "p50 ms", "p95 ms", "p99 ms", "max ms")

# -- machine and /proc ----------------------------------------------------------------------

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


def machine_info() -> dict[str, object]:
    """What the figures were measured on (they mean nothing without it)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    mem_gib = os.sysconf("SC_PHYS_PAGES") * _PAGE_BYTES / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "onnxruntime": ort_version,
        "kernel": platform.release(),
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" that ends the command name, utime and stime are fields 12 and 13.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid``, keyed ``name/tid`` (the main thread's
    tid is the pid: that is the server's event loop)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return out


def process_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle since boot (summed over cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _CLOCK_TICKS


@dataclass
class CpuSample:
    """A point in time to subtract from: wall clock, server, client and machine CPU."""

    wall: float
    server: float
    client: float
    machine: float

    #: The server's event-loop (main) thread alone.
    server_loop: float = 0.0
    server_pid: int | None = None

    @staticmethod
    def take(server_pid: int | None, client_pids: Sequence[int] = ()) -> CpuSample:
        """Now; ``client_pids``: the client's other processes (counted as client)."""
        loop = 0.0
        if server_pid:
            loop = next(
                (v for k, v in thread_cpu_seconds(server_pid).items()
                 if k.endswith(f"/{server_pid}")),
                0.0,
            )
        return CpuSample(
            wall=time.monotonic(),
            server=process_cpu_seconds(server_pid) if server_pid else 0.0,
            client=sum(process_cpu_seconds(pid) for pid in (os.getpid(), *client_pids)),
            machine=machine_busy_seconds(),
            server_loop=loop,
            server_pid=server_pid,
        )

    def usage_since(self, start: CpuSample) -> dict[str, float]:
        """CPU used between ``start`` and this sample, in % of one core."""
        wall = max(1e-9, self.wall - start.wall)
        server = self.server - start.server
        client = self.client - start.client
        machine = self.machine - start.machine
        return {
            "wall_s": wall,
            "server_cpu_pct": 100 * server / wall,
            # Python work of the event loop: protocol, audio encoding, socket writes.
            "server_loop_cpu_pct": 100 * (self.server_loop - start.server_loop) / wall,
            "client_cpu_pct": 100 * client / wall,
            # What else ran: other people's work on a shared machine makes latencies
            # worse, so it is reported beside them rather than hidden.
            "other_cpu_pct": max(0.0, 100 * (machine - server - client) / wall),
        }


#: Other work above this share of one core makes latency figures noticeably worse.
QUIET_OTHER_CPU_PCT: Final = 10.0
#: Seconds of quiet in a row that count as "the machine is idle now".
QUIET_WINDOW_S: Final = 2.0
#: Waiting for quiet is bounded: a busy shared machine is measured anyway, and says so.
QUIET_MAX_WAIT_S: Final = 180.0


def wait_for_quiet(
    exclude_pids: Sequence[int] = (), max_wait_s: float = QUIET_MAX_WAIT_S
) -> float:
    """Block until processes other than this one (and ``exclude_pids``) use less than
    ``QUIET_OTHER_CPU_PCT`` of one core over ``QUIET_WINDOW_S``, or ``max_wait_s``
    passed. Returns the other processes' CPU % over the last window (printed if high).
    """
    deadline = time.monotonic() + max_wait_s
    pids = [os.getpid(), *exclude_pids]
    while True:
        start_wall, start_machine = time.monotonic(), machine_busy_seconds()
        start_own = sum(process_cpu_seconds(pid) for pid in pids)
        time.sleep(QUIET_WINDOW_S)
        wall = time.monotonic() - start_wall
        own = sum(process_cpu_seconds(pid) for pid in pids) - start_own
        other = 100 * (machine_busy_seconds() - start_machine - own) / wall
        if other < QUIET_OTHER_CPU_PCT:
            return other
        if time.monotonic() > deadline:
            print(f"(machine still busy: other processes use {other:.0f} % of a core;"
                  " measuring anyway)", file=sys.stderr)
            return other


# -- a spawned server ---------------------------------------------------------------------

#: Loading the Piper voice (and cutting it on a first run) takes seconds, not minutes.
SERVER_START_TIMEOUT_S: Final = 180.0
#: The server's own graceful shutdown bound is 5 s; this leaves it room.
SERVER_STOP_TIMEOUT_S: Final = 20.0
#: How often readiness is polled while the server starts.
READY_POLL_S: Final = 0.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class SpawnedServer:
    process: subprocess.Popen[bytes]
    http_port: int
    websocket_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.websocket_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def http_get_json(url: str, timeout: float = 5.0, api_key: str | None = None) -> dict[str, Any]:
    """GET a JSON route; ``api_key`` for a server with keys."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


@contextmanager
def spawned_server(
    overrides: Mapping[str, Any] | None = None,
    *,
    log_level: str = "WARNING",
    env: Mapping[str, str] | None = None,
) -> Iterator[SpawnedServer]:
    """Run ``python -m streamer`` with a temporary config on free 127.0.0.1 ports
    (``env``: extra environment variables, such as the bench slowdown).

    Yields once ``/health`` says ready (models loaded and warmed up); stops the
    server on exit, SIGINT first (graceful), SIGKILL after ``SERVER_STOP_TIMEOUT_S``.
    """
    http_port, ws_port = free_port(), free_port()
    config = _deep_merge(
        {
            "server": {
                "host": "127.0.0.1",
                "http_port": http_port,
                "websocket_port": ws_port,
                "log_file": None,
                "log_level": log_level,
                "max_connections": 1000,
            },
            "tts": {"default_language": "en"},
        },
        overrides or {},
    )
    with tempfile.TemporaryDirectory(prefix="tts-bench-") as tmp:
        config_path = Path(tmp) / "bench.json"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "streamer", "--config", str(config_path)],
                cwd=REPO_ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT)},
            )
            server = SpawnedServer(process, http_port, ws_port, log_path)
            try:
                wait_ready(server)
                yield server
            finally:
                stop_process(process)


def wait_ready(server: SpawnedServer) -> None:
    """Block until ``server`` says it is ready; raise if it exits or takes longer than
    ``SERVER_START_TIMEOUT_S``."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n"
                + server.log_path.read_text(errors="replace")[-4000:]
            )
        try:
            # /health: open on a server with API keys too (200 once ready, 503 before).
            if http_get_json(f"{server.http_url}/health", timeout=1.0).get("ready"):
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(READY_POLL_S)
    raise TimeoutError(f"server not ready after {SERVER_START_TIMEOUT_S:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (the server's graceful shutdown), then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(SERVER_STOP_TIMEOUT_S)


def write_json(path: str | None, data: Mapping[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"wrote {path}")
