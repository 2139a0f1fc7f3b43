"""What stream metrics cost per turn on the generator's hot path: the turn tracker and the
turn record, for a turn without token events and for a streamed one.

    .venv/bin/python benchmarks/stream_tracker.py                       # this checkout only
    .venv/bin/python benchmarks/stream_tracker.py --baseline-src DIR    # and against DIR

A turn here is what a ChatUser does with every agent turn after the frames are parsed:
feed each event to a ``TurnTracker``, take its result, build the ``TurnRecord``, and take
its shape and timings (what the results writer and the web UI read). ``--baseline-src``
names another checkout of wsload (e.g. ``git archive`` of the commit before stream
metrics): the plain turn is then timed there too, in alternating processes (base, new,
base, new ...), and the ratio says what a user who does not stream pays for them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = textwrap.dedent(
    """
    import inspect, json, sys, time
    from wsload.config.profile import load_profile
    from wsload.protocol.tracker import TurnTracker
    from wsload.run.records import TurnRecord, Who

    chunks, turns = int(sys.argv[1]), int(sys.argv[2])
    profile = load_profile()
    grammar = profile.grammar
    streams = "stream" in inspect.signature(TurnTracker).parameters
    extra = {"stream": profile.stream} if streams else {}
    ids = {"user_id": "u", "thread_id": "t", "run_id": "r"}
    names = ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]
    events = [{"type": n, **ids, "seq": i} for i, n in enumerate(names)]
    events += [
        {"type": "stream_chunk", **ids, "seq": 10 + i, "data": {"content": f" word{i}"}}
        for i in range(chunks)
    ]
    events.append({"type": "agent_completed", **ids, "seq": 99})
    raws = [json.dumps(e) for e in events]
    who = Who(1, "s", "x")
    started = time.perf_counter()
    for n in range(turns):
        sent = 1000.0 + n
        tracker = TurnTracker(
            profile.events, grammar, sent_at=sent, user_id="u", thread_id="t",
            timeout_s=60.0, event_timeout_s=30.0, **extra,
        )
        at = sent
        for event, raw in zip(events, raws):
            at += 0.001
            tracker.feed(event, at, raw)
        record = TurnRecord(0.0, who, n, 1, 100, tracker.result())
        record.shape()
        record.timings()
    elapsed = time.perf_counter() - started
    print(json.dumps({"us_per_turn": elapsed / turns * 1e6, "streams": streams}))
    """
)


def measure(src: Path, chunks: int, turns: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(chunks), str(turns)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=src,
    )
    return float(json.loads(out.stdout)["us_per_turn"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="another wsload checkout to compare")
    parser.add_argument("--turns", type=int, default=20000, help="turns per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats")
    parser.add_argument("--chunks", type=int, default=20, help="token events of a streamed turn")
    args = parser.parse_args()
    plain, streamed, base = [], [], []
    for _ in range(args.repeats):
        if args.baseline_src is not None:
            base.append(measure(args.baseline_src, 0, args.turns))
        plain.append(measure(REPO, 0, args.turns))
        streamed.append(measure(REPO, args.chunks, args.turns))
    med = statistics.median
    # On a shared machine the fastest run is the one least disturbed: both are shown.
    print(f"plain turn (6 events), this checkout: median {med(plain):.1f}, "
          f"best {min(plain):.1f} us/turn")  # fmt: skip
    if base:
        print(f"plain turn (6 events), baseline:      median {med(base):.1f}, "
              f"best {min(base):.1f} us/turn; this/baseline median {med(plain) / med(base):.3f}, "
              f"best {min(plain) / min(base):.3f}")  # fmt: skip
    print(f"streamed turn (6 events + {args.chunks} token events): median {med(streamed):.1f}, "
          f"best {min(streamed):.1f} us/turn")  # fmt: skip


if __name__ == "__main__":
    main()
