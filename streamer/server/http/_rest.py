"""The REST control API (Quart-Trio), sharing the ``SessionManager`` with the
WebSocket server, so a REST interrupt reaches a WebSocket session directly.

Every error is JSON ``{"error": {"code", "message", "details"?}}`` with a status that
says who is at fault (4xx the client, 5xx us). Responses are small on purpose:
Hypercorn's graceful shutdown waits on streamed responses to clients that stopped
reading.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ... import __version__
from ...audio import format_info
from ...protocol import (
    AudioConfig,
    ClientError,
    ErrorCode,
    ProtocolError,
    ServerError,
    parse_audio_config,
    parse_interrupt_reason,
    parse_json_object,
    quote,
)
from ..cluster import ControlPlane, LocalPlane
from ..runtime import ServerState, draining_refusal
from ..session import SessionManager
from ._errors import error_response, framework_code, read_body, reply_headers, status_for
from ._openai import MAX_SPEECH_BODY_BYTES, register_openai
from ._openapi import register_openapi
from ._page import register_web
from ._prometheus import register_prometheus
from ._security import current_caller, register_security

log = logging.getLogger(__name__)

#: Largest JSON body a REST control route reads (a session config or a reason).
MAX_REST_BODY_BYTES: Final = 64 * 1024


def create_app(
    manager: SessionManager,
    state: ServerState,
    plane: ControlPlane | None = None,
) -> QuartTrio:
    """The Quart-Trio app: REST, OpenAI API, Prometheus, OpenAPI and the page.
    ``state`` is read at request time; the session routes ask ``plane`` (default: this
    process's sessions only), which finds sessions on other replicas of a cluster."""
    plane = plane or LocalPlane(manager)
    app = QuartTrio(__name__)
    app.config["JSON_SORT_KEYS"] = False
    # No route reads more than a speech request: a larger body is refused (413).
    app.config["MAX_CONTENT_LENGTH"] = MAX_SPEECH_BODY_BYTES
    services = manager.services
    started = time.time()

    @app.errorhandler(ClientError)
    @app.errorhandler(ServerError)
    async def _protocol_error(error: ProtocolError) -> Response:
        # The one place the REST routes' errors become replies (the OpenAI routes have
        # their own, in their shape).
        services.metrics.count_error(error.code)
        return error_response(
            error.code, error.message, status_for(error), error.details, reply_headers(error)
        )

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        # Refusals the framework makes itself (413 body too large, 400 unreadable...).
        status = error.code or 400
        code = framework_code(status)
        return error_response(code, error.description or error.name or code, status)

    @app.errorhandler(Exception)
    async def _bug(error: Exception) -> Response:
        # Our fault: logged once, with its traceback; the caller learns nothing internal.
        log.error("%s %s failed", request.method, request.path, exc_info=error)
        services.metrics.count_error(ErrorCode.INTERNAL_ERROR)
        return error_response(ErrorCode.INTERNAL_ERROR, "internal server error", 500)

    @app.errorhandler(404)
    async def _not_found(_: Exception) -> Response:
        return error_response(
            ErrorCode.NOT_FOUND, f"no route {request.method} {request.path}", 404
        )

    @app.errorhandler(405)
    async def _bad_method(_: Exception) -> Response:
        return error_response(
            ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} not allowed here", 405
        )

    async def _json_body() -> dict[str, Any]:
        # The protocol's strict JSON rules (no NaN, duplicate keys, deep nesting, lone
        # surrogates...); an empty body is {}.
        return parse_json_object(await read_body(), max_bytes=MAX_REST_BODY_BYTES)

    @app.get("/api/v1/status")
    async def status() -> Response:
        return jsonify(
            {
                "status": "ok",
                "ready": state.ready,
                "version": __version__,
                "uptime_s": round(time.time() - started, 1),
                "websocket_port": state.websocket_port,
                "sessions": len(manager.sessions),
                "connections": state.connections,
                "max_connections": services.config.server.max_connections,
                "default_language": services.config.tts.default_language,
                "engines": [s.to_json() for s in services.registry.statuses()],
                "inference": services.inference.stats().to_json(),
                "downloads": services.downloads.to_json(),
                "admission": services.admission.to_json(trio.current_time()),
                "formats": format_info(),
            }
            | ({"draining": True} if state.draining else {})
            | ({"cluster": cluster} if (cluster := plane.status()) is not None else {})
        )

    @app.get("/api/v1/voices")
    async def voices() -> Response:
        language = request.args.get("language") or None
        found = services.registry.listing(language)
        if language is not None and not found:  # as the WebSocket answers it
            raise ClientError(
                ErrorCode.UNKNOWN_LANGUAGE,
                f"no voice for language {quote(language)}",
                details={"available": services.registry.languages()},
            )
        return jsonify({"voices": [v.to_json() for v in found], "count": len(found)})

    @app.post("/api/v1/sessions")
    async def create_session() -> tuple[Response, int]:
        body = await _json_body()
        unknown = set(body) - {"config"}
        if unknown:
            raise ClientError(ErrorCode.INVALID_MESSAGE, f"unknown field(s): {sorted(unknown)}")
        config: AudioConfig = parse_audio_config(body.get("config"))
        if state.draining:
            raise draining_refusal()
        caller = current_caller()
        services.security.quotas.check_room(caller, await plane.waiting(caller))
        session = manager.create(config, caller)
        try:
            await plane.register(session)  # any replica's WebSocket can attach it now
        except ServerError:
            manager.remove(session)
            raise
        return jsonify(session.to_json()), 201

    @app.get("/api/v1/sessions")
    async def list_sessions() -> Response:
        return jsonify({"sessions": await plane.list_sessions(current_caller())})

    @app.get("/api/v1/sessions/<session_id>")
    async def get_session(session_id: str) -> Response:
        return jsonify(await plane.get_session(session_id, current_caller()))

    @app.delete("/api/v1/sessions/<session_id>")
    async def delete_session(session_id: str) -> Response:
        return jsonify(await plane.delete_session(session_id, current_caller()))

    @app.post("/api/v1/interrupt/<session_id>")
    async def interrupt(session_id: str) -> Response:
        received_at = trio.current_time()
        body = await _json_body()
        reason = parse_interrupt_reason(body.get("reason"))
        return jsonify(await plane.interrupt(session_id, current_caller(), reason, received_at))

    @app.get("/api/v1/metrics")
    async def metrics() -> Response:
        return jsonify(
            services.metrics.to_json()
            | {
                "sessions": len(manager.sessions),
                "connections": state.connections,
                "queue_depths": manager.queue_depths(),
                "inference": services.inference.stats().to_json(),
            }
        )

    # Readiness (503 until the models are loaded, while draining, and while every
    # connection slot is taken: a load balancer then sends new sessions elsewhere,
    # and cuts none of the live ones) and liveness (the process answers).
    @app.get("/health")
    async def health() -> tuple[Response, int]:
        is_ready = state.ready
        status = "ok" if is_ready else "starting"
        if state.draining:
            status = "draining"
        elif is_ready and state.connections >= services.config.server.max_connections:
            status = "full"
        body = {"status": status, "ready": is_ready}
        return jsonify(body), 200 if status == "ok" else 503

    @app.get("/health/live")
    async def health_live() -> Response:
        return jsonify({"status": "ok", "ready": state.ready})

    register_security(app, services.security)
    register_openai(app, manager, state, plane)
    register_prometheus(app, manager, state)
    register_web(app)
    register_openapi(app)
    return app
