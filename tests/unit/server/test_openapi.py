"""``GET /openapi.json`` describes exactly the routes the app has, and is valid OpenAPI."""

from __future__ import annotations

import re
from typing import Any

import pytest

from streamer.server.http import create_app, openapi_document
from streamer.server.runtime import ServerState
from streamer.server.session import SessionManager
from tests.support.fake_engine import FakeEngine
from tests.support.services import make_config, make_services

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def make_app() -> Any:
    config = make_config()
    manager = SessionManager(make_services(config, [FakeEngine()]))
    return create_app(manager, ServerState(ready=True, websocket_port=1234))


def app_routes() -> set[tuple[str, str]]:
    """(OpenAPI path, method) for every route of the app."""
    routes = set()
    for rule in make_app().url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_is_documented_and_nothing_else() -> None:
    actual = app_routes()
    documented = documented_routes(openapi_document())
    missing = actual - documented
    assert not missing, f"describe these routes in http/_openapi.py: {sorted(missing)}"
    stale = documented - actual
    assert not stale, f"documented but not served: {sorted(stale)}"
    for path in ("/health", "/metrics", "/v1/audio/speech", "/v1/models", "/v1/audio/voices",
                 "/api/v1/status", "/openapi.json"):
        assert any(p == path for p, _ in actual)


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validator.validate(document)


async def test_it_is_served_as_json() -> None:
    async with make_app().test_app() as test_app:
        response = await test_app.test_client().get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.get_json() == openapi_document()
