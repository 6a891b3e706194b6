"""Errors at the HTTP surfaces: which status each code gets, and the two body shapes.

Every route raises the protocol's hierarchy (``ClientError``: the caller's fault, 4xx
or 503 for ``busy``; ``ServerError``: ours, 5xx); each surface maps it in one handler
(``_rest.py`` for our shape, ``_openai.py`` for OpenAI's). Anything else that escapes a
route is our bug: logged once with its traceback, answered ``500 internal_error``.
"""

from __future__ import annotations

import math
from typing import Any, Final

from quart import Response, jsonify, request

from ...protocol import ErrorCode, ProtocolError, ServerError
from ..security import REFUSAL_STATUS, refusal_headers

#: Status of each code that is not a plain 400 (the caller's malformed request).
_STATUS: Final[dict[str, int]] = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_SESSION: 404,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.MESSAGE_TOO_BIG: 413,
    ErrorCode.SESSION_IN_USE: 409,
    ErrorCode.BUSY: 503,
    ErrorCode.NOT_READY: 503,
    ErrorCode.CONTROL_PLANE_UNAVAILABLE: 503,
    ErrorCode.DRAINING: 503,
    ErrorCode.ROUTE_TIMEOUT: 504,
    ErrorCode.SYNTHESIS_FAILED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    # unauthorized 401, origin_not_allowed 403, too_many_sessions and rate_limited 429:
    # one table for these, shared with the WebSocket handshake.
    **REFUSAL_STATUS,
}
#: Our code for each status the framework (Quart, Hypercorn) refuses a request with.
FRAMEWORK_CODES: Final[dict[int, str]] = {
    400: ErrorCode.INVALID_MESSAGE,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.MESSAGE_TOO_BIG,
    431: ErrorCode.HEADERS_TOO_LARGE,
}


def framework_code(status: int) -> str:
    """The stable code for a refusal the framework made itself (``http_error`` for a
    status we never expect from it)."""
    return str(FRAMEWORK_CODES.get(status, ErrorCode.HTTP_ERROR))


#: Retry hint for a 503 whose error carries none.
DEFAULT_RETRY_AFTER_S: Final = 1


def status_for(error: ProtocolError) -> int:
    return _STATUS.get(error.code, 500 if isinstance(error, ServerError) else 400)


def retry_after_header(error: ProtocolError) -> dict[str, str]:
    """``Retry-After`` (whole seconds) for a 503, from ``details.retry_after_ms``."""
    if status_for(error) != 503:
        return {}
    retry_ms = error.details.get("retry_after_ms")
    seconds = DEFAULT_RETRY_AFTER_S
    if isinstance(retry_ms, int | float) and math.isfinite(retry_ms):
        seconds = max(1, math.ceil(retry_ms / 1000))
    return {"Retry-After": str(seconds)}


def reply_headers(error: ProtocolError) -> dict[str, str]:
    """Every header an error's reply carries: ``Retry-After`` for a 503 or 429,
    ``WWW-Authenticate`` for a 401."""
    return retry_after_header(error) | refusal_headers(error)


def error_response(
    code: str,
    message: str,
    status: int,
    details: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Our shape: ``{"error": {"code", "message", "details"?}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def openai_error_response(
    error: ProtocolError, *, status: int | None = None, code: str | None = None
) -> Response:
    """OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``; ``param``
    comes from ``details["param"]``. ``status``/``code`` override the error's own (for
    the framework's refusals, which have no code of ours)."""
    status = status or status_for(error)
    param = error.details.get("param")
    response = jsonify(
        {
            "error": {
                "message": error.message,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "param": param if isinstance(param, str) else None,
                "code": code or str(error.code),
            }
        }
    )
    response.status_code = status
    for name, value in reply_headers(error).items():
        response.headers[name] = value
    return response


async def read_body() -> bytes:
    """The whole request body (bounded by the app's ``MAX_CONTENT_LENGTH``: 413 above).

    Every route with a body reads it before it may refuse: a refusal sent while the body
    is unread can stall the next request on the same keep-alive connection."""
    data = await request.get_data(as_text=False)
    return data if isinstance(data, bytes) else data.encode()
