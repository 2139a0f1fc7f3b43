"""Make a demo run and a short stepped capacity run, then execute both notebooks in place.

    .venv/bin/python analysis/refresh.py                  # or: make notebooks
    .venv/bin/python analysis/refresh.py --explore-run results/<id> --capacity-run results/<id>

The runs go against the embedded reference target, into ``results/`` (the demo last, so
``results/latest`` names it); the notebooks run with nbclient in their own folder, as Jupyter
runs them, and are saved with their outputs (figures as PNG) so they read on GitHub as they are.
Everything is bounded: each run has a time limit, each cell a timeout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPOSITORY = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPOSITORY / "analysis"
RESULTS = REPOSITORY / "results"
RUN_TIMEOUT_S = 180
CELL_TIMEOUT_S = 180

# Steps of 10 users from 10 to 60, held 5 s each, against a target that serves 6 concurrent
# turns per process at full speed and slows down past that (random think time, so users do not
# move in lockstep): the e2e SLO of 400 ms holds for the first steps and breaks within the
# tested range, so the notebook shows a measured limit, the knee and a projection.
CAPACITY_ARGS = [
    *("--step-start", "10", "--step-size", "10", "--step-max", "60", "--step-hold", "5"),
    *("--think-time", "uniform:0.5:1.5", "--slo-e2e-p95", "400", "--probe-users", "0"),
    "--target-args=--capacity 6 --overload-delay 0.03 --jitter 0.2",
]


def _newest_run(before: set[str]) -> Path:
    made = sorted(
        p
        for p in RESULTS.iterdir()
        if p.is_dir() and not p.is_symlink() and p.name not in before  # not results/latest
    )
    if not made:
        raise SystemExit("refresh: the run made no folder in results/")
    return made[-1]


def _run(command: list[str], what: str) -> Path:
    before = {p.name for p in RESULTS.iterdir()} if RESULTS.is_dir() else set()
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}  # a generated one
    print(f"refresh: {what} ...", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"refresh: {what} failed (exit {done.returncode})")
    folder = _newest_run(before)
    print(f"refresh: {what}: {folder.relative_to(REPOSITORY)} ({time.monotonic() - started:.0f} s)")
    return folder


def demo_run() -> Path:
    """``wsload demo`` as ``make demo`` runs it: 20 users for 15 s, into results/demo-<id>."""
    return _run([sys.executable, "-m", "wsload.cli", "demo"], "demo run (20 users, 15 s)")


def capacity_run() -> Path:
    command = [sys.executable, "-m", "locust", "-f", "locustfiles/capacity.py", "--headless"]
    command += ["--only-summary", "--loglevel", "WARNING", *CAPACITY_ARGS]
    return _run(command, "stepped capacity run (10 to 60 users)")


def execute(name: str, run_dir: Path, target_users: int = 1000) -> Path:
    """Run the notebook top to bottom in its folder and save it with its outputs."""
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    relative = os.path.relpath(run_dir, REPOSITORY)  # as documented: relative to the repo
    os.environ["WSLOAD_RUN"] = relative
    os.environ["WSLOAD_TARGET_USERS"] = str(target_users)
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    if errors:
        raise SystemExit(f"refresh: {name} raised {errors[0].get('ename')}")
    nbformat.write(notebook, path)
    print(f"refresh: {name} executed on {relative} ({path.stat().st_size // 1024} KiB)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explore-run", type=Path, help="use this run instead of a new demo")
    parser.add_argument("--capacity-run", type=Path, help="use this stepped run instead")
    args = parser.parse_args(argv)
    capacity = args.capacity_run or capacity_run()
    explore = args.explore_run or demo_run()  # last: results/latest names the demo
    execute("explore.ipynb", explore.resolve())
    execute("capacity.ipynb", capacity.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
