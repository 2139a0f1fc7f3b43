"""What recording costs, and how far analysis scales: the results tables against the CSV.

    .venv/bin/python benchmarks/results.py --only bytes,cost,master   # about a minute
    .venv/bin/python benchmarks/results.py --only big --turns 100000000 --folder /work/big
    .venv/bin/python benchmarks/results.py --only full --repeats 5   # about 6 minutes

Phases (the CSV writer and row shipping of before are taken from this repository's history,
``--baseline-rev``, default the commit before the tables, and measured in the same process,
interleaved):

* ``bytes``: bytes on disk per agent turn of the default protocol, from a real full-rate
  run (Locust, ChatUser, the embedded target with zero delays): the whole run folder's
  tables over its turns, against the same run exported as the classic CSV.
* ``cost``: CPU per turn of the recorder (records to the tables, the compaction at the
  stop amortised in) against the CSV writer on the same records, and its share of a
  generator core at 10,000 turns/s.
* ``recording``: CPU per turn of the whole recording of a turn as a standalone Locust
  process does it, a second of turns (10,000) made at a time, outside the timing:
  ``Recording.record`` for each turn (into the stats batch and the
  sink); every 500 turns (50 ms at 10,000 turns/s) the stats batch takes them apart and
  the sink makes them columns; the stats logged into Locust's stats every 2,500 turns
  (a quarter second), the sink's tables written every 10,000 turns (a second), the
  compaction at the stop; each part's CPU apart. Against ``--full-baseline-rev``'s tree
  (from git, run with this venv), interleaved, each in a process of its own.
* ``master``: master CPU per 1,000 turns in distributed mode: a worker's second of turns
  as Locust carries it (msgpack), taken apart and written by the master, against the
  row shipping of before.
* ``full``: turns/s per generator core of the full path (Locust, ChatUser, the embedded
  target with zero delays, pinned as ``benchmarks/generator.py`` pins them: target on CPU
  1, generator on CPU 0), with the recording as it is (``tables``), with the tables writer
  disabled (``no-tables``: records still taken, batched and put into Locust's stats, never
  turned into tables), with no recording at all (``no-recording``: ``Recording.record``
  only counts the turns), and at ``--full-baseline-rev`` (``baseline``: that revision's
  tree, from git, run with this venv). Per core: turns over the window divided by the
  generator's CPU seconds over it (``time.process_time`` in the Locust process, its
  writer thread included), so a busy machine slows it down without skewing it. Each
  repeat runs every variant, interleaved. The recording's share of the generator's CPU at
  saturation is ``1 - tables / no-recording`` per repeat: everything recording costs in
  place, the garbage its records make and the caches they take included.
  ``--full-sampled`` adds runs sampled by py-spy (``pip install py-spy``), which slows
  them: the share of samples with the recording's code in their stack.
  This machine's speed drifts by a fifth from one run to the next, so two more variants
  measure the share inside one process: ``alternating`` switches the recording on and off
  every ``--full-phase`` seconds (default 1; an "on" phase ends with its stats logged and
  its tables written), ``alternating tables`` only the results sink (Locust's stats stay
  on). Each pair of neighbouring phases gives a share, ``1 - on / off`` of their turns per
  CPU second; their median is printed with its quartiles.
* ``big``: a run of ``--turns`` turns (default 100 million) written through the real
  writer (``ArrowWriter.write_batches``, the master's path), with the default protocol's
  shape and random timings; then ``wsload summary``, ``wsload gate`` and ``wsload report``
  on it, each timed with its peak memory. Mind the disk (about 6 GB per 100 million
  turns): the folder is deleted at the end unless ``--keep``. ``--layout columns`` (the
  default) writes a run's layout, a column per event of the default profile;
  ``--layout map`` every offset in the ``first_ms`` map, as older folders have it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import msgpack  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from wsload.config.profile import load_profile  # noqa: E402
from wsload.protocol.tracker import TurnResult  # noqa: E402
from wsload.run.batch import Batch  # noqa: E402
from wsload.run.columns import TURNS, turn_events, turns_spec  # noqa: E402
from wsload.run.records import TurnRecord, Who  # noqa: E402
from wsload.run.wire import decode, encode  # noqa: E402
from wsload.run.writer import ArrowWriter  # noqa: E402

EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
T0 = 1_800_000_000.0
RUN_EVENTS = turn_events(load_profile())  # a run of the default profile: a column each


def baseline_modules(rev: str):
    """The CSV writer and the row wire as they were at ``rev`` (git history), by file."""
    loaded = []
    folder = Path(tempfile.mkdtemp(prefix="wsload-baseline-"))
    for name in ("recorder", "wire"):
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:wsload/run/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        path = folder / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
    return loaded


def default_turns(count: int, seed: int = 1, users: int = 200) -> list[TurnRecord]:
    """Turns of the default protocol's shape with timings as a clock gives them."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        t = sorted(rng.lognormvariate(3.5, 0.5) for _ in EVENTS)
        gaps = [b - a for a, b in itertools.pairwise(t)] + [rng.uniform(0.01, 2)]
        ok = rng.random() > 0.01
        result = TurnResult(
            ok=ok,
            failures=[] if ok else [("turn_timeout", "no terminal event in 30 s")],
            ttfe_ms=t[0],
            e2e_ms=t[-1] if ok else None,
            elapsed_ms=t[-1],
            first_ms=dict(zip(EVENTS, t, strict=True)),
            gaps_ms=gaps,
            spans_ms=[("tool", t[3] - t[2])],
            events=6,
            names=[],
            run_id=None,
            terminal="agent_completed",
        )
        user = i % users
        who = Who(user, f"wsload-w1-{user:06d}", f"w1-{user}-1")
        out.append(TurnRecord(T0 + i / 10_000, who, i, rng.randint(1, 50), 120, result))
    return out


def seconds(records: list[TurnRecord], per_second: int = 10_000) -> list[Batch]:
    batches = []
    for start in range(0, len(records), per_second):
        batch = Batch("w1")
        for record in records[start : start + per_second]:
            batch.add(record, 200)
        batches.append(batch)
    return batches


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase_cost(args, old_recorder) -> None:
    records = default_turns(args.cost_turns)
    batches = seconds(records)
    figures: dict[str, list[float]] = {"tables": [], "csv": []}
    for _ in range(args.repeats):  # interleaved: the machine is shared
        for label in figures:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                started = cpu()
                if label == "tables":
                    writer = ArrowWriter(folder, "bench", events=RUN_EVENTS)
                else:
                    writer = old_recorder.CsvWriter(folder, "bench")
                for batch in batches:
                    writer.write(batch)
                writer.close()
                figures[label].append((cpu() - started) / len(records) * 1e6)
    for label, values in figures.items():
        us = float(np.median(values))
        print(
            f"cost: {label:<6} {us:6.2f} us CPU per turn (median of {args.repeats}: "
            + ", ".join(f"{v:.2f}" for v in values)
            + f"); {us * 10_000 / 1e6:.1%} of a core at 10,000 turns/s"
        )
    ratio = float(np.median(figures["tables"])) / float(np.median(figures["csv"]))
    print(f"cost: tables / csv = {ratio:.2f}")


def phase_master(args, old_recorder, old_wire) -> None:
    records = default_turns(10_000)
    batch = seconds(records)[0]
    new_message = msgpack.packb({**encode(batch, turns_spec(RUN_EVENTS)), "final": False})
    old_message = msgpack.packb({**old_wire.Encoder().encode(batch), "final": False})
    print(
        f"master: message per 1,000 turns: tables {len(new_message) / 10:,.0f} B, "
        f"rows {len(old_message) / 10:,.0f} B"
    )
    figures: dict[str, list[float]] = {"tables": [], "rows": []}
    for _ in range(args.repeats):
        for label in figures:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                if label == "tables":
                    writer = ArrowWriter(folder, "bench", events=RUN_EVENTS)
                    started = cpu()
                    for _ in range(5):
                        writer.write_batches(decode(msgpack.unpackb(new_message)))
                else:
                    writer = old_recorder.CsvWriter(folder, "bench")
                    decoder = old_wire.Decoder()
                    started = cpu()
                    for _ in range(5):
                        writer.write(decoder.decode("w1", msgpack.unpackb(old_message)))
                took = cpu() - started
                writer.close()
                figures[label].append(took / 5 / 10 * 1e3)  # ms per 1,000 turns
    for label, values in figures.items():
        print(
            f"master: {label:<6} {np.median(values):6.3f} ms CPU per 1,000 turns (median of "
            f"{args.repeats}: " + ", ".join(f"{v:.3f}" for v in values) + ")"
        )


def phase_bytes(args) -> None:
    from generator import FAST_TURN, SECRET, fresh_target, locust

    from wsload.run.export import export_csv
    from wsload.run.tables import read_table

    with fresh_target(*FAST_TURN) as t, tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "run"
        cmd = locust("ws_auth.py", t.url, 100, args.bytes_seconds, results,
                     "--think-time", "0", "--heartbeat-interval", "0")  # fmt: skip
        env = {**os.environ, "JWT_SECRET_KEY": SECRET}
        subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=args.bytes_seconds + 90)
        turns = read_table(results, "turns", ["turn"]).num_rows
        tables = sum(p.stat().st_size for p in results.glob("*.parquet"))
        turn_table = sum(p.stat().st_size for p in results.glob("turns.*.parquet"))
        csv = Path(tmp) / "samples.csv"
        rows = export_csv(results, csv)
        print(
            f"bytes: real full-rate run, {turns:,} turns in {args.bytes_seconds} s: all tables "
            f"{tables / turns:.1f} B/turn (turns table {turn_table / turns:.1f}); the same as "
            f"CSV {csv.stat().st_size / turns:,.0f} B/turn ({rows / turns:.1f} rows/turn)"
        )


# Runs Locust in this process after argv[1:] (cwd: the tree to run); writes to the file in
# WSLOAD_BENCH_OUT the turns and CPU seconds over the window (WSLOAD_BENCH_WINDOW, after
# WSLOAD_BENCH_WARM seconds); with WSLOAD_BENCH_NO_TABLES the tables writer writes nothing.
FULL_PATH = """
import gc, json, os, sys, time
sys.path.insert(0, os.getcwd())
import gevent
from locust import events
collecting = [0.0, 0.0]  # CPU seconds in the garbage collector, when the last one began

def collector(phase, _):
    if phase == "start":
        collecting[1] = time.process_time()
    else:
        collecting[0] += time.process_time() - collecting[1]

gc.callbacks.append(collector)
if os.environ.get("WSLOAD_BENCH_NO_TABLES"):
    from wsload.run import writer
    writer.ArrowWriter.write = lambda self, batch: None
counted = None
if os.environ.get("WSLOAD_BENCH_NO_RECORDING"):  # turns counted, nothing else
    from wsload.locust.recording import Recording
    from wsload.run.records import TurnRecord
    counted = [0]

    def count(self, record):
        if type(record) is TurnRecord:
            counted[0] += 1

    Recording.record = count

alternate = float(os.environ.get("WSLOAD_BENCH_ALTERNATE") or 0)
switch = [True]
if alternate:  # the recording on and off in turns, every ``alternate`` seconds
    from wsload.locust.recording import Recording
    from wsload.run.records import TurnRecord
    counted = [0]
    recorded = Recording.record

    def count_or_record(self, record):
        if type(record) is TurnRecord:
            counted[0] += 1
        if switch[0]:
            recorded(self, record)

    def count(self, record):
        if type(record) is TurnRecord:
            counted[0] += 1
        recorded(self, record)

    if os.environ.get("WSLOAD_BENCH_ALTERNATE_TABLES"):  # only the results sink switched
        from wsload.locust.recording import Sink
        added = Sink.add

        def add(self, record):
            if switch[0]:
                added(self, record)

        Sink.add = add
        Recording.record = count
    else:
        Recording.record = count_or_record


# Phases of ``alternate`` seconds, the recording on in every other one. An "on" phase ends
# with the recording's pending work done (stats logged, tables written), so each phase's CPU
# is its own.
def phases(environment):
    from wsload.locust.runtime import recording_for

    recording = recording_for(environment)
    out = []
    ends = time.monotonic() + float(os.environ["WSLOAD_BENCH_WINDOW"])
    while time.monotonic() < ends:
        switch[0] = not switch[0]
        turns, cpu, collected = counted[0], time.process_time(), collecting[0]
        gevent.sleep(alternate)
        if switch[0]:
            recording.flush()
            if recording.sink is not None:
                recording.sink.flush()
        out.append({"on": switch[0], "turns": counted[0] - turns,
                    "cpu": time.process_time() - cpu, "gc": collecting[0] - collected})
    return out

@events.init.add_listener
def measure(environment, **_):
    def window():
        if alternate:
            gevent.sleep(float(os.environ["WSLOAD_BENCH_WARM"]))
            with open(os.environ["WSLOAD_BENCH_OUT"], "w") as out:
                json.dump({"phases": phases(environment)}, out)
            return
        gevent.sleep(float(os.environ["WSLOAD_BENCH_WARM"]))
        entry = environment.stats.get("turn:e2e", "WS")
        done = (lambda: counted[0]) if counted else (lambda: entry.num_requests)
        turns, cpu, wall = done(), time.process_time(), time.monotonic()
        collected = collecting[0]
        gevent.sleep(float(os.environ["WSLOAD_BENCH_WINDOW"]))
        figures = {"turns": done() - turns, "cpu": time.process_time() - cpu,
                   "seconds": time.monotonic() - wall, "gc": collecting[0] - collected}
        with open(os.environ["WSLOAD_BENCH_OUT"], "w") as out:
            json.dump(figures, out)
    gevent.spawn(window)

sys.argv = ["locust", *sys.argv[1:]]
from locust.main import main
main()
"""


# Records argv[1] turns through a standalone process's recorder (cwd: the tree to run) and
# prints the CPU microseconds per turn of each part as JSON.
RECORDING = """
import json, os, sys, tempfile, time
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
from pathlib import Path
from locust import User
from locust.env import Environment
from wsload.locust.recording import LocalSink, Recording
from wsload.run.writer import ArrowWriter
from results import RUN_EVENTS, default_turns

class Chat(User):
    pass

turns = int(sys.argv[1])
environment = Environment(user_classes=[Chat])
environment.create_local_runner()
recording = Recording(environment)
try:  # the collector as a load's start leaves it (trees before this had none)
    from wsload.heap import tune_collector
    tune_collector()
except ImportError:
    pass
parts = dict.fromkeys(("record", "stats", "tables", "compaction"), 0.0)
clock = time.process_time
with tempfile.TemporaryDirectory() as tmp:
    writer = ArrowWriter(Path(tmp), "bench", events=RUN_EVENTS)
    sink = recording.sink = LocalSink("", environment, writer, [])
    # the 50 ms steps (trees before them log and write the records whole)
    take_apart = getattr(recording.stats, "take_apart", None)
    columns = getattr(sink, "_columns", None)
    for second in range(0, turns, 10_000):  # a second's turns at a time, as users make them
        records = default_turns(10_000, seed=second)
        for start in range(0, len(records), 500):  # 50 ms of turns
            began = clock()
            for record in records[start : start + 500]:
                recording.record(record)
            took = clock()
            if (start + 500) % 2_500 == 0:
                recording.stats.flush()
            elif take_apart:
                take_apart()
            logged = clock()
            if start + 500 == len(records):
                sink.flush()
            elif columns:
                columns()
            parts["record"] += took - began
            parts["stats"] += logged - took
            parts["tables"] += clock() - logged
        del records
    began = clock()
    recording.sink = None
    sink.close()
    writer.close()
    parts["compaction"] += clock() - began
print(json.dumps({k: v / turns * 1e6 for k, v in parts.items()}))
"""


def recording_run(args, tree: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RECORDING, str(args.cost_turns)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def tree_at(rev: str):
    """This repository's tree at ``rev`` (git archive), in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="wsload-rev-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def phase_recording(args) -> None:
    with tree_at(args.full_baseline_rev) as base:
        trees = {"now": REPO, "baseline": base}
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
        for _ in range(args.repeats):  # interleaved: the machine is shared
            for label, tree in trees.items():
                runs[label].append(recording_run(args, tree))
    med = statistics.median
    for label, rows in runs.items():
        totals = [sum(row.values()) for row in rows]
        parts = ", ".join(f"{part} {med(row[part] for row in rows):.2f}" for part in rows[0])
        print(
            f"recording: {label:<8} {med(totals):5.2f} us CPU per turn (median of "
            f"{args.repeats}: {', '.join(f'{t:.2f}' for t in totals)}; {parts}); "
            f"{med(totals) * 10_000 / 1e6:.1%} of a core at 10,000 turns/s"
        )
    ratios = [
        sum(n.values()) / sum(b.values())
        for n, b in zip(runs["now"], runs["baseline"], strict=True)
    ]
    print(f"recording: now / baseline = {med(ratios):.2f} (median of per-repeat ratios)")


def full_run(args, variant: str, tree: Path) -> dict:
    """One full-path run of ``variant`` from ``tree``: turns and CPU over the window."""
    from generator import FAST_TURN, SECRET, fresh_target, locust, pin

    with fresh_target(*FAST_TURN) as t, tempfile.TemporaryDirectory() as tmp:
        seconds = args.full_warm + args.full_window + 2
        cmd = locust("ws_auth.py", t.url, args.full_users, seconds, Path(tmp) / "run",
                     "--think-time", "0", "--heartbeat-interval", "0")  # fmt: skip
        out = Path(tmp) / "figures.json"
        env = {
            **os.environ,
            "JWT_SECRET_KEY": SECRET,
            "WSLOAD_BENCH_OUT": str(out),
            "WSLOAD_BENCH_WARM": str(args.full_warm),
            "WSLOAD_BENCH_WINDOW": str(args.full_window),
        }
        if variant == "no-tables":
            env["WSLOAD_BENCH_NO_TABLES"] = "1"
        if variant == "no-recording":
            env["WSLOAD_BENCH_NO_RECORDING"] = "1"
        if variant.startswith("alternating"):
            env["WSLOAD_BENCH_ALTERNATE"] = str(args.full_phase)
        if variant == "alternating tables":
            env["WSLOAD_BENCH_ALTERNATE_TABLES"] = "1"
        proc = subprocess.Popen(
            [sys.executable, "-c", FULL_PATH, *cmd[3:]],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pin(proc.pid, 0)
        profile = Path(tmp) / "profile.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy and variant.endswith("sampled"):
            time.sleep(args.full_warm + 0.5)  # the window, as the Locust process measures it
            subprocess.run(
                [spy, "record", "--pid", str(proc.pid), "--duration", str(int(args.full_window)),
                 "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(profile)],
                capture_output=True, timeout=args.full_window + 60,
            )  # fmt: skip
        proc.wait(timeout=seconds + 120)
        figures = json.loads(out.read_text())
        if profile.exists():
            figures["recording"] = recording_share(profile.read_text())
            if args.full_profiles:
                kept = Path(args.full_profiles) / f"{variant}-{time.time():.0f}.txt"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(profile, kept)
    if "phases" in figures:
        return figures
    figures["per_core"] = figures["turns"] / max(figures["cpu"], 1e-9)
    return figures


# Where the recording of a turn runs: Recording.record (into the stats batch and the
# sink), the stats batch logged into Locust's stats, the tables built and written.
RECORDING_FILES = tuple(
    f"wsload/{name}.py"
    for name in ("locust/recording", "locust/stats", "run/batch", "run/columns", "run/writer")
)


def recording_share(raw: str) -> float:
    """The share of py-spy's samples (raw format: ``frame;frame;... count`` lines, busy
    threads only) with a frame of the recording in their stack."""
    total = recording = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        if any(part in stack for part in RECORDING_FILES):
            recording += int(count)
    return recording / total if total else float("nan")


def phase_full(args) -> None:
    with tree_at(args.full_baseline_rev) as base:
        variants = {
            "tables": REPO,
            "no-tables": REPO,
            "no-recording": REPO,
            "baseline": base,
            "alternating": REPO,
            "alternating tables": REPO,
        }
        if args.full_sampled:
            variants |= {"tables sampled": REPO, "baseline sampled": base}
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.repeats):  # interleaved: the machine is shared
            for variant, tree in variants.items():
                runs[variant].append(full_run(args, variant, tree))
    alternating = {v: runs.pop(v) for v in ("alternating", "alternating tables")}
    med = statistics.median
    for variant, rows in runs.items():
        rates = [r["per_core"] for r in rows]
        shares = med(r["cpu"] / r["seconds"] for r in rows)
        rate = med(r["turns"] / r["seconds"] for r in rows)
        collected = med(r["gc"] / r["cpu"] for r in rows)
        print(
            f"full: {variant:<12} {med(rates):7,.0f} turns/s per generator core (median of "
            f"{args.repeats}: {', '.join(f'{r:,.0f}' for r in rates)}; generator CPU "
            f"{shares:.0%}, {rate:,.0f} turns/s; garbage collector {collected:.1%} of it)"
        )
    for variant in ("tables sampled", "baseline sampled"):
        shares = [r["recording"] for r in runs.get(variant, ()) if "recording" in r]
        if shares:
            share = med(shares)
            us = med(r["recording"] * r["cpu"] / r["turns"] * 1e6 for r in runs[variant])
            print(
                f"full: {variant:<16} recording {share:.1%} of the generator's CPU, {us:.1f} us "
                f"per turn (py-spy samples in Recording.record, the stats batch and the "
                f"tables; median of {len(shares)}: {', '.join(f'{s:.1%}' for s in shares)})"
            )
    tables = [r["per_core"] for r in runs["tables"]]
    ratios = [t / b["per_core"] for t, b in zip(tables, runs["baseline"], strict=True)]
    no_tables = [t / n["per_core"] for t, n in zip(tables, runs["no-tables"], strict=True)]
    bare = [t / n["per_core"] for t, n in zip(tables, runs["no-recording"], strict=True)]
    base = [b["per_core"] / n["per_core"] for b, n in
            zip(runs["baseline"], runs["no-recording"], strict=True)]  # fmt: skip
    print(
        f"full: tables / baseline {med(ratios):.2f}, tables / no-tables {med(no_tables):.2f}, "
        f"tables / no-recording {med(bare):.2f} (medians of per-repeat ratios of turns/s per "
        "core)"
    )
    print(
        f"full: recording {1 - med(bare):.1%} of the generator's CPU at saturation (1 - tables "
        f"/ no-recording, per repeat: {', '.join(f'{1 - b:.1%}' for b in bare)}); the "
        f"baseline's {1 - med(base):.1%} (1 - baseline / no-recording)"
    )
    for variant, rows in alternating.items():
        print_alternating(args, variant, rows)


def print_alternating(args, variant: str, runs: list[dict]) -> None:
    """The recording's share from runs that switch it on and off every ``--full-phase``
    seconds: one share per pair of neighbouring phases (``1 - on / off`` of their turns
    per CPU second), so a machine that slows down for a while slows both sides of a pair."""
    shares, collector = [], {True: [], False: []}
    for run in runs:
        phases = run["phases"][1:]  # the first follows the warm-up's switch
        for a, b in itertools.pairwise(phases):
            if a["on"] == b["on"] or not (a["cpu"] and b["cpu"]):
                continue
            on, off = (a, b) if a["on"] else (b, a)
            shares.append(1 - (on["turns"] / on["cpu"]) / (off["turns"] / off["cpu"]))
        for phase in phases:
            collector[phase["on"]].append(phase["gc"] / max(phase["cpu"], 1e-9))
    if not shares:
        return
    quartiles = statistics.quantiles(shares, n=4)
    what = "the results tables" if variant.endswith("tables") else "the recording"
    print(
        f"full: {variant:<18} {what} {statistics.median(shares):.1%} of the generator's CPU "
        f"at saturation, on and off every {args.full_phase:g} s in one process (median of "
        f"{len(shares)} neighbouring phase pairs over {len(runs)} runs, quartiles "
        f"{quartiles[0]:.1%} to {quartiles[2]:.1%}; garbage collector "
        f"{statistics.median(collector[True]):.1%} on, {statistics.median(collector[False]):.1%}"
        " off)"
    )


SUBJECTS = pa.array([f"wsload-w1-{u:06d}" for u in range(200)], pa.string())
SESSIONS = pa.array([f"w1-{u}-1" for u in range(200)], pa.string())


def big_batch(
    rng: np.random.Generator, start: int, rows: int, per_second: int, spec=TURNS
) -> pa.RecordBatch:
    """``rows`` turns of the default protocol from turn ``start`` on, as the writer takes
    them: random lognormal timings, 200 users, a failure in a hundred; in ``spec``'s
    layout (event columns, or every offset in the ``first_ms`` map)."""
    n = rows
    index = np.arange(start, start + n)
    t = np.sort(rng.lognormal(3.5, 0.5, size=(n, len(EVENTS))).astype(np.float32), axis=1)
    gaps = np.empty((n, len(EVENTS)), np.float32)
    gaps[:, :-1] = np.diff(t, axis=1)
    gaps[:, -1] = rng.uniform(0.01, 2, n)
    offsets = pa.array(np.arange(0, n * len(EVENTS) + 1, len(EVENTS), dtype=np.int32))
    keys = pa.array(np.tile(np.array(EVENTS, dtype=object), n), pa.string())
    first = pa.MapArray.from_arrays(offsets, keys, pa.array(t.ravel(), pa.float32()))
    gap_list = pa.ListArray.from_arrays(offsets, pa.array(gaps.ravel(), pa.float32()))
    span_values = pa.StructArray.from_arrays(
        [pa.array(np.full(n, "tool", dtype=object), pa.string()), pa.array(t[:, 3] - t[:, 2])],
        fields=list(spec.schema.field("spans_ms").type.value_type),
    )
    spans = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), span_values)
    failed = rng.random(n) < 0.01
    user = index % 200
    columns = {
        "node": pa.array(np.full(n, "w1", dtype=object), pa.string()),
        "node_users": pa.array(np.full(n, 200, np.int32)),
        "started_at": pa.array(T0 + index / per_second),
        "user": pa.array(user),
        "subject": SUBJECTS.take(pa.array(user)),
        "session": SESSIONS.take(pa.array(user)),
        "turn": pa.array(index),
        "inflight": pa.array(rng.integers(1, 50, n)),
        "sent_bytes": pa.array(np.full(n, 120)),
        "ok": pa.array(~failed),
        "ttfe_ms": pa.array(t[:, 0]),
        "first_ms": first if "first_ms." + EVENTS[0] not in spec.schema.names else None,
        **{f"first_ms.{e}": pa.array(t[:, i]) for i, e in enumerate(EVENTS)},
        "gaps_ms": gap_list,
        "spans_ms": spans,
        "events": pa.array(np.full(n, 6)),
        "terminal": pa.array(np.full(n, "agent_completed", dtype=object), pa.string()),
        "e2e_ms": pa.array(t[:, -1]),
        "failure": pa.array(np.where(failed, "turn_timeout", None), pa.string()),
        "detail": pa.array(np.where(failed, "no terminal event in 30 s", ""), pa.string()),
    }
    arrays = [
        columns[f.name] if columns.get(f.name) is not None else pa.nulls(n, f.type)
        for f in spec.schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema)


def timed(command: list[str]) -> str:
    """Run ``command``; its wall time and peak memory (of it and its children)."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], cwd=REPO, capture_output=True, text=True
    )
    took = time.monotonic() - started
    peak_kb = int(done.stderr.strip().splitlines()[-1]) if done.stderr.strip() else 0
    tail = (done.stdout or done.stderr).strip().splitlines()
    return f"{took:7.1f} s, peak {peak_kb / 1e6:5.2f} GB, exit {done.returncode}" + (
        f" ({tail[-1][:120]})" if done.returncode not in (0, 1) and tail else ""
    )


def phase_big(args) -> None:
    from wsload.run.recorder import write_run_json

    folder = Path(args.folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    per_second = 10_000
    total = args.turns
    write_run_json(folder, {"run_id": "big", "started": T0, "stopped": None})
    rng = np.random.default_rng(5)
    events = RUN_EVENTS if args.layout == "columns" else ()
    writer = ArrowWriter(folder, "big", events=events)
    spec = writer.specs["turns"]
    started, clock = cpu(), time.monotonic()
    chunk = 250_000
    for start in range(0, total, chunk):
        writer.write_batches({"turns": big_batch(rng, start, min(chunk, total - start),
                                                 per_second, spec)})  # fmt: skip
    writer.close()
    write_run_json(folder, {"run_id": "big", "started": T0, "stopped": T0 + total / per_second + 1})
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(
        f"big: {total:,} turns ({args.layout} layout) written in {time.monotonic() - clock:.0f} s "
        f"({cpu() - started:.0f} s CPU), {size / 1e9:.2f} GB, {size / total:.1f} B/turn"
    )
    wsload = str(Path(sys.executable).with_name("wsload"))
    gate = [wsload, "gate", str(folder), "--threshold", "turn:e2e p99 < 1s", "--threshold",
            "turn:gap p99 < 100ms", "--goodput-limit", "turn:ttfe=60ms"]  # fmt: skip
    if args.skip_tools:
        return
    print(f"big: wsload summary  {timed([wsload, 'summary', str(folder)])}")
    print(f"big: wsload gate     {timed(gate)}")
    report = [wsload, "report", str(folder), "--output", str(folder / "report")]
    print(f"big: wsload report   {timed(report)}")
    if not args.keep:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="bytes,cost,master")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cost-turns", type=int, default=50_000)
    parser.add_argument("--bytes-seconds", type=int, default=12)
    parser.add_argument("--full-users", type=int, default=200, help="full: chat sessions")
    parser.add_argument("--full-warm", type=float, default=4.0, help="full: warm-up seconds")
    parser.add_argument("--full-window", type=float, default=10.0, help="full: measured seconds")
    parser.add_argument("--full-profiles", help="full: keep py-spy's raw profiles in this folder")
    parser.add_argument(
        "--full-sampled", action="store_true", help="full: also runs sampled by py-spy"
    )
    parser.add_argument(
        "--full-phase",
        type=float,
        default=1.0,
        help="full: seconds of each phase of the alternating run (recording on, then off)",
    )
    parser.add_argument(
        "--full-baseline-rev",
        default="f4e6719",
        help="recording, full: the git revision whose recording is the baseline",
    )
    parser.add_argument("--turns", type=int, default=100_000_000)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "wsload-big"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--skip-tools", action="store_true", help="only write the big run")
    parser.add_argument(
        "--layout",
        choices=("columns", "map"),
        default="columns",
        help="big: a column per event of the default profile (a run's), or the first_ms "
        "map alone (older folders)",
    )
    parser.add_argument(
        "--baseline-rev",
        default="c55ca9e^",
        help="cost, master: the git revision whose CSV writer and row wire are the baseline",
    )
    args = parser.parse_args()
    phases = set(args.only.split(","))
    old_recorder = old_wire = None
    if phases & {"cost", "master"}:
        old_recorder, old_wire = baseline_modules(args.baseline_rev)
    if "bytes" in phases:
        phase_bytes(args)
    if "cost" in phases:
        phase_cost(args, old_recorder)
    if "recording" in phases:
        phase_recording(args)
    if "master" in phases:
        phase_master(args, old_recorder, old_wire)
    if "full" in phases:
        phase_full(args)
    if "big" in phases:
        phase_big(args)


if __name__ == "__main__":
    main()
