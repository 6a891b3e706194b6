"""The page on a server with API keys, in a real headless Chromium: the REST calls carry
the key typed into the page, and the WebSocket authenticates with a short-lived token
offered as a subprotocol (a browser cannot set headers on a WebSocket), never with the
key and never in the URL. Set up as tests/integration/web/test_browser.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from streamer.server.app import RunningServer
from streamer.server.security import key_digest
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, SESSION_TIMEOUT_S, STEP_TIMEOUT_MS
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

KEY = "tts_a-key-typed-into-the-page"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = make_config(
        tts={"default_language": "en"},
        security={"api_keys": [{"id": "page", "sha256": key_digest(KEY).hex()}]},
    )
    async with running_server(config, make_services(config, [FakeEngine()])) as running:
        yield running


def _drive(base_url: str) -> dict[str, Any]:
    """The browser session (blocking, runs in a worker thread)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"console_errors": [], "websockets": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on(
                "console",
                lambda m: out["console_errors"].append(m.text) if m.type == "error" else None,
            )
            page.on("websocket", lambda ws: out["websockets"].append(ws.url))
            page.goto(base_url + "/")
            page.wait_for_function(
                "() => document.getElementById('server-info').textContent.includes('API key')"
            )
            out["without_key"] = page.inner_text("#server-info")
            page.fill("#api-key", KEY)
            page.press("#api-key", "Tab")  # "change": the page reads status and voices again
            page.wait_for_function("() => document.getElementById('voice').options.length > 0")
            page.click("#connect")
            page.wait_for_function("() => window.ttsStats.connected === true")
            page.select_option("#format", "pcm")
            page.fill("#text", "Hello through a token.")
            page.click("#speak")
            page.wait_for_function("() => window.ttsStats.state === 'done'")
            out["stats"] = page.evaluate("() => ({...window.ttsStats})")
            out["sessions"] = page.evaluate(
                """async (key) => {
                    const reply = await fetch('/api/v1/sessions',
                                              {headers: {Authorization: `Bearer ${key}`}});
                    return (await reply.json()).sessions.map((s) => s.session_id);
                }""",
                KEY,
            )
        finally:
            browser.close()
    return out


async def test_the_page_connects_through_a_token(server: RunningServer) -> None:
    base_url = f"http://127.0.0.1:{server.http_port}"
    with trio.fail_after(SESSION_TIMEOUT_S):
        out = await trio.to_thread.run_sync(_drive, base_url)

    assert "needs an API key" in out["without_key"]
    stats = out["stats"]
    assert stats["auth"] == "token" and stats["protocol"] == "tts.v1"
    assert stats["buffersDecoded"] > 0 and stats["errors"] == []
    assert stats["sessionId"] in out["sessions"]  # the key's own session
    assert out["websockets"] == [f"ws://127.0.0.1:{server.websocket_port}/"]  # no token in it
    assert KEY not in " ".join(out["websockets"])
    # The 401 of the first status call is the browser's to log; nothing else failed.
    assert all("401" in line for line in out["console_errors"])
