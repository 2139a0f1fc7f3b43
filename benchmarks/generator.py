"""How much load one generator core produces, and how true its numbers stay.

    .venv/bin/python benchmarks/generator.py            # everything, about 3 minutes
    .venv/bin/python benchmarks/generator.py --only turns,sessions --window 8

Every phase runs the reference target pinned to CPU 1 (``--workers 1``) and the generator
under test pinned to CPU 0, so each side has one core, and reports figures per generator
core. Phases, each bounded by ``--window`` plus a short warm-up:

* ``turns``: turns/s of a raw websocket-client + gevent loop (the baseline), of the same
  loop tuned (``skip_utf8_validation``), of wsload's client in that loop, then of the full
  path: ``locust -f locustfiles/ws_auth.py`` with ChatUser (turn tracking, Locust
  stats, raw recorder). A turn is one message and 5 events back (all delays 0).
* ``sessions``: connect + auth ack + close per second, fresh token each time
  (``locustfiles/handshakes.py``), against the raw websocket-client handshake loop.
* ``memory``: RSS per idle authenticated session at 1,000, 5,000 and 10,000 sessions held
  by one process (wsload's client under gevent).
* ``truth``: median TTFE error against the target's known time to first event when the
  generator runs at about 20%, 60% and 95% of its core.

Ratios are computed within the run (same machine, same minute): the machines are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wsload.run.summary import load_samples  # noqa: E402
from wsload.target import start_target  # noqa: E402

SECRET = "generator-benchmark-secret-0123456789ab"
GENERATOR_CPU, TARGET_CPU = 0, 1
FAST_TURN = ["--ttfe", "0", "--gap", "0", "--tool-duration", "0", "--thinking-steps", "1"]
PY = sys.executable


def pin(pid: int, cpu: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def target(*extra: str):
    t = start_target(["--workers", "1", *extra], secret=SECRET)
    pin(t.pid, TARGET_CPU)
    return t


# Raw websocket-client loops (the baseline stacks of shared BASELINES.md) ----------------
# A generator loop script: argv is URL, N (greenlets), warm-up, window, secret. Each body
# defines ``loop(i)`` that counts its operations in ``count[0]``; the frame spawns N of
# them, waits the warm-up and prints the count, seconds and CPU share of the window.
_PROLOGUE = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import gevent, json, sys, time, websocket
    from wsload.protocol.carrier import place
    from wsload.net.client import ClientOptions, connect
    from wsload.config.profile import load_profile
    from wsload.config.tokens import TokenMinter
    url, n = sys.argv[1], int(sys.argv[2])
    warm, window = float(sys.argv[3]), float(sys.argv[4])
    profile = load_profile()
    minter = TokenMinter(profile.token, secret=sys.argv[5])
    msg = json.dumps({"type": "user_message", "payload": {"content": "hi", "thread_id": "t"}})
    count = [0]
    """
)
_EPILOGUE = textwrap.dedent(
    """
    for i in range(n):
        gevent.spawn(loop, i)
    gevent.sleep(warm)
    start, c0, cpu0 = time.perf_counter(), count[0], time.process_time()
    gevent.sleep(window)
    took = time.perf_counter() - start
    cpu = (time.process_time() - cpu0) / took
    print(json.dumps({"count": count[0] - c0, "seconds": took, "cpu": cpu}))
    """
)


def loop_script(body: str) -> str:
    return _PROLOGUE + textwrap.dedent(body) + _EPILOGUE


_RAW_TURNS = """
    def loop(i):  # websocket-client, as a plain gevent program uses it
        token = minter.mint(f"raw-{i}")
        ws = websocket.create_connection(url, subprotocols=["jwt-auth", "jwt-auth." + token],
                                         OPTIONS)
        ws.recv()  # the ack
        while True:
            ws.send(msg)
            while json.loads(ws.recv())["type"] != "agent_completed":
                pass
            count[0] += 1
"""
RAW_TURNS = loop_script(_RAW_TURNS.replace("OPTIONS", ""))
# the same without websocket-client's pure-Python UTF-8 check
RAW_TURNS_TUNED = loop_script(_RAW_TURNS.replace("OPTIONS", "skip_utf8_validation=True"))

WSLOAD_TURNS = loop_script(
    """
    from wsload.protocol.events import Stray

    def loop(i):  # wsload's client (frames, JSON, sorting), no turn tracked or recorded
        sub = f"bare-{i}"
        s = connect(url, profile, place(profile.auth, url, minter.mint(sub)),
                    expected_subject=sub, options=ClientOptions())
        while True:
            s.send_text(msg)
            done = False
            while not done:
                for event in s.receive(None):
                    done = done or (type(event) is Stray and event.name == "agent_completed")
            count[0] += 1
    """
)

RAW_HANDSHAKES = loop_script(
    """
    def loop(i):  # connect, ack, close with websocket-client, a fresh token each time
        k = 0
        while True:
            k += 1
            token = minter.mint(f"raw-{i}-{k}")
            ws = websocket.create_connection(url, subprotocols=["jwt-auth", "jwt-auth." + token],
                                             skip_utf8_validation=True)
            ws.recv()
            ws.close()
            count[0] += 1
    """
)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the target may fork workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def measure_process(
    args: list[str],
    warm: float,
    window: float,
    timeout: float,
    target_pid: int | None = None,
    pin_to: int | None = GENERATOR_CPU,
) -> tuple[float, float | None]:
    """Run a locust command (pinned to ``pin_to``); CPU shares over the window.

    The first is the generator's, with its workers when it has them; the second the
    target's (when ``target_pid`` is given): near 100% means the figure is the target's
    limit, a lower bound for the generator.
    """
    env = {**os.environ, "JWT_SECRET_KEY": SECRET}
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if pin_to is not None:
        pin(proc.pid, pin_to)
    time.sleep(warm)
    c0, t0 = tree_cpu_seconds(proc.pid), time.monotonic()
    tc0 = tree_cpu_seconds(target_pid) if target_pid else 0.0
    time.sleep(window)
    took = time.monotonic() - t0
    cpu = (tree_cpu_seconds(proc.pid) - c0) / took
    target_cpu = (tree_cpu_seconds(target_pid) - tc0) / took if target_pid else None
    proc.wait(timeout=timeout)
    return cpu, target_cpu


def locust(locustfile: str, host: str, users: int, seconds: float, results: Path, *extra: str):
    return [
        PY, "-m", "locust", "-f", f"locustfiles/{locustfile}", "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--host", host,
        "--probe-users", "0", "--results", str(results), "--loglevel", "ERROR",
        "--only-summary", *extra,
    ]  # fmt: skip


def rate(samples, name: str, start: float, end: float) -> float:
    rows = samples.loc[(samples["name"] == name) & samples["ok"]]
    rows = rows.loc[(rows["ts"] >= start) & (rows["ts"] < end)]
    return len(rows) / (end - start)


def phase_turns(args, table: list[str]) -> float:
    """Interleaved repeats (raw, tuned raw, bare, full, raw, ...), medians: the VM is noisy.

    The raw loop is the issue's baseline (websocket-client as a plain gevent program uses
    it); the tuned one skips websocket-client's pure-Python UTF-8 check, the fastest that
    library goes. Each loop gets a fresh target, so none inherits another's connections.
    """
    loops = {
        "raw websocket-client + gevent loop": RAW_TURNS,
        "raw loop, tuned (`skip_utf8_validation=True`)": RAW_TURNS_TUNED,
        "wsload's client in the same bare loop": WSLOAD_TURNS,
    }
    rates: dict[str, list[float]] = {label: [] for label in [*loops, "full"]}
    cpus: dict[str, list[float]] = {label: [] for label in rates}
    target_cpus: list[float] = []
    for _ in range(args.repeats):
        for label, code in loops.items():
            with fresh_target(*FAST_TURN) as t:
                result, _ = run_raw(code, t.url, args.sessions, args)
            rates[label].append(result["count"] / result["seconds"])
            cpus[label].append(result["cpu"])
        with fresh_target(*FAST_TURN) as t, tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / "run"
            cmd = locust("ws_auth.py", t.url, args.sessions, args.warm + args.window + 1, results,
                         "--think-time", "0", "--heartbeat-interval", "0")  # fmt: skip
            cpu, target_cpu = measure_process(
                cmd, args.warm + 1.5, args.window - 1, timeout=120, target_pid=t.pid
            )
            cpus["full"].append(cpu)
            target_cpus.append(target_cpu or 0.0)
            samples = load_samples(results)
        first = samples["ts"].min()
        end = first + args.warm + args.window - 1
        rates["full"].append(rate(samples, "turn:e2e", first + args.warm, end))
    med = statistics.median
    runs = f"median of {args.repeats}"
    for label in rates:
        name = "full ChatUser path (Locust, tracker, recorder)" if label == "full" else label
        target_note = f"; target CPU {med(target_cpus):.0%}" if label == "full" else ""
        table.append(
            f"| turns/s, {name} | {med(rates[label]):,.0f} | {med(cpus[label]):.0%}; {runs}: "
            f"{', '.join(f'{r:,.0f}' for r in rates[label])}{target_note} |"
        )
    for label in list(loops)[:2]:
        ratios = [f / r for f, r in zip(rates["full"], rates[label], strict=True)]
        table.append(
            f"| ratio full / {label.split(' (')[0]} (median of per-repeat ratios) "
            f"| {med(ratios):.2f} | |"
        )
    return med(rates["full"])


@contextlib.contextmanager
def fresh_target(*extra: str):
    t = target(*extra)
    try:
        yield t
    finally:
        t.stop()


def run_raw(code: str, url: str, n: int, args) -> tuple[dict, float]:
    """Run a raw websocket-client loop pinned to the generator core; its JSON result."""
    proc = subprocess.Popen(
        [PY, "-c", code, url, str(n), str(args.warm), str(args.window), SECRET],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    pin(proc.pid, GENERATOR_CPU)
    out, _ = proc.communicate(timeout=args.warm + args.window + 60)
    result = json.loads(out.strip().splitlines()[-1])
    return result, result["cpu"]


def phase_sessions(args, table: list[str]) -> None:
    t = target()
    try:
        raw, _ = run_raw(RAW_HANDSHAKES, t.url, 50, args)
        raw_rate = raw["count"] / raw["seconds"]
        with tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / "run"
            cmd = locust("handshakes.py", t.url, 50, args.warm + args.window + 1, results)
            cpu, target_cpu = measure_process(
                cmd, args.warm + 1.5, args.window - 1, timeout=120, target_pid=t.pid
            )
            samples = load_samples(results)
        first = samples["ts"].min()
        full_rate = rate(samples, "auth", first + args.warm, first + args.warm + args.window - 1)
    finally:
        t.stop()
    table.append(
        f"| sessions/s, raw websocket-client handshake loop | {raw_rate:,.0f} | {raw['cpu']:.0%} |"
    )
    table.append(
        f"| sessions/s, HandshakeUser (fresh token each) | {full_rate:,.0f} | {cpu:.0%}; "
        f"target CPU {target_cpu or 0:.0%}"
        + (" (saturated: a lower bound for the generator)" if (target_cpu or 0) > 0.9 else "")
        + " |"
    )
    table.append(f"| ratio HandshakeUser / raw | {full_rate / raw_rate:.2f} | |")


MEMORY = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import gc, json, resource, sys, gevent, psutil
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from wsload.protocol.carrier import place
    from wsload.net.client import ClientOptions, connect
    from wsload.config.profile import load_profile
    from wsload.config.tokens import TokenMinter
    url, n = sys.argv[1], int(sys.argv[2])
    profile = load_profile()
    minter = TokenMinter(profile.token, secret=sys.argv[3])
    opts = ClientOptions(connect_timeout_s=30, handshake_timeout_s=30, ack_timeout_s=30)
    sessions = []
    def open_one(i):
        sub = f"idle-{i}"
        sessions.append(connect(url, profile, place(profile.auth, url, minter.mint(sub)),
                                expected_subject=sub, options=opts))
    # warm every code path, then measure
    open_one(-1)
    gc.collect()
    before = psutil.Process().memory_info().rss
    pool = [gevent.spawn(open_one, i) for i in range(n)]
    gevent.joinall(pool, timeout=120)
    gc.collect()
    after = psutil.Process().memory_info().rss
    held = len(sessions) - 1
    print(json.dumps({"sessions": held, "kb_each": (after - before) / 1024 / max(1, held)}))
    """
)


def phase_memory(args, table: list[str]) -> None:
    raise_fd_limit()
    t = target("--max-message-bytes", "8192")
    try:
        for n in args.memory_sizes:
            proc = subprocess.run(
                [PY, "-c", MEMORY, t.url, str(n), SECRET],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
            try:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                table.append(
                    f"| memory at {n:,} idle sessions | failed: {proc.stderr[-200:]!r} | |"
                )
                continue
            table.append(
                f"| KB per idle authenticated session at {result['sessions']:,} held "
                f"| {result['kb_each']:.1f} | |"
            )
    finally:
        t.stop()


def phase_truth(args, table: list[str], full_rate: float | None) -> None:
    """Median TTFE error at about 20/60/95% generator CPU (think time sets the rate).

    A turn at a moderate rate costs more CPU than one at saturation (its events arrive
    5 ms apart, one read and wake-up each, where a saturated generator reads several at
    once), so the think time for each share is found by measuring: a run, the CPU per turn
    it showed, a corrected think time, up to three runs per share (within 5 points).
    """
    ttfe_ms, turn_s, users = 50.0, 0.075, 600  # 600: think time, not latency, sets the rate
    t = target("--ttfe", str(ttfe_ms / 1000), "--gap", "0.005", "--thinking-steps", "1")
    cost = 3.0 / (full_rate or 3000.0)  # CPU seconds per turn, corrected by each run
    try:
        for share in (0.2, 0.6, 0.95):
            for _attempt in range(3):
                think = max(0.0, users * cost / share - turn_s)
                run = truth_run(t.url, args, users, think, ttfe_ms)
                if abs(run["cpu"] - share) <= 0.05 or (think == 0 and run["cpu"] < share):
                    break
                # CPU per turn falls as the rate rises (more frames per read): aim past
                # the linear estimate, by the square of the shortfall
                cost = run["cpu"] / max(run["rate"], 1.0) * (run["cpu"] / share)
            table.append(
                f"| median TTFE error at {run['cpu']:.0%} generator CPU (aimed {share:.0%}) "
                f"| {run['error']:+.2f} ms | loop lag p50 {run['lag']:.1f} ms, "
                f"{run['turns']:,} turns at {run['rate']:,.0f}/s |"
            )
    finally:
        t.stop()


def truth_run(url: str, args, users: int, think: float, ttfe_ms: float) -> dict[str, float]:
    """One run at a think time: CPU share, turn rate, median TTFE error, loop lag."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "run"
        cmd = locust(
            "ws_auth.py", url, users, args.warm + args.window + 1, results,
            "--think-time", f"exp:{think:.4f}", "--heartbeat-interval", "0",
        )  # fmt: skip
        cpu, _ = measure_process(cmd, args.warm + 1.5, args.window - 1, timeout=120)
        samples = load_samples(results)
    first = samples["ts"].min()
    window = samples.loc[samples["ts"] >= first + args.warm]
    ttfe = window.loc[(window["name"] == "turn:ttfe") & window["ok"], "ms"]
    lag = window.loc[window["name"] == "health:lag", "ms"]
    return {
        "cpu": cpu,
        "rate": rate(samples, "turn:e2e", first + args.warm, first + args.warm + args.window - 1),
        "error": statistics.median(ttfe) - ttfe_ms if len(ttfe) else float("nan"),
        "lag": float(lag.median()),
        "turns": len(ttfe),
    }


def phase_scale(args, table: list[str]) -> None:
    """Turns/s with one generator process and with ``--processes 2`` (master + 2 workers).

    Nothing is pinned: on a 2-core machine the generators share the cores with the target,
    so turns/s alone cannot double. What carries over to a machine with cores to spare is
    turns per generator CPU-second (master and workers together): how much of each added
    core becomes load.
    """
    for label, extra in (("1 process", []), ("--processes 2", ["--processes", "2"])):
        rates, cpus = [], []
        for _ in range(args.repeats):
            t = start_target(["--workers", "1", *FAST_TURN], secret=SECRET)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    results = Path(tmp) / "run"
                    cmd = locust("ws_auth.py", t.url, args.sessions, args.warm + args.window + 1,
                                 results, "--think-time", "0", "--heartbeat-interval", "0",
                                 *extra)  # fmt: skip
                    cpu, _ = measure_process(
                        cmd, args.warm + 1.5, args.window - 1, timeout=120, pin_to=None
                    )
                    samples = load_samples(results)
            finally:
                t.stop()
            first = samples["ts"].min()
            end = first + args.warm + args.window - 1
            rates.append(rate(samples, "turn:e2e", first + args.warm, end))
            cpus.append(cpu)
        med = statistics.median
        per_cpu = [r / max(c, 0.01) for r, c in zip(rates, cpus, strict=True)]
        table.append(
            f"| turns/s, {label}, unpinned (2 cores shared with the target) "
            f"| {med(rates):,.0f} | median of {args.repeats}; generator CPU {med(cpus):.0%}, "
            f"{med(per_cpu):,.0f} turns per generator CPU-second |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="turns,sessions,memory,truth,scale")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warm", type=float, default=3.0, help="warm-up seconds per phase")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent chat sessions")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of turns")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1000, 5000, 10000])  # fmt: skip
    args = parser.parse_args()
    phases = args.only.split(",")
    table = ["| figure (one generator core) | value | generator CPU / note |", "|---|---|---|"]
    full_rate = None
    if "turns" in phases:
        full_rate = phase_turns(args, table)
    if "sessions" in phases:
        phase_sessions(args, table)
    if "memory" in phases:
        phase_memory(args, table)
    if "truth" in phases:
        phase_truth(args, table, full_rate)
    if "scale" in phases:
        phase_scale(args, table)
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
