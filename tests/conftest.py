"""Settings every suite shares."""

from __future__ import annotations

from hypothesis import settings

# No per-example deadline for property tests (Hypothesis' default is 200 ms): CI machines
# are slow, shared and sometimes paused, so a deadline only makes a passing property
# fail by wall time (seen: the Wyoming protocol's sequence property on a cold start).
# No example database either: nothing is written into the checkout.
settings.register_profile("tts", deadline=None, database=None, print_blob=True)
settings.load_profile("tts")
