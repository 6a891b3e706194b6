"""``tts-streamer say|voices|status``: talk to a running server from the shell.

    tts-streamer say "Hola, ¿qué tal?" --language es -o hola.mp3
    tts-streamer say "Hello" --language en --play
    echo "long text" | tts-streamer say - --format opus -o out.ogg
    llm --stream | tts-streamer say --stream - --language en --play
    tts-streamer voices --language es
    tts-streamer status --http http://127.0.0.1:8080

The commands are subcommands of the one ``tts-streamer`` parser (``streamer/cli.py``);
this module adds them (:func:`add_commands`) and runs them (:func:`run`).

Exit status: 0 done; 1 the server answered with an error (or the request was
interrupted, or the connection was lost mid-way); 2 bad usage (including an ``-o``
suffix of a format the server does not produce), or nothing to talk to (connection
refused, no audio output device); 130 Ctrl-C; 141 stdout closed early.

``say -o FILE`` asks for ``realtime: false`` (the server sends as fast as it
synthesizes) and writes the frames as they come into ``FILE.part``, renamed to FILE
once the request ended well, so a failed run never leaves a truncated file behind.
Before the rename, a WAV or FLAC file gets its exact length written into the header
(the stream's header said "unknown"); on stdout the stream is written as it came.

``say --stream`` sends the text as a streamed-text context, piece by piece as stdin
delivers it (an LLM's tokens piped in): speech starts with the first clause, long
before stdin ends, and the server cuts the text (``buffer``) as it would for an agent.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Final

import trio

from ._base import ContextStream
from ._client import TTSStreamingClient
from ._events import (
    AudioEnd,
    AudioOptions,
    AudioStart,
    Interrupted,
    StreamItem,
    TTSClientError,
    TTSConnectionError,
    TTSServerError,
    TTSTimeoutError,
)
from .playback import PlaybackSink, PlaybackUnavailableError

EXIT_OK: Final = 0
EXIT_SERVER_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CTRL_C: Final = 130

#: The server's default ports (config/default.json); override with --url/--http or
#: the environment variables below.
DEFAULT_WS_URL: Final = "ws://127.0.0.1:8081"
DEFAULT_HTTP_URL: Final = "http://127.0.0.1:8080"
WS_URL_ENV: Final = "TTS_STREAMER_URL"
HTTP_URL_ENV: Final = "TTS_STREAMER_HTTP"
#: The API key for a server that asks for one (--api-key overrides it).
API_KEY_ENV: Final = "TTS_STREAMER_API_KEY"
#: Bound on one REST call: every endpoint used here answers from memory.
HTTP_TIMEOUT_S: Final = 10.0
#: Progress line refresh: often enough to look live, rare enough to cost nothing.
PROGRESS_INTERVAL_S: Final = 0.1

#: Output format implied by a file name when --format is not given. A name without a
#: suffix gets wav; any other suffix is refused rather than filled with audio of another
#: format than it says.
FORMAT_BY_SUFFIX: Final = {
    ".wav": "wav",
    ".mp3": "mp3",
    ".ogg": "opus",
    ".opus": "opus",
    ".oga": "ogg_vorbis",
    ".flac": "flac",
    ".aac": "aac",
    ".pcm": "pcm",
    ".raw": "pcm",
    ".f32": "pcm_f32",
    ".ulaw": "mulaw",
    ".mulaw": "mulaw",
    ".alaw": "alaw",
}
#: Format when the name has no suffix (or is stdout).
DEFAULT_FILE_FORMAT: Final = "wav"
#: Suffixes people reach for whose container the server does not produce, and what
#: to use instead.
_CONTAINER_HINTS: Final = {
    ".m4a": ".aac (AAC in ADTS)",
    ".mp4": ".aac (AAC in ADTS)",
    ".webm": ".opus or .ogg (Opus in Ogg)",
    ".weba": ".opus or .ogg (Opus in Ogg)",
    ".mka": ".opus or .ogg (Opus in Ogg)",
    ".vorbis": ".oga (Vorbis in Ogg)",
}
#: Largest read of stdin in ``say --stream``: a read returns whatever the pipe holds
#: (one token, as it is written), never waiting for this many bytes.
STDIN_READ_BYTES: Final = 4096
#: Bytes per second of audio for raw formats, per Hz of sample rate.
_RAW_BYTES_PER_SAMPLE: Final = {"pcm": 2, "wav": 2, "pcm_f32": 4, "mulaw": 1, "alaw": 1}


class _UsageError(Exception):
    pass


def add_commands(commands: argparse._SubParsersAction[Any], **parser_kwargs: Any) -> None:
    """Add ``say``, ``voices`` and ``status`` to the ``tts-streamer`` parser's
    subcommands (``streamer/cli.py`` owns the parser; ``parser_kwargs`` go to each
    ``add_parser``)."""
    ws_default = os.environ.get(WS_URL_ENV, DEFAULT_WS_URL)
    http_default = os.environ.get(HTTP_URL_ENV, DEFAULT_HTTP_URL)
    key_default = os.environ.get(API_KEY_ENV) or None
    key_help = f"API key of a server that needs one (${API_KEY_ENV})"

    say = commands.add_parser(
        "say", help="synthesize text to a file or the speakers", **parser_kwargs,
        description="Synthesize TEXT ('-' or nothing: read stdin) to a file or the speakers.",
        epilog="Formats by -o suffix: "
        + ", ".join(f"{suffix} {fmt}" for suffix, fmt in FORMAT_BY_SUFFIX.items())
        + "; no suffix: wav.",
    )
    say.add_argument("text", nargs="?", default="-", help="text to speak; '-' reads stdin")
    say.add_argument("-l", "--language", help="language tag, e.g. es, en-US")
    say.add_argument("-v", "--voice", help="voice id, or index within the language")
    say.add_argument("--speaker", help="speaker of a multi-speaker voice")
    say.add_argument("-p", "--priority", choices=("normal", "high", "critical"), default="normal")
    say.add_argument("-f", "--format", help="audio format (default: from -o's suffix, else wav)")
    say.add_argument("--sample-rate", type=int, help="output rate in Hz")
    say.add_argument("--bitrate", type=int, help="kbit/s for mp3/opus/aac")
    say.add_argument("--speed", type=float, help="speaking rate, 0.5-2.0")
    say.add_argument("--volume", type=float, help="linear gain, 0-4")
    target = say.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", help="write the audio to this file ('-': stdout)")
    target.add_argument("--play", action="store_true", help="play through the sound card")
    say.add_argument(
        "--stream",
        action="store_true",
        help="send stdin as it arrives (an LLM's tokens): speech starts with the first clause",
    )
    say.add_argument("--url", default=ws_default, help=f"WebSocket URL (${WS_URL_ENV})")
    say.add_argument("--api-key", default=key_default, help=key_help)
    say.add_argument("--progress", action="store_true", help="progress line even if not a tty")
    say.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")

    voices = commands.add_parser("voices", help="list the server's voices", **parser_kwargs)
    voices.add_argument("-l", "--language", help="only voices of this language")
    voices.add_argument("--http", default=http_default, help=f"REST base URL (${HTTP_URL_ENV})")
    voices.add_argument("--api-key", default=key_default, help=key_help)
    voices.add_argument("--json", action="store_true", help="print the raw JSON")

    status = commands.add_parser("status", help="show the server's status", **parser_kwargs)
    status.add_argument("--http", default=http_default, help=f"REST base URL (${HTTP_URL_ENV})")
    status.add_argument("--api-key", default=key_default, help=key_help)
    status.add_argument("--json", action="store_true", help="print the raw JSON")


def run(
    args: argparse.Namespace,
    out: IO[str],
    err: IO[str],
    sink: PlaybackSink | None = None,
) -> int:
    """Run the client command parsed into ``args`` (``args.command`` is ``say``,
    ``voices`` or ``status``); returns the exit status. ``sink`` replaces the sound
    card for ``say --play``. A closed stdout raises ``BrokenPipeError`` to the caller."""
    try:
        if args.command == "say":
            return _say(args, out, err, sink)
        if args.command == "voices":
            return _voices(args, out, err)
        return _status(args, out, err)
    except _UsageError as exc:
        err.write(f"tts-streamer: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("\ntts-streamer: interrupted\n")
        return EXIT_CTRL_C


# --- say ------------------------------------------------------------------------------


def _options(args: argparse.Namespace, fmt: str, realtime: bool) -> AudioOptions:
    config: AudioOptions = {"format": fmt, "realtime": realtime}
    if args.language:
        config["language"] = args.language
    if args.voice:
        config["voice_id"] = int(args.voice) if args.voice.isdecimal() else args.voice
    if args.speaker:
        config["speaker"] = args.speaker
    if args.sample_rate is not None:
        config["sample_rate"] = args.sample_rate
    if args.bitrate is not None:
        config["bitrate"] = args.bitrate
    if args.speed is not None:
        config["speed"] = args.speed
    if args.volume is not None:
        config["volume"] = args.volume
    return config


class _Progress:
    """The ``N.N s of audio received`` line on stderr, rewritten in place."""

    def __init__(self, err: IO[str], live: bool) -> None:
        self._err = err
        self._live = live
        self._bytes_per_second: float | None = None
        self._header = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.first_audio_s: float | None = None
        self._shown_at = 0.0

    def start(self, event: AudioStart) -> None:
        per_sample = _RAW_BYTES_PER_SAMPLE.get(event.format)
        if per_sample is not None:
            self._bytes_per_second = per_sample * event.sample_rate * event.channels
            self._header = 44 if event.format == "wav" else 0
        elif event.bitrate:
            self._bytes_per_second = event.bitrate * 1000 / 8

    def add(self, count: int) -> None:
        if self.first_audio_s is None:
            self.first_audio_s = time.monotonic() - self.started
        self.bytes += count
        now = time.monotonic()
        if self._live and now - self._shown_at >= PROGRESS_INTERVAL_S:
            self._shown_at = now
            self._err.write(f"\r{self.describe()}   ")
            self._err.flush()

    def describe(self) -> str:
        size = f"{self.bytes / 1000:.1f} kB"
        if self._bytes_per_second:
            seconds = max(0, self.bytes - self._header) / self._bytes_per_second
            return f"{seconds:.1f} s of audio received ({size})"
        return f"{size} of audio received"

    def done(self) -> None:
        if self._live and self._shown_at:
            self._err.write("\r" + " " * 60 + "\r")


def format_for_file(target: str) -> str:
    """The format ``say -o target`` writes when --format is not given: by suffix, wav
    without one; raises ``_UsageError`` for a suffix of another format."""
    if target == "-":
        return DEFAULT_FILE_FORMAT
    suffix = Path(target).suffix.lower()
    if not suffix:
        return DEFAULT_FILE_FORMAT
    fmt = FORMAT_BY_SUFFIX.get(suffix)
    if fmt is not None:
        return fmt
    hint = _CONTAINER_HINTS.get(suffix)
    known = " ".join(FORMAT_BY_SUFFIX)
    if hint is not None:
        raise _UsageError(
            f"cannot write {suffix} files: the server does not produce that container;"
            f" use {hint}, or give --format (suffixes: {known})"
        )
    raise _UsageError(f"no audio format for the suffix {suffix}; use one of {known}, or --format")


class _Output:
    """Frames to a file (through FILE.part) or stdout.

    A file is completed before it is renamed into place: WAV and FLAC stream with a
    header that leaves the length unknown, and a saved file gets the exact length
    written into it (``streamer.audio.complete_header``), so every reader agrees on it.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        if target == "-":
            self._path = None
            self._file: IO[bytes] = sys.stdout.buffer
        else:
            self._path = Path(target)
            self._partial = self._path.with_name(self._path.name + ".part")
            self._file = open(self._partial, "w+b")

    def write(self, frame: bytes) -> None:
        self._file.write(frame)

    def commit(self, fmt: str) -> None:
        self._file.flush()
        if self._path is not None:
            # Imported here: the audio stage (codecs) is only needed to save a file.
            from ..audio import complete_header

            try:
                complete_header(self._file, fmt)
            finally:
                self._file.close()
            os.replace(self._partial, self._path)

    def discard(self) -> None:
        if self._path is not None:
            self._file.close()
            self._partial.unlink(missing_ok=True)


def _read_text(arg: str) -> str:
    text = sys.stdin.read() if arg == "-" else arg
    if not text.strip():
        raise _UsageError("no text to say")
    return text


def _say(
    args: argparse.Namespace, out: IO[str], err: IO[str], sink: PlaybackSink | None
) -> int:
    # Streamed: stdin is read as it arrives, later; a text argument is sent whole.
    text = "" if args.stream and args.text == "-" else _read_text(args.text)
    if args.play:
        fmt = args.format or "pcm"
        if fmt not in ("pcm", "pcm_f32"):
            raise _UsageError("--play needs --format pcm or pcm_f32")
    else:
        fmt = args.format or format_for_file(args.output)
    config = _options(args, fmt, realtime=bool(args.play))
    progress = _Progress(err, live=not args.quiet and (args.progress or err.isatty()))
    try:
        if args.play:
            summary = trio.run(_play, args, text, config, sink)
        else:
            summary = _download(args, text, config, progress)
    except _UsageError:
        progress.done()
        raise
    except TTSServerError as exc:
        progress.done()
        hint = ""
        available = exc.details.get("available")
        if isinstance(available, list) and available:
            hint = f" (available: {', '.join(map(str, available[:20]))})"
        err.write(f"tts-streamer: server error {exc.code}: {exc.message}{hint}\n")
        return EXIT_SERVER_ERROR
    except PlaybackUnavailableError as exc:
        err.write(f"tts-streamer: cannot play: {exc.message}\n")
        return EXIT_USAGE
    except TTSConnectionError as exc:
        progress.done()
        if exc.code == "connection_closed":
            err.write(f"tts-streamer: connection lost: {exc.message}\n")
            return EXIT_SERVER_ERROR
        err.write(f"tts-streamer: {exc.message}\n")
        return EXIT_USAGE
    except TTSTimeoutError as exc:
        err.write(f"tts-streamer: {exc.message}\n")
        return EXIT_USAGE
    except TTSClientError as exc:
        err.write(f"tts-streamer: {exc.message}\n")
        return EXIT_SERVER_ERROR
    progress.done()
    ok = summary.startswith("wrote") or summary.startswith("played")
    if not args.quiet or not ok:
        err.write(summary + "\n")
    return EXIT_OK if ok else EXIT_SERVER_ERROR


def _download(
    args: argparse.Namespace, text: str, config: AudioOptions, progress: _Progress
) -> str:
    output = _Output(args.output)
    try:
        start, end, interrupted = trio.run(_fetch, args, text, config, output, progress)
    except BaseException:
        output.discard()
        raise
    if end is None:
        output.discard()
        reason = interrupted.reason if interrupted else "unknown"
        return f"tts-streamer: the request was interrupted ({reason}); nothing written"
    assert start is not None
    output.commit(start.format)
    where = "stdout" if args.output == "-" else args.output
    first = f", first audio after {progress.first_audio_s * 1000:.0f} ms" if (
        progress.first_audio_s is not None
    ) else ""
    return (
        f"wrote {where}: {end.duration_ms / 1000:.2f} s of audio ({end.bytes / 1000:.1f} kB, "
        f"{start.format} {start.sample_rate} Hz, voice {start.voice}){first}"
    )


async def _send_stdin(context: ContextStream, text: str, said: list[bool]) -> None:
    """Send ``text`` (a text argument), or stdin piece by piece as it arrives, then end
    the context's input; ``said[0]`` tells whether there was anything to say. A lost
    connection ends it quietly: the reader reports it."""
    try:
        if text:
            await context.send_text(text)
        else:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            fd = sys.stdin.fileno()
            while True:
                # Abandoned on cancel: a read of a silent pipe must not hold the exit.
                data = await trio.to_thread.run_sync(
                    os.read, fd, STDIN_READ_BYTES, abandon_on_cancel=True
                )
                piece = decoder.decode(data, final=not data)
                if piece:
                    said[0] = said[0] or bool(piece.strip())
                    await context.send_text(piece)
                if not data:
                    break
        if not said[0]:
            await context.cancel(wait=False)
        else:
            await context.close()
    except TTSClientError:
        return


async def _speak_stream(
    context: ContextStream, text: str, on_item: Callable[[StreamItem], Awaitable[None]]
) -> None:
    """Feed ``context`` from ``text`` or stdin while ``on_item`` takes what it returns.
    Raises what the stream raises (``TTSServerError``…), or ``_UsageError`` when there
    was no text at all."""
    said = [bool(text.strip())]
    error: TTSClientError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_stdin, context, text, said)
        try:
            async for item in context:
                await on_item(item)
        except TTSClientError as exc:  # raised here, not from inside the nursery's group
            error = exc
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    if not said[0]:
        raise _UsageError("no text to say")


async def _fetch(
    args: argparse.Namespace,
    text: str,
    config: AudioOptions,
    output: _Output,
    progress: _Progress,
) -> tuple[AudioStart | None, AudioEnd | None, Interrupted | None]:
    async with TTSStreamingClient(args.url, api_key=args.api_key) as client:
        if args.stream:
            context = client.stream(priority=args.priority, **config)

            async def take(item: StreamItem) -> None:
                if isinstance(item, bytes):
                    output.write(item)
                    progress.add(len(item))
                elif isinstance(item, AudioStart):
                    progress.start(item)

            await _speak_stream(context, text, take)
            return context.start, context.end, context.interrupted
        stream = client.synthesize(text, priority=args.priority, **config)
        async for item in stream:
            if isinstance(item, bytes):
                output.write(item)
                progress.add(len(item))
            elif isinstance(item, AudioStart):
                progress.start(item)
        return stream.start, stream.end, stream.interrupted


async def _play(
    args: argparse.Namespace, text: str, config: AudioOptions, sink: PlaybackSink | None
) -> str:
    async with TTSStreamingClient(args.url, api_key=args.api_key) as client:
        if args.stream:
            return await _play_stream(client, args, text, config, sink)
        result = await client.synthesize_and_play(
            text, sink=sink, priority=args.priority, **config
        )
    if result.end is None:
        reason = result.interrupted.reason if result.interrupted else "unknown"
        return f"tts-streamer: playback interrupted ({reason})"
    voice = result.start.voice if result.start else "?"
    return f"played {result.end.duration_ms / 1000:.2f} s of audio (voice {voice})"


async def _play_stream(
    client: TTSStreamingClient,
    args: argparse.Namespace,
    text: str,
    config: AudioOptions,
    sink: PlaybackSink | None,
) -> str:
    """``say --stream --play``: a context played through ``sink`` as it arrives."""
    from .playback import PCM_FORMATS, PcmFormat, default_sink

    sink = sink or client.sink or default_sink()
    context = client.stream(priority=args.priority, **config)
    player = sink

    async def take(item: StreamItem) -> None:
        if isinstance(item, bytes):
            if context.start is not None:
                await trio.to_thread.run_sync(player.write, item)
        elif isinstance(item, AudioStart):
            pcm = PcmFormat(item.sample_rate, item.channels, PCM_FORMATS[item.format])
            await trio.to_thread.run_sync(player.start, pcm)
        elif isinstance(item, AudioEnd):
            await trio.to_thread.run_sync(player.drain)
        elif isinstance(item, Interrupted):
            player.abort()

    await _speak_stream(context, text, take)
    if context.end is None:
        reason = context.interrupted.reason if context.interrupted else "unknown"
        return f"tts-streamer: playback interrupted ({reason})"
    voice = context.start.voice if context.start else "?"
    return f"played {context.end.duration_ms / 1000:.2f} s of audio (voice {voice})"


# --- voices, status -------------------------------------------------------------------


def _get_json(
    base: str, path: str, query: dict[str, str] | None = None, api_key: str | None = None
) -> Any:
    """GET a REST endpoint; raises ``_UsageError`` when the server cannot be reached and
    ``TTSServerError``-like ``_HttpError`` for an error reply."""
    url = base.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    if not url.startswith(("http://", "https://")):
        raise _UsageError(f"--http must be an http:// or https:// URL, got {base!r}")
    try:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            error = json.load(exc).get("error", {})
        except (ValueError, AttributeError):
            error = {}
        raise _HttpError(
            exc.code, error.get("code", "http_error"), error.get("message", str(exc))
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _UsageError(f"cannot reach {base}: {reason}") from None


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")


def _voices(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    query = {"language": args.language} if args.language else None
    try:
        body = _get_json(args.http, "/api/v1/voices", query, args.api_key)
    except _HttpError as exc:
        err.write(f"tts-streamer: {exc}\n")
        return EXIT_SERVER_ERROR
    if args.json:
        out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    voices = body.get("voices", [])
    if not voices:
        err.write("no voices" + (f" for language {args.language}" if args.language else "") + "\n")
        return EXIT_OK
    # Best quality first (the server's order); DEFAULT marks the voice a request for that
    # language without a voice gets (the best one that keeps real time on that server).
    rows = [("ID", "TAG", "ENGINE", "QUALITY", "RATE", "SPEAKERS", "DEFAULT", "LANGUAGE", "NAME")]
    for v in voices:
        rows.append(
            (
                str(v.get("id")),
                str(v.get("language")),
                str(v.get("engine")),
                str(v.get("quality")),
                str(v.get("sample_rate")),
                ",".join(v.get("speakers") or []) or "-",
                "yes" if v.get("default") else "-",
                str(v.get("language_name") or v.get("language")),
                str(v.get("name")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    return EXIT_OK


def _engine_state(engine: dict[str, Any]) -> str:
    if engine.get("loaded"):
        return "loaded"
    return "available" if engine.get("available") else f"unavailable: {engine.get('reason')}"


def _status(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        body = _get_json(args.http, "/api/v1/status", api_key=args.api_key)
    except _HttpError as exc:
        err.write(f"tts-streamer: {exc}\n")
        return EXIT_SERVER_ERROR
    if args.json:
        out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    host = urllib.parse.urlsplit(args.http).hostname or "127.0.0.1"
    inference = body.get("inference", {})
    engines = ", ".join(
        f"{e.get('name')} ({_engine_state(e)})" for e in body.get("engines", [])
    )
    lines = [
        f"server:     {args.http} (version {body.get('version')}, up {body.get('uptime_s')} s, "
        f"{'ready' if body.get('ready') else 'NOT ready'})",
        f"websocket:  {'wss' if args.http.startswith('https:') else 'ws'}://{host}:"
        f"{body.get('websocket_port')}",
        f"sessions:   {body.get('sessions')} (connections {body.get('connections')}"
        f" / {body.get('max_connections')})",
        f"inference:  {inference.get('workers')} workers, {inference.get('running')} running, "
        f"{inference.get('waiting')} waiting, lateness {inference.get('lateness_ms')} ms",
        f"engines:    {engines}",
        f"language:   {body.get('default_language')} (default)",
        f"formats:    {', '.join(str(f.get('name')) for f in body.get('formats', []))}",
    ]
    out.write("\n".join(lines) + "\n")
    return EXIT_OK
