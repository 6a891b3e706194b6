"""Voice-agent latency: an LLM's answer streamed into a context, as its listener hears it.

    .venv/bin/python -m scripts.agent_latency --spawn                   # 1 session
    .venv/bin/python -m scripts.agent_latency --spawn --sessions 20     # 20 at once
    .venv/bin/python -m scripts.agent_latency --url ws://127.0.0.1:8081 --json out.json

Every session (one connection, ``format: pcm``, real-time pacing on) speaks ``--repeats``
answers, each a paragraph of ``_common.PARAGRAPHS`` cut into LLM-like tokens (words
with their leading space, punctuation apart, long words in two) and sent as one
streamed-text context at ``--tokens-per-s`` (30, a typical LLM), then closed. Its
listener plays from the first frame, in real time; the next answer starts once it has
heard this one out (a new turn). Sessions start spread over one second. Figures:

- **first audio after the trigger token**: from sending the token that completes the
  first segment (found by running the server's own ``TextBuffer`` rule on the token
  times here: usually the first clause mark past ``first_min_chars``) to the context's
  first binary frame. What the server adds once the agent's first clause is there.
- **underruns**: frames that reached the listener after it had played everything
  before them (``UNDERRUN_TOLERANCE_S`` of slack), and the silence they made. At
  30 tokens/s the text comes ~8x faster than it is spoken, so every gap is ours. Each
  is placed by the answer's word timestamps: *in the first segment* (the stream getting
  ahead: what any ``synthesize`` risks under the same load) or *from the first segment
  boundary on* (between or in later segments: what streaming the text adds).
- **max-delay cuts**: segments the buffer's ``max_delay_ms`` rule would have cut on
  these token times (the default is meant never to fire on a healthy stream).
- **baseline**: after each answer is heard out, the time to first audio of a plain
  ``synthesize`` of the same first segment (send → first frame), on the same
  connection under the same load: the server's floor for that text, so the difference
  is what streaming the text costs.
- **busy refusals**: answers admission control refused (``busy``), each retried with a
  new context after ``retry_after_ms``, as a client should.
- with ``--whole``, each answer is instead one ``synthesize`` of the whole paragraph,
  sent when its last token would have been (first audio then counts from that send):
  the same speech and load without streamed text, to compare underruns with.
- with ``--compare-timestamps``, the first-audio figure twice, every paragraph spoken
  once with ``timestamps: word`` and once with ``none``: the cost of word timings.

The server's own count of underruns (and its time to first audio) is printed beside
the client's: with many sessions in this one process, frames the client reads late
look like gaps to its listener model although the server sent them in time.

Client-side wall time on ``time.perf_counter``, the probes sharing the machine (and with
``--spawn`` its two cores) with the server; ``uptime``'s load is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from streamer.client import (
    AudioEnd,
    AudioStart,
    Interrupted,
    Timestamps,
    TTSServerError,
    TTSStreamingClient,
    Word,
)
from streamer.protocol import BufferPolicy, TextBuffer

from ._common import (
    LATENCY_HEADERS,
    PARAGRAPHS,
    http_get_json,
    machine_info,
    markdown_table,
    spawned_server,
    stats_row,
    summarize,
    write_json,
)

#: A frame this late after the listener ran dry is an underrun (the server's own
#: tolerance is 1 ms; the probe's scheduling on a shared machine needs more).
UNDERRUN_TOLERANCE_S: Final = 0.01
#: Pause between the end of one answer's playback and the next answer: a user's turn.
TURN_GAP_S: Final = 0.3
#: Bound on one answer, however slow the server: a hung run must end.
ANSWER_TIMEOUT_S: Final = 120.0
#: Sessions start spread over this long, so that they do not all speak in step.
STAGGER_S: Final = 1.0
#: Tokens longer than this many letters are sent in two pieces, as BPE tokenizers do.
LONG_TOKEN_CHARS: Final = 7


def llm_tokens(text: str) -> list[str]:
    """``text`` as an LLM streams it, roughly (see the module docstring)."""
    tokens: list[str] = []
    for match in re.finditer(r" ?[A-Za-z'\-]+| ?[0-9]+|[^A-Za-z0-9' ]| ", text):
        token = match.group()
        if len(token.strip()) > LONG_TOKEN_CHARS:
            half = len(token) // 2
            tokens += [token[:half], token[half:]]
        else:
            tokens.append(token)
    assert "".join(tokens) == text
    return tokens


@dataclass(frozen=True, slots=True)
class Plan:
    """Where the server's buffer will cut an answer sent at ``rate`` tokens/s."""

    tokens: list[str]
    #: Index of the token whose arrival releases the first segment.
    trigger: int
    #: Segments cut by ``max_delay_ms`` on these token times.
    delay_cuts: int
    #: The first segment's text.
    first_segment: str

    @staticmethod
    def of(text: str, rate: float, policy: BufferPolicy) -> Plan:
        tokens = llm_tokens(text)
        buffer = TextBuffer(policy)
        trigger: int | None = None
        delay_cuts = 0
        segments = []
        for index, token in enumerate(tokens):
            now = index / rate
            cuts = buffer.due(now)
            delay_cuts += len(cuts)
            if cuts and trigger is None:
                trigger = index  # released by time just before this token went
            appended = buffer.append(token, now)
            if appended and trigger is None:
                trigger = index
            segments += cuts + appended
        segments += buffer.flush()
        return Plan(
            tokens,
            trigger if trigger is not None else len(tokens) - 1,
            delay_cuts,
            segments[0].text,
        )


@dataclass
class Answer:
    """What one context measured."""

    timestamps: str
    first_audio_ms: float | None = None
    #: Time to first audio of a ``synthesize`` of the first segment, afterwards.
    baseline_ms: float | None = None
    underruns: int = 0
    gap_ms: float = 0.0
    #: Underruns at or after the first segment boundary (see the module docstring).
    later_underruns: int = 0
    audio_s: float = 0.0
    ended: str = ""


@dataclass
class Listener:
    """Plays frames in real time from the first one; notes when it ran dry."""

    bytes_per_s: float
    dry_at: float | None = None
    underruns: int = 0
    gap_s: float = 0.0
    audio_s: float = 0.0
    #: Where in the audio (seconds before the late frame) each underrun fell.
    gaps_at: list[float] = field(default_factory=list)

    def frame(self, now: float, size: int) -> None:
        seconds = size / self.bytes_per_s
        if self.dry_at is None:
            self.dry_at = now + seconds
            self.audio_s += seconds
            return
        if now > self.dry_at + UNDERRUN_TOLERANCE_S:
            self.underruns += 1
            self.gap_s += now - self.dry_at
            self.gaps_at.append(self.audio_s)
            self.dry_at = now
        self.dry_at += seconds
        self.audio_s += seconds


def boundary_s(words: Sequence[Word], first_segment_chars: int) -> float | None:
    """Where the second segment's audio starts: the first word past the first segment
    (None if the answer had one segment, or no timestamps)."""
    later = [w.start_ms for w in words if w.char_start >= first_segment_chars]
    return min(later) / 1000 if later else None


class Busy(Exception):
    """The server refused the answer (``busy``); retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"busy, retry after {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


async def speak(
    client: TTSStreamingClient, text: str, rate: float, timestamps: str, policy: BufferPolicy
) -> tuple[Answer, float]:
    """One answer: its figures, and when its listener will have heard it all. Raises
    ``Busy`` when admission refuses it."""
    plan = Plan.of(text, rate, policy)
    answer = Answer(timestamps)
    context = client.stream(format="pcm", realtime=True, timestamps=timestamps)
    sent_trigger: list[float] = []

    async def feed() -> None:
        start = time.perf_counter()
        for index, token in enumerate(plan.tokens):
            await trio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            if index == plan.trigger:
                sent_trigger.append(time.perf_counter())
            await context.send_text(token)
        await context.close()

    listener: Listener | None = None
    refused: TTSServerError | None = None
    words: list[Word] = []
    with trio.fail_after(ANSWER_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            try:
                async for item in context:
                    now = time.perf_counter()
                    if isinstance(item, AudioStart):
                        listener = Listener(2 * item.sample_rate * item.channels)
                    elif isinstance(item, bytes) and listener is not None:
                        if answer.first_audio_ms is None and sent_trigger:
                            answer.first_audio_ms = (now - sent_trigger[0]) * 1000
                        listener.frame(now, len(item))
                    elif isinstance(item, Timestamps):
                        words += item.words
                    elif isinstance(item, AudioEnd | Interrupted):
                        answer.ended = type(item).__name__
            except TTSServerError as error:  # the opening text was refused
                refused = error
                nursery.cancel_scope.cancel()
    if refused is not None:
        if refused.code != "busy":
            raise refused
        raise Busy(float(refused.details.get("retry_after_ms") or 100) / 1000)
    if listener is not None:
        answer.underruns, answer.gap_ms = listener.underruns, listener.gap_s * 1000
        answer.audio_s = listener.audio_s
        boundary = boundary_s(words, len(plan.first_segment))
        if boundary is None and timestamps == "none":
            boundary = 0.0  # unknown: counted as later (on the safe side)
        if boundary is not None:
            answer.later_underruns = sum(1 for at in listener.gaps_at if at >= boundary)
    dry_at = listener.dry_at if listener and listener.dry_at else time.perf_counter()
    return answer, dry_at


async def speak_whole(client: TTSStreamingClient, text: str, rate: float) -> tuple[Answer, float]:
    """``--whole``: the answer as one ``synthesize``, sent once the LLM would be done."""
    await trio.sleep(len(llm_tokens(text)) / rate)
    answer = Answer("whole")
    sent = time.perf_counter()
    listener: Listener | None = None
    try:
        with trio.fail_after(ANSWER_TIMEOUT_S):
            async for item in client.synthesize(text, format="pcm", realtime=True):
                now = time.perf_counter()
                if isinstance(item, AudioStart):
                    listener = Listener(2 * item.sample_rate * item.channels)
                elif isinstance(item, bytes) and listener is not None:
                    if answer.first_audio_ms is None:
                        answer.first_audio_ms = (now - sent) * 1000
                    listener.frame(now, len(item))
                elif isinstance(item, AudioEnd | Interrupted):
                    answer.ended = type(item).__name__
    except TTSServerError as error:
        if error.code != "busy":
            raise
        raise Busy(float(error.details.get("retry_after_ms") or 100) / 1000) from None
    if listener is not None:
        answer.underruns, answer.gap_ms = listener.underruns, listener.gap_s * 1000
        answer.audio_s = listener.audio_s
    dry_at = listener.dry_at if listener and listener.dry_at else time.perf_counter()
    return answer, dry_at


async def baseline(client: TTSStreamingClient, text: str) -> tuple[float | None, float]:
    """Time to first audio of a ``synthesize`` of ``text``, and when it is heard out."""
    sent = time.perf_counter()
    first: float | None = None
    listener: Listener | None = None
    try:
        with trio.fail_after(ANSWER_TIMEOUT_S):
            async for item in client.synthesize(text, format="pcm", realtime=True):
                now = time.perf_counter()
                if isinstance(item, AudioStart):
                    listener = Listener(2 * item.sample_rate * item.channels)
                elif isinstance(item, bytes) and listener is not None:
                    if first is None:
                        first = (now - sent) * 1000
                    listener.frame(now, len(item))
    except TTSServerError as error:
        if error.code != "busy":
            raise
        return None, time.perf_counter()  # no baseline this time: admission said no
    dry_at = listener.dry_at if listener and listener.dry_at else time.perf_counter()
    return first, dry_at


async def session(
    url: str,
    index: int,
    sessions: int,
    repeats: int,
    rate: float,
    compare: bool,
    whole: bool,
    policy: BufferPolicy,
    out: list[Answer],
    refusals: list[float],
) -> None:
    await trio.sleep(STAGGER_S * index / sessions)
    async with TTSStreamingClient(url) as client:
        await client.connect(language="en")
        for repeat in range(repeats):
            if compare:
                # Each paragraph twice in a row, once with timestamps and once without
                # (the order alternating), so both modes speak the same texts.
                text = PARAGRAPHS[(index + repeat // 2) % len(PARAGRAPHS)]
                mode = "word" if (repeat + repeat // 2) % 2 == 0 else "none"
            else:
                text = PARAGRAPHS[(index + repeat) % len(PARAGRAPHS)]
                mode = "word"
            while True:
                try:
                    if whole:
                        answer, dry_at = await speak_whole(client, text, rate)
                    else:
                        answer, dry_at = await speak(client, text, rate, mode, policy)
                    break
                except Busy as busy:
                    refusals.append(busy.retry_after_s)
                    await trio.sleep(busy.retry_after_s)
            await trio.sleep(max(0.0, dry_at - time.perf_counter()) + TURN_GAP_S)
            answer.baseline_ms, dry_at = await baseline(
                client, Plan.of(text, rate, policy).first_segment
            )
            out.append(answer)
            await trio.sleep(max(0.0, dry_at - time.perf_counter()) + TURN_GAP_S)


async def run(url: str, args: argparse.Namespace) -> tuple[list[Answer], list[float]]:
    policy = BufferPolicy()
    answers: list[Answer] = []
    refusals: list[float] = []
    async with trio.open_nursery() as nursery:
        for index in range(args.sessions):
            nursery.start_soon(
                session, url, index, args.sessions, args.repeats, args.tokens_per_s,
                args.compare_timestamps, args.whole, policy, answers, refusals,
            )  # fmt: skip
    return answers, refusals


def report(
    answers: Sequence[Answer],
    refusals: Sequence[float],
    args: argparse.Namespace,
    server: dict[str, Any] | None,
) -> dict[str, Any]:
    policy = BufferPolicy()
    plans = [Plan.of(text, args.tokens_per_s, policy) for text in PARAGRAPHS]
    rows = [stats_row("first audio after trigger token", [
        a.first_audio_ms for a in answers if a.first_audio_ms is not None
    ])]  # fmt: skip
    rows.append(stats_row("baseline: synthesize of the first segment", [
        a.baseline_ms for a in answers if a.baseline_ms is not None
    ]))  # fmt: skip
    if args.compare_timestamps:
        for mode in ("word", "none"):
            values = [a.first_audio_ms for a in answers
                      if a.timestamps == mode and a.first_audio_ms is not None]  # fmt: skip
            rows.append(stats_row(f"  with timestamps {mode}", values))
    gaps = [g for a in answers for g in ([a.gap_ms] if a.underruns else [])]
    load = os.getloadavg()
    print(f"\n{args.sessions} session(s), {len(answers)} answers, "
          f"{args.tokens_per_s:g} tokens/s; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")  # fmt: skip
    print(markdown_table(LATENCY_HEADERS, rows))
    underruns = sum(a.underruns for a in answers)
    audio_s = sum(a.audio_s for a in answers)
    later = sum(a.later_underruns for a in answers)
    print(f"\nunderruns: {underruns} in {audio_s:.0f} s of audio "
          f"({sum(1 for a in answers if a.underruns)} answers with any; silence "
          f"{sum(gaps):.0f} ms in all)")  # fmt: skip
    if not args.whole:
        print(f"  in the first segment: {underruns - later}; from the first segment "
              f"boundary on: {later}")  # fmt: skip
    print(f"max-delay cuts on these token times: {sum(p.delay_cuts for p in plans)} "
          f"(max_delay_ms {policy.max_delay_ms})")
    print("answers not ended by audio_end:", sum(1 for a in answers if a.ended != "AudioEnd"))
    print(f"busy refusals (retried): {len(refusals)}")
    if server is not None:
        ttfa = server.get("time_to_first_audio", {})
        print(f"server side: underruns {server.get('underruns')}, time to first audio p50 / "
              f"p95 / p99 {ttfa.get('p50_ms')} / {ttfa.get('p95_ms')} / {ttfa.get('p99_ms')} ms "
              "(from each context's first segment, or each synthesize)")  # fmt: skip
    return {
        "machine": machine_info(),
        "load_average": load,
        "sessions": args.sessions,
        "tokens_per_s": args.tokens_per_s,
        "first_audio_ms": summarize(
            [a.first_audio_ms for a in answers if a.first_audio_ms is not None]
        ),
        "baseline_ms": summarize([a.baseline_ms for a in answers if a.baseline_ms is not None]),
        "underruns": underruns,
        "underruns_from_first_boundary": None if args.whole else later,
        "busy_refusals": len(refusals),
        "audio_s": audio_s,
        "gap_ms": summarize(gaps),
        "server_metrics": server,
        "answers": [a.__dict__ for a in answers],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.agent_latency",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--spawn", action="store_true", help="start a server on free ports")
    target.add_argument("--url", help="a running server's WebSocket URL")
    parser.add_argument("--sessions", type=int, default=1, help="sessions speaking at once")
    parser.add_argument("--repeats", type=int, default=12, help="answers per session")
    parser.add_argument("--tokens-per-s", type=float, default=30.0, help="the LLM's pace")
    parser.add_argument(
        "--compare-timestamps", action="store_true",
        help="alternate timestamps word/none and report first audio for each",
    )  # fmt: skip
    parser.add_argument(
        "--whole", action="store_true",
        help="each answer as one synthesize of the whole paragraph (a comparison)",
    )  # fmt: skip
    parser.add_argument("--http-url", help="with --url: its REST URL, for its own metrics")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    metrics: dict[str, Any] | None = None
    if args.spawn:
        with spawned_server() as server:
            answers, refusals = trio.run(run, server.ws_url, args)
            metrics = http_get_json(f"{server.http_url}/api/v1/metrics")
    else:
        answers, refusals = trio.run(run, args.url, args)
        if args.http_url:
            metrics = http_get_json(f"{args.http_url}/api/v1/metrics")
    write_json(args.json, report(answers, refusals, args, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
