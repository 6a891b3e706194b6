"""A local cluster on loopback ports: Redis, N replicas, HAProxy in front.

    .venv/bin/python -m scripts.cluster --replicas 2        # `make cluster REPLICAS=2`
    .venv/bin/python -m scripts.cluster --replicas 3 --config config/default.json

Starts ``redis-server`` (Debian's, no persistence), N replicas (``python -m streamer``
with the given config, each on its own ports, sharing Redis through ``cluster``) and
``haproxy`` with the config ``haproxy_config`` writes (the same rules as
``deploy/haproxy.cfg``), prints every address, and stops them all on Ctrl-C. The
integration tests (tests/integration/cluster/) start their cluster with this module.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from streamer.config import parse_config

from ._common import REPO_ROOT

#: A replica loads no model before it is ready (``preload_models`` off unless the base
#: config says otherwise): a few seconds, more on a slow machine.
START_TIMEOUT_S: Final = 60.0
#: How often ``wait_ready`` asks.
POLL_S: Final = 0.05
#: SIGINT (graceful shutdown), then SIGKILL after this long.
STOP_TIMEOUT_S: Final = 10.0
#: The directory TTL of the local cluster: a killed replica's sessions leave within it.
SESSION_TTL_S: Final = 3.0
#: HAProxy's health checks: every 500 ms, one failure takes a replica out, two
#: successes bring it back (a draining or full replica stops getting new sessions
#: within half a second).
CHECK_INTER_MS: Final = 500

Command = Callable[[Path], list[str]]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def streamer_command(config_path: Path) -> list[str]:
    """A replica: the server itself."""
    return [sys.executable, "-m", "streamer", "--config", str(config_path)]


def haproxy_config(
    *,
    http_port: int,
    websocket_port: int,
    replicas: Sequence[tuple[str, int, int]],
    maxconn: int,
    host: str = "127.0.0.1",
    stats_socket: Path | None = None,
) -> str:
    """HAProxy's config for ``replicas`` ((name, http port, websocket port) on
    ``host``): WebSocket sessions to the replica with the fewest (``leastconn``), only
    to replicas whose ``/health`` is 200 (not draining, not full), at most ``maxconn``
    at once per replica (more wait in HAProxy's queue); REST to any live replica (each
    routes to the one holding a session)."""
    ws_servers = "\n".join(
        f"    server {name} {host}:{ws} check port {http} maxconn {maxconn}"
        for name, http, ws in replicas
    )
    http_servers = "\n".join(
        f"    server {name} {host}:{http} check maxconn {maxconn}" for name, http, _ in replicas
    )
    stats = "" if stats_socket is None else f"    stats socket {stats_socket} mode 600 level user\n"
    return f"""\
# Written by scripts/cluster.py; deploy/haproxy.cfg is the same, annotated.
global
    maxconn 4000
    nbthread 1
{stats}
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A WebSocket, once upgraded, is a tunnel: idle for this long, it is cut (the
    # server pings every 20 s, so only a dead one is).
    timeout tunnel 1h
    timeout client-fin 5s
    # A session waiting for a free slot (every replica at maxconn) gets 503 after this.
    timeout queue 10s
    # A handshake a replica refuses with 503 (draining, or full between two checks)
    # is retried on another.
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response 503
    # Small frames (events, audio chunks) go out at once, not coalesced.
    option http-no-delay
    default-server inter {CHECK_INTER_MS}ms fastinter {CHECK_INTER_MS // 2}ms rise 2 fall 1

frontend websocket
    bind {host}:{websocket_port}
    default_backend replicas_websocket

frontend rest
    bind {host}:{http_port}
    default_backend replicas_rest

backend replicas_websocket
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
{ws_servers}

backend replicas_rest
    balance leastconn
    option httpchk GET /health/live
{http_servers}
"""


@dataclass
class Replica:
    name: str
    http_port: int
    websocket_port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class LocalCluster:
    """Redis, replicas and HAProxy as child processes, in ``workdir``."""

    replicas: int
    base_config: dict[str, Any] = field(default_factory=dict)
    command: Command = streamer_command
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tts-cluster-")))
    maxconn: int = 100
    host: str = "127.0.0.1"
    #: Where the base config's relative paths (models, voices, caches) point: its
    #: project, as ``load_config`` reads it. The replicas' own configs live in
    #: ``workdir``, so those paths are written out absolute.
    project_dir: Path = REPO_ROOT

    def __post_init__(self) -> None:
        ports = free_ports(3 + 2 * self.replicas)
        self.redis_port, self.http_port, self.websocket_port = ports[:3]
        self.nodes = [
            Replica(
                f"r{i + 1}",
                ports[3 + 2 * i],
                ports[4 + 2 * i],
                self.workdir / f"r{i + 1}.json",
                self.workdir / f"r{i + 1}.log",
            )
            for i in range(self.replicas)
        ]
        self.redis: subprocess.Popen[bytes] | None = None
        self.haproxy: subprocess.Popen[bytes] | None = None

    # --- parts -------------------------------------------------------------------
    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", self.host,
             "--save", "", "--appendonly", "no"],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()
            self.redis = None

    def replica_config(self, node: Replica) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(json.dumps(self.base_config))  # deep copy
        server = config.setdefault("server", {})
        server.update(host=self.host, http_port=node.http_port,
                      websocket_port=node.websocket_port)
        server["log_file"] = None  # each replica logs to its own file (stderr, below)
        server.setdefault("max_connections", self.maxconn)
        server.setdefault("drain_timeout_s", 30.0)
        config.setdefault("performance", {}).setdefault("preload_models", False)
        _absolute_paths(config, self.project_dir)
        cluster = config.setdefault("cluster", {})
        cluster.update(redis_url=f"redis://{self.host}:{self.redis_port}", replica_id=node.name)
        cluster.setdefault("session_ttl_s", SESSION_TTL_S)
        return config

    def start_replica(self, node: Replica) -> None:
        node.config_path.write_text(json.dumps(self.replica_config(node)))
        node.process = subprocess.Popen(
            self.command(node.config_path),
            cwd=REPO_ROOT,
            stdout=node.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def start_haproxy(self) -> None:
        path = self.workdir / "haproxy.cfg"
        path.write_text(
            haproxy_config(
                http_port=self.http_port,
                websocket_port=self.websocket_port,
                replicas=[(n.name, n.http_port, n.websocket_port) for n in self.nodes],
                maxconn=self.maxconn,
                host=self.host,
                stats_socket=self.workdir / "haproxy.sock",
            )
        )
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)],
            stdout=(self.workdir / "haproxy.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def signal(self, node: Replica, signum: int) -> None:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signum)

    # --- the whole -----------------------------------------------------------------
    def start(self) -> None:
        self.start_redis()
        for node in self.nodes:
            self.start_replica(node)
        self.start_haproxy()

    def ready(self) -> bool:
        """Every replica answers ``/health`` 200, and so does HAProxy's REST port."""
        for node in self.nodes:
            assert node.process is not None
            if node.process.poll() is not None:
                raise RuntimeError(f"replica {node.name} exited:\n{node.log()[-3000:]}")
            if _get(f"http://{self.host}:{node.http_port}/health") != 200:
                return False
        return self.haproxy_up() == {n.name for n in self.nodes}

    def haproxy_up(self) -> set[str]:
        """The replicas HAProxy sends new WebSocket sessions to now (its health checks
        say UP), from its stats socket."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(self.workdir / "haproxy.sock"))
                sock.sendall(b"show stat\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError:
            return set()
        up = set()
        for line in data.decode().splitlines():
            fields = line.split(",")
            if (
                len(fields) > 17
                and fields[0] == "replicas_websocket"
                and fields[1] not in ("FRONTEND", "BACKEND")
                and fields[17] == "UP"
            ):
                up.add(fields[1])
        return up

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not become ready")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGINT to every replica (graceful), SIGKILL what is left; then HAProxy and
        Redis."""
        for node in self.nodes:
            self.signal(node, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        if self.haproxy is not None:
            self.haproxy.kill()
            self.haproxy.wait()
        self.stop_redis()

    def addresses(self) -> str:
        lines = [
            f"WebSocket  ws://{self.host}:{self.websocket_port}   (HAProxy)",
            f"REST       http://{self.host}:{self.http_port}  (HAProxy)",
            f"Redis      redis://{self.host}:{self.redis_port}",
        ]
        lines += [
            f"replica {n.name}: http://{self.host}:{n.http_port}  ws://{self.host}:"
            f"{n.websocket_port}  log {n.log_path}"
            for n in self.nodes
        ]
        return "\n".join(lines)


def _absolute_paths(config: dict[str, Any], project_dir: Path) -> None:
    """Rewrite the config's model, voice and cache paths (their defaults included) as
    absolute ones, resolved the way the server resolves them from ``project_dir``."""
    parsed = parse_config(config, base_dir=str(project_dir))
    tts = config.setdefault("tts", {})
    tts["voices_dir"] = str(parsed.path(parsed.tts.voices_dir))
    tts.setdefault("kokoro", {})["model_dir"] = str(parsed.path(parsed.tts.kokoro.model_dir))
    if parsed.tts.piper.cache_dir:
        tts.setdefault("piper", {})["cache_dir"] = str(parsed.path(parsed.tts.piper.cache_dir))
    if parsed.tts.melo.checkpoint_dir:
        melo = tts.setdefault("melo", {})
        melo["checkpoint_dir"] = str(parsed.path(parsed.tts.melo.checkpoint_dir))


def missing_binaries() -> list[str]:
    return [name for name in ("redis-server", "haproxy") if shutil.which(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.cluster", description=__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--config", default="config/default.json",
                        help="base config of every replica (ports and cluster are set here)")
    args = parser.parse_args(argv)
    missing = missing_binaries()
    if missing:
        print(f"needs {' and '.join(missing)} (Debian: apt-get install redis-server haproxy)")
        return 2
    base = json.loads((REPO_ROOT / args.config).read_text())
    cluster = LocalCluster(args.replicas, base)
    print(f"starting Redis, {args.replicas} replica(s) and HAProxy in {cluster.workdir} ...")
    try:
        cluster.start()
        cluster.wait_ready()
        print(cluster.addresses())
        print("Ctrl-C stops them all.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...")
        cluster.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C
    sys.exit(main())
