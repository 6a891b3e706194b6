"""What the test suites share (no tests here).

- ``services``: the one factory for a test's ``Config`` and ``Services``.
- ``fake_engine``: the deterministic fake engine (never the server default).
- ``engine_streams``: driving a real engine's streams (a voice by id, a stream's audio,
  the same texts from several threads at once).
- ``inline_inference``: runs inference on the event loop, for tests on a virtual clock.
- ``server_harness``: the real server on 127.0.0.1 port 0 (also as production wires it),
  and a recording client.
- ``polling``: waiting for state that no event announces.
- ``audio_streams``: independent parsers and decoders for checking encoded audio.
- ``audio_files``: what three independent readers say a saved audio file holds.
- ``asr``: offline English speech recognition (is the audio intelligible?).
- ``hostile_input``: Hypothesis strategies for hostile client input.
- ``threads``: running code in a fresh thread (its OS scheduling touches nobody else).
- ``pause_harness``: runs pytest while stopping it for 250 ms every 0.1-0.3 s.
"""

from pathlib import Path
from typing import Final

#: The repository's root (config/, voices/, the Makefile), wherever a test module lives.
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
