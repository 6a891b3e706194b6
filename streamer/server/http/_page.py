"""The browser demo page at ``/``: self-contained (no CDN, no external fonts), served
from the package's ``streamer/web/`` files.

The page reads ``/api/v1/status`` (WebSocket port) and ``/api/v1/voices``, speaks the
WebSocket protocol itself, and plays ``pcm_f32``/``pcm`` frames through Web Audio as
they arrive. A strict Content-Security-Policy keeps it to its own origin plus the
WebSocket port (CSP cannot name "same host, other port" except through ``ws:``).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from quart import Response
from quart_trio import QuartTrio

#: Files under ``/web/`` and their content types; nothing else is served from there.
ASSETS: Final = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
INDEX: Final = "index.html"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; base-uri 'none'; form-action 'none'"
)


def _read(name: str) -> bytes:
    # Package data of ``streamer`` (setup.cfg package_data), not a package of its own.
    return resources.files("streamer").joinpath("web", name).read_bytes()


def register_web(app: QuartTrio) -> None:
    """Add ``GET /`` (the page) and ``GET /web/<name>`` (its script and style)."""

    def _response(body: bytes, content_type: str) -> Response:
        response = Response(body, content_type=content_type)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        # A development server restarts with new files; never serve a stale page.
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/")
    async def web_index() -> Response:
        return _response(_read(INDEX), "text/html; charset=utf-8")

    @app.get("/web/<name>")
    async def web_asset(name: str) -> Response:
        content_type = ASSETS.get(name)
        if content_type is None:
            body = b'{"error":{"code":"not_found","message":"no such file"}}'
            return Response(body, status=404, content_type="application/json")
        return _response(_read(name), content_type)
