"""``language: "auto"``: the text's language among the server's, else the fallback."""

from __future__ import annotations

import threading

import pytest

from streamer.langdetect import (
    AUTO_LANGUAGE,
    MAX_DETECT_CHARS,
    Detection,
    LanguageDetector,
    detect_language,
    primary_subtag,
)

#: What the default server offers: the Piper voice and espeak-ng's languages (a sample).
SERVER_LANGUAGES = ["en-US", "es", "es-419", "fr-FR", "de", "it", "pt-BR", "pt", "ru",
                    "ja", "zh", "nl", "ca", "gl", "eu", "pl", "sv", "fi", "el", "tr"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, how are you today? The meeting starts at nine.", "en"),
        ("Buenos días, la reunión empieza a las nueve en punto.", "es"),
        ("¿Dónde está la estación de tren más cercana?", "es"),
        ("Bonjour, comment allez-vous aujourd'hui ?", "fr"),
        ("Guten Morgen, wie geht es dir heute?", "de"),
        ("Buongiorno, come stai oggi? Andiamo al mare.", "it"),
        ("Bom dia, tudo bem com você? Vamos à praia.", "pt"),
        ("Привет, как у тебя дела сегодня?", "ru"),
        ("こんにちは、今日はいい天気ですね。", "ja"),
    ],
)
def test_sentences_are_detected_among_the_server_languages(text: str, language: str) -> None:
    found = detect_language(text, SERVER_LANGUAGES, fallback="es")
    assert found.detected and found.language == language
    assert found.confidence > 0.5


@pytest.mark.parametrize("text", ["OK", "Stop", "123 456", "", "   ", "🙂🙂", "Zyx"])
def test_what_cannot_be_told_falls_back(text: str) -> None:
    found = detect_language(text, SERVER_LANGUAGES, fallback="es")
    assert found.language == "es" and not found.detected


def test_only_the_candidates_are_chosen_and_named_by_their_language_subtag() -> None:
    text = "Thank you very much for calling, we will be right with you."
    assert detect_language(text, ["en-US", "es"], "es") == Detection(
        "en", pytest.approx(1.0, abs=0.01), True  # type: ignore[arg-type]
    )
    # English is not offered: one of the offered languages, never "en".
    assert detect_language(text, ["es", "pt-BR"], "es").language in ("es", "pt")
    # No offered language is known to the model: the fallback, as given.
    assert detect_language(text, ["tlh", "x-klingon"], "es-419") == Detection("es-419", 0.0, False)


def test_a_two_language_tie_is_no_answer() -> None:
    found = detect_language("", ["en", "es"], "es")  # no features: both score alike
    assert found == Detection("es", pytest.approx(0.5), False)  # type: ignore[arg-type]


def test_long_texts_are_judged_by_their_beginning() -> None:
    spanish = "Esta es una frase en español que se repite muchas veces. " * 40
    english = "This is an English sentence. " * 1000
    assert len(spanish) > MAX_DETECT_CHARS
    assert detect_language(spanish + english, SERVER_LANGUAGES, "en").language == "es"


def test_threads_share_one_detector() -> None:
    detector = LanguageDetector()
    assert not detector.loaded
    texts = {"Good evening, everyone, and welcome.": "en",
             "Buenas noches a todos y bienvenidos.": "es"}
    results: list[list[str]] = [[] for _ in range(4)]

    def work(mine: list[str]) -> None:
        for _ in range(20):
            for text in texts:
                mine.append(detector.detect(text, ["en", "es"], "es").language)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert detector.loaded
    assert results == [list(texts.values()) * 20] * 4
    assert {"en", "es", "fr", "zh"} <= detector.languages()


def test_names() -> None:
    assert AUTO_LANGUAGE == "auto"
    assert [primary_subtag(t) for t in ("en-US", "pt_BR", " ES ", "zh")] == ["en", "pt", "es", "zh"]
