"""The text buffering policy of a context, pure: no event loop, time passed in."""

from __future__ import annotations

import pytest

from streamer.protocol import (
    DEFAULT_FIRST_MIN_CHARS,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_DELAY_MS,
    BufferConfig,
    BufferPolicy,
    ClientError,
    ErrorCode,
    TextBuffer,
)


class Fed:
    """A buffer fed pieces, remembering the whole text to check the cuts' offsets."""

    def __init__(self, **policy: object) -> None:
        self.buffer = TextBuffer(BufferPolicy(**policy))  # type: ignore[arg-type]
        self.text = ""
        self.segments: list[str] = []

    def feed(self, *pieces: str, now: float = 0.0) -> list[str]:
        out: list[str] = []
        for piece in pieces:
            self.text += piece
            out += self._check(self.buffer.append(piece, now))
        return out

    def flush(self) -> list[str]:
        return self._check(self.buffer.flush())

    def due(self, now: float) -> list[str]:
        return self._check(self.buffer.due(now))

    def _check(self, cuts: list) -> list[str]:  # type: ignore[type-arg]
        out = []
        for cut in cuts:
            assert self.text[cut.start : cut.end] == cut.text  # offsets index the text
            assert cut.text == cut.text.strip() and cut.text
            out.append(cut.text)
        self.segments += out
        return out


def tokens(text: str) -> list[str]:
    """LLM-like pieces: each word with its leading space, punctuation on its own."""
    out: list[str] = []
    for index, word in enumerate(text.split(" ")):
        prefix = " " if index else ""
        core = word.rstrip(",.;:!?")
        out.append(prefix + core)
        out.extend(word[len(core) :])
    return [t for t in out if t]


# --- rule 1: sentence end followed by more text ------------------------------------


def test_a_sentence_is_sent_when_the_next_one_starts() -> None:
    fed = Fed()
    assert fed.feed("Hello there.") == []  # the end alone is not enough: "3." "5"?
    assert fed.feed(" ") == []
    assert fed.feed("How") == ["Hello there."]
    assert fed.buffer.pending == " How"


@pytest.mark.parametrize(
    "text",
    [
        "It costs 3.5 dollars",
        "Call Dr. Smith now",
        "Ask Mr. and Mrs. Jones",
        "Use tools, e.g. a hammer",
        "Born in the U.S. of course",
        "Written by J. R. R. Tolkien",
        "Version 2.0.1 is out",
        "See fig. 3 for that",
        "Meet me at 10 a.m. sharp",
    ],
)
def test_decimals_and_abbreviations_do_not_end_a_sentence(text: str) -> None:
    fed = Fed(first_min_chars=1000)
    assert fed.feed(*tokens(text)) == []
    assert fed.flush() == [text]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Really? I think so", "Really?"),
        ("Stop! Now", "Stop!"),
        ("Well… maybe", "Well…"),
        ('He said "yes." Then left', 'He said "yes."'),
        ("(That is all.) Next", "(That is all.)"),
        ("It was 1999. Then it changed", "It was 1999."),
        ("A list:\n- one", "A list:"),
        ("Wait...  more", "Wait..."),
    ],
)
def test_sentence_ends(text: str, first: str) -> None:
    fed = Fed(first_min_chars=1000)
    fed.feed(text)
    assert fed.segments == [first]


def test_several_sentences_in_one_piece_are_cut_apart() -> None:
    fed = Fed()
    assert fed.feed("One. Two! Three? Four") == ["One.", "Two!", "Three?"]
    assert fed.flush() == ["Four"]


# --- rule 2: first segment at a clause mark -------------------------------------------


def test_first_clause_is_sent_at_its_mark_without_waiting_for_more() -> None:
    fed = Fed()
    assert fed.feed("Hello", " there", " my", " friend") == []
    assert fed.feed(",") == ["Hello there my friend,"]
    # Only the first segment: later clauses wait for their sentence's end.
    assert fed.feed(" how", " are", " you", " doing", " today", ",", " really") == []
    assert fed.feed("?", " I") == ["how are you doing today, really?"]


def test_a_short_first_clause_waits_for_first_min_chars() -> None:
    fed = Fed()
    assert fed.feed("Sure", ",") == []  # 5 < 12 characters: it would sound clipped
    assert fed.feed(" I", " can", " help", " with", " that", ",") == ["Sure, I can help with that,"]


@pytest.mark.parametrize("mark", [",", ";", ":", "—", "–"])
def test_every_clause_mark(mark: str) -> None:
    fed = Fed(first_min_chars=5)
    assert fed.feed("Hello world", mark) == [f"Hello world{mark}"]


def test_a_comma_after_a_digit_waits_for_the_next_character() -> None:
    fed = Fed(first_min_chars=5)
    assert fed.feed("It costs 1", ",") == []  # "1,000" or "1, 2, 3"?
    assert fed.feed("000", " dollars") == []
    assert fed.feed(" today", ",") == ["It costs 1,000 dollars today,"]


def test_a_comma_after_a_digit_followed_by_a_space_cuts() -> None:
    fed = Fed(first_min_chars=5)
    assert fed.feed("Count 1", ",", " 2") == ["Count 1,"]


def test_a_time_is_not_a_clause() -> None:
    fed = Fed(first_min_chars=5)
    assert fed.feed("Meet at 10", ":", "30", " today") == []


def test_a_dash_cuts_even_inside_a_word_run() -> None:
    fed = Fed(first_min_chars=5)
    assert fed.feed("Hello world—and") == ["Hello world—"]


def test_first_min_chars_counts_the_text_without_leading_spaces() -> None:
    fed = Fed(first_min_chars=6)
    assert fed.feed("   Hi,") == []
    assert fed.feed(" you,") == ["Hi, you,"]


def test_first_min_chars_zero_cuts_at_the_first_mark() -> None:
    fed = Fed(first_min_chars=0)
    assert fed.feed("Hi", ",") == ["Hi,"]


# --- rule 3: max_chars ------------------------------------------------------------------


def test_max_chars_cuts_at_the_last_space() -> None:
    fed = Fed(max_chars=20, first_min_chars=1000)
    assert fed.feed("aaaa bbbb cccc dddd e") == ["aaaa bbbb cccc dddd"]
    assert fed.buffer.pending == " e"


def test_max_chars_without_a_space_cuts_at_the_limit() -> None:
    fed = Fed(max_chars=16)
    assert fed.feed("x" * 40) == ["x" * 16, "x" * 16]
    assert fed.buffer.pending == "x" * 8


def test_max_chars_loops_over_a_long_piece() -> None:
    fed = Fed(max_chars=16, first_min_chars=1000)
    words = " ".join(["word"] * 30)
    fed.feed(words)
    fed.flush()
    assert " ".join(fed.segments) == words
    assert all(len(s) <= 16 for s in fed.segments)


# --- rule 4: max_delay_ms ---------------------------------------------------------------


def test_a_stalled_stream_is_sent_after_max_delay_up_to_its_last_space() -> None:
    fed = Fed(max_delay_ms=500)
    fed.feed("Let me check the", now=1.0)
    fed.feed(" weath", now=1.2)
    assert fed.buffer.deadline == pytest.approx(1.5)  # from the oldest character
    assert fed.due(1.49) == []
    assert fed.due(1.5) == ["Let me check the"]
    assert fed.buffer.pending == " weath"
    # The word still arriving gets its own delay, from the append that brought it.
    assert fed.buffer.deadline == pytest.approx(1.7)
    assert fed.due(1.6) == []
    assert fed.due(1.7) == ["weath"]
    assert fed.buffer.deadline is None


def test_one_long_word_is_sent_whole_after_max_delay() -> None:
    fed = Fed(max_delay_ms=100)
    fed.feed("Supercalifragilistic", now=0.0)
    assert fed.due(0.1) == ["Supercalifragilistic"]


def test_whitespace_alone_starts_no_delay() -> None:
    fed = Fed(max_delay_ms=100)
    fed.feed("   ", now=0.0)
    assert fed.buffer.deadline is None
    fed.feed("Hi", now=5.0)
    assert fed.buffer.deadline == pytest.approx(5.1)


def test_a_cut_restarts_the_delay_for_what_is_left() -> None:
    fed = Fed(max_delay_ms=100)
    fed.feed("One. Two", now=0.0)
    assert fed.segments == ["One."]
    assert fed.buffer.deadline == pytest.approx(0.1)  # "Two" is still unsent
    fed.feed(" three. ", now=0.05)
    fed.feed("F", now=0.06)
    assert fed.segments == ["One.", "Two three."]
    assert fed.buffer.deadline == pytest.approx(0.16)  # "F"'s own arrival


def test_max_delay_zero_never_fires() -> None:
    fed = Fed(max_delay_ms=0)
    fed.feed("Hello", now=0.0)
    assert fed.buffer.deadline is None
    assert fed.due(1e9) == []


# --- rule 5: flush and close; none mode -------------------------------------------------


def test_flush_sends_everything_even_half_a_word() -> None:
    fed = Fed()
    fed.feed("Hello wor")
    assert fed.flush() == ["Hello wor"]
    assert fed.flush() == []
    assert fed.buffer.pending == ""


def test_flush_of_whitespace_sends_nothing() -> None:
    fed = Fed()
    fed.feed("  \n ")
    assert fed.flush() == []


def test_none_mode_sends_each_text_as_it_came() -> None:
    fed = Fed(mode="none")
    assert fed.feed("Hel") == ["Hel"]
    assert fed.feed("lo,", " world") == ["lo,", "world"]
    assert fed.feed("  ") == []
    assert fed.buffer.deadline is None


def test_the_first_rule_applies_to_the_first_segment_only_after_a_sentence() -> None:
    fed = Fed(first_min_chars=3)
    fed.feed("Hi. Then, later")
    assert fed.segments == ["Hi."]


def test_an_llm_stream_is_cut_as_it_would_be_spoken() -> None:
    text = (
        "Sure, I can help with that, but first let me check. The weather in Paris is "
        "mild today: about 18 degrees. Dr. Martin says 3.5 mm of rain may fall by "
        "10:30, so take an umbrella!"
    )
    fed = Fed()
    for piece in tokens(text):
        fed.feed(piece)
    fed.flush()
    assert fed.segments == [
        "Sure, I can help with that,",
        "but first let me check.",
        "The weather in Paris is mild today: about 18 degrees.",
        "Dr. Martin says 3.5 mm of rain may fall by 10:30, so take an umbrella!",
    ]


def test_offsets_index_the_text_as_sent() -> None:
    fed = Fed(first_min_chars=1000)
    fed.feed("  Héllo 😀 there.", "\tNext one.", "  End")
    fed.flush()
    assert fed.segments == ["Héllo 😀 there.", "Next one.", "End"]  # _check verified offsets


# --- policy --------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = BufferPolicy.from_config(None)
    assert policy == BufferPolicy(
        "auto", DEFAULT_MAX_DELAY_MS, DEFAULT_FIRST_MIN_CHARS, DEFAULT_MAX_CHARS
    )
    assert BufferPolicy.from_config(BufferConfig(max_chars=50)).max_chars == 50
    assert BufferPolicy.from_config(BufferConfig(mode="none")).mode == "none"


@pytest.mark.parametrize(
    "config",
    [
        BufferConfig(max_chars=15),
        BufferConfig(max_chars=2001),
        BufferConfig(max_delay_ms=-1),
        BufferConfig(max_delay_ms=60_001),
        BufferConfig(first_min_chars=-1),
        BufferConfig(first_min_chars=1001),
    ],
)
def test_out_of_range_policy_is_invalid_config(config: BufferConfig) -> None:
    with pytest.raises(ClientError) as caught:
        BufferPolicy.from_config(config, "c1")
    assert caught.value.code is ErrorCode.INVALID_CONFIG
    assert caught.value.request_id == "c1"
