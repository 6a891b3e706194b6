"""The browser page at ``/`` in a real headless Chromium (Debian's, driven by Playwright).

The server runs in the test's Trio loop; Playwright's sync API runs in a worker thread
(it has its own event loop). The fake engine is paced in real time, so a long text is
still streaming when the test clicks Interrupt. A screenshot is kept under the test's
``tmp_path`` (its path is logged).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from streamer.server.app import RunningServer
from tests.support.fake_engine import FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--headless",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Web Audio must start without a real user gesture in a test.
    "--autoplay-policy=no-user-gesture-required",
]
#: Bound on each browser-side wait (ms), and on the whole browser session (s).
STEP_TIMEOUT_MS = 20_000
SESSION_TIMEOUT_S = 120

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    # 0.25 s chunks paced to real time (2 s lead): a long text streams for many seconds.
    engine = FakeEngine(chunk_seconds=0.25)
    config = make_config(tts={"default_language": "en"})
    async with running_server(config, make_services(config, [engine])) as running:
        yield running


def _drive(base_url: str, screenshot: Path) -> dict[str, Any]:
    """The whole browser session (blocking, runs in a worker thread)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"console_errors": [], "foreign_requests": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on(
                "console",
                lambda m: out["console_errors"].append(m.text) if m.type == "error" else None,
            )
            page.on(
                "request",
                lambda r: None
                if r.url.startswith((base_url, "data:"))
                else out["foreign_requests"].append(r.url),
            )
            page.goto(base_url + "/")
            page.wait_for_function("() => document.getElementById('voice').options.length > 0")
            out["languages"] = page.eval_on_selector_all(
                "#language option", "options => options.map(o => o.value)"
            )
            page.select_option("#language", "en-US")
            page.click("#connect")
            page.wait_for_function("() => window.ttsStats.connected === true")

            # A short request played to its end, in 16-bit pcm.
            page.select_option("#format", "pcm")
            page.fill("#text", "Short one.")
            page.click("#speak")
            page.wait_for_function("() => window.ttsStats.state === 'done'")
            out["short"] = page.evaluate("() => ({...window.ttsStats})")

            # A long one in float pcm, interrupted while it streams.
            page.select_option("#format", "pcm_f32")
            page.fill("#text", " ".join(["This sentence keeps the stream going."] * 30))
            page.click("#speak")
            page.wait_for_function(
                "() => window.ttsStats.buffersDecoded >= 4 && window.ttsStats.state === 'playing'"
            )
            out["before_interrupt"] = page.evaluate("() => ({...window.ttsStats})")
            page.click("#interrupt")
            page.wait_for_function("() => window.ttsStats.state === 'interrupted'")
            out["at_interrupt"] = page.evaluate("() => ({...window.ttsStats})")
            page.wait_for_timeout(1000)  # frames would keep arriving at 4/s if not stopped
            out["after_interrupt"] = page.evaluate("() => ({...window.ttsStats})")
            out["figures"] = {
                "first_audio": page.inner_text("#first-audio"),
                "interrupt": page.inner_text("#interrupt-ms"),
            }
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return out


async def test_page_streams_audio_and_interrupts(server: RunningServer, tmp_path: Path) -> None:
    screenshot = tmp_path / "browser.png"
    base_url = f"http://127.0.0.1:{server.http_port}"
    with trio.fail_after(SESSION_TIMEOUT_S):
        out = await trio.to_thread.run_sync(_drive, base_url, screenshot)
    log.warning("browser screenshot: %s", screenshot)
    print(f"browser screenshot: {screenshot}")

    assert out["languages"] == ["en-US", "es"]
    short = out["short"]
    assert short["buffersDecoded"] > 0 and short["samplesScheduled"] > 0
    assert short["firstAudioMs"] is not None and short["errors"] == []

    before, at, after = out["before_interrupt"], out["at_interrupt"], out["after_interrupt"]
    assert before["buffersDecoded"] > short["buffersDecoded"]
    assert at["interruptMs"] is not None and at["interruptMs"] < 1000
    assert after["state"] == "interrupted"
    assert after["activeSources"] == 0  # every scheduled source was stopped
    assert after["buffersDecoded"] == at["buffersDecoded"]  # nothing scheduled since
    assert after["samplesScheduled"] == at["samplesScheduled"]
    assert after["framesAfterInterrupt"] == 0  # the server kept its promise
    assert out["figures"]["first_audio"].endswith(" ms")
    assert out["figures"]["interrupt"].endswith(" ms")
    assert out["console_errors"] == [] and out["foreign_requests"] == []
    assert screenshot.stat().st_size > 0
