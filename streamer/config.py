"""Server configuration: a JSON file validated into frozen dataclasses.

Start-up stops with a ``ConfigError`` naming the offending key (``tts.chunk_size``) for
unknown keys, wrong types and out-of-range values, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from .audio import SUPPORTED_FORMATS

#: Engines a config may prefer; "auto" ranks every available engine, neural first.
ENGINE_CHOICES = ("auto", "kokoro", "piper", "pico", "espeak", "melo")
#: The original specification called the MeloTTS engine "melotts"; accepted as an alias.
ENGINE_ALIASES = {"melotts": "melo"}
DEVICE_CHOICES = ("cpu", "cuda", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """The configuration file is unusable; the message names the key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    #: Loopback by default: any other address needs API keys (``security.api_keys``) or
    #: ``security.allow_unauthenticated: true``, or the server refuses to start.
    host: str = "127.0.0.1"
    http_port: int = 8080
    websocket_port: int = 8081
    #: Concurrent WebSocket connections; one more is refused with HTTP 503.
    max_connections: int = 100
    #: Largest client text frame; trio-websocket refuses bigger ones with close 1009.
    max_message_bytes: int = 65536
    log_file: str | None = "logs/mit-tts-streamer.log"
    log_level: str = "INFO"
    #: Graceful shutdown: sessions get 1001 closes, then everything is cancelled.
    shutdown_timeout_s: float = 5.0
    #: SIGTERM drains first, for up to this long: ``/health`` answers 503 (a load
    #: balancer sends no new sessions), new ones are refused, each live session is
    #: closed (1001) once it has nothing left to say; then the shutdown above.
    #: 0 = SIGTERM shuts down at once, like SIGINT.
    drain_timeout_s: float = 0.0
    #: A client that does not read for this long is aborted: it would hold memory.
    write_timeout_s: float = 10.0
    #: A TCP connection must complete its WebSocket upgrade request within this long.
    handshake_timeout_s: float = 5.0
    #: A WebSocket connection with no client message and nothing queued or playing for
    #: this long is closed (1000 ``idle_timeout``); 0 = never.
    idle_timeout_s: float = 300.0
    #: The server pings each WebSocket this often; a peer that has not answered the
    #: previous ping by the next one is dead and is aborted. 0 = no pings.
    ping_interval_s: float = 20.0
    #: An HTTP connection with no request in progress is closed after this long.
    http_keep_alive_timeout_s: float = 5.0
    #: An HTTP client must send each part of its request within this long.
    http_read_timeout_s: float = 30.0
    #: PEM certificate chain and private key: both listeners then speak TLS (https://,
    #: wss://). Both or neither.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    #: A Wyoming protocol server (Home Assistant) on this port of ``host``, sharing the
    #: engines and admission; null = off. Wyoming has no authentication: on a
    #: non-loopback host it needs ``security.allow_unauthenticated``.
    wyoming_port: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    """One API key: the SHA-256 of the key (the key itself is never stored), its limits."""

    id: str
    #: Hex SHA-256 of the key (``tts-streamer keys create`` prints it).
    sha256: str
    #: WebSocket connections, REST-created sessions and speech requests at once; 0 = no
    #: limit of its own.
    max_sessions: int = 0
    #: Characters synthesized per rolling minute, WebSocket and speech API together;
    #: 0 = no limit.
    chars_per_minute: int = 0
    #: Sees, interrupts and deletes every session, not only its own.
    admin: bool = False


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    #: With none (here, in ``api_keys_file`` and in ``$TTS_STREAMER_API_KEYS``), nothing
    #: asks for credentials, and only a loopback ``server.host`` is allowed.
    api_keys: tuple[ApiKeyConfig, ...] = ()
    #: A JSON file holding a list of entries like ``api_keys``' (read at start-up).
    api_keys_file: str | None = None
    #: Serve a non-loopback ``server.host`` with no keys configured (logged as a warning).
    allow_unauthenticated: bool = False
    #: Browser origins allowed besides the server's own page (``"*"``: any).
    allowed_origins: tuple[str, ...] = ()
    #: ``/metrics`` without a key (for a Prometheus that cannot send one).
    public_metrics: bool = False
    #: ``/openapi.json`` without a key.
    public_docs: bool = False
    #: Lifetime of a browser token from ``POST /api/v1/tokens``.
    token_ttl_s: float = 60.0
    #: Secret that signs tokens; replicas that share it accept each other's tokens.
    #: Null: ``$TTS_STREAMER_TOKEN_SECRET``, else a random one per start.
    token_secret: str | None = None


@dataclass(frozen=True, slots=True)
class MeloConfig:
    #: MeloTTS language codes to load (EN, ES, FR, ZH, JP, KR).
    languages: tuple[str, ...] = ("EN", "ES")
    #: ``<dir>/<LANG>/{config.json,checkpoint.pth}``; null lets melo fetch from its hub.
    checkpoint_dir: str | None = None
    device: str = "auto"
    #: Off by default: melo is optional and its hub is unreachable offline.
    enabled: bool = False


@dataclass(frozen=True, slots=True)
class PiperSettings:
    #: "windowed" streams the decoder over latent windows; "clause" one call per clause.
    streaming: str = "windowed"
    #: Where split ONNX graphs are cached; null = ~/.cache/mit-tts-streamer.
    cache_dir: str | None = None


@dataclass(frozen=True, slots=True)
class KokoroSettings:
    #: cpu, cuda, or auto (CUDA where onnxruntime has it).
    device: str = "auto"
    #: Where ``make install`` (deploy/install_kokoro.py) put the model and voices.
    model_dir: str = "models/kokoro"


@dataclass(frozen=True, slots=True)
class TTSConfig:
    engine: str = "auto"
    device: str = "cpu"
    default_language: str = "es"
    default_voice_id: int | str = 0
    default_format: str = "wav"
    #: Samples per binary frame for raw formats (1024, as the original specification).
    chunk_size: int = 1024
    #: Characters per synthesize request; longer text gets ``text_too_long``.
    max_text_length: int = 5000
    #: An open streamed-text context that gets no text (nor keepalive) for this long is
    #: closed (``context_idle``): what it buffered is spoken, then ``audio_end``. As
    #: ElevenLabs' default inactivity timeout; 0 = never.
    context_idle_s: float = 20.0
    #: Streamed-text contexts a session may have open (queued or playing) at once;
    #: one more gets ``too_many_contexts``. An agent needs one, two while it overlaps
    #: turns; each holds its text and a place in the queue.
    max_open_contexts: int = 8
    voices_dir: str = "voices"
    melo: MeloConfig = field(default_factory=MeloConfig)
    piper: PiperSettings = field(default_factory=PiperSettings)
    kokoro: KokoroSettings = field(default_factory=KokoroSettings)


@dataclass(frozen=True, slots=True)
class PerformanceConfig:
    #: Requests waiting per session; one more gets ``queue_full``.
    max_queue_size: int = 32
    #: Inference worker THREADS shared by all sessions (the key keeps its original
    #: name; they are threads of this process, not processes); 0 = one per CPU core.
    worker_processes: int = 0
    preload_models: bool = True
    #: One dummy synthesis per preloaded voice so the first request is not slower.
    warm_up: bool = True
    #: Synthesis runs at most this far ahead of real-time playback, so many sessions
    #: stay real-time together and an interrupt wastes little work. 0 = no pacing.
    realtime_lead_ms: int = 2000
    #: New requests get ``busy`` when inference is this far behind its deadlines.
    busy_lateness_ms: int = 750
    #: A new real-time stream starts only if every admitted stream and it can meet
    #: their playback deadlines within this fraction of the inference workers' time
    #: (wall time per chunk, measured per voice; ``server/runtime/_admission.py``).
    #: The starting bound: it tightens by itself when underruns are seen and grows
    #: back to this value slowly.
    max_inference_load: float = 0.9
    #: A new real-time stream that does not fit waits this long at most for room
    #: (its ``queued`` reply says so), then gets ``busy``; 0 = refuse at once. Measured
    #: (BENCHMARKS.md, section 9): 20 short sentences started at once on 2 vCPUs are
    #: all admitted within ~1.4 s, within ~3 s on a CPU made 3x slower; at 2000 the
    #: slower case refused a third of them and their retries doubled its p95.
    max_start_delay_ms: int = 5000
    #: ``SCHED_FIFO`` priority of the event loop thread (Linux; 0 = normal scheduling),
    #: so protocol replies never wait for a core behind inference. Needs permission
    #: (``LimitRTPRIO=1`` in the systemd unit); without it the server logs and goes on.
    event_loop_realtime_priority: int = 1


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Many replicas sharing one session directory and control plane on Redis or
    Valkey (README "Scaling out"). Without ``redis_url`` nothing of it is loaded."""

    #: ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS) of the
    #: Redis/Valkey every replica shares; null = this replica stands alone.
    redis_url: str | None = None
    #: This replica's name in the directory; null = ``<hostname>-<pid>``.
    replica_id: str | None = None
    #: A session's directory entry lives this long unless refreshed (every third of
    #: it): a replica that dies without a word loses its sessions within it.
    session_ttl_s: float = 3.0
    #: A request routed to the replica holding the session waits this long for its
    #: answer (then 504 ``route_timeout``).
    route_timeout_ms: int = 1000


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    #: Directory the config file was read from; relative paths resolve against it.
    base_dir: str = "."

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's project root."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def inference_workers(self) -> int:
        return self.performance.worker_processes or (os.cpu_count() or 1)


_T = TypeVar("_T")

#: Highest ``SCHED_FIFO`` priority Linux accepts (``sched_get_priority_max``).
MAX_REALTIME_PRIORITY: Final = 99
#: A key id appears in logs, metrics and tokens: a short name, no spaces or separators.
API_KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
#: Tokens are for a page that connects right away; a long-lived one is a key in a URL.
MAX_TOKEN_TTL_S: Final = 3600.0
#: A shorter token secret could be guessed offline from one token (HMAC-SHA256 key).
MIN_TOKEN_SECRET_CHARS: Final = 32
#: Admitting more than the workers can do (> 1) only ever buys underruns; a little
#: above 1 is allowed for engines whose measured wall time overstates their share.
MAX_INFERENCE_LOAD: Final = 1.5
#: A start delayed longer than this is no real-time start: a client should be told.
MAX_START_DELAY_MS: Final = 60_000
#: URL schemes of ``cluster.redis_url`` (the ``s`` ones use TLS).
REDIS_SCHEMES: Final = ("redis", "rediss", "valkey", "valkeys")
#: A replica id is part of Redis key and channel names: short, no separators.
REPLICA_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Below a second, heartbeats (a third of the TTL) would load Redis for nothing and a
#: short pause of a replica (GC, swap) would drop its sessions.
MIN_SESSION_TTL_S: Final = 1.0
#: A route timeout beyond this is a hung client request, not a slow replica.
MAX_ROUTE_TIMEOUT_MS: Final = 60_000


def _build(cls: type[_T], data: Mapping[str, Any], prefix: str) -> _T:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known or key == "base_dir":
            raise ConfigError(f"unknown config key '{prefix}{key}'")
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
            raise ConfigError(f"config key '{prefix}{f.name}' is required")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be an object")
        return _build(hint, value, f"{key}.")  # type: ignore[arg-type]
    options = get_args(hint) if get_origin(hint) is not None else (hint,)
    if get_origin(hint) is tuple and is_dataclass(get_args(hint)[0]):
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list of objects")
        return tuple(_coerce(get_args(hint)[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if get_origin(hint) is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}' must be a list of strings")
        return tuple(value)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"config key '{key}' must be {names}, got {json.dumps(value)}")


def _check(ok: bool, key: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {rule}")


def _validate_api_keys(keys: tuple[ApiKeyConfig, ...], key: str) -> tuple[ApiKeyConfig, ...]:
    """Check each entry (``key[i].field`` in errors); digests come back lower-case."""
    out = []
    for index, entry in enumerate(keys):
        at = f"{key}[{index}]"
        _check(
            API_KEY_ID_PATTERN.fullmatch(entry.id) is not None,
            f"{at}.id",
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
        _check(
            _SHA256_HEX.fullmatch(entry.sha256) is not None,
            f"{at}.sha256",
            "must be the 64-hex-digit SHA-256 of the key (tts-streamer keys create)",
        )
        _check(entry.max_sessions >= 0, f"{at}.max_sessions", "must be >= 0 (0 = no limit)")
        _check(entry.chars_per_minute >= 0, f"{at}.chars_per_minute", "must be >= 0 (0 = no limit)")
        out.append(replace(entry, sha256=entry.sha256.lower()))
    return tuple(out)


def parse_api_keys(data: Any, source: str) -> tuple[ApiKeyConfig, ...]:
    """Validate a decoded list of key entries from ``source`` (a key file, the
    environment) as ``security.api_keys`` is; raises ``ConfigError`` naming the entry."""
    hint = get_type_hints(SecurityConfig)["api_keys"]
    return _validate_api_keys(_coerce(hint, data, source), source)


def _check_origin(origin: str, key: str) -> None:
    if origin == "*":
        return
    parts = urlsplit(origin)
    ok = (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path == ""
        and not parts.query
        and not parts.fragment
        and parts.username is None
    )
    if ok:
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            ok = False
    example = '"https://app.example.com"'
    _check(ok, key, f'must be "*" or an origin like {example}, got {json.dumps(origin)}')


def _validate_security(config: Config) -> SecurityConfig:
    s, sec = config.server, config.security
    _check(
        (s.tls_certfile is None) == (s.tls_keyfile is None),
        "server.tls_keyfile" if s.tls_keyfile is None else "server.tls_certfile",
        "must be set together with "
        + ("server.tls_certfile" if s.tls_keyfile is None else "server.tls_keyfile"),
    )
    keys = _validate_api_keys(sec.api_keys, "security.api_keys")
    for index, origin in enumerate(sec.allowed_origins):
        _check_origin(origin, f"security.allowed_origins[{index}]")
    _check(
        0 < sec.token_ttl_s <= MAX_TOKEN_TTL_S,
        "security.token_ttl_s",
        f"must be > 0 and <= {MAX_TOKEN_TTL_S:.0f} (tokens are short-lived)",
    )
    _check(
        sec.token_secret is None or len(sec.token_secret) >= MIN_TOKEN_SECRET_CHARS,
        "security.token_secret",
        f"must be at least {MIN_TOKEN_SECRET_CHARS} characters",
    )
    return replace(sec, api_keys=keys)


def _validate_cluster(c: ClusterConfig) -> None:
    if c.redis_url is not None:
        parts = urlsplit(c.redis_url)
        ok = parts.scheme in REDIS_SCHEMES and bool(parts.hostname)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            ok = False
        db = parts.path.strip("/")
        _check(
            ok and (db == "" or db.isdigit()) and not parts.query,
            "cluster.redis_url",
            "must be like redis://host:6379/0 (redis, rediss, valkey or valkeys)",
        )
    if c.replica_id is not None:
        _check(
            REPLICA_ID_PATTERN.fullmatch(c.replica_id) is not None,
            "cluster.replica_id",
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    _check(
        c.session_ttl_s >= MIN_SESSION_TTL_S,
        "cluster.session_ttl_s",
        f"must be >= {MIN_SESSION_TTL_S:g}",
    )
    _check(
        1 <= c.route_timeout_ms <= MAX_ROUTE_TIMEOUT_MS,
        "cluster.route_timeout_ms",
        f"must be 1-{MAX_ROUTE_TIMEOUT_MS}",
    )


def _validate(config: Config) -> Config:
    s, t, p = config.server, config.tts, config.performance
    _validate_cluster(config.cluster)
    for key, port in (("http_port", s.http_port), ("websocket_port", s.websocket_port)):
        _check(0 <= port <= 65535, f"server.{key}", "must be a port number 0-65535")
    if s.wyoming_port is not None:
        _check(0 <= s.wyoming_port <= 65535, "server.wyoming_port", "must be a port number 0-65535")
        _check(
            s.wyoming_port == 0 or s.wyoming_port not in (s.http_port, s.websocket_port),
            "server.wyoming_port",
            "must differ from server.http_port and server.websocket_port",
        )
    _check(
        s.http_port == 0 or s.http_port != s.websocket_port,
        "server.websocket_port",
        "must differ from server.http_port (REST and WebSocket cannot share a port)",
    )
    _check(s.max_connections >= 1, "server.max_connections", "must be >= 1")
    _check(s.max_message_bytes >= 1024, "server.max_message_bytes", "must be >= 1024")
    _check(s.log_level.upper() in LOG_LEVELS, "server.log_level", f"must be one of {LOG_LEVELS}")
    _check(s.shutdown_timeout_s > 0, "server.shutdown_timeout_s", "must be > 0")
    _check(s.drain_timeout_s >= 0, "server.drain_timeout_s", "must be >= 0 (0 = no drain)")
    _check(s.write_timeout_s > 0, "server.write_timeout_s", "must be > 0")
    _check(s.handshake_timeout_s > 0, "server.handshake_timeout_s", "must be > 0")
    _check(s.idle_timeout_s >= 0, "server.idle_timeout_s", "must be >= 0 (0 = never)")
    _check(s.ping_interval_s >= 0, "server.ping_interval_s", "must be >= 0 (0 = no pings)")
    _check(s.http_keep_alive_timeout_s > 0, "server.http_keep_alive_timeout_s", "must be > 0")
    _check(s.http_read_timeout_s > 0, "server.http_read_timeout_s", "must be > 0")
    engine = ENGINE_ALIASES.get(t.engine, t.engine)
    _check(engine in ENGINE_CHOICES, "tts.engine", f"must be one of {ENGINE_CHOICES}")
    _check(t.device in DEVICE_CHOICES, "tts.device", f"must be one of {DEVICE_CHOICES}")
    _check(t.melo.device in DEVICE_CHOICES, "tts.melo.device", f"must be one of {DEVICE_CHOICES}")
    _check(
        t.kokoro.device in DEVICE_CHOICES, "tts.kokoro.device", f"must be one of {DEVICE_CHOICES}"
    )
    _check(bool(t.kokoro.model_dir.strip()), "tts.kokoro.model_dir", "must not be empty")
    # The engine defines its modes; imported here, not at the top, so that importing
    # the config (every CLI command does) does not load the engines and numpy.
    from streamer.engines.piper import STREAMING_MODES

    _check(
        t.piper.streaming in STREAMING_MODES,
        "tts.piper.streaming",
        f"must be one of {STREAMING_MODES}",
    )
    _check(bool(t.default_language.strip()), "tts.default_language", "must not be empty")
    _check(
        t.default_format in SUPPORTED_FORMATS,
        "tts.default_format",
        f"must be one of {', '.join(SUPPORTED_FORMATS)}, got {json.dumps(t.default_format)}",
    )
    _check(64 <= t.chunk_size <= 48000, "tts.chunk_size", "must be 64-48000 samples")
    _check(1 <= t.max_text_length <= 100_000, "tts.max_text_length", "must be 1-100000")
    _check(t.context_idle_s >= 0, "tts.context_idle_s", "must be >= 0 (0 = never)")
    _check(t.max_open_contexts >= 1, "tts.max_open_contexts", "must be >= 1")
    _check(p.max_queue_size >= 1, "performance.max_queue_size", "must be >= 1")
    _check(p.worker_processes >= 0, "performance.worker_processes", "must be >= 0")
    _check(p.realtime_lead_ms >= 0, "performance.realtime_lead_ms", "must be >= 0")
    _check(p.busy_lateness_ms > 0, "performance.busy_lateness_ms", "must be > 0")
    _check(
        0 < p.max_inference_load <= MAX_INFERENCE_LOAD,
        "performance.max_inference_load",
        f"must be > 0 and <= {MAX_INFERENCE_LOAD}",
    )
    _check(
        0 <= p.max_start_delay_ms <= MAX_START_DELAY_MS,
        "performance.max_start_delay_ms",
        f"must be 0 (refuse at once) to {MAX_START_DELAY_MS}",
    )
    _check(
        0 <= p.event_loop_realtime_priority <= MAX_REALTIME_PRIORITY,
        "performance.event_loop_realtime_priority",
        f"must be 0 (off) to {MAX_REALTIME_PRIORITY}",
    )
    return replace(config, tts=replace(t, engine=engine), security=_validate_security(config))


def parse_config(data: Mapping[str, Any], base_dir: str = ".") -> Config:
    """Validate a decoded config mapping; raises ``ConfigError`` naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError("config must be a JSON object")
    built = _build(Config, data, "")
    return _validate(
        Config(
            server=built.server,
            tts=built.tts,
            performance=built.performance,
            security=built.security,
            cluster=built.cluster,
            base_dir=base_dir,
        )
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a JSON config file. Relative paths in it (voices, logs) resolve
    against the directory that holds the file's ``config/`` folder, i.e. the project."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    base = p.resolve().parent
    if base.name == "config":
        base = base.parent
    return parse_config(data, base_dir=str(base))
