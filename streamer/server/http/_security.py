"""The HTTP side of security: every request's origin and credential are checked before
its route runs; CORS headers go on replies to allowed pages; ``POST /api/v1/tokens``
turns a key into a short-lived browser token.

The check runs in ``before_request``, so its refusals reach the same error handlers as
the routes' errors: our JSON shape on the REST routes, OpenAI's on ``/v1/...`` (the
OpenAI SDK then raises ``AuthenticationError`` for a 401, as against OpenAI).
"""

from __future__ import annotations

import time
from typing import Final

from quart import Response, g, jsonify, request
from quart_trio import QuartTrio

from ..security import Caller, Security, bearer_credential
from ._errors import read_body

#: Methods and request headers a cross-origin page may use (CORS preflight answer).
CORS_METHODS: Final = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS: Final = "Authorization, Content-Type, X-Api-Key"
#: Response headers a cross-origin page may read.
CORS_EXPOSE: Final = "Retry-After, WWW-Authenticate, X-Voice, X-Sample-Rate"
#: How long a browser may cache a preflight answer.
CORS_MAX_AGE_S: Final = 600


def current_caller() -> Caller:
    """Who sent the request being handled: set by the check that runs before every
    route that is not public (only those ask)."""
    caller: Caller = g.caller
    return caller


def register_security(app: QuartTrio, security: Security) -> None:
    """Check every request's ``Origin`` and credential before its route; add CORS
    headers; add ``POST /api/v1/tokens``."""

    @app.before_request
    async def _admit() -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            security.origins.check(headers.get("origin"), headers.get("host"))
            if request.method == "OPTIONS" or security.is_public(request.path):
                return  # a preflight carries no credential; public routes need none
            g.caller = security.authenticate(
                bearer=bearer_credential(headers), token=None, now=time.time()
            )
        except Exception:
            # The body is read before the refusal is sent: answered while a body is
            # unread, the next request on the same keep-alive connection can stall.
            await read_body()
            raise

    @app.after_request
    async def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or not security.origins.allows(origin, request.headers.get("Host")):
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        return response

    @app.post("/api/v1/tokens")
    async def create_token() -> Response:
        # Nothing is stored (the token is signed), so this creates no resource: 200.
        await read_body()  # nothing is read from it
        return jsonify(security.issue_token(current_caller(), time.time()))
