"""OpenAI-compatible speech API: ``POST /v1/audio/speech``, ``GET /v1/models``,
``GET /v1/audio/voices``, so OpenAI SDKs and tools work with ``base_url`` pointed here.

Decisions where OpenAI's API and this server differ:

- ``voice``: OpenAI's names (alloy, ash, ballad, coral, echo, fable, onyx, nova, sage,
  shimmer, verse, marin, cedar) map to distinct Kokoro voices when Kokoro is installed
  (``kokoro.OPENAI_VOICES``: ``alloy`` is ``af_alloy``, ``coral`` ``af_heart``...).
  Otherwise (and for a name whose Kokoro voice is missing) they map, in that order,
  round-robin onto the English voices installed here — the neural ones only when there
  are any, best first as the registry ranks them, each speaker of a multi-speaker voice
  counting as one voice. With the packaged Piper voice alone, every name speaks with it.
  Any voice id of ours (``GET /api/v1/voices``) is accepted too, also as
  ``{"id": "..."}``.
- ``response_format``: mp3, opus (Ogg Opus, as OpenAI's), flac, wav and pcm; every
  format at 24 kHz like OpenAI's, so ``pcm`` is raw 24 kHz 16-bit little-endian mono as
  OpenAI documents. ``aac`` is ADTS AAC-LC.
- ``speed``: OpenAI accepts 0.25-4.0; our engines distort outside 0.5-2.0, so values
  outside that range get 400 ``invalid_speed`` rather than being silently clamped.
- ``model`` must be a non-empty string; any name is accepted (the voice, not the model,
  picks the engine); ``GET /v1/models`` lists the customary ones.
- ``instructions`` is accepted and ignored (no engine here takes style prompts); other
  unknown fields are ignored too, as newer SDKs may send them.
- ``stream_format``: ``audio`` (default) streams the encoded audio as a chunked body as
  it is synthesized; ``sse`` sends Server-Sent Events ``speech.audio.delta``
  ``{type, audio: base64}`` and one ``speech.audio.done`` ``{type}`` (no ``usage``:
  there are no tokens to count).

Synthesis goes through ``run_job`` and the shared inference scheduler at ``normal``
priority with no real-time pacing, so it shares the CPU fairly with WebSocket sessions.
When the scheduler is already behind (the WebSocket ``busy`` rule) the answer is 503
with ``Retry-After``. Errors use OpenAI's shape ``{"error": {"message", "type",
"param", "code"}}`` with our stable codes.

A streamed body is fed by a producer task through a small bounded channel, so a slow
reader slows synthesis down instead of filling memory; a client that disconnects (or
stops reading until the response timeout) closes the channel, which ends the job.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio
from quart import Blueprint, Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ...audio import complete_file
from ...engines.base import Voice
from ...engines.kokoro import OPENAI_VOICES as KOKORO_OPENAI_VOICES
from ...engines.registry import UnknownVoiceError
from ...protocol import (
    AudioConfig,
    ClientError,
    ErrorCode,
    Priority,
    ProtocolError,
    ServerError,
    parse_json_object,
    parse_speed,
    parse_synthesis_text,
    quote,
)
from ..cluster import NOTHING, ControlPlane, Receipt
from ..runtime import DownloadGate, RequestOutcome, ServerState, Services
from ..security import Lease
from ..session import (
    SessionManager,
    StartDecision,
    SynthesisJob,
    check_can_start,
    new_job,
    release,
    resolve_config,
    run_job,
)
from ._errors import framework_code, openai_error_response, read_body
from ._security import current_caller

log = logging.getLogger(__name__)

T = TypeVar("T")

#: OpenAI's built-in voice names, in the order they are mapped onto our voices.
OPENAI_VOICES: Final = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)
#: Model names listed by ``GET /v1/models`` (any name is accepted by the speech route).
MODELS: Final = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "mit-tts-streamer")
MODEL_OWNER: Final = "mit-tts-streamer"
#: OpenAI's response_format → our format. OpenAI's opus is Ogg Opus and its aac is ADTS
#: AAC, as ours.
FORMATS: Final = {
    "mp3": "mp3",
    "opus": "opus",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm",
}
#: OpenAI's output rate for every format; its ``pcm`` is documented as 24 kHz s16le.
OPENAI_SAMPLE_RATE: Final = 24000
STREAM_FORMATS: Final = ("audio", "sse")
#: Formats sent as one finished file rather than streamed: a FLAC stream's header cannot
#: state a length it does not know yet, and players and libraries (soundfile) then
#: refuse the file. FLAC is no low-latency format anyway. WAV streams, as OpenAI's does
#: (both sizes 0xFFFFFFFF: soundfile and ffprobe read it; ``wave`` reports 2^31-1
#: frames): openai.md says so.
WHOLE_FILE_FORMATS: Final = frozenset({"flac"})
#: The language whose voices OpenAI's voice names map onto (OpenAI's voices are English).
OPENAI_VOICE_LANGUAGE: Final = "en"
#: Frames between synthesis and the HTTP body: enough to keep the socket busy while the
#: next chunk is synthesized, few enough that a reader that stalls stalls synthesis.
BODY_BUFFER_FRAMES: Final = 16
#: Longest a speech response may take to send. Generous (5000 characters are ~5 min of
#: audio, synthesized in well under one), but bounded: Hypercorn's graceful shutdown
#: waits for responses, and a client that stopped reading would hold one forever.
SPEECH_RESPONSE_TIMEOUT_S: Final = 300.0
#: Largest speech request body: ``input`` at the longest text limit, in UTF-8, with
#: room for the other fields.
MAX_SPEECH_BODY_BYTES: Final = 1024 * 1024
#: SSE: no buffering in proxies (nginx honours X-Accel-Buffering).
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _bad(code: ErrorCode, message: str, param: str | None) -> ClientError:
    """The request's fault, naming the offending body field as OpenAI does."""
    return ClientError(code, message, details={"param": param} if param else None)


# --- voices ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappedVoice:
    """What an OpenAI voice name speaks with here."""

    name: str
    voice: Voice
    speaker: str | None


def openai_voice_map(services: Services) -> list[MappedVoice]:
    """OpenAI's names mapped onto the installed English voices (module docstring);
    empty when no English voice is installed."""
    english = services.registry.voices(OPENAI_VOICE_LANGUAGE)
    pool = [v for v in english if v.neural] or english
    slots: list[tuple[Voice, str | None]] = [
        (voice, speaker) for voice in pool for speaker in (voice.speakers or (None,))
    ]
    if not slots:
        return []
    installed = {v.id: v for v in english}
    return [
        MappedVoice(name, installed[KOKORO_OPENAI_VOICES[name]], None)
        if KOKORO_OPENAI_VOICES.get(name) in installed
        else MappedVoice(name, *slots[index % len(slots)])
        for index, name in enumerate(OPENAI_VOICES)
    ]


def _resolve_voice(services: Services, raw: object) -> tuple[Voice, str | None]:
    if isinstance(raw, dict) and set(raw) == {"id"}:
        raw = raw["id"]
    if not isinstance(raw, str) or not raw.strip():
        raise _bad(
            ErrorCode.MISSING_VOICE,
            "'voice' is required: an OpenAI voice name or a voice id",
            "voice",
        )
    if raw in OPENAI_VOICES:
        for mapped in openai_voice_map(services):
            if mapped.name == raw:
                return mapped.voice, mapped.speaker
        raise _bad(
            ErrorCode.UNKNOWN_VOICE,
            f"no English voice is installed for OpenAI voice {quote(raw)}; use a voice id from "
            "GET /v1/audio/voices",
            "voice",
        )
    try:
        return services.registry.get(raw), None
    except UnknownVoiceError as exc:
        choices = [*OPENAI_VOICES, *exc.available]
        raise _bad(
            ErrorCode.UNKNOWN_VOICE,
            f"unknown voice {quote(raw)}; available: {', '.join(choices)}",
            "voice",
        ) from None


# --- request parsing -------------------------------------------------------------------



@dataclass(frozen=True, slots=True)
class SpeechRequest:
    text: str
    voice: Voice
    speaker: str | None
    format: str
    speed: float
    sse: bool


def parse_speech_request(body: dict[str, Any], services: Services) -> SpeechRequest:
    """Validate a speech request body with the protocol's own checks (text, speed);
    raises ``ClientError`` (400) naming the field in ``details.param``."""

    def checked(param: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except ClientError as exc:
            raise _bad(exc.code, exc.message, param) from None

    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad(ErrorCode.MISSING_MODEL, f"'model' is required, e.g. {MODELS[0]!r}", "model")
    limit = services.config.tts.max_text_length
    text = checked(
        "input", lambda: parse_synthesis_text(body.get("input"), max_chars=limit, field="input")
    )
    voice, speaker = _resolve_voice(services, body.get("voice"))
    fmt = body.get("response_format", "mp3")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise _bad(
            ErrorCode.UNKNOWN_FORMAT,
            f"response_format must be one of {', '.join(FORMATS)}, got {quote(fmt)}",
            "response_format",
        )
    speed = checked("speed", lambda: parse_speed(body.get("speed", 1.0), field="'speed'"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad(
            ErrorCode.INVALID_INSTRUCTIONS, "'instructions' must be a string", "instructions"
        )
    stream_format = body.get("stream_format", "audio")
    if not isinstance(stream_format, str) or stream_format not in STREAM_FORMATS:
        raise _bad(
            ErrorCode.INVALID_STREAM_FORMAT,
            f"stream_format must be 'audio' or 'sse', got {quote(stream_format)}",
            "stream_format",
        )
    return SpeechRequest(
        text=text,
        voice=voice,
        speaker=speaker,
        format=FORMATS[fmt],
        speed=speed,
        sse=stream_format == "sse",
    )


# --- streaming -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)  # identity: the download gate keys slots by it
class _Production:
    """State shared by the route, the producer task and the response body."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    failed: bool = False
    #: The download slot this production holds (``DownloadGate``), until released.
    gate: DownloadGate | None = None
    #: The API key's session slot (``max_sessions``), until released.
    lease: Lease | None = None
    #: What admission decided (``check_can_start``): a download holds no claim on the
    #: real-time workers, but whatever it holds is given back with the slots.
    start: StartDecision = field(default_factory=StartDecision)
    services: Services | None = None
    #: The same slot as counted across a cluster's replicas.
    cluster_slot: Receipt = NOTHING

    def release_slot(self) -> None:
        """Give the download slot, the key's slot and any admission claim back (once,
        whoever gets there first)."""
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release(self)
        if self.lease is not None:
            self.lease.release()
        services, self.services = self.services, None
        if services is not None:
            release(services, self.start)
        self.cluster_slot.release()


async def _produce(
    job: SynthesisJob,
    send: trio.MemorySendChannel[bytes],
    services: Services,
    production: _Production,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the job into ``send``. Never raises (it runs in the app's nursery)."""
    metrics = services.metrics

    async def emit(frame: bytes) -> bool:
        try:
            await send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False  # the body was closed: the client went away
        return True

    outcome = RequestOutcome.ABANDONED
    try:
        with production.scope, send:
            task_status.started()
            try:
                if await run_job(job, emit, services.inference, metrics, services.admission):
                    outcome = RequestOutcome.FINISHED
            except Exception:
                log.exception("speech request: synthesis with %s failed", job.voice.id)
                production.failed = True
                outcome = RequestOutcome.FAILED
                metrics.count_error(ErrorCode.SYNTHESIS_FAILED)
    finally:
        production.release_slot()
    metrics.count_request(outcome)


class _SpeechBody:
    """The response body: frames from the producer, raw or as SSE events.

    Closing it (Quart does, also when the client disconnects) closes the channel and
    cancels the producer, so synthesis stops at once.
    """

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[bytes],
        production: _Production,
        *,
        sse: bool,
        first: bytes | None,
    ) -> None:
        self._receive = receive
        self._production = production
        self._sse = sse
        self._first = first
        self._ended = first is None and not sse

    def __aiter__(self) -> _SpeechBody:
        return self

    async def __anext__(self) -> bytes:
        if self._ended:
            raise StopAsyncIteration
        try:
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                frame = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._ended = True
            if self._production.failed:
                if self._sse:
                    return _sse_event(
                        {
                            "type": "error",
                            "error": {
                                "message": "synthesis failed",
                                "type": "server_error",
                                "code": ErrorCode.SYNTHESIS_FAILED,
                            },
                        }
                    )
                # Headers are gone: abort the body so the client sees a truncated
                # response instead of a short file that looks complete.
                raise RuntimeError("synthesis failed mid-stream") from None
            if self._sse:
                return _sse_event({"type": "speech.audio.done"})
            raise StopAsyncIteration from None
        if self._sse:
            return _sse_event(
                {"type": "speech.audio.delta", "audio": base64.b64encode(frame).decode("ascii")}
            )
        return frame

    async def aclose(self) -> None:
        self._receive.close()
        self._production.scope.cancel()


async def _whole_file(
    fmt: str,
    first: bytes | None,
    receive: trio.MemoryReceiveChannel[bytes],
    production: _Production,
) -> bytes:
    """Every frame, joined into a file whose header states its real length."""
    frames = [first] if first is not None else []
    with receive:
        async for frame in receive:
            frames.append(frame)
    if production.failed:
        raise ServerError(ErrorCode.SYNTHESIS_FAILED, "synthesis failed")
    return complete_file(fmt, b"".join(frames))


def _sse_event(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


# --- routes ----------------------------------------------------------------------------


def register_openai(
    app: QuartTrio,
    manager: SessionManager,
    state: ServerState,
    plane: ControlPlane | None = None,
) -> None:
    """Add the OpenAI-compatible routes to ``app`` (a blueprint of their own, so their
    errors take OpenAI's shape). ``plane``: a cluster's, whose replicas count a key's
    sessions and characters together."""
    services = manager.services
    created = int(time.time())
    blueprint = Blueprint("openai", __name__)

    @blueprint.errorhandler(ClientError)
    @blueprint.errorhandler(ServerError)
    async def _openai_error(error: ProtocolError) -> Response:
        # The one place the OpenAI routes' errors become replies.
        services.metrics.count_error(error.code)
        return openai_error_response(error)

    @blueprint.errorhandler(Exception)
    async def _bug(error: Exception) -> Response:
        if isinstance(error, HTTPException):  # the framework's own refusal (413...)
            status = error.code or 400
            code = framework_code(status)
            kind = ClientError if status < 500 else ServerError
            refusal = kind(ErrorCode.INVALID_MESSAGE, error.description or code)
            return openai_error_response(refusal, status=status, code=code)
        log.error("%s %s failed", request.method, request.path, exc_info=error)
        services.metrics.count_error(ErrorCode.INTERNAL_ERROR)
        return openai_error_response(
            ServerError(ErrorCode.INTERNAL_ERROR, "internal server error")
        )

    @blueprint.post("/v1/audio/speech")
    async def speech() -> Response:
        received_at = trio.current_time()
        # The body is read before any refusal: answered early, an unread body can stall
        # the next request on the same keep-alive connection.
        body = parse_json_object(await read_body(), max_bytes=MAX_SPEECH_BODY_BYTES)
        if not state.ready:
            raise ServerError(ErrorCode.NOT_READY, "models are still loading; retry shortly")
        parsed = parse_speech_request(body, services)
        resolved = resolve_config(
            services,
            AudioConfig(
                voice_id=parsed.voice.id,
                speaker=parsed.speaker,
                format=parsed.format,
                sample_rate=OPENAI_SAMPLE_RATE,
                speed=parsed.speed,
                # A download: synthesized as fast as the scheduler allows.
                realtime=False,
            ),
            None,
        )
        # The one admission rule (a download: refused only when inference runs late).
        decision = check_can_start(
            services, resolved, Priority.NORMAL, None, parsed.text, new_stream=True
        )
        try:
            job = new_job(
                services, resolved, parsed.text, Priority.NORMAL, received_at,
                reservation=decision.reservation,
            )
            stream_format = job.open()
            production = _Production(
                # The key's slot and characters (429 too_many_sessions / rate_limited).
                lease=services.security.quotas.admit_request(
                    current_caller(), len(parsed.text), received_at
                ),
                start=decision,
                services=services,
            )
        except BaseException:
            release(services, decision)
            raise
        if plane is not None and plane.distributed:
            try:
                production.cluster_slot = await plane.open_slot(current_caller())
                await plane.charge(current_caller(), len(parsed.text), None)
            except BaseException:
                production.release_slot()
                raise
        # A slot among the downloads (or a short wait for one; busy when that is full).
        try:
            await services.downloads.admit(production)
        except BaseException:
            production.release_slot()
            raise
        production.gate = services.downloads
        send, receive = trio.open_memory_channel[bytes](BODY_BUFFER_FRAMES)
        try:
            await app.nursery.start(_produce, job, send, services, production)
        except BaseException:
            production.release_slot()  # the producer never ran
            raise
        # Hold the headers back until the first frame: a synthesis that fails before
        # any audio (the usual way it fails) still gets a proper 500, and the first
        # frame is what the client waits for anyway.
        try:
            first: bytes | None = await receive.receive()
        except trio.EndOfChannel:
            first = None
        except BaseException:  # the client went away while we waited
            production.scope.cancel()
            receive.close()
            raise
        if first is None and production.failed:
            receive.close()
            raise ServerError(ErrorCode.SYNTHESIS_FAILED, "synthesis failed")
        headers = {"X-Voice": resolved.voice.id, "X-Sample-Rate": str(stream_format.sample_rate)}
        if parsed.format in WHOLE_FILE_FORMATS and not parsed.sse:
            whole = await _whole_file(parsed.format, first, receive, production)
            return Response(whole, content_type=stream_format.mime_type, headers=headers)
        speech_body = _SpeechBody(receive, production, sse=parsed.sse, first=first)
        if parsed.sse:
            response = Response(
                speech_body, content_type="text/event-stream", headers=_SSE_HEADERS | headers
            )
        else:
            response = Response(speech_body, content_type=stream_format.mime_type, headers=headers)
        response.timeout = SPEECH_RESPONSE_TIMEOUT_S
        return response

    @blueprint.get("/v1/models")
    async def list_models() -> Response:
        return jsonify(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": created, "owned_by": MODEL_OWNER}
                    for m in MODELS
                ],
            }
        )

    @blueprint.get("/v1/models/<model_id>")
    async def get_model(model_id: str) -> Response:
        if model_id not in MODELS:
            raise _bad(
                ErrorCode.MODEL_NOT_FOUND, f"the model {quote(model_id)} does not exist", "model"
            )
        return jsonify(
            {"id": model_id, "object": "model", "created": created, "owned_by": MODEL_OWNER}
        )

    @blueprint.get("/v1/audio/voices")
    async def list_voices() -> Response:
        data: list[dict[str, Any]] = [
            {
                "id": mapped.name,
                "object": "audio.voice",
                "name": mapped.name,
                "type": "openai_alias",
                "voice_id": mapped.voice.id,
                "speaker": mapped.speaker,
                "language": mapped.voice.language,
                "created_at": created,
            }
            for mapped in openai_voice_map(services)
        ]
        data += [
            {
                "id": voice.id,
                "object": "audio.voice",
                "name": voice.name,
                "type": "builtin",
                "voice_id": voice.id,
                "speaker": None,
                "language": voice.language,
                "created_at": created,
            }
            for voice in services.registry.voices()
        ]
        return jsonify({"object": "list", "data": data})

    app.register_blueprint(blueprint)
