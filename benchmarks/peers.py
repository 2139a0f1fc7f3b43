"""Handshakes/s per generator core: Artillery's WebSocket engine next to a raw loop.

    .venv/bin/python benchmarks/peers.py                 # about a minute
    .venv/bin/python benchmarks/peers.py --window 8 --warm 2 --artillery PATH
    .venv/bin/python benchmarks/peers.py --no-raw --stock-wait

Artillery is an optional peer: it is looked for (``--artillery PATH``, ``artillery`` on
PATH, ``node_modules/.bin/artillery`` under the repo or ``/tmp/artillery``), never installed.
Without it the script says how to install it and exits 0.

Same arrangement as ``generator.py``: the reference target runs pinned to CPU 1
(``--workers 1``), the generator under test pinned to CPU 0, one fresh target per run.
Workload: a session is connect (JWT in ``Sec-WebSocket-Protocol``: ``jwt-auth`` and
``jwt-auth.<token>``), the ``connection_established`` ack, close; a fresh token each.

* raw: ``generator.py``'s websocket-client handshake loop (50 greenlets, mints per session).
* Artillery ``ws`` engine, open model capped at ``--max-vusers`` (arrivals above the cap
  are skipped, Artillery's ``vusers.skipped``): a constant ``--rate`` above what one core
  does saturates it. Tokens are pre-minted into a CSV payload (its CPU excludes minting,
  the raw loop's includes it). Each virtual user connects, ``wait``s for the ack, closes.

  Artillery's stock ``wait`` misses the ack when it comes in the same read as the 101: the
  engine attaches its listener a tick after ``open``, the frame is dropped and the user
  hangs to the response timeout (1.3% of users at 50 arrivals/s; at saturation half or more,
  and the hung users hold every ``--max-vusers`` slot, so the rate collapses).
  So the processor keeps frames that arrive before anyone listens and hands them to the
  listener ``wait`` sets. ``--stock-wait`` adds a run without that fix, to show it.
  A second row runs Artillery unmodified without waiting for the ack (connect, close).

Sessions/s come from the target's own ``/stats`` ``auth_ok`` counter over the window (the
window starts ``--warm`` seconds after the target sees the first connection); Artillery's
own counters (completed, failed, skipped, errors) are over its whole run, and its completed
users are checked against the target's count over the same run. Artillery's CPU share is
that of its process tree over the window; its arrival timer spins (setImmediate) whenever
the rate is above 40/s, so it reads near 100% whatever the rate. Artillery's telemetry
event is stubbed out: all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import generator  # noqa: E402  (same secret, pinning, target and CPU accounting)
from generator import GENERATOR_CPU, SECRET, fresh_target, tree_cpu_seconds  # noqa: E402

from wsload.config.profile import Profile, load_profile  # noqa: E402
from wsload.config.tokens import TokenMinter  # noqa: E402
from wsload.protocol.carrier import place  # noqa: E402
from wsload.target import RunningTarget  # noqa: E402

RAW_SESSIONS = 50  # greenlets of the raw loop, as generator.py's sessions phase
MAX_TOKENS = 60_000
START_TIMEOUT_S = 30.0  # to the first connection: Node and Artillery load in seconds
TARGET_BOUND = 0.9  # target CPU share above which a figure is the target's limit too
# Not from /tmp: there npm takes "artillery" for the folder ./artillery and installs nothing.
# Playwright (an Artillery dependency) would download a browser: not needed for ws.
INSTALL = (
    "(cd / && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix /tmp/artillery artillery), "
    "then pass --artillery /tmp/artillery/node_modules/.bin/artillery"
)

# Loaded into Node with --require. Artillery sends a "test run" event to PostHog even with
# ARTILLERY_DISABLE_TELEMETRY set; the stub keeps every packet on 127.0.0.1. os.cpus()
# counts every CPU, not the ones Node may run on, and Artillery starts cpus - 1 worker
# threads: reporting the affinity makes it start the one worker a one-core machine gets.
PRELOAD_JS = """\
'use strict';
const Module = require('module');
const os = require('os');
const cpus = os.cpus;
os.cpus = () => cpus().slice(0, Math.max(2, os.availableParallelism() + 1));
class PostHog { capture() {} shutdown() {} async shutdownAsync() {} }
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'posthog-node') return { PostHog };
  return load.call(this, request, ...rest);
};
"""

# The processor: each virtual user offers the fixed names and its own token entry (a CSV
# column), as the profile's subprotocol carrier does.
PROCESSOR_JS = """\
'use strict';
const NAMES = __NAMES__;
module.exports.authSubprotocol = function (wsArgs, context, done) {
  wsArgs.subprotocols = [...NAMES, context.vars.entry];
  done();
};
"""

# Appended with the ack fix: a frame emitted while nothing listens for 'message' is kept
# and replayed to the listener the engine's `wait` step sets through onmessage.
KEEP_EARLY_JS = """\
// The ws module the engine uses: resolved from Artillery's core, already loaded by then.
const core = Object.keys(require.cache).find((p) => p.includes('/@artilleryio/int-core/'));
if (!core) throw new Error('peers.py: Artillery core not loaded, cannot reach its ws');
const WebSocket = require(require.resolve('ws', { paths: [core] }));
const kEarly = Symbol('early frames');
const emit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (name, ...args) {
  if (name === 'message' && this.listenerCount('message') === 0) {
    (this[kEarly] ||= []).push(args);
    return false;
  }
  return emit.call(this, name, ...args);
};
const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
Object.defineProperty(WebSocket.prototype, 'onmessage', {
  ...onmessage,
  set(listener) {
    onmessage.set.call(this, listener);
    const early = this[kEarly];
    if (listener && early) {
      this[kEarly] = undefined;
      for (const args of early) emit.call(this, 'message', ...args);
    }
  },
});
"""


@dataclass
class Run:
    """One generator run against its own target: window figures and whole-run counters."""

    rate: float = 0.0  # sessions/s over the window, target's auth_ok
    cpu: float = 0.0  # generator CPU share over the window
    target_cpu: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)  # Artillery's, whole run
    target_total: int = 0  # target's auth_ok over Artillery's whole run
    error: str = ""


@contextlib.contextmanager
def pinned_children(cpu: int) -> Iterator[None]:
    """Processes started inside inherit ``cpu``, so every thread Node creates is pinned."""
    before = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def counts(t: RunningTarget) -> tuple[int, int]:
    """The target's (connections, auth_ok) counters."""
    with urllib.request.urlopen(f"{t.http_url}/stats", timeout=5) as response:
        counters = json.load(response)["counters"]
    return counters["connections"], counters["auth_ok"]


def find_artillery(given: str | None) -> Path | None:
    if given:
        return Path(given)
    on_path = shutil.which("artillery")
    if on_path:
        return Path(on_path)
    for base in (REPO, Path("/tmp/artillery")):
        candidate = base / "node_modules" / ".bin" / "artillery"
        if candidate.exists():
            return candidate
    return None


def artillery_version(binary: Path) -> str:
    """From its package.json; ``artillery version`` (seconds, a banner) for a wrapper."""
    package = binary.resolve().parent.parent / "package.json"
    try:
        version = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        try:
            banner = subprocess.run(
                [str(binary), "version"], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            banner = ""
        found = re.search(r"Artillery:\s*(\S+)", banner)
        version = found.group(1) if found else "?"
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        node = "?"
    return f"Artillery {version}, Node {node}"


def write_tokens(path: Path, profile: Profile, count: int) -> None:
    """One ``Sec-WebSocket-Protocol`` token entry per line, each a fresh subject and jti."""
    if profile.auth.carrier != "subprotocol":
        raise SystemExit(f"peers.py sends tokens as subprotocols, not {profile.auth.carrier}")
    minter = TokenMinter(profile.token, secret=SECRET)
    with path.open("w") as f:
        for i in range(count):  # the entry does not depend on the URL
            entry = place(profile.auth, "ws://127.0.0.1/ws", minter.mint(f"artillery-{i}")).material
            f.write(entry + "\n")


def ack_matchers(profile: Profile) -> list[dict[str, str]]:
    """Artillery ``match`` checks for the profile's first ack pattern (all must hold)."""
    return [{"json": f"$.{k}", "value": str(v)} for k, v in profile.ack.match[0].items()]


def write_scenario(
    tmp: Path, name: str, profile: Profile, url: str, args: argparse.Namespace, *, wait: bool
) -> Path:
    """The Artillery script, as JSON in a .yml file (JSON is YAML; no PyYAML needed)."""
    phase = {"arrivalRate": args.rate, "maxVusers": args.max_vusers}
    flow: list[dict[str, Any]] = [{"connect": {"function": "authSubprotocol"}}]
    if wait:
        flow.append({"wait": {"match": ack_matchers(profile)}})
    script = {
        "config": {
            "target": url,
            "processor": str(tmp / f"{name}.js"),
            "timeout": 5,  # a `wait` that gets no ack fails after 5 s (default 10)
            "payload": {
                "path": str(tmp / "tokens.csv"),
                "fields": ["entry"],
                "order": "sequence",
                "skipHeader": False,
            },
            "phases": [
                {"name": "warm", "duration": args.warm, **phase},
                # one second past the window, so arrivals run until it is measured
                {"name": "measure", "duration": math.ceil(args.window) + 1, **phase},
            ],
        },
        "scenarios": [{"name": name, "engine": "ws", "flow": flow}],
    }
    path = tmp / f"{name}.yml"
    path.write_text(json.dumps(script, indent=2) + "\n")
    return path


def write_processor(tmp: Path, name: str, profile: Profile, *, keep_early: bool) -> None:
    names = [profile.auth.subprotocol] if profile.auth.subprotocol else []
    code = PROCESSOR_JS.replace("__NAMES__", json.dumps(names))
    (tmp / f"{name}.js").write_text(code + (KEEP_EARLY_JS if keep_early else ""))


class WindowSampler(threading.Thread):
    """The target's counters and CPU (and a generator tree's CPU) over the measured window.

    The window opens ``warm`` s after the target sees its first connection, so generator
    start-up (Node and Artillery load in seconds, a Python loop in one) is never in it.
    """

    def __init__(self, t: RunningTarget, args: argparse.Namespace, pid: int | None = None):
        super().__init__(daemon=True)
        self.t, self.warm, self.window, self.pid = t, args.warm, args.window, pid
        self.stop = threading.Event()  # set when the generator ended early
        self.rate = self.cpu = self.target_cpu = 0.0
        self.error = "the window was not measured"

    def run(self) -> None:
        t, deadline = self.t, time.monotonic() + START_TIMEOUT_S
        try:
            while counts(t)[0] == 0:
                if self.stop.wait(0.05) or time.monotonic() > deadline:
                    raise RuntimeError("the generator made no connection")
            if self.stop.wait(self.warm):
                raise RuntimeError("the generator ended during the warm-up")
            t0, (_, a0), tc0 = time.monotonic(), counts(t), tree_cpu_seconds(t.pid)
            c0 = tree_cpu_seconds(self.pid) if self.pid else 0.0
            if self.stop.wait(self.window):
                raise RuntimeError("the generator ended during the window")
            took = time.monotonic() - t0
            (_, a1), tc1 = counts(t), tree_cpu_seconds(t.pid)
            c1 = tree_cpu_seconds(self.pid) if self.pid else 0.0
            self.rate, self.target_cpu, self.cpu = (
                (a1 - a0) / took, (tc1 - tc0) / took, (c1 - c0) / took,
            )  # fmt: skip
            self.error = ""
        except (OSError, ValueError, RuntimeError, psutil.Error) as exc:
            self.error = str(exc)


def run_artillery(binary: Path, script: Path, t: RunningTarget, args: argparse.Namespace) -> Run:
    """Run Artillery pinned to CPU 0 and sample the window while it runs."""
    tmp = script.parent
    report, log = tmp / f"{script.stem}.json", tmp / f"{script.stem}.log"
    preload = tmp / "preload.js"
    node_options = f"--require {preload} {os.environ.get('NODE_OPTIONS', '')}".strip()
    env = {**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "NODE_OPTIONS": node_options}
    env.pop("DEBUG", None)
    _, ok0 = counts(t)
    with log.open("w") as out, pinned_children(GENERATOR_CPU):
        proc = subprocess.Popen(
            [str(binary), "run", "--output", str(report), str(script)],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    sampler = WindowSampler(t, args, pid=proc.pid)
    sampler.start()
    run = Run()
    try:
        proc.wait(timeout=START_TIMEOUT_S + args.warm + args.window + 30)
        sampler.stop.set()
        sampler.join(timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(f"Artillery exited with {proc.returncode}")
        if sampler.error:
            raise RuntimeError(sampler.error)
        run.rate, run.cpu, run.target_cpu = sampler.rate, sampler.cpu, sampler.target_cpu
        run.counters = json.loads(report.read_text())["aggregate"]["counters"]
        run.target_total = counts(t)[1] - ok0
    except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
        tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        run.error = f"{exc}; its output ends: {tail[-300:]}"
    finally:
        sampler.stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(timeout=10)
    return run


def value(rate: float, target_cpu: float) -> str:
    """The figure, marked as a lower bound when the target ran out of core first."""
    return f"{'≥' if target_cpu >= TARGET_BOUND else ''}{rate:,.0f}"


def target_note(target_cpu: float) -> str:
    bound = " (saturated: a lower bound for the generator)" if target_cpu >= TARGET_BOUND else ""
    return f"target CPU {target_cpu:.0%}{bound}"


def artillery_note(run: Run) -> str:
    """Artillery's own counters over its run, and how they compare with the target's."""
    c = run.counters
    completed = c.get("vusers.completed", 0)
    errors = ", ".join(f"{k[7:]} {v:,}" for k, v in c.items() if k.startswith("errors.")) or "none"
    agree = f"{completed / run.target_total:.2f}" if run.target_total else "n/a"
    return (
        f"{run.cpu:.0%}; {target_note(run.target_cpu)}; whole run: {completed:,} completed, "
        f"{c.get('vusers.failed', 0):,} failed, {c.get('vusers.skipped', 0):,} arrivals skipped "
        f"(over max VUs), errors: {errors}; completed / target's auth_ok {agree}"
    )


def raw_row(args: argparse.Namespace) -> tuple[str, float]:
    """generator.py's raw websocket-client handshake loop, on a target of its own."""
    with fresh_target() as t:
        sampler = WindowSampler(t, args)
        sampler.start()
        result, cpu = generator.run_raw(generator.RAW_HANDSHAKES, t.url, RAW_SESSIONS, args)
        sampler.join(timeout=5)
    rate = result["count"] / result["seconds"]
    agree = f"{rate / sampler.rate:.2f}" if sampler.rate else "n/a"
    row = (
        f"| sessions/s, raw websocket-client handshake loop | {value(rate, sampler.target_cpu)} "
        f"| {cpu:.0%}; {target_note(sampler.target_cpu)}; {RAW_SESSIONS} greenlets, mints "
        f"per session; its count / target's auth_ok {agree} |"
    )
    return row, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warm", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--artillery", help="the artillery executable (default: searched)")
    parser.add_argument("--rate", type=int, default=2500,
                        help="Artillery arrivals/s, above one core's capacity")  # fmt: skip
    parser.add_argument("--max-vusers", type=int, default=100,
                        help="Artillery's cap on concurrent virtual users")  # fmt: skip
    parser.add_argument("--no-raw", action="store_true", help="skip the raw baseline")
    parser.add_argument("--stock-wait", action="store_true",
                        help="also run Artillery's `wait` without the early-frame fix")  # fmt: skip
    args = parser.parse_args()
    binary = find_artillery(args.artillery)
    if binary is None:
        print(f"Artillery is not installed (an optional peer, so no table): {INSTALL}")
        return 0
    if not binary.exists():
        parser.error(f"--artillery {binary}: no such file; install with {INSTALL}")

    table = ["| figure (one generator core) | value | generator CPU / note |", "|---|---|---|"]
    failed = False
    raw_rate = None
    if not args.no_raw:
        try:
            row, raw_rate = raw_row(args)
            table.append(row)
        except Exception as exc:  # generator.py is edited elsewhere: still run Artillery
            failed = True
            table.append(f"| sessions/s, raw websocket-client handshake loop | failed | {exc} |")

    profile = load_profile()
    runs = [
        ("ack", True, True, "Artillery ws engine (connect, ack, close; tokens pre-minted)"),
        ("noack", False, False, "Artillery ws engine, stock (connect, close; ack not awaited)"),
    ]
    if args.stock_wait:
        label = "Artillery ws engine, stock `wait` for the ack (no fix)"
        runs.append(("stockwait", True, False, label))
    count = min(MAX_TOKENS, math.ceil(args.rate * (args.warm + args.window + 1)))
    ack_rate, ack_bound = None, False
    with tempfile.TemporaryDirectory(prefix="wsload-peers-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "preload.js").write_text(PRELOAD_JS)
        write_tokens(tmp / "tokens.csv", profile, count)
        for name, wait, keep_early, label in runs:
            write_processor(tmp, name, profile, keep_early=keep_early)
            with fresh_target() as t:
                script = write_scenario(tmp, name, profile, t.url, args, wait=wait)
                run = run_artillery(binary, script, t, args)
            if run.error:
                failed = True
                table.append(f"| sessions/s, {label} | failed | {run.error} |")
                continue
            if name == "ack":
                ack_rate, ack_bound = run.rate, run.target_cpu >= TARGET_BOUND
            table.append(
                f"| sessions/s, {label} | {value(run.rate, run.target_cpu)} "
                f"| {artillery_note(run)} |"
            )
    if raw_rate and ack_rate:
        bound = "≥" if ack_bound else ""
        table.append(f"| ratio Artillery (ack) / raw | {bound}{ack_rate / raw_rate:.2f} | |")
    print("\n".join(table))
    print(
        f"\n{artillery_version(binary)}; --rate {args.rate}/s, --max-vusers {args.max_vusers}. "
        f"Artillery's {count:,} tokens were pre-minted (HS256, one per virtual user, reused "
        "in order past that), so its CPU excludes minting; the raw loop mints per session. "
        "The ack row keeps frames that arrive before Artillery's `wait` listens (see the "
        "module docstring). Artillery's sessions/s are the target's auth_ok counts over the "
        "window; its CPU reads near 100% at any rate (its arrival timer spins)."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
