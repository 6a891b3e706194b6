"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Written by hand (the routes are plain Quart functions, with no schema framework to
derive it from) and kept honest by ``tests/unit/server/test_openapi.py``: every route
the app has must be documented here, with its methods, and nothing else; a new route
fails that test until it is described here. The WebSocket protocol is not HTTP and lives in
protocol_docs/websocket.md.
"""

from __future__ import annotations

from typing import Any, Final

from quart import Response, jsonify
from quart_trio import QuartTrio

from ... import __version__
from ...audio import SUPPORTED_FORMATS
from ...protocol import ErrorCode

OPENAPI_VERSION: Final = "3.1.0"

JSON = "application/json"

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _openai_error(description: str) -> dict[str, Any]:
    return _json(_ref("OpenAIError"), description)


_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A session id (`s-…`) from `connected` or `POST /api/v1/sessions`.",
}

_AUDIO_CONFIG: dict[str, Any] = {
    "type": "object",
    "description": "Session settings; every key optional (protocol_docs/websocket.md).",
    "additionalProperties": False,
    "properties": {
        "language": {"type": "string", "examples": ["es", "en-US"]},
        "voice_id": {"type": ["integer", "string"], "description": "Index or voice id."},
        "speaker": {"type": "string"},
        "format": {"type": "string", "enum": list(SUPPORTED_FORMATS)},
        "sample_rate": {"type": "integer", "minimum": 8000, "maximum": 48000},
        "chunk_size": {"type": "integer", "minimum": 64, "maximum": 48000},
        "bitrate": {"type": "integer", "description": "kbit/s, mp3 and opus only."},
        "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0},
        "volume": {"type": "number", "minimum": 0.0, "maximum": 4.0},
        "trim_silence": {"type": "boolean"},
        "realtime": {"type": "boolean"},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable; clients may switch on it.",
                        "examples": [c.value for c in ErrorCode][:8],
                    },
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string", "enum": ["invalid_request_error", "server_error"]},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": "string"},
                },
            }
        },
    },
    "AudioConfig": _AUDIO_CONFIG,
    "Voice": {
        "type": "object",
        "required": ["id", "engine", "language", "name", "sample_rate", "quality", "neural"],
        "properties": {
            "id": {"type": "string"},
            "engine": {"type": "string"},
            "language": {"type": "string"},
            "language_name": {"type": "string"},
            "name": {"type": "string"},
            "sample_rate": {"type": "integer"},
            "quality": {"type": "string"},
            "neural": {"type": "boolean"},
            "speakers": {"type": "array", "items": {"type": "string"}},
            "index": {
                "type": ["integer", "null"],
                "description": "the integer voice_id that selects it (with ?language=)",
            },
            "default": {
                "type": "boolean",
                "description": "what a request for this language without a voice gets",
            },
        },
    },
    "Session": {
        "type": "object",
        "required": ["session_id", "attached", "config"],
        "properties": {
            "session_id": {"type": "string"},
            "created_at": {"type": "number"},
            "attached": {"type": "boolean"},
            "config": {"type": "object"},
            "playing": {"type": ["object", "null"]},
            "queued": {"type": "array", "items": {"type": "object"}},
            "requests_total": {"type": "integer"},
            "replica": {
                "type": "string",
                "description": "The replica holding it (cluster.replica_id); only in a "
                "cluster.",
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["status", "ready", "version", "websocket_port"],
        "properties": {
            "status": {"type": "string"},
            "ready": {"type": "boolean"},
            "version": {"type": "string"},
            "uptime_s": {"type": "number"},
            "websocket_port": {"type": ["integer", "null"]},
            "sessions": {"type": "integer"},
            "connections": {"type": "integer"},
            "max_connections": {"type": "integer"},
            "default_language": {"type": "string"},
            "engines": {"type": "array", "items": {"type": "object"}},
            "inference": {"type": "object"},
            "formats": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "ready"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "starting"]},
            "ready": {"type": "boolean"},
        },
    },
    "Interrupted": {
        "type": "object",
        "required": ["session_id", "request_id", "reason", "dropped"],
        "properties": {
            "session_id": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "reason": {"type": "string"},
            "dropped": {"type": "array", "items": {"type": "string"}},
        },
    },
    "SpeechRequest": {
        "type": "object",
        "required": ["model", "input", "voice"],
        "properties": {
            "model": {"type": "string", "examples": ["tts-1", "gpt-4o-mini-tts"]},
            "input": {"type": "string", "minLength": 1},
            "voice": {
                "description": "An OpenAI voice name (mapped onto our English voices), one "
                "of our voice ids, or {\"id\": voice id}.",
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}},
                    },
                ],
            },
            "response_format": {
                "type": "string",
                "enum": ["mp3", "opus", "flac", "wav", "pcm", "aac"],
                "default": "mp3",
                "description": "All at 24 kHz; `pcm` is raw s16le mono. `aac` (ADTS) "
                "where the server has an AAC encoder, else 400 `unsupported_format`.",
            },
            "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
            "instructions": {"type": "string", "description": "Accepted and ignored."},
            "stream_format": {"type": "string", "enum": ["audio", "sse"], "default": "audio"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
    "VoiceList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "voice_id"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "audio.voice"},
                        "name": {"type": "string"},
                        "type": {"type": "string", "enum": ["openai_alias", "builtin"]},
                        "voice_id": {"type": "string"},
                        "speaker": {"type": ["string", "null"]},
                        "language": {"type": "string"},
                        "created_at": {"type": "integer"},
                    },
                },
            },
        },
    },
}

_AUDIO_TYPES: Final = {
    "audio/mpeg": "mp3",
    "audio/ogg": "opus (Ogg)",
    "audio/flac": "flac",
    "audio/wav": "wav (length fields 0xFFFFFFFF: streamed)",
    "audio/pcm": "raw 24 kHz s16le mono",
    "audio/aac": "ADTS AAC, where available",
}


def _paths() -> dict[str, Any]:
    health = _json(_ref("Health"), "Ready: models are loaded.")
    return {
        "/health": {
            "get": {
                "summary": "Readiness",
                "description": "200 once the models are loaded and requests are served; "
                "503 before (`ready: false`), while draining (`status: draining`) and while "
                "every connection slot is taken (`status: full`). Use for readiness probes "
                "and load balancers.",
                "tags": ["operations"],
                "responses": {
                    "200": health,
                    "503": _json(
                        _ref("Health"), "Not ready yet (models loading), draining, or full."
                    ),
                },
            }
        },
        "/health/live": {
            "get": {
                "summary": "Liveness",
                "description": "200 whenever the process answers HTTP, ready or not. Use "
                "for liveness probes: restart only when this fails.",
                "tags": ["operations"],
                "responses": {"200": _json(_ref("Health"), "The process is alive.")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["operations"],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
            }
        },
        "/": {
            "get": {
                "summary": "Browser demo page",
                "tags": ["web"],
                "responses": {
                    "200": {
                        "description": "Self-contained HTML page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/web/{name}": {
            "get": {
                "summary": "Script and style of the demo page",
                "tags": ["web"],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["app.js", "style.css"]},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                        },
                    },
                    "404": _error("No such file."),
                },
            }
        },
        "/api/v1/status": {
            "get": {
                "summary": "Server status",
                "tags": ["control"],
                "responses": {"200": _json(_ref("Status"), "Status, engines, formats.")},
            }
        },
        "/api/v1/voices": {
            "get": {
                "summary": "Available voices",
                "tags": ["control"],
                "parameters": [
                    {
                        "name": "language",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only this language's voices, best first.",
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["voices", "count"],
                            "properties": {
                                "voices": {"type": "array", "items": _ref("Voice")},
                                "count": {"type": "integer"},
                            },
                        },
                        "Voices.",
                    )
                },
            }
        },
        "/api/v1/sessions": {
            "get": {
                "summary": "Sessions",
                "tags": ["control"],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "sessions": {"type": "array", "items": _ref("Session")}
                            },
                        },
                        "Every live session.",
                    )
                },
            },
            "post": {
                "summary": "Create a session for a WebSocket to attach to",
                "tags": ["control"],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"config": _ref("AudioConfig")},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("Session"), "Created."),
                    "400": _error("Invalid config (unknown_format, unknown_language…)."),
                },
            },
        },
        "/api/v1/sessions/{session_id}": {
            "parameters": [_SESSION_ID],
            "get": {
                "summary": "One session",
                "tags": ["control"],
                "responses": {
                    "200": _json(_ref("Session"), "The session."),
                    "404": _error("unknown_session"),
                },
            },
            "delete": {
                "summary": "Close a session (its WebSocket gets close code 1000)",
                "tags": ["control"],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"deleted": {"type": "string"}}},
                        "Deleted.",
                    ),
                    "404": _error("unknown_session"),
                },
            },
        },
        "/api/v1/interrupt/{session_id}": {
            "parameters": [_SESSION_ID],
            "post": {
                "summary": "Interrupt a session (barge-in)",
                "tags": ["control"],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"reason": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Interrupted"), "Interrupted."),
                    "404": _error("unknown_session"),
                },
            },
        },
        "/api/v1/tokens": {
            "post": {
                "summary": "A short-lived token for a browser WebSocket",
                "description": "Needs the API key itself (not a token). The page connects "
                "with the subprotocols `[\"tts.v1\", \"tts.token.<token>\"]`, or "
                "`?token=<token>`; a token is also accepted as `Authorization: Bearer`. "
                "See protocol_docs/security.md.",
                "tags": ["control"],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["token", "expires_in"],
                            "properties": {
                                "token": {"type": "string"},
                                "expires_in": {"type": "integer", "description": "seconds"},
                            },
                        },
                        "The token.",
                    ),
                    "401": _error("unauthorized: no key, a wrong key, or a token."),
                },
            }
        },
        "/api/v1/metrics": {
            "get": {
                "summary": "Metrics as JSON (percentiles over a recent window)",
                "tags": ["operations"],
                "responses": {"200": _json({"type": "object"}, "Metrics.")},
            }
        },
        "/v1/audio/speech": {
            "post": {
                "summary": "OpenAI-compatible speech",
                "description": "Streams the audio as it is synthesized (chunked), or as "
                "Server-Sent Events with `stream_format: sse`.",
                "tags": ["openai"],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("SpeechRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "Audio (or `text/event-stream` events "
                        "`speech.audio.delta` {audio: base64} and `speech.audio.done`).",
                        "content": {
                            **{
                                mime: {
                                    "schema": {"type": "string", "contentEncoding": "binary"},
                                    "example": note,
                                }
                                for mime, note in _AUDIO_TYPES.items()
                            },
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _openai_error(
                        "Bad input: empty_text, unknown_voice, unknown_format, "
                        "unsupported_format, invalid_speed…"
                    ),
                    "503": _openai_error("busy or not_ready; see Retry-After."),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "OpenAI-compatible model list",
                "tags": ["openai"],
                "responses": {"200": _json(_ref("ModelList"), "Models.")},
            }
        },
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model",
                "tags": ["openai"],
                "parameters": [
                    {"name": "model_id", "in": "path", "required": True,
                     "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("Model"), "The model."),
                    "404": _openai_error("model_not_found"),
                },
            }
        },
        "/v1/audio/voices": {
            "get": {
                "summary": "Voices for the speech API: OpenAI names and our voice ids",
                "tags": ["openai"],
                "responses": {"200": _json(_ref("VoiceList"), "Voices.")},
            }
        },
    }


_SECURITY_SCHEMES: Final = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, or a token from POST /api/v1/tokens.",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
#: Routes open without a key (``/metrics`` and this document unless the config says so
#: are not among them).
_PUBLIC_PATHS: Final = ("/", "/web/{name}", "/health", "/health/live")


def _public(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` with the open routes marked as needing no credential."""
    for path in _PUBLIC_PATHS:
        for method, operation in paths[path].items():
            if method != "parameters":
                operation["security"] = []
    return paths


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MIT-TTS-Streamer HTTP API",
            "version": __version__,
            "description": "REST control API, OpenAI-compatible speech API and operations "
            "endpoints. Streaming synthesis over WebSocket is described in "
            "protocol_docs/websocket.md.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "control", "description": "Sessions, voices, interrupts."},
            {"name": "openai", "description": "OpenAI-compatible speech API."},
            {"name": "operations", "description": "Health, metrics, this document."},
            {"name": "web", "description": "Browser demo page."},
        ],
        "paths": _public(_paths()),
        "components": {"schemas": _SCHEMAS, "securitySchemes": _SECURITY_SCHEMES},
        # Needed only when the server has API keys (protocol_docs/security.md); refusals
        # are 401 unauthorized, 403 origin_not_allowed, 429 too_many_sessions or
        # rate_limited.
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def register_openapi(app: QuartTrio) -> None:
    """Add ``GET /openapi.json``."""
    document = openapi_document()

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return jsonify(document)
