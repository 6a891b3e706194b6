"""The browser page at ``/`` in a real headless Chromium (Debian's, driven by Playwright).

The server runs in the test's Trio loop; Playwright's sync API runs in a worker thread
(it has its own event loop). The fake engine is paced in real time, so a long text is
still streaming when the test clicks Interrupt. A screenshot is kept under the test's
``tmp_path`` (its path is logged).
"""

from __future__ import annotations

import logging
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import trio

from streamer.engines.base import Voice
from streamer.server.app import RunningServer
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, SESSION_TIMEOUT_S, STEP_TIMEOUT_MS
from tests.support.fake_engine import FAKE_RATE, FakeEngine
from tests.support.server_harness import running_server
from tests.support.services import make_config, make_services

log = logging.getLogger(__name__)

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

    assert out["languages"] == ["auto", "en-US", "es"]
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


# --- on a phone: names, samples, notices, volume, download, no overflow ----------------

PHONE = {"width": 390, "height": 844}
#: Figures as wide as they get in use: a slow first response, a long text's totals.
WORST_CASE_FIGURES = {"first-audio": "12345 ms", "interrupt-ms": "1234 ms",
                      "buffers": "123456", "seconds": "3600.0 s"}


@pytest.fixture
async def phone_server() -> AsyncIterator[RunningServer]:
    """The fake voices, one with a name as long as espeak-ng's longest."""
    voices = [
        Voice("fake-en", "fake", "en-US", "Fake English", FAKE_RATE, "high", True),
        Voice("fake-es", "fake", "es", "Fake Spanish", FAKE_RATE, "medium", True),
        Voice("fake-es-419", "fake", "es-419",
              "Spanish (Latin America), a voice whose name runs on and on", FAKE_RATE,
              "fallback", False),
    ]
    config = make_config(tts={"default_language": "en"})
    engine = FakeEngine(voices=voices)
    async with running_server(config, make_services(config, [engine])) as running:
        yield running

#: Finds elements that stick out of the viewport or of their own box, and the document's
#: own horizontal overflow (what makes a phone scroll sideways).
OVERFLOW_PROBE = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const rect = el.getBoundingClientRect();
    if (!rect.width && !rect.height) continue;  // not rendered
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className : "");
    if (rect.left < -0.5 || rect.right > width + 0.5)
      out.push(`${name} spans ${rect.left}-${rect.right}`);
    const style = getComputedStyle(el);
    if (style.overflowX === "visible" && el.scrollWidth > el.clientWidth + 1 && el.clientWidth)
      out.push(`${name} content ${el.scrollWidth} > box ${el.clientWidth}`);
  }
  const page = document.documentElement.scrollWidth;
  if (page > width) out.push(`page ${page} > ${width}`);
  return out;
}"""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _drive_phone(base_url: str, screenshot: Path, downloads: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"console_errors": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, accept_downloads=True)
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on(
                "console",
                lambda m: out["console_errors"].append(m.text) if m.type == "error" else None,
            )
            page.goto(base_url + "/")
            page.wait_for_function("() => document.getElementById('voice').options.length > 0")
            out["options"] = page.eval_on_selector_all(
                "#language option", "options => options.map(o => [o.value, o.textContent])"
            )
            # The sample text follows the language until the user types their own.
            out["sample_default"] = page.input_value("#text")
            page.select_option("#language", "es")
            out["sample_es"] = page.input_value("#text")
            page.fill("#text", "Mi propio texto.")
            page.select_option("#language", "en-US")
            out["own_text_kept"] = page.input_value("#text")
            page.fill("#text", "")
            page.select_option("#language", "es")
            out["sample_after_clearing"] = page.input_value("#text")

            page.click("#speak")  # not connected yet
            out["notice_not_connected"] = page.evaluate("() => window.ttsStats.notice")
            page.click("#connect")
            page.wait_for_function("() => window.ttsStats.connected === true")
            page.fill("#text", "   ")
            page.click("#speak")
            out["notice_empty"] = page.evaluate("() => window.ttsStats.notice")
            out["notice_text"] = page.inner_text("#notice")
            out["requests_after_empty"] = page.evaluate("() => window.ttsStats.requests")

            # Volume: the slider drives the GainNode every source plays through.
            page.eval_on_selector(
                "#volume",
                "el => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }",
            )
            out["volume"] = page.evaluate(
                "() => [window.ttsStats.volume, window.ttsStats.outputGain]"
            )
            out["volume_label"] = page.inner_text("#volume-value")

            # Speak in float PCM, then download what was spoken as WAV.
            page.select_option("#format", "pcm_f32")
            page.fill("#text", "Uno. Dos. Tres.")
            page.click("#speak")
            page.wait_for_function("() => window.ttsStats.state === 'done'")
            out["spoken"] = page.evaluate("() => ({...window.ttsStats})")
            with page.expect_download() as download_info:
                page.click("#download")
            download = download_info.value
            out["download_name"] = download.suggested_filename
            download.save_as(str(downloads / "spoken.wav"))

            page.select_option("#language", "es-419")  # the long voice name
            page.evaluate(
                "figures => Object.entries(figures).forEach("
                "([id, text]) => { document.getElementById(id).textContent = text; })",
                WORST_CASE_FIGURES,
            )
            out["overflow"] = page.evaluate(OVERFLOW_PROBE)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return out


async def test_page_on_a_phone(phone_server: RunningServer, tmp_path: Path) -> None:
    screenshot = tmp_path / "phone.png"
    base_url = f"http://127.0.0.1:{phone_server.http_port}"
    with trio.fail_after(SESSION_TIMEOUT_S):
        out = await trio.to_thread.run_sync(_drive_phone, base_url, screenshot, tmp_path)
    log.warning("phone screenshot: %s", screenshot)
    print(f"phone screenshot: {screenshot}")

    # Names, not bare codes (the value stays the tag).
    assert out["options"] == [
        ["auto", "Auto-detect (from the text)"],
        ["en-US", "English (United States) · en-US"],
        ["es", "Spanish · es"],
        ["es-419", "Spanish (Latin America) · es-419"],
    ]
    assert out["sample_default"].startswith("Hello!")  # the server's default: en
    assert out["sample_es"].startswith("¡Hola!")
    assert out["own_text_kept"] == "Mi propio texto."
    assert out["sample_after_clearing"].startswith("¡Hola!")

    assert out["notice_not_connected"] == "not_connected"
    assert out["notice_empty"] == "empty_text"
    assert "Type some text" in out["notice_text"]
    assert out["requests_after_empty"] == 0  # nothing was sent

    assert out["volume"] == [0.5, 0.5] and out["volume_label"] == "50 %"

    spoken = out["spoken"]
    assert spoken["spokenSamples"] == spoken["samplesScheduled"] > 0
    saved = tmp_path / "spoken.wav"
    assert out["download_name"].endswith(".wav")
    with wave.open(str(saved)) as reader:
        assert reader.getframerate() == FAKE_RATE and reader.getsampwidth() == 2
        assert reader.getnframes() == spoken["spokenSamples"]
    data, rate = sf.read(str(saved), dtype="float32")
    assert rate == FAKE_RATE and data.shape == (spoken["spokenSamples"],)
    assert 0.25 < float(np.max(np.abs(data))) < 0.35  # the fake engine's 0.3 tone

    assert out["overflow"] == []
    assert _png_size(screenshot)[0] == PHONE["width"]  # nothing widened the page
    assert out["console_errors"] == []
