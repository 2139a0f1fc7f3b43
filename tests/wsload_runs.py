"""Run folders for the analysis, report and notebook tests: real ones and synthetic ones.

Real runs are Locust as a headless process against the embedded reference target, made
once per test session (cached in pytest's base temp folder) because they take seconds.
Synthetic runs are written row by row from known numbers, so a test can assert exactly
what the analysis must find in them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from wsload.run.recorder import COLUMNS
from wsload.run.tables import is_run_folder

REPO = Path(__file__).resolve().parent.parent
ORIGIN = 1_790_000_000.0  # epoch seconds where synthetic runs start

REAL_RUNS = {
    # a short chat run: 6 users, some turns each
    "chat": (
        "ws_auth.py",
        ["-u", "6", "-r", "6", "-t", "6s", "--think-time", "0.3"],
    ),
    # a stepped capacity run: 5, 10, 15 users held 3 s each
    "steps": (
        "capacity.py",
        ["--step-start", "5", "--step-size", "5", "--step-max", "15", "--step-hold", "3"]
        + ["--think-time", "0.5"],
    ),
}


def locust(
    locustfile: str, *args: str, timeout: float = 90, preexec_fn=None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / locustfile)]
        + ["--headless", "--only-summary", "--loglevel", "WARNING", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def real_run(base: Path, kind: str) -> Path:
    """The run folder of a real run of ``kind`` (see ``REAL_RUNS``), made on first use."""
    folder = base / f"wsload-run-{kind}"
    if is_run_folder(folder) and (folder / "run.json").is_file():
        return folder
    locustfile, args = REAL_RUNS[kind]
    done = locust(locustfile, *args, "--results", str(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def samples_csv(folder: Path) -> Path:
    """A real run's long view as the classic CSV (``wsload export --csv``), made once."""
    from wsload.run.export import export_csv

    path = folder / "samples.csv"
    if not path.is_file():
        export_csv(folder, path)
    return path


def results_bytes(folder: Path) -> dict[str, bytes]:
    """The results tables of a run folder, file by file."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.glob("*.*"))
        if p.suffix in (".parquet", ".arrows")
    }


def write_run(
    folder: Path,
    rows: list[dict],
    *,
    meta: dict | None = None,
    steps: pd.DataFrame | None = None,
) -> Path:
    """A run folder from row dicts (missing columns empty), as the recorder would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    frame["v"] = 1
    frame["run_id"] = folder.name
    frame.to_csv(folder / "samples.csv", index=False)
    run_meta = {"run_id": folder.name, "host": "ws://synthetic/ws", "started": ORIGIN}
    run_meta.update(meta or {})
    (folder / "run.json").write_text(json.dumps(run_meta))
    if steps is not None:
        steps.to_csv(folder / "steps.csv", index=False)
    return folder


def usl_throughput(n: np.ndarray | float, lam: float, sigma: float, kappa: float) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def usl_run(
    folder: Path,
    *,
    lam: float,
    sigma: float,
    kappa: float,
    users: list[int],
    hold_s: int = 60,
    think_s: float = 1.0,
    noise: float = 0.01,
    seed: int = 1,
    nodes: int = 1,
) -> Path:
    """A closed-loop stepped run whose steps complete turns at the USL rate.

    Each step holds ``users`` for ``hold_s`` whole seconds and completes ``X(N)`` turns
    per second (count jittered by ``noise``), each taking ``N / X(N) - think_s`` seconds
    (Little's law), so e2e latency grows with the load as in a saturating service; every
    turn starts and ends inside its step. Users are spread over ``nodes`` processes.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    start = ORIGIN
    turn = 0
    for n in users:
        rate = float(usl_throughput(n, lam, sigma, kappa))
        latency_s = n / rate - think_s
        count = round(rate * hold_s * (1 + rng.uniform(-noise, noise)))
        per_node = [n // nodes + (1 if i < n % nodes else 0) for i in range(nodes)]
        for i in range(n):  # every user of the step opens a session as it starts
            node = f"gen{i % nodes}"
            common = {"node": node, "user": i, "session": f"{node}-{i}-{start:.0f}"}
            common["users"] = per_node[i % nodes]
            rows.append({**common, "ts": start + 0.01, "kind": "connect", "name": "connect"})
            rows[-1].update({"ms": 2.0 * (1 + rng.uniform(-0.1, 0.1)), "ok": 1})
            rows.append({**common, "ts": start + 0.012, "kind": "auth", "name": "auth"})
            rows[-1].update({"ms": 1.0, "ok": 1})
        for k in range(count):
            turn += 1
            end = start + latency_s + (k + 0.5) * (hold_s - latency_s) / count
            ms = latency_s * 1000 * (1 + rng.uniform(-0.02, 0.02))
            i = k % n
            node = f"gen{i % nodes}"
            rows.append(
                {
                    "node": node,
                    "ts": end - ms / 1000,
                    "user": i,
                    "session": f"{node}-{i}-{start:.0f}",
                    "turn": turn,
                    "kind": "turn",
                    "name": "turn:e2e",
                    "ms": ms,
                    "ok": 1,
                    "users": per_node[i % nodes],
                    "events": 6,
                }
            )
        start += hold_s
    rows.sort(key=lambda r: r["ts"])
    return write_run(folder, rows, meta={"options": {"think_time": think_s}})
