"""Connection capacity end to end: ramp to N authenticated sessions, hold them, measure.

    .venv/bin/python benchmarks/connections.py --sessions 100000 --hold 60
    .venv/bin/python benchmarks/connections.py --sessions 20000 --hold 20 --rate 2000

Starts the reference target (``--target-workers`` processes on one port, each within its
open-file limit), then ``locust -f locustfiles/connections.py --processes P`` spreading its
connections over ``--source-ips`` (loopback addresses 127.0.0.2 and up, each with its own
ephemeral ports towards the target), ramping at ``--rate`` sessions per second. Once every
session is open (or the ramp stalls) it holds for ``--hold`` seconds, reading the memory
(PSS, so pages forked processes share count once) of every generator process (master
included) and every target process from /proc, then stops Locust and reads the run's
samples. Prints what it found and ends with one line:

    held=<sessions> failures=<n> kb_per_session=<x> ramp_per_s=<y>

``held`` is the fewest sessions the target had open during the hold; ``failures`` every
failed sample of the run (connects, auths, pings, disconnects); ``kb_per_session`` the
generator's memory (all its processes) at the hold divided by the sessions held;
``ramp_per_s`` the sessions opened per second from the first connect to the last ack of the
ramp. The main run offers no compression (``--compression off``, the target's
``--no-compression``) where this wsload can negotiate permessage-deflate; ``--deflate``
then repeats a smaller hold without and with it (``--compression browser``) and prints the
extra memory per session on both sides, or says it is unmeasured where it cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from wsload.analysis import load_run  # noqa: E402
from wsload.analysis.connections import connection_capacity, memory_timeline  # noqa: E402
from wsload.config.options import OPTION_SPECS  # noqa: E402
from wsload.net.budgets import (  # noqa: E402
    FILES_RESERVE,
    FILES_SHARE,
    PORTS_COMFORT,
    port_range,
    raise_file_limit,
)
from wsload.run.memory import memory_kb  # noqa: E402
from wsload.target import start_target  # noqa: E402

SECRET = "connections-benchmark-secret-0123456789abcdef"
PER_PROCESS = 15000  # sessions per target process (more processes: a bigger CPU share)
PER_WORKER = 17000  # sessions per generator worker (fewer processes: less memory)
STALL_S = 60.0  # a ramp that opened nothing more for this long is over


def tree_kb(pid: int) -> tuple[float, int]:
    """PSS of ``pid`` and its descendants, KiB, and how many processes that is."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0
    total = 0.0
    for proc in procs:
        total += memory_kb(proc.pid) or 0.0
    return total, len(procs)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) ``pid`` and its descendants have used so far."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def own_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of ``pid`` alone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def free_port() -> int:
    """A port free on every address: Locust's master binds ``*``, and a port the kernel
    picks for 127.0.0.1 alone may still be held on 127.0.0.2 by a connection of the last
    run (TIME_WAIT)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def target_active(http_url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{http_url}/stats?all=1", timeout=5) as answer:
            return int(json.loads(answer.read())["counters"]["active"])
    except (OSError, ValueError, KeyError):
        return None


def compression_modes() -> dict[str, tuple[list[str], list[str]]] | None:
    """(Locust args, target args) for sessions without and with permessage-deflate, when
    this wsload negotiates it (``--compression``); None when it cannot."""
    from wsload.config.target_knobs import TARGET_SPECS

    if "--compression" not in {spec.flag for spec in OPTION_SPECS}:
        return None
    target_off = ["--no-compression"] if any(
        spec.flag == "--no-compression" for spec in TARGET_SPECS
    ) else []  # fmt: skip
    return {
        "plain": (["--compression", "off"], target_off),
        "deflate": (["--compression", "browser"], []),
    }


def run_once(args: argparse.Namespace, sessions: int, hold: float, extra: list[str],
             label: str, target_extra: list[str] | None = None) -> dict[str, float]:  # fmt: skip
    """One ramp and hold; the figures it measured."""
    processes = args.processes or max(1, math.ceil(sessions / PER_WORKER))
    workers = args.target_workers or max(1, math.ceil(sessions / PER_PROCESS))
    sources = args.source_ips or _auto_sources(sessions, processes)
    target_args = ["--workers", str(workers), "--connections-per-user", "0"]
    if args.target_args:
        target_args += args.target_args.split()
    target_args += target_extra or []
    target = start_target(target_args, secret=SECRET, timeout=60)
    print(f"[{label}] target {target.url}: {workers} processes; generator: {processes} workers "
          f"+ master; --source-ips {sources}; {sessions:,} sessions at {args.rate}/s",
          flush=True)  # fmt: skip
    results = Path(tempfile.mkdtemp(prefix="wsload-connections-")) / "run"
    # a ramp still opening sessions is not cut short on a busy machine: the bound allows
    # 200 sessions a second whatever the rate asked (a stalled ramp ends after STALL_S)
    ramp_bound = max(sessions / max(1.0, args.rate) * 3, sessions / 200) + 60
    env = dict(os.environ, JWT_SECRET_KEY=SECRET)
    per_user = args.sessions_per_user
    users = math.ceil(sessions / per_user)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "connections.py"),
        "--headless", "-u", str(users), "-r", f"{args.rate / per_user:g}",
        "--sessions-per-user", str(per_user),
        "-t", f"{int(ramp_bound + hold + 30)}s", "--processes", str(processes),
        "--host", target.url, "--source-ips", sources, "--results", str(results),
        "--heartbeat-interval", str(args.heartbeat), "--only-summary", "--loglevel", "WARNING",
        "--stop-timeout", "10", *extra,
    ]  # fmt: skip
    port = free_port()  # not Locust's 5557, which another run on the machine may hold
    cmd += ["--master-bind-port", str(port), "--master-port", str(port)]
    if args.trickle:
        cmd += ["--trickle-interval", str(args.trickle)]
    base_gen = base_tgt = 0.0
    log_path = results.parent / "locust.log"
    log = log_path.open("wb")
    # its own session: the master and the workers it forks end together at the end
    locust = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
                              start_new_session=True)  # fmt: skip
    try:
        time.sleep(3.0)
        base_gen, gen_procs = tree_kb(locust.pid)
        base_tgt, _ = tree_kb(target.pid)
        started = time.monotonic()
        cpu_gen0, cpu_tgt0 = tree_cpu_s(locust.pid), tree_cpu_s(target.pid)
        cpu_master0 = own_cpu_s(locust.pid)
        best, best_at = 0, started
        while True:  # the ramp: until all are open, or no progress for STALL_S
            time.sleep(2.0)
            active = target_active(target.http_url)
            if active is not None and active > best:
                best, best_at = active, time.monotonic()
            stalled = time.monotonic() - best_at > STALL_S
            if best >= sessions or stalled or locust.poll() is not None:
                break
            if time.monotonic() - started > ramp_bound:
                break
        ramp_wall = time.monotonic() - started
        cpu_gen = tree_cpu_s(locust.pid) - cpu_gen0
        cpu_tgt = tree_cpu_s(target.pid) - cpu_tgt0
        cpu_master = own_cpu_s(locust.pid) - cpu_master0
        print(f"[{label}] ramp over after {ramp_wall:.0f} s: {best:,} open at the target; CPU "
              f"used over the ramp: generator {cpu_gen / ramp_wall:.2f} cores, target "
              f"{cpu_tgt / ramp_wall:.2f} cores; machine load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)  # fmt: skip
        opened = max(1, best)
        print(f"[{label}] ramp CPU per session: generator {cpu_gen / opened * 1000:.3f} ms "
              f"({opened / max(cpu_gen, 1e-9):,.0f} sessions per generator CPU-second), target "
              f"{cpu_tgt / opened * 1000:.3f} ms ({opened / max(cpu_tgt, 1e-9):,.0f} per target "
              f"CPU-second); of the generator's, the master {cpu_master / opened * 1000:.3f} ms "
              f"and the workers {(cpu_gen - cpu_master) / opened * 1000:.3f} ms "
              f"({opened / max(cpu_gen - cpu_master, 1e-9):,.0f} sessions per worker "
              f"CPU-second)", flush=True)  # fmt: skip
        held = best
        hold_from = time.time()
        hold_cpu0 = (tree_cpu_s(locust.pid), tree_cpu_s(target.pid), time.monotonic())
        gen_kb = tgt_kb = 0.0
        hold_end = time.monotonic() + hold
        while time.monotonic() < hold_end and locust.poll() is None:
            time.sleep(min(5.0, max(0.1, hold_end - time.monotonic())))
            active = target_active(target.http_url)
            if active is not None:
                held = min(held, active)
            gen_kb, gen_procs = tree_kb(locust.pid)
            tgt_kb, _ = tree_kb(target.pid)
        hold_to = time.time()
        hold_wall = max(1e-9, time.monotonic() - hold_cpu0[2])
        print(f"[{label}] CPU used over the hold: generator "
              f"{(tree_cpu_s(locust.pid) - hold_cpu0[0]) / hold_wall:.2f} cores, target "
              f"{(tree_cpu_s(target.pid) - hold_cpu0[1]) / hold_wall:.2f} cores (heartbeat "
              f"every {args.heartbeat:g} s: {held / max(args.heartbeat, 1e-9):,.0f} pings/s)",
              flush=True)  # fmt: skip
        print(f"[{label}] target held at least {held:,} for {hold:g} s; generator "
              f"{gen_kb / 1024:,.0f} MB in {gen_procs} processes, target "
              f"{tgt_kb / 1024:,.0f} MB", flush=True)  # fmt: skip
    finally:
        if locust.poll() is None:
            locust.send_signal(signal.SIGTERM)
        try:
            locust.wait(timeout=120)
        except subprocess.TimeoutExpired:
            locust.kill()
            locust.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(locust.pid, signal.SIGKILL)  # workers a dead master left behind
        log.close()
        output = log_path.read_bytes()
        target.stop()
    run = load_run(results)
    cap = connection_capacity(run)
    samples = run.samples
    gauges = memory_timeline(run)
    window = gauges.loc[
        (gauges["t_s"] >= hold_from - run.started + 2) & (gauges["t_s"] <= hold_to - run.started)
    ]
    if len(window) and window["sessions"].notna().any():
        held = int(window["sessions"].min())  # the generator's own count, every process
        print(f"[{label}] the generator held at least {held:,} sessions through the hold",
              flush=True)  # fmt: skip
    failed = samples.loc[samples["failure"].notna() & (samples["failure"] != "")]
    pings = samples.loc[samples["name"] == "ping"]
    tail = output.decode("utf-8", "replace").strip().splitlines()[-12:]
    if cap.peak_sessions < sessions:
        print(f"[{label}] locust said:\n  " + "\n  ".join(tail), flush=True)
    print(f"[{label}] results {results}: peak {cap.peak_sessions:,}, held cleanly "
          f"{cap.held_cleanly:,}, ramp {cap.ramp_s or 0:.1f} s, pings {len(pings):,} "
          f"({int((~pings['ok'].astype(bool)).sum()):,} failed), failures by id "
          f"{cap.failures or 'none'}", flush=True)  # fmt: skip
    return {
        "held": held,
        "failures": float(len(failed)),
        "gen_kb": gen_kb,
        "tgt_kb": tgt_kb,
        "gen_base_kb": base_gen,
        "tgt_base_kb": base_tgt,
        "ramp_per_s": cap.ramp_per_s or 0.0,
        "gen_slope": cap.generator_kb_per_session or float("nan"),
        "tgt_slope": cap.target_kb_per_session or float("nan"),
    }


def measure_deflate(args: argparse.Namespace, modes: dict | None, plain_args: list[str],
                    plain_target: list[str]) -> int:  # fmt: skip
    """Hold ``--deflate-sessions`` without and with permessage-deflate; print the extra
    memory per session on both sides (or that it cannot be measured here)."""
    if modes is None:
        print("deflate: unmeasured (this wsload cannot negotiate permessage-deflate)")
        return 0
    n = args.deflate_sessions
    plain = run_once(args, n, 20.0, plain_args, "deflate-baseline", plain_target)
    packed = run_once(args, n, 20.0, modes["deflate"][0], "deflate", modes["deflate"][1])
    for side, name in (("gen", "generator"), ("tgt", "target")):
        extra = (packed[f"{side}_kb"] - plain[f"{side}_kb"]) / max(1.0, packed["held"])
        slope = packed[f"{side}_slope"] - plain[f"{side}_slope"]
        print(f"deflate: {name} {plain[f'{side}_kb'] / max(1.0, plain['held']):.2f} -> "
              f"{packed[f'{side}_kb'] / max(1.0, packed['held']):.2f} KB per session all in "
              f"({extra:+.2f}), slope {plain[f'{side}_slope']:.2f} -> "
              f"{packed[f'{side}_slope']:.2f} KB ({slope:+.2f}); {n:,} sessions",
              flush=True)  # fmt: skip
    return 0


def _auto_sources(sessions: int, processes: int) -> str:
    """Enough loopback addresses that each keeps under ``PORTS_COMFORT`` of its ports (the
    kernel's search for a free port gets slow past half), and one for each worker."""
    low, high = port_range()
    comfortable = int((high - low + 1) * PORTS_COMFORT)
    count = max(processes, max(1, math.ceil(sessions / comfortable)))
    return f"127.0.0.2-127.0.0.{1 + count}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100000)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold them")
    parser.add_argument("--rate", type=int, default=2500, help="new sessions per second")
    parser.add_argument("--sessions-per-user", type=int, default=10,
                        help="sessions each Locust user holds on its one greenlet")  # fmt: skip
    parser.add_argument("--processes", type=int, default=0, help="generator workers (0: auto)")
    parser.add_argument("--target-workers", type=int, default=0, help="target processes")
    parser.add_argument("--source-ips", default="", help="default: enough 127.0.0.x")
    parser.add_argument("--heartbeat", type=float, default=25.0, help="ping interval, s")
    parser.add_argument("--trickle", type=float, default=0.0, help="a turn per session every S")
    parser.add_argument("--target-args", default="", help="more knobs of the target")
    parser.add_argument("--deflate", action="store_true",
                        help="also measure memory per session with permessage-deflate")  # fmt: skip
    parser.add_argument("--deflate-sessions", type=int, default=10000)
    parser.add_argument("--deflate-only", action="store_true",
                        help="only the with/without permessage-deflate comparison")  # fmt: skip
    args = parser.parse_args()
    # stopped from outside: still stop Locust and the target (the finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = raise_file_limit()
    low, high = port_range()
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, "
          f"RLIMIT_NOFILE {soft}/{hard} (about {int(hard * FILES_SHARE) - FILES_RESERVE:,} "
          f"sessions per process), ip_local_port_range {low}-{high}", flush=True)  # fmt: skip
    modes = compression_modes()
    plain_args, plain_target = modes["plain"] if modes else ([], [])
    if args.deflate_only:
        return measure_deflate(args, modes, plain_args, plain_target)
    result = run_once(args, args.sessions, args.hold, plain_args, "plain", plain_target)
    held = max(1.0, result["held"])
    kb = result["gen_kb"] / held
    print(f"generator: {result['gen_kb'] / 1024:,.0f} MB at the hold, "
          f"{result['gen_base_kb'] / 1024:,.0f} MB before the ramp; {kb:.2f} KB per session "
          f"all in, {(result['gen_kb'] - result['gen_base_kb']) / held:.2f} KB added per "
          f"session, slope {result['gen_slope']:.2f} KB", flush=True)  # fmt: skip
    print(f"target: {result['tgt_kb'] / 1024:,.0f} MB at the hold, "
          f"{result['tgt_base_kb'] / 1024:,.0f} MB before; {result['tgt_kb'] / held:.2f} KB per "
          f"session all in, slope {result['tgt_slope']:.2f} KB", flush=True)  # fmt: skip
    if args.deflate:
        measure_deflate(args, modes, plain_args, plain_target)
    print(
        f"held={int(result['held'])} failures={int(result['failures'])} "
        f"kb_per_session={kb:.2f} ramp_per_s={result['ramp_per_s']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
