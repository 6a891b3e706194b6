"""Memory under sustained load: is the server's memory flat, and if it grows, what grows.

    .venv/bin/python -m scripts.soak_memory --json soak.json   # 50 connected, 20 speaking:
                                                               # 60 s warm-up, 15 min measured
    .venv/bin/python -m scripts.soak_memory --warm-up 40 --duration 120 --interval 10
    .venv/bin/python -m scripts.soak_memory --malloc-trim      # hand free heap back at samples
    MALLOC_ARENA_MAX=2 .venv/bin/python -m scripts.soak_memory # two glibc arenas, not 16
    .venv/bin/python -m scripts.soak_memory --ort-no-arena     # onnxruntime without its arena

The server runs in a child process started from this tool (``--serve-child``): the
real ``run_server`` in its own Trio loop, with ``tracemalloc`` on from the child's first
line, plus one task that answers sample requests arriving on its stdin. The load is
``scripts.load``'s ``load_run`` in this (the parent) process, so the clients share
neither the server's event loop nor its heap: what is traced is the server alone.

Each sample, taken inside the server and sent back as one JSON line on its stdout:

- RSS, split by ``/proc/self/smaps_rollup`` into anonymous memory (malloc heaps,
  onnxruntime arenas, Python objects) and file-backed pages (libraries, mapped models);
- the Python heap as tracemalloc sees it: traced bytes now, the peak since the previous
  sample, and tracemalloc's own bookkeeping (part of RSS; it grows with the traces);
- glibc ``mallinfo2``: bytes malloc has handed out, bytes it holds free, and bytes in
  mmapped chunks, and their sum, malloc's footprint. onnxruntime's arena and numpy
  buffers are malloc'd; most Python objects are not (pymalloc maps its own arenas). So
  malloc in-use growing while the Python heap is flat is native (onnxruntime) growth,
  malloc *free* growing is fragmentation (memory freed but not given back), and RSS
  growing while the footprint is flat is pages malloc handed out long ago being
  touched for the first time;
- objects tracked by the gc (outside any ``gc.freeze()``), open connections and
  sessions, the load average.

Timeline: an idle sample (after a full gc) with a tracemalloc snapshot before any load;
the load starts (every session connected) and after ``--warm-up`` (which includes the
ramp) a second snapshot; then a sample every ``--interval`` until ``--duration`` is up,
the last one (still under load) with a snapshot; once the load is over and every session
has closed, an idle sample (after a full gc) with a snapshot. Beside each snapshot the
server's anonymous mappings are dumped, to show which one the RSS grew in. A snapshot
briefly takes tens of MiB and can leave the heap a little larger, so each sample
measures before its snapshot and the slopes leave out the warm-up snapshot's sample.

Reading the sites: blocks parked in CPython's free lists (up to 2000 tuples of each
length, 80 dicts...) still count as live at the line that first allocated them, so a
busy line can "grow" by up to ~2000 blocks under load and vanish after a full
collection (which empties the free lists). Growth that survives the idle samples' gc,
and keeps its rate over a long run, is a leak.

Reported: the samples as a table, the least-squares slope (MiB/min) of each figure over
the samples after warm-up, and of each half of them (a slope that falls from the first
half to the second is warm-up still settling; a leak keeps its slope), and the
allocation sites (tracebacks, and single lines) that grew most between the warm-up and
the end snapshots, and between the idle ones.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import trio

from ._common import (
    QUIET_MAX_WAIT_S,
    REPO_ROOT,
    SERVER_STOP_TIMEOUT_S,
    SpawnedServer,
    free_port,
    http_get_json,
    machine_info,
    markdown_table,
    stop_process,
    wait_ready,
    write_json,
)
from ._probe import EVENT_TIMEOUT_S
from .load import (
    CONNECT_RATE_PER_S,
    RAMP_S,
    RunResult,
    load_run,
    print_run,
    summarize_run,
)

if TYPE_CHECKING:
    from streamer.config import Config
    from streamer.server import RunningServer

#: This tool's module, which its server child runs (``python -m``, from the root).
MODULE: Final = "scripts.soak_memory"
#: Frames kept per traced allocation: enough to get from numpy or the stdlib back up to
#: the streamer/ line that asked for the memory. Each frame costs CPU on every
#: allocation, and the server shares 2 cores with the load.
TRACE_FRAMES: Final = 8
#: Load before the first measured sample: the issue's 240 s run reached its plateau
#: (onnxruntime arenas sized for concurrent runs of every window size) after 20-40 s.
WARM_UP_S: Final = 60.0
#: Measured time after warm-up. Growth of ~2 MiB/min needs minutes to stand out of the
#: noise of arenas that grow in steps.
DURATION_S: Final = 900.0
#: Seconds between samples: 30 points over 15 min fit a line well.
INTERVAL_S: Final = 30.0
#: The end sample is taken this long before the load's speakers stop, so it is still
#: under load (the load starts its clock when its sessions are ready, a little after
#: they are counted connected).
END_MARGIN_S: Final = 5.0
#: After the load, time for the closes to finish before the idle sample.
IDLE_SETTLE_S: Final = 5.0
#: How often the server's connection count is polled while the load connects.
CONNECT_POLL_S: Final = 0.5
#: Allocation sites listed per comparison.
TOP_SITES: Final = 10
#: Frames of each growing traceback that are printed (innermost first).
PRINTED_FRAMES: Final = 4
#: Figures whose slope is reported: sample key and name in the tables.
SLOPE_FIGURES: Final = (
    ("rss", "RSS"),
    ("anon", "RSS anonymous"),
    ("file", "RSS file-backed"),
    ("py_traced", "Python heap (traced)"),
    ("tracemalloc_overhead", "tracemalloc bookkeeping"),
    ("malloc_in_use", "malloc in use"),
    ("malloc_free", "malloc free (kept)"),
    ("malloc_mmapped", "malloc mmapped chunks"),
    ("malloc_footprint", "malloc footprint (arenas + mmapped)"),
    ("rss_after_trim", "RSS after malloc_trim"),
)
#: Labels of the samples the slopes are fitted to: loaded, after warm-up, and measured
#: before any snapshot was taken since the warm-up one.
LOADED_LABELS: Final = ("load", "end")
_MIB: Final = 2**20


# -- inside the server (the child) ---------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc: the malloc figures are left out


_LIBC: Final = _libc()


def _malloc_figures() -> dict[str, int]:
    """glibc's view of its heaps (summed over every arena), or nothing elsewhere."""
    mallinfo2 = getattr(_LIBC, "mallinfo2", None)
    if mallinfo2 is None:
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {
        # Handed out and not freed, in the arenas plus in chunks mmapped on their own.
        "malloc_in_use": info.uordblks + info.hblkhd,
        # Freed but still held in the arenas: fragmentation (or a trim not yet done).
        "malloc_free": info.fordblks,
        "malloc_mmapped": info.hblkhd,
        "malloc_arena": info.arena,
        # All malloc has taken from the kernel. Anonymous RSS below it means pages malloc
        # handed out (an onnxruntime arena region, say) are not touched yet: RSS grows
        # towards it with no new allocation at all.
        "malloc_footprint": info.arena + info.hblkhd,
    }


def _proc_memory() -> dict[str, int]:
    """RSS of this process, and its anonymous / file-backed parts, in bytes."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[name] = int(parts[0]) * 1024
    rss, anon = fields.get("Rss", 0), fields.get("Anonymous", 0)
    return {"rss": rss, "anon": anon, "file": rss - anon - fields.get("Pss_Shmem", 0)}


def _anonymous_mappings() -> dict[str, dict[str, Any]]:
    """Every mapping of this process that holds anonymous memory, by start address:
    where RSS growth lands (a glibc heap, an onnxruntime arena region) shows here."""
    mappings: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    for line in Path("/proc/self/smaps").read_text().splitlines():
        name, _, rest = line.partition(":")
        if " " in name:  # a mapping's header: "start-end perms offset dev inode [path]"
            parts = line.split(maxsplit=5)
            start, end = (int(a, 16) for a in parts[0].split("-"))
            current = {"name": parts[5] if len(parts) > 5 else "", "perms": parts[1],
                       "size": end - start}
            mappings[parts[0].split("-")[0]] = current
        elif name == "Anonymous":
            current["anon"] = int(rest.split()[0]) * 1024
    return {start: m for start, m in mappings.items() if m.get("anon")}


def _take_sample(
    request: dict[str, Any], server: RunningServer, malloc_trim: bool
) -> dict[str, Any]:
    """Measure this process now. With ``dump`` (a path prefix), after measuring write
    the anonymous mappings to ``PREFIX.maps.json`` and, when tracing, a tracemalloc
    snapshot to ``PREFIX.tracemalloc``.

    Runs in the server's event loop, which it blocks for ``sample_ms`` (a snapshot of a
    large heap takes a second or more): the load's timing suffers, its memory does not.
    """
    started = time.monotonic()
    if request.get("collect"):
        # Idle samples compare what survives a full collection: a leak, not garbage.
        gc.collect()
    sample: dict[str, Any] = {
        "label": request["label"],
        "time": time.monotonic(),
        "loadavg_1m": os.getloadavg()[0],
        **_proc_memory(),
        **_malloc_figures(),
        "connections": server.connections.count,
        "sessions": len(server.manager.sessions),
    }
    if tracemalloc.is_tracing():
        traced, peak = tracemalloc.get_traced_memory()
        sample.update(
            py_traced=traced, py_peak=peak,
            tracemalloc_overhead=tracemalloc.get_tracemalloc_memory(),
        )
    dump = request.get("dump")
    if dump:
        Path(f"{dump}.maps.json").write_text(json.dumps(_anonymous_mappings()))
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(f"{dump}.tracemalloc")
    sample["gc_objects"] = len(gc.get_objects())
    if tracemalloc.is_tracing():
        # After the snapshot and the object list are gone, so neither is the next peak.
        tracemalloc.reset_peak()
    if malloc_trim and _LIBC is not None:
        _LIBC.malloc_trim(0)
        sample["rss_after_trim"] = _proc_memory()["rss"]
    sample["sample_ms"] = 1000 * (time.monotonic() - started)
    return sample


async def _answer_samples(server: RunningServer, replies: IO[str], malloc_trim: bool) -> None:
    """One JSON request per stdin line, one JSON sample per reply line; at EOF (the
    parent is done or gone) shut the server down gracefully."""
    commands = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    pending = b""
    while True:
        data = await commands.receive_some()
        if not data:
            server.shutdown()
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            sample = _take_sample(json.loads(line), server, malloc_trim)
            replies.write(json.dumps(sample) + "\n")
            replies.flush()


async def _serve_traced(config: Config, replies: IO[str], malloc_trim: bool) -> None:
    """``run_server`` plus the sample task, until stdin closes or SIGINT/SIGTERM."""
    from streamer.server import run_server

    async with trio.open_nursery() as nursery:

        async def serve(
            task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            await run_server(config, task_status=task_status)
            nursery.cancel_scope.cancel()  # the server stopped: so do the helpers

        server: RunningServer = await nursery.start(serve)
        nursery.start_soon(_answer_samples, server, replies, malloc_trim)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                server.shutdown()
                break


def _turn_off_onnxruntime_arena() -> None:
    """Diagnosis only, in this process: every Piper onnxruntime session runs without its
    CPU arena (memory kept for reuse, grown in regions that double), so each run's
    buffers come from malloc and go back to it. streamer/ itself is unchanged."""
    from streamer.engines.piper import PiperEngine

    original = PiperEngine.session_options

    def session_options(self: PiperEngine) -> Any:
        options = original(self)
        options.enable_cpu_mem_arena = False
        return options

    PiperEngine.session_options = session_options  # type: ignore[method-assign]


def serve_child(config_path: str, args: argparse.Namespace) -> int:
    """The child's main: the server, traced, answering samples on stdin/stdout."""
    if args.frames:
        tracemalloc.start(args.frames)
    # Imported only here: after tracemalloc starts, so the server's import-time
    # allocations are traced too, and never in the parent, which only drives the load.
    from streamer.config import load_config
    from streamer.logs import setup_logging

    if args.ort_no_arena:
        _turn_off_onnxruntime_arena()
    config = load_config(config_path)
    setup_logging(config.server.log_level, None)
    # Samples go to the real stdout; anything else that prints goes to the log, so a
    # stray print cannot corrupt a reply.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    trio.run(_serve_traced, config, replies, args.malloc_trim)
    return 0


# -- the parent: the server's handle, the load, the timeline --------------------------------


@dataclass
class TracedServer:
    """The child: its ports and pid (as ``SpawnedServer``), and its sample channel."""

    spawned: SpawnedServer

    def sample(self, label: str, *, collect: bool = False, dump: Path | None = None) -> (
        dict[str, Any]
    ):
        """Blocking: ask the child for one sample and wait for it."""
        process = self.spawned.process
        assert process.stdin is not None and process.stdout is not None
        request = {"label": label, "collect": collect, "dump": str(dump) if dump else None}
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(
                "server exited while sampling:\n"
                + self.spawned.log_path.read_text(errors="replace")[-4000:]
            )
        sample: dict[str, Any] = json.loads(line)
        return sample


@contextmanager
def traced_server(workdir: Path, child_flags: Sequence[str]) -> Iterator[TracedServer]:
    """This tool as ``--serve-child`` with the config ``spawned_server`` gives
    ``python -m streamer``; yields once ready, stops it on exit (stdin closed: graceful
    shutdown; SIGINT, then SIGKILL if that hangs)."""
    http_port, ws_port = free_port(), free_port()
    config = {
        "server": {
            "host": "127.0.0.1", "http_port": http_port, "websocket_port": ws_port,
            "log_file": None, "log_level": "WARNING", "max_connections": 1000,
        },
        "tts": {"default_language": "en"},
    }
    config_path = workdir / "soak.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", MODULE, "--serve-child", str(config_path), *child_flags]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        spawned = SpawnedServer(process, http_port, ws_port, log_path)
        try:
            wait_ready(spawned)
            yield TracedServer(spawned)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                stop_process(process)


@dataclass
class Soak:
    samples: list[dict[str, Any]] = field(default_factory=list)
    #: ``time.monotonic()`` when every session was connected: the load's t = 0.
    load_start: float = 0.0
    run: RunResult | None = None


async def _wait_connected(http_url: str, sessions: int) -> float:
    """When the server first counts ``sessions`` connections (the load began)."""
    # load_run first waits for a quiet machine (bounded), then connects everybody.
    limit = QUIET_MAX_WAIT_S + sessions / CONNECT_RATE_PER_S + EVENT_TIMEOUT_S
    with trio.fail_after(limit):
        while True:
            status = await trio.to_thread.run_sync(http_get_json, f"{http_url}/api/v1/status")
            if int(status.get("connections", 0)) >= sessions:
                return time.monotonic()
            await trio.sleep(CONNECT_POLL_S)


async def _sleep_until(moment: float) -> None:
    await trio.sleep(max(0.0, moment - time.monotonic()))


async def soak(server: TracedServer, args: argparse.Namespace, workdir: Path) -> Soak:
    """The timeline of the module docstring; snapshots are written into ``workdir``."""
    result = Soak()

    async def sample(label: str, *, collect: bool = False, dump: bool = False) -> None:
        taken = await trio.to_thread.run_sync(
            lambda: server.sample(label, collect=collect, dump=workdir / label if dump else None)
        )
        result.samples.append(taken)
        print(f"  sample {label}: RSS {taken['rss'] / _MIB:.1f} MiB"
              f" (load {taken['loadavg_1m']:.2f})", flush=True)

    await sample("idle-start", collect=True, dump=True)
    spawned = server.spawned
    speaking_s = args.warm_up - args.ramp + args.duration

    async def load() -> None:
        result.run = await load_run(
            spawned.ws_url, args.sessions, args.speaking, speaking_s, args.ramp, spawned.pid
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(load)
        result.load_start = start = await _wait_connected(spawned.http_url, args.sessions)
        warm = start + args.warm_up
        end = warm + args.duration - END_MARGIN_S
        await _sleep_until(warm)
        await sample("warm", dump=True)
        moment = warm + args.interval
        while moment < end:
            await _sleep_until(moment)
            await sample("load")
            moment += args.interval
        await _sleep_until(end)
        await sample("end", dump=True)
    await trio.sleep(IDLE_SETTLE_S)
    await sample("idle-end", collect=True, dump=True)
    return result


# -- analysis --------------------------------------------------------------------------------


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through ``points`` (None for fewer than 2)."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def slopes(samples: Sequence[dict[str, Any]], load_start: float) -> dict[str, dict[str, Any]]:
    """MiB/min of each figure over the loaded samples after warm-up: all, each half."""
    loaded = [s for s in samples if s["label"] in LOADED_LABELS]
    half = len(loaded) // 2
    out: dict[str, dict[str, Any]] = {}
    for key, name in SLOPE_FIGURES:
        points = [((s["time"] - load_start) / 60, s[key] / _MIB) for s in loaded if key in s]
        if len(points) < 2:
            continue
        out[key] = {
            "name": name,
            "mib_per_min": least_squares_slope(points),
            "first_half_mib_per_min": least_squares_slope(points[: half + 1]),
            "second_half_mib_per_min": least_squares_slope(points[half:]),
            "first_mib": points[0][1],
            "last_mib": points[-1][1],
        }
    objects = [((s["time"] - load_start) / 60, float(s["gc_objects"])) for s in loaded]
    out["gc_objects"] = {"name": "gc-tracked objects", "per_min": least_squares_slope(objects)}
    return out


_SHORT_PREFIXES: Final = (
    (str(REPO_ROOT) + os.sep, ""),
    (sysconfig.get_paths()["purelib"] + os.sep, ""),
    (sysconfig.get_paths()["stdlib"] + os.sep, "<stdlib>/"),
)


def _short(filename: str) -> str:
    for prefix, replacement in _SHORT_PREFIXES:
        if filename.startswith(prefix):
            return replacement + filename[len(prefix):]
    return filename


def top_growth(before: Path, after: Path, key_type: str) -> list[dict[str, Any]]:
    """The ``TOP_SITES`` allocation sites (``traceback`` or ``lineno``) whose traced
    memory grew most from ``before`` to ``after``, tracemalloc's own frames left out."""
    leave_out = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(leave_out)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(leave_out)
    stats = [s for s in new.compare_to(old, key_type) if s.size_diff > 0]
    stats.sort(key=lambda s: s.size_diff, reverse=True)
    return [
        {
            "size_diff_kib": s.size_diff / 1024,
            "count_diff": s.count_diff,
            "size_kib": s.size / 1024,
            # Innermost (the allocating line) first.
            "frames": [f"{_short(f.filename)}:{f.lineno}" for f in reversed(s.traceback)],
        }
        for s in stats[:TOP_SITES]
    ]


#: glibc reserves each thread arena's heap as one mapping aligned to its size (64 MiB
#: on 64-bit, ``HEAP_MAX_SIZE``), so an aligned start is a malloc arena.
GLIBC_HEAP_ALIGN: Final = 64 * _MIB


def mapping_kind(name: str, start: int) -> str:
    """A best guess at what an anonymous mapping holds (the kernel merges neighbours
    with equal permissions, so one mapping can be several of the last kind)."""
    if name:
        return name  # [heap]: the main malloc arena; [stack]; a file
    if start % GLIBC_HEAP_ALIGN == 0:
        return "malloc thread arena"
    return "mmap: big malloc chunk, pymalloc arena or thread stack"


def mapping_growth(before: Path, after: Path) -> dict[str, Any]:
    """Where anonymous RSS grew from ``before`` to ``after`` (``*.maps.json``), by
    mapping start address: the ``TOP_SITES`` mappings that grew most, and the totals."""
    old: dict[str, dict[str, Any]] = json.loads(before.read_text())
    new: dict[str, dict[str, Any]] = json.loads(after.read_text())
    rows = []
    for start in old.keys() | new.keys():
        was, after_ = old.get(start, {}), new.get(start, {})
        grown = after_.get("anon", 0) - was.get("anon", 0)
        rows.append({
            "start": f"0x{start}",
            "kind": mapping_kind((after_ or was)["name"], int(start, 16)),
            "state": "new" if not was else "gone" if not after_ else "kept",
            "size_mib": (after_ or was)["size"] / _MIB,
            "anon_before_mib": was.get("anon", 0) / _MIB,
            "anon_after_mib": after_.get("anon", 0) / _MIB,
            "grown_mib": grown / _MIB,
        })
    rows.sort(key=lambda r: r["grown_mib"], reverse=True)
    return {
        "grown_mib": sum(r["grown_mib"] for r in rows if r["grown_mib"] > 0),
        "shrunk_mib": sum(r["grown_mib"] for r in rows if r["grown_mib"] < 0),
        "new_mappings": sum(1 for r in rows if r["state"] == "new"),
        "gone_mappings": sum(1 for r in rows if r["state"] == "gone"),
        "top": [r for r in rows[:TOP_SITES] if r["grown_mib"] > 0],
    }


def print_mappings(title: str, growth: dict[str, Any]) -> None:
    print(f"\n{title}: +{growth['grown_mib']:.1f} / {growth['shrunk_mib']:.1f} MiB,"
          f" {growth['new_mappings']} new and {growth['gone_mappings']} gone mappings")
    rows = [
        [r["start"], r["kind"], r["state"], r["size_mib"], r["anon_before_mib"],
         r["anon_after_mib"], r["grown_mib"]]
        for r in growth["top"]
    ]
    headers = ["start", "mapping (guessed)", "", "size MiB", "anon before", "anon after",
               "grown MiB"]
    print(markdown_table(headers, rows))


def _mib_cell(sample: dict[str, Any], key: str) -> float | None:
    return sample[key] / _MIB if key in sample else None


def print_samples(samples: Sequence[dict[str, Any]], load_start: float) -> None:
    headers = [
        "t min", "sample", "load 1m", "RSS", "anon", "file", "py heap", "py peak",
        "tracemalloc", "malloc used", "malloc free", "mmapped", "malloc total", "gc objects",
        "conns",
        "RSS trimmed", "sample ms",
    ]
    rows = [
        [
            (s["time"] - load_start) / 60,
            s["label"],
            s["loadavg_1m"],
            *(_mib_cell(s, k) for k in ("rss", "anon", "file", "py_traced", "py_peak",
                                          "tracemalloc_overhead", "malloc_in_use",
                                          "malloc_free", "malloc_mmapped",
                                          "malloc_footprint")),
            s["gc_objects"],
            s["connections"],
            _mib_cell(s, "rss_after_trim"),
            s["sample_ms"],
        ]
        for s in samples
    ]
    print("\nMiB unless named; t from the moment every session was connected")
    print(markdown_table(headers, rows))


def print_slopes(figures: dict[str, dict[str, Any]]) -> None:
    rows = [
        [f["name"], f["first_mib"], f["last_mib"], f["mib_per_min"],
         f["first_half_mib_per_min"], f["second_half_mib_per_min"]]
        for key, f in figures.items() if key != "gc_objects"
    ]
    print("\nSlopes over the loaded samples after warm-up (least squares)")
    print(markdown_table(
        ["figure", "first MiB", "last MiB", "MiB/min", "1st half MiB/min", "2nd half MiB/min"],
        rows,
    ))
    objects = figures.get("gc_objects", {}).get("per_min")
    if objects is not None:
        print(f"gc-tracked objects: {objects:+.0f} per minute")


def print_sites(title: str, sites: Sequence[dict[str, Any]]) -> None:
    print(f"\n{title}")
    rows = [
        [f"{s['size_diff_kib']:+.1f}", f"{s['count_diff']:+d}", s["size_kib"],
         " <- ".join(s["frames"][:PRINTED_FRAMES])]
        for s in sites
    ]
    print(markdown_table(["KiB grown", "blocks", "KiB now", "site (innermost first)"], rows))


def report(result: Soak, workdir: Path, *, traced: bool) -> dict[str, Any]:
    """Print every table (the dumps in ``workdir`` are read here); return the figures
    for the JSON file."""
    print_samples(result.samples, result.load_start)
    figures = slopes(result.samples, result.load_start)
    print_slopes(figures)
    mappings = {
        name: mapping_growth(workdir / f"{before}.maps.json", workdir / f"{after}.maps.json")
        for name, before, after in (("loaded", "warm", "end"), ("idle", "idle-start", "idle-end"))
    }
    print_mappings("Anonymous RSS by mapping under load, warm-up -> end", mappings["loaded"])
    print_mappings("... idle before -> idle after the load", mappings["idle"])
    sites: dict[str, list[dict[str, Any]]] = {}
    if traced:
        for name, before, after in (("loaded", "warm", "end"),
                                    ("idle", "idle-start", "idle-end")):
            for key_type in ("traceback", "lineno"):
                sites[f"{name}_{key_type}"] = top_growth(
                    workdir / f"{before}.tracemalloc", workdir / f"{after}.tracemalloc", key_type
                )
        print_sites("Python heap growth under load, warm-up -> end (by traceback)",
                    sites["loaded_traceback"])
        print_sites("... by line", sites["loaded_lineno"])
        print_sites("Python heap growth idle before -> idle after the load (by traceback)",
                    sites["idle_traceback"])
    load_summary: dict[str, Any] = {}
    if result.run is not None:
        load_summary = summarize_run(result.run)
        print_run(load_summary, result.run)
    loads = [s["loadavg_1m"] for s in result.samples if s["label"] in LOADED_LABELS]
    if loads:
        print(f"load average (1 min) at the samples: min {min(loads):.2f},"
              f" mean {sum(loads) / len(loads):.2f}, max {max(loads):.2f}")
    return {
        "slopes": figures,
        "growing_mappings": mappings,
        "growing_sites": sites,
        "load": load_summary,
    }


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=50, help="connected sessions")
    parser.add_argument("--speaking", type=int, default=20, help="of them, speaking")
    parser.add_argument("--warm-up", type=float, default=WARM_UP_S,
                        help="seconds of load (ramp included) before the measured part")
    parser.add_argument("--duration", type=float, default=DURATION_S,
                        help="measured seconds of load after the warm-up")
    parser.add_argument("--interval", type=float, default=INTERVAL_S, help="seconds per sample")
    parser.add_argument("--ramp", type=float, default=RAMP_S,
                        help="speakers start spread over this many seconds (scripts.load's)")
    parser.add_argument("--frames", type=int, default=TRACE_FRAMES,
                        help="tracemalloc frames per allocation; 0: no tracemalloc")
    parser.add_argument("--malloc-trim", action="store_true",
                        help="call malloc_trim(0) in the server after each sample")
    parser.add_argument("--ort-no-arena", action="store_true",
                        help="diagnosis: Piper's onnxruntime sessions without their CPU arena")
    parser.add_argument("--keep-snapshots",
                        help="keep the tracemalloc snapshots and mapping dumps in this folder")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--serve-child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        return serve_child(args.serve_child, args)
    if args.warm_up < args.ramp:
        parser.error("--warm-up includes the ramp: it must be at least --ramp")

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB,"
          f" onnxruntime {machine['onnxruntime']}; MALLOC_ARENA_MAX="
          f"{os.environ.get('MALLOC_ARENA_MAX', 'unset')}")
    with tempfile.TemporaryDirectory(prefix="tts-soak-") as tmp:
        workdir = Path(args.keep_snapshots or tmp).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        child_flags = [f"--frames={args.frames}"] + [
            flag for flag, on in (("--malloc-trim", args.malloc_trim),
                                  ("--ort-no-arena", args.ort_no_arena)) if on
        ]
        with traced_server(Path(tmp), child_flags) as server:
            result = trio.run(soak, server, args, workdir)
        figures = report(result, workdir, traced=bool(args.frames))
    write_json(args.json, {
        "machine": machine,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "args": {k: v for k, v in vars(args).items() if k != "serve_child"},
        "samples": [
            {**s, "t_min": (s["time"] - result.load_start) / 60} for s in result.samples
        ],
        **figures,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
