"""The headless Chromium the browser tests drive (Debian's, through Playwright)."""

from __future__ import annotations

#: The distribution's Chromium (Playwright's own browser download is not reachable here).
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
