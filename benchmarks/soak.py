"""Soak: does the generator's memory stay flat and its file descriptors bounded for minutes?

    .venv/bin/python benchmarks/soak.py                    # 500 users, 300 s
    .venv/bin/python benchmarks/soak.py --users 100 --seconds 60

Runs ``locust -f locustfiles/ws_auth.py`` headless against a reference target (one process,
loopback) with the whole session life switched on: 60 s tokens refreshed by reconnecting,
heartbeat, multi-turn conversations, a new session every 20 messages and the probe user.
Every 10 s it reads the Locust process's RSS and open file descriptors from /proc and prints
them; at the end, RSS at the start of the steady state and at the end, the growth per
minute, the largest descriptor count, and what the run recorded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wsload.run.summary import load_samples  # noqa: E402
from wsload.target import start_target  # noqa: E402

SECRET = "soak-benchmark-secret-0123456789abcdefgh"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between readings")
    args = parser.parse_args()
    target = start_target(["--workers", "1"], secret=SECRET)
    readings: list[tuple[float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "run"
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py", "--headless"]
            + ["-u", str(args.users), "-r", "50", "-t", f"{args.seconds}s", "--host", target.url]
            + ["--think-time", "exp:1", "--token-lifetime", "60", "--heartbeat-interval", "5"]
            + ["--messages-per-session", "20", "--results", str(results), "--only-summary"]
            + ["--loglevel", "WARNING"],
            cwd=REPO,
            env={**os.environ, "JWT_SECRET_KEY": SECRET},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        print(f"{'t (s)':>6} {'RSS (MB)':>9} {'open fds':>9}", flush=True)
        try:
            while locust.poll() is None and time.monotonic() - started < args.seconds + 60:
                t = time.monotonic() - started
                try:
                    reading = (t, rss_mb(locust.pid), open_fds(locust.pid))
                except FileNotFoundError:
                    break
                readings.append(reading)
                print(f"{t:6.0f} {reading[1]:9.1f} {reading[2]:9d}", flush=True)
                time.sleep(args.every)
            _, err = locust.communicate(timeout=120)
        finally:
            target.stop()
        samples = load_samples(results)
    ramp = args.users / 50 + 10  # spawn time plus settling: the steady state starts after
    steady = [r for r in readings if ramp <= r[0] <= args.seconds - 5]
    if len(steady) < 2:
        print("too short to judge: raise --seconds")
        return 1
    (t0, rss0, _), (t1, rss1, _) = steady[0], steady[-1]
    rows = samples.loc[samples["kind"] != "health"]
    turns = rows.loc[rows["name"] == "turn:e2e"]
    print()
    print("| figure | value |\n|---|---|")
    print(f"| users, duration | {args.users}, {args.seconds} s |")
    print(f"| RSS at {t0:.0f} s (steady state begins) | {rss0:.1f} MB |")
    print(f"| RSS at {t1:.0f} s | {rss1:.1f} MB |")
    print(f"| RSS growth | {(rss1 - rss0) / ((t1 - t0) / 60):+.2f} MB/min |")
    fds = [r[2] for r in steady]
    print(f"| open fds: steady min / max | {min(fds)} / {max(fds)} |")
    print(f"| turns, of them failed | {len(turns):,}, {int((~turns['ok']).sum())} |")
    print(f"| sessions opened, refreshes | {int((rows['name'] == 'connect').sum()):,}, "
          f"{int((rows['name'] == 'session:refresh').sum()):,} |")  # fmt: skip
    print(f"| samples recorded | {len(samples):,} |")
    if err.strip():
        print("locust stderr (last lines):", err.strip().splitlines()[-3:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
