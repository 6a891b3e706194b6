"""Run pytest again and again while its process is stopped now and then, as a stalled CI
machine would stop it.

    python -m tests.support.pause_harness [--runs 20] -- <pytest arguments>

Each run starts ``python -m pytest <pytest arguments>`` as a child; a pauser thread
stops it (SIGSTOP) for ``--pause`` seconds, lets it go (SIGCONT), waits a random
``--every`` interval, and again, until the child exits. A test that depends on the wall
clock (audio "on time" by real time, a sleep standing in for a wait) fails under it.
Prints each run's exit status and how often it was stopped, then ``N/M passed``; exits
0 only if every run passed. POSIX only.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Final

#: How long each stop lasts: longer than the 0.2 s a paced stream is synthesized ahead
#: of its listener, so a test timed by the wall clock sees its audio late.
DEFAULT_PAUSE_S: Final = 0.25
#: Between stops, a random interval in this range.
DEFAULT_EVERY_S: Final = (0.1, 0.3)
DEFAULT_RUNS: Final = 20


@dataclass
class Run:
    returncode: int
    stops: int
    seconds: float


def _pause_until_exit(
    child: subprocess.Popen[bytes], pause_s: float, every_s: tuple[float, float], rng: random.Random
) -> int:
    """Stop and continue ``child`` until it exits; return how many times it was stopped.

    Only this thread reaps the child (``poll``), so a signal never reaches a reused pid.
    """
    stops = 0
    while True:
        time.sleep(rng.uniform(*every_s))
        if child.poll() is not None:
            return stops
        os.kill(child.pid, signal.SIGSTOP)
        stops += 1
        try:
            time.sleep(pause_s)
        finally:
            os.kill(child.pid, signal.SIGCONT)  # a stopped child cannot have exited


def run_once(
    pytest_args: list[str], pause_s: float, every_s: tuple[float, float], rng: random.Random
) -> Run:
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args])
    stops: list[int] = []
    pauser = threading.Thread(
        target=lambda: stops.append(_pause_until_exit(child, pause_s, every_s, rng)),
        name="pauser",
    )
    pauser.start()
    pauser.join()
    return Run(child.wait(), stops[0], time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.pause_harness",
        description="Run pytest repeatedly while stopping it for --pause s every --every s.",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--pause", type=float, default=DEFAULT_PAUSE_S, help="seconds")
    parser.add_argument(
        "--every", type=float, nargs=2, default=DEFAULT_EVERY_S, metavar=("MIN", "MAX"),
        help="seconds between stops, drawn uniformly",
    )
    parser.add_argument("--seed", type=int, default=None, help="for the intervals")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest's")
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    rng = random.Random(args.seed)
    every = (args.every[0], args.every[1])
    passed = 0
    for number in range(1, args.runs + 1):
        run = run_once(pytest_args, args.pause, every, rng)
        passed += run.returncode == 0
        print(
            f"run {number}/{args.runs}: exit {run.returncode}, stopped {run.stops} times"
            f" for {args.pause:.2f} s, {run.seconds:.1f} s in all",
            flush=True,
        )
    print(f"{passed}/{args.runs} passed", flush=True)
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
