"""Text as a voice agent's LLM streams it, and words as the tests compare them."""

from __future__ import annotations

import re

# One tokenizer for tests and benches: the bench package's (scripts may not import
# tests; tests may import scripts).
from scripts.agent_latency import llm_tokens

__all__ = ["llm_tokens", "normalized_words"]


def normalized_words(text: str) -> list[str]:
    """English words, lower-case, without punctuation: what a transcript is held to."""
    return re.findall(r"[a-z']+", text.lower())
