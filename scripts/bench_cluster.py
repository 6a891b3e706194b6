"""What the cluster costs, measured in one run on a local cluster (``scripts.cluster``:
Redis, replicas, HAProxy on loopback ports):

    .venv/bin/python -m scripts.bench_cluster                # interrupts and TTFA
    .venv/bin/python -m scripts.bench_cluster --capacity     # + capacity (minutes)

1. **Interrupt reply** (``POST /api/v1/interrupt/{id}``, client-side, keep-alive
   connection) for a session speaking on replica r1, sent to r1 itself (local) and to
   r2 (routed through Redis: look-up, publish, r1 acts, reply), alternating, same run.
2. **Time to first audio** (``synthesize`` sent → first binary frame) on one replica,
   directly and through HAProxy, alternating, same run. Spanish (SVOX Pico, whose first
   chunk takes a few ms) so that what HAProxy adds is not lost in inference.
3. ``--capacity``: ``scripts.load --find-capacity`` (Piper, English paragraphs, real
   time) through HAProxy against 2 replicas with 1 inference worker each, then 1
   replica with 2 workers: continuously speaking sessions without underruns.

Every figure is printed with ``uptime``: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import trio
from trio_websocket import WebSocketConnection, connect_websocket_url

from ._common import REPO_ROOT, machine_info, summarize, write_json
from .cluster import LocalCluster
from .load import capacity_sessions

#: Long enough to be still playing when the interrupt comes (~20 s of speech, paced).
LONG_ES: Final = "Esta es una frase bastante larga para hablar un rato. " * 20
SHORT_ES: Final = "Hola, ¿qué tal?"
#: Bound on any one wait of the benchmark.
STEP_TIMEOUT_S: Final = 30.0
BASE: Final[dict[str, Any]] = {
    "tts": {"default_language": "es", "default_format": "pcm"},
    "performance": {"preload_models": True, "warm_up": True},
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def _until(ws: WebSocketConnection, kind: str) -> float:
    """Read until an event of ``kind`` (``binary``: a binary frame); its arrival time."""
    with trio.fail_after(STEP_TIMEOUT_S):
        while True:
            message = await ws.get_message()
            now = time.perf_counter()
            if kind == "binary":
                if isinstance(message, bytes):
                    return now
            elif isinstance(message, str) and json.loads(message)["type"] == kind:
                return now


async def _connect(nursery: trio.Nursery, url: str) -> tuple[WebSocketConnection, str]:
    ws = await connect_websocket_url(nursery, url)
    await ws.send_message(json.dumps({"type": "connect", "config": {"language": "es"}}))
    while True:
        event = json.loads(await ws.get_message())
        if event["type"] == "connected":
            return ws, str(event["session_id"])


async def _interrupts(
    nursery: trio.Nursery, local: LocalCluster, rounds: int
) -> dict[str, list[float]]:
    r1, r2 = local.nodes[:2]
    ws, session_id = await _connect(nursery, f"ws://127.0.0.1:{r1.websocket_port}")
    times: dict[str, list[float]] = {"local": [], "cross-replica": []}
    async with httpx.AsyncClient() as to_r1, httpx.AsyncClient() as to_r2:
        for i in range(rounds):
            await ws.send_message(json.dumps({"type": "synthesize", "text": LONG_ES}))
            await _until(ws, "audio_start")
            name, http, port = (
                ("local", to_r1, r1.http_port) if i % 2 else ("cross-replica", to_r2, r2.http_port)
            )
            started = time.perf_counter()
            reply = await http.post(f"http://127.0.0.1:{port}/api/v1/interrupt/{session_id}")
            times[name].append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            await _until(ws, "interrupted")
    await ws.aclose()
    return times


async def _ttfa(
    nursery: trio.Nursery, local: LocalCluster, rounds: int
) -> dict[str, list[float]]:
    via, session_id = await _connect(nursery, f"ws://127.0.0.1:{local.websocket_port}")
    async with httpx.AsyncClient() as http:
        got = await http.get(f"http://127.0.0.1:{local.http_port}/api/v1/sessions/{session_id}")
    replica = got.json()["replica"]
    node = next(n for n in local.nodes if n.name == replica)
    direct, _ = await _connect(nursery, f"ws://127.0.0.1:{node.websocket_port}")
    times: dict[str, list[float]] = {"direct": [], "through HAProxy": []}
    for i in range(rounds):
        name, ws = ("direct", direct) if i % 2 else ("through HAProxy", via)
        started = time.perf_counter()
        await ws.send_message(json.dumps({"type": "synthesize", "text": SHORT_ES}))
        times[name].append((await _until(ws, "binary") - started) * 1000)
        await _until(ws, "audio_end")
    await via.aclose()
    await direct.aclose()
    return times


async def _latencies(local: LocalCluster, rounds: int) -> dict[str, dict[str, list[float]]]:
    async with trio.open_nursery() as nursery:
        return {
            "interrupt reply": await _interrupts(nursery, local, rounds),
            "time to first audio": await _ttfa(nursery, local, rounds),
        }


def _table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| figure | path | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    for figure, paths in results.items():
        for path, values in paths.items():
            s = summarize(values)
            lines.append(
                f"| {figure} | {path} | {s['count']} | {s['p50']:.2f} | {s['p99']:.2f} "
                f"| {s['max']:.2f} |"
            )
    return "\n".join(lines)


def _capacity(replicas: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    base = {
        "tts": {"default_language": "en", "default_format": "pcm"},
        "performance": {"preload_models": True, "warm_up": True, "worker_processes": workers},
    }
    local = LocalCluster(replicas, base, maxconn=1000)
    try:
        local.start()
        local.wait_ready(timeout_s=180)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [
                sys.executable, "-m", "scripts.load", "--url",
                f"ws://127.0.0.1:{local.websocket_port}", "--find-capacity",
                "--sessions", str(args.max_speaking), "--start", str(args.start),
                "--step", "2", "--max-speaking", str(args.max_speaking),
                "--step-seconds", str(args.step_seconds), "--json", out.name,
            ]
            print(f"  {replicas} replica(s) x {workers} worker(s): {' '.join(command[1:])}")
            subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
            result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return {"capacity_sessions": capacity_sessions(result), "uptime": uptime()}
    finally:
        local.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200,
                        help="interrupts and syntheses per figure (alternating paths)")
    parser.add_argument("--capacity", action="store_true",
                        help="also compare capacity: 2 replicas x 1 worker vs 1 x 2")
    parser.add_argument("--start", type=int, default=12, help="first K of --find-capacity")
    parser.add_argument("--max-speaking", type=int, default=40, help="last K tried")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores")
    print(f"before: {uptime()}")
    local = LocalCluster(2, BASE)
    try:
        local.start()
        local.wait_ready(timeout_s=180)
        results = trio.run(_latencies, local, args.rounds)
    finally:
        local.stop()
    print(_table(results))
    out: dict[str, Any] = {
        "machine": machine,
        "latencies_ms": {f: {p: summarize(v) for p, v in d.items()} for f, d in results.items()},
        "uptime_after_latencies": uptime(),
    }
    print(f"after: {out['uptime_after_latencies']}")
    if args.capacity:
        print("capacity (scripts.load --find-capacity through HAProxy):")
        two = _capacity(2, 1, args)
        print(f"  2 replicas x 1 worker: {two['capacity_sessions']} sessions ({two['uptime']})")
        one = _capacity(1, 2, args)
        print(f"  1 replica x 2 workers: {one['capacity_sessions']} sessions ({one['uptime']})")
        out["capacity"] = {"2x1": two, "1x2": one}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
