"""One Wyoming connection's protocol, sans-IO: events in, actions out, time passed in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wyoming.event import Event
from wyoming.info import Describe, SelectProgram
from wyoming.ping import Ping
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from streamer.adapters.wyoming import (
    MAX_PENDING_REQUESTS,
    PROGRAM_NAME,
    STREAM_TRANSITIONS,
    EndStream,
    OpenStream,
    SendInfo,
    SendPong,
    Speak,
    StreamSegments,
    StreamState,
    VoiceChoice,
    WyomingError,
    WyomingProtocol,
)
from streamer.protocol import BufferPolicy

MAX_TEXT = 200


def protocol(idle_s: float = 0.0, policy: BufferPolicy | None = None) -> WyomingProtocol:
    return WyomingProtocol(
        program=PROGRAM_NAME, max_text_chars=MAX_TEXT, idle_s=idle_s, policy=policy
    )


def spoken(actions: list[Any]) -> str:
    return " ".join(s.text for a in actions if isinstance(a, StreamSegments) for s in a.segments)


def refusal(p: WyomingProtocol, event: Event) -> WyomingError:
    with pytest.raises(WyomingError) as caught:
        p.receive(event, 0.0)
    assert not caught.value.fatal  # a bad event never ends the connection
    return caught.value


def test_every_stream_state_has_its_moves() -> None:
    assert set(STREAM_TRANSITIONS) == set(StreamState)


def test_describe_and_ping_are_answered() -> None:
    p = protocol()
    assert p.receive(Describe().event(), 0.0) == [SendInfo()]
    assert p.receive(Ping(text="x").event(), 0.0) == [SendPong("x")]
    assert p.pending == 0


def test_a_synthesize_is_one_request_with_its_voice() -> None:
    p = protocol()
    voice = SynthesizeVoice(name="piper-en_US-joe-medium", speaker="s1")
    (action,) = p.receive(Synthesize(text="Hi there.", voice=voice).event(), 0.0)
    assert action == Speak("Hi there.", VoiceChoice("piper-en_US-joe-medium", None, "s1"))
    assert p.pending == 1
    p.request_done()
    assert p.pending == 0


def test_a_language_alone_chooses_among_that_languages_voices() -> None:
    (action,) = protocol().receive(
        Synthesize(text="Hola.", voice=SynthesizeVoice(language="es")).event(), 0.0
    )
    assert isinstance(action, Speak) and action.voice == VoiceChoice(language="es")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "missing_text"),
        ({"text": 5}, "invalid_message"),
        ({"text": "   "}, "empty_text"),
        ({"text": "x" * (MAX_TEXT + 1)}, "text_too_long"),
        ({"text": "hi", "voice": "joe"}, "invalid_message"),
        ({"text": "hi", "voice": {"name": 3}}, "invalid_config"),
        ({"text": "hi", "voice": {"name": ""}}, "invalid_config"),
        ({"text": "hi", "voice": {"speaker": "x" * 500}}, "invalid_config"),
        ({"text": "hi", "text_format": "ssml"}, "unsupported_text_format"),
    ],
)
def test_a_bad_synthesize_is_refused_with_a_stable_code(data: dict[str, Any], code: str) -> None:
    p = protocol()
    assert refusal(p, Event("synthesize", data)).code == code
    assert p.pending == 0


def test_control_characters_are_spoken_as_spaces() -> None:
    (action,) = protocol().receive(Event("synthesize", {"text": "a\x00b"}), 0.0)
    assert isinstance(action, Speak) and action.text == "a b"


@pytest.mark.parametrize("kind", ["audio-chunk", "transcribe", "no-such-event", "info"])
def test_an_event_that_is_not_ours_is_refused(kind: str) -> None:
    assert refusal(protocol(), Event(kind, {})).code == "unknown_type"


def test_select_program_accepts_ours_only() -> None:
    p = protocol()
    assert p.receive(SelectProgram(name=PROGRAM_NAME).event(), 0.0) == []
    assert refusal(p, SelectProgram(name="piper").event()).code == "unknown_program"


def test_a_stream_opens_takes_text_in_segments_and_ends_on_stop() -> None:
    p = protocol()
    (opened,) = p.receive(SynthesizeStart(voice=SynthesizeVoice(name="v")).event(), 0.0)
    assert opened == OpenStream(1, VoiceChoice(name="v"))
    assert p.state is StreamState.OPEN
    actions = []
    for token in ["Hello", " there", ", my friend.", " How", " are", " you?"]:
        actions += p.receive(SynthesizeChunk(text=token).event(), 0.1)
    # The first clause goes at once; the first sentence once the next one begins.
    assert spoken(actions) == "Hello there, my friend."
    stopped = p.receive(SynthesizeStop().event(), 0.2)
    assert spoken(stopped) == "How are you?"
    assert stopped[-1] == EndStream(1)
    assert p.state is StreamState.IDLE
    assert p.pending == 1  # the stream runs until the server says it is done


def test_the_compatibility_synthesize_inside_a_stream_is_ignored() -> None:
    p = protocol()
    p.receive(SynthesizeStart().event(), 0.0)
    p.receive(SynthesizeChunk(text="One two.").event(), 0.0)
    assert p.receive(Synthesize(text="One two.").event(), 0.0) == []
    p.receive(SynthesizeStop().event(), 0.0)
    assert p.pending == 1


def test_a_compatibility_synthesize_right_after_stop_is_ignored_but_not_a_new_one() -> None:
    p = protocol()
    p.receive(SynthesizeStart().event(), 0.0)
    p.receive(SynthesizeChunk(text="One two.").event(), 0.0)
    p.receive(SynthesizeStop().event(), 0.0)
    assert p.receive(Synthesize(text=" One  two. ").event(), 0.0) == []
    (again,) = p.receive(Synthesize(text="One two.").event(), 0.0)
    assert isinstance(again, Speak)


def test_stream_events_out_of_place_are_refused() -> None:
    p = protocol()
    assert refusal(p, SynthesizeChunk(text="x").event()).code == "no_stream"
    assert refusal(p, SynthesizeStop().event()).code == "no_stream"
    p.receive(SynthesizeStart().event(), 0.0)
    assert refusal(p, SynthesizeStart().event()).code == "stream_open"
    assert refusal(p, Event("synthesize-chunk", {"text": None})).code == "invalid_message"
    assert p.state is StreamState.OPEN  # the stream goes on


def test_requests_queue_up_to_the_limit() -> None:
    p = protocol()
    for _ in range(MAX_PENDING_REQUESTS):
        p.receive(Synthesize(text="hi").event(), 0.0)
    assert refusal(p, Synthesize(text="hi").event()).code == "queue_full"
    assert refusal(p, SynthesizeStart().event()).code == "queue_full"
    assert p.state is StreamState.IDLE
    p.request_done()
    assert isinstance(p.receive(SynthesizeStart().event(), 0.0)[0], OpenStream)


def test_held_text_is_released_at_its_deadline() -> None:
    p = protocol(policy=BufferPolicy(max_delay_ms=500))
    p.receive(SynthesizeStart().event(), 0.0)
    assert p.receive(SynthesizeChunk(text="no boundary here").event(), 1.0) == []
    assert p.deadline == pytest.approx(1.5)
    assert p.tick(1.4) == []
    assert spoken(p.tick(1.6)) == "no boundary here"


def test_an_idle_stream_has_its_input_ended() -> None:
    p = protocol(idle_s=20.0)
    p.receive(SynthesizeStart().event(), 0.0)
    p.receive(SynthesizeChunk(text="Hi, how are").event(), 1.0)
    actions = p.tick(21.0)
    assert actions[-1] == EndStream(1)
    assert p.state is StreamState.IDLE
    assert p.deadline is None


def test_the_end_of_the_clients_input_ends_an_open_stream() -> None:
    p = protocol()
    assert p.finish(0.0) == []
    p.receive(SynthesizeStart().event(), 0.0)
    p.receive(SynthesizeChunk(text="Half a sentence").event(), 0.0)
    actions = p.finish(0.1)
    assert spoken(actions) == "Half a sentence"
    assert actions[-1] == EndStream(1)


def test_streams_are_numbered() -> None:
    p = protocol()
    for number in (1, 2):
        assert p.receive(SynthesizeStart().event(), 0.0) == [OpenStream(number, VoiceChoice())]
        p.receive(SynthesizeStop().event(), 0.0)


EVENT_TYPES = st.sampled_from(
    ["synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop", "describe",
     "ping", "select-program", "audio-chunk", "x"]
)  # fmt: skip
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(st.lists(st.tuples(EVENT_TYPES, st.dictionaries(
    st.sampled_from(["text", "voice", "name", "text_format", "language"]), VALUES, max_size=3
)), max_size=30))  # fmt: skip
def test_any_event_sequence_gives_actions_or_client_errors(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    p = protocol(idle_s=5.0)
    now = 0.0
    for kind, data in events:
        now += 1.0
        error: WyomingError | None = None
        try:
            p.receive(Event(kind, data), now)
        except WyomingError as caught:
            error = caught
        assert error is None or not error.fatal
        assert error is None or error.text.encode("utf-8")
        p.tick(now)
        assert 0 <= p.pending <= MAX_PENDING_REQUESTS
        assert (p.state is StreamState.OPEN) == (p.deadline is not None)
