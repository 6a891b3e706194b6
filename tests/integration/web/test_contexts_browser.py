"""The page's "Stream as typed" mode in headless Chromium: typing feeds a streamed-text
context, Speak closes it, and each word is lit from the timestamps as it plays."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from streamer.server.app import RunningServer
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, SESSION_TIMEOUT_S, STEP_TIMEOUT_MS
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]

TYPED = "Hello there, my friend. How are you today?"


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    engine = FakeEngine(chunk_seconds=0.1)
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, engine)) as running:
        yield running


def _drive(base_url: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"console_errors": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on(
                "console",
                lambda m: out["console_errors"].append(m.text) if m.type == "error" else None,
            )
            page.goto(base_url + "/")
            page.wait_for_function("() => document.getElementById('voice').options.length > 0")
            page.select_option("#language", "en-US")
            page.click("#connect")
            page.wait_for_function("() => window.ttsStats.connected === true")
            page.check("#stream-typed")
            page.fill("#text", "")
            page.type("#text", TYPED, delay=20)  # a fast typist: ~50 characters a second
            # Speech began while typing (the first clause went at its comma).
            out["while_typing"] = page.evaluate("() => ({...window.ttsStats})")
            page.click("#speak")  # end of input
            page.wait_for_function("() => window.ttsStats.state === 'done'")
            page.wait_for_function(
                "() => window.ttsStats.wordsLit === window.ttsStats.wordsTimed"
            )
            out["done"] = page.evaluate("() => ({...window.ttsStats})")
            out["words"] = page.inner_text("#words")
        finally:
            browser.close()
    return out


async def test_stream_as_typed_lights_each_word(server: RunningServer) -> None:
    base_url = f"http://127.0.0.1:{server.http_port}"
    with trio.fail_after(SESSION_TIMEOUT_S):
        out = await trio.to_thread.run_sync(_drive, base_url)
    typing, done = out["while_typing"], out["done"]
    assert typing["streamedTexts"] >= 10  # sent as typed, not at the end
    assert typing["buffersDecoded"] > 0 or typing["state"] in ("requested", "playing")
    assert done["requests"] == 1 and done["errors"] == []
    assert done["wordsTimed"] == len(TYPED.split()) == done["wordsLit"]
    assert out["words"].split() == ["Hello", "there", "my", "friend", "How", "are", "you",
                                    "today"]
    assert out["console_errors"] == []
