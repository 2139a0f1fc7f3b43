"""wsload's web UI tabs in a real headless Chromium: a run started from the UI fills them.

Locust runs as a real process with its web UI and the embedded reference target (no
``--host``); the browser fills in users and spawn rate, presses Start, opens "Agent turns"
and "Auth & security", reads the tables as a person would, downloads the CSV and keeps a
screenshot of each tab in ``test-artifacts/``. The same again with a master and a worker,
where the master's tables can only be filled by the rows its worker ships.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_support import artifact, chromium, requires_chromium
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles/ws_auth.py"]
VIEWPORT = {"width": 1400, "height": 900}
pytestmark = [pytest.mark.slow, requires_chromium]

# The visible table of the current tab, as a list of {header: cell text}.
READ_TABLE = """() => {
  const table = document.querySelector("#root table");
  if (!table) return [];
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.innerText.trim());
  const cells = (tr) => [...tr.querySelectorAll("td")].map((td) => td.innerText.trim());
  return [...table.querySelectorAll("tbody tr")].map((tr) =>
    Object.fromEntries(cells(tr).map((text, i) => [heads[i], text])));
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def locust(*args: str, log: Path) -> Iterator[subprocess.Popen]:
    """Locust as a process of its own group; stopped (and its target with it) on exit."""
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*LOCUST, *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def stats(url: str, log: Path, timeout_s: float = 30) -> dict:
    """Locust's ``/stats/requests`` once the web UI answers (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "stats/requests", timeout=2) as answer:
                return json.load(answer)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"web UI never answered:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.3)


def wait_for_workers(url: str, log: Path, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while stats(url, log).get("worker_count", 0) < count:
        assert time.monotonic() < deadline, f"no worker connected:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


def start_from_the_ui(page: Page, url: str, users: int) -> None:
    page.goto(url)
    page.fill("input[name=userCount]", str(users))
    page.fill("input[name=spawnRate]", str(users))
    page.get_by_role("button", name="Start").click()
    page.get_by_role("tab", name="Statistics").wait_for()


def open_tab(page: Page, title: str, must_show: str) -> list[dict[str, str]]:
    """Click a tab and wait (bounded) until its table shows ``must_show`` with a count."""
    page.get_by_role("tab", name=title).click()
    page.wait_for_function(
        """(name) => [...document.querySelectorAll("#root tbody tr")].some((tr) => {
             const cells = [...tr.querySelectorAll("td")].map((td) => td.innerText.trim());
             return cells.includes(name) && cells.some((c) => /^[1-9][0-9]*$/.test(c));
           })""",
        arg=must_show,
        timeout=20_000,
    )
    return page.evaluate(READ_TABLE)


def number(text: str) -> float:
    return float(text)  # raises on an empty or non-numeric cell: the test wants numbers


def check_turn_table(rows: list[dict[str, str]]) -> None:
    stages = {r["Stage"]: r for r in rows}
    assert {"turn:ttfe", "turn:agent_started", "turn:e2e"} <= set(stages), rows
    assert rows[0]["Stage"] == "turn:ttfe" and rows[-1]["Stage"] == "turn:e2e"  # turn order
    for name in ("turn:ttfe", "turn:e2e"):
        row = stages[name]
        assert number(row["Count"]) > 0, row
        assert 0 < number(row["Median (ms)"]) <= number(row["p95 (ms)"]) <= number(row["p99 (ms)"])


def stop_from_the_ui(page: Page, log: Path) -> None:
    page.get_by_role("button", name="Stop").click()
    # The run ends on a native thread (compaction, summary, gate): the page shows "stopped"
    # at Locust's next poll, its answer cached for 2 s at most.
    try:
        page.get_by_text(re.compile(r"^stopped$", re.IGNORECASE)).wait_for(timeout=30_000)
    except PlaywrightTimeout:
        raise AssertionError(f"no 'stopped' 30 s after Stop; Locust's log:\n{tail(log)}") from None


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def test_tabs_show_live_turn_and_auth_tables_with_csv_for_a_run_started_in_the_ui(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "locust.log"
    ui_args = ("--web-host", "127.0.0.1", "--web-port", str(port), "--think-time", "0.3")
    with (
        locust(*ui_args, "--results", str(tmp_path / "run"), log=log),
        chromium(tmp_path / "chromium", viewport=VIEWPORT, accept_downloads=True) as browser,
    ):
        stats(url, log)
        page = browser.new_page()
        start_from_the_ui(page, url, users=5)

        turns = open_tab(page, "Agent turns", "turn:e2e")
        check_turn_table(turns)
        seen = int(turns[-1]["Count"])
        page.wait_for_function(  # refreshed live, without reloading the page
            f"""() => [...document.querySelectorAll("#root tbody tr")].some((tr) =>
                   tr.innerText.startsWith("turn:e2e") &&
                   Number(tr.querySelectorAll("td")[1].innerText) > {seen})""",
            timeout=10_000,
        )
        page.screenshot(path=artifact("web-ui-agent-turns.png"))

        auth = open_tab(page, "Auth & security", "connect")
        latency = {r["Name"]: r for r in auth if r["Section"] == "latency"}
        assert number(latency["connect"]["Count"]) > 0 and number(latency["auth"]["Count"]) > 0
        assert number(latency["connect"]["Median (ms)"]) > 0
        probes = [r for r in auth if r["Section"] == "probe"]
        assert probes and all(r["Failure id / probe outcome"] for r in probes), auth
        assert not any("NOT ENFORCED" in r["Failure id / probe outcome"] for r in probes)
        page.screenshot(path=artifact("web-ui-auth-security.png"))

        page.get_by_role("tab", name="Download data").click()
        with page.expect_download() as download:
            page.get_by_text("Download agent turns CSV (wsload)").click()
        turns_csv = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert {r["name"] for r in turns_csv} >= {"turn:ttfe", "turn:e2e"}
        assert all(int(r["count"]) > 0 for r in turns_csv)
        answer = page.request.get(url + "wsload/auth.csv")
        assert answer.ok and "text/csv" in answer.headers["content-type"]
        auth_csv = list(csv.DictReader(io.StringIO(answer.text())))
        assert {"latency", "probe"} <= {r["section"] for r in auth_csv}

        stop_from_the_ui(page, log)


def test_tabs_are_filled_by_the_workers_rows_in_distributed_mode(tmp_path):
    port, master_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "master.log"
    master_args = ("--master", "--master-bind-host", "127.0.0.1")
    master_args += ("--master-bind-port", str(master_port), "--think-time", "0.3")
    master_args += ("--web-host", "127.0.0.1", "--web-port", str(port))
    worker_args = ("--worker", "--master-port", str(master_port))
    with (
        locust(*master_args, "--results", str(tmp_path / "run"), log=log),
        locust(*worker_args, log=tmp_path / "worker.log"),
        chromium(tmp_path / "chromium", viewport=VIEWPORT) as browser,
    ):
        wait_for_workers(url, log, 1)
        page = browser.new_page()
        start_from_the_ui(page, url, users=4)
        check_turn_table(open_tab(page, "Agent turns", "turn:e2e"))
        page.screenshot(path=artifact("web-ui-distributed-agent-turns.png"))
        auth = open_tab(page, "Auth & security", "connect")
        assert any(r["Section"] == "latency" and r["Name"] == "auth" for r in auth), auth
        stop_from_the_ui(page, log)
        check_headline_against_samples(page, tmp_path / "run")  # the worker's turns, all
        page.screenshot(path=artifact("web-ui-distributed-headline.png"))


# The figures of the headline strip, as shown: {data-figure: text of its number}.
READ_FIGURES = """() => Object.fromEntries(
  [...document.querySelectorAll("#wsload-headline [data-figure]")].map((el) =>
    [el.dataset.figure, (el.querySelector("b") || el).innerText.trim()]))"""


def headline_from_samples(folder: Path) -> dict:
    from wsload.run.summary import load_samples, turn_headline

    return turn_headline(load_samples(folder))


def check_headline_against_samples(page: Page, folder: Path) -> dict[str, str]:
    """After the run ended: the strip's turns, failed turns and share, and turns/s over the
    run are the numbers the run folder's samples give."""
    want = headline_from_samples(folder)
    text = f"{want['turns']:,}"
    page.wait_for_function(  # the strip refreshes every 2 s; the last records are in
        """(text) => {
          const el = document.querySelector('#wsload-headline [data-figure="turns"] b');
          return el && el.innerText.trim() === text;
        }""",
        arg=text,
        timeout=15_000,
    )
    shown = page.evaluate(READ_FIGURES)
    assert shown["turns"] == f"{want['turns']:,}", (shown, want)
    assert shown["failed-turns"] == f"{want['failed_turns']:,}", (shown, want)
    assert shown["failed-share"] == f"{want['failed_share'] * 100:.1f}%", (shown, want)
    assert abs(number(shown["turns-per-s"]) - want["turns_per_s"]) <= 0.051, (shown, want)
    return shown


def test_headline_shows_turns_per_second_and_failed_share_true_to_the_samples(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "locust.log"
    folder = tmp_path / "run"
    faults = "--skip-events 0.15 --error-events 0.05"
    ui_args = ("--web-host", "127.0.0.1", "--web-port", str(port), "--think-time", "0.2")
    with (
        locust(*ui_args, "--results", str(folder), "--target-args", faults, log=log),
        chromium(tmp_path / "chromium", viewport=VIEWPORT) as browser,
    ):
        stats(url, log)
        page = browser.new_page()
        start_from_the_ui(page, url, users=6)
        page.wait_for_function(  # live: turns and a failed share while the run goes on
            """() => {
              const f = (k) => document.querySelector(`#wsload-headline [data-figure="${k}"] b`);
              return f("turns") && Number(f("turns").innerText.replace(/,/g, "")) > 50 &&
                     f("failed-share").innerText.endsWith("%") &&
                     f("turns-per-s-now").innerText !== "-";
            }""",
            timeout=30_000,
        )
        live = page.evaluate(READ_FIGURES)
        assert number(live["turns-per-s-now"]) > 0 and number(live["turns-per-s"]) > 0, live
        assert "sequence_missing" in live.get("failure-ids", "") or "agent_error" in live.get(
            "failure-ids", ""
        ), live
        page.screenshot(path=artifact("web-ui-headline.png"))
        page.locator("#wsload-headline summary", has_text="charts over time").click()
        page.locator("#wsload-headline summary", has_text="with examples").click()
        page.wait_for_timeout(2500)  # a refresh keeps them open
        assert page.locator("#wsload-headline details[open]").count() == 2
        assert page.locator("#wsload-headline svg polyline").count() >= 4
        page.screenshot(path=artifact("web-ui-headline-charts-examples.png"), full_page=True)

        # Locust's own table: the probes folded into one row per kind.
        page.get_by_role("tab", name="Statistics").click()
        page.wait_for_function(
            """() => [...document.querySelectorAll("#root tbody tr")].some((tr) =>
                 tr.innerText.includes("probe:* ("))""",
            timeout=15_000,
        )
        names = [r.get("Name", "") for r in page.evaluate(READ_TABLE)]
        assert not [n for n in names if n.startswith("probe:") and "*" not in n], names
        page.screenshot(path=artifact("web-ui-statistics-probes-grouped.png"))

        examples = open_tab(page, "Failure examples", "turn:e2e")
        assert examples and all(r["Session"] and r["Detail"] for r in examples), examples
        page.screenshot(path=artifact("web-ui-failure-examples.png"))

        stop_from_the_ui(page, log)
        shown = check_headline_against_samples(page, folder)
        page.screenshot(path=artifact("web-ui-headline-stopped.png"))

        from wsload.run.summary import load_samples

        samples = load_samples(folder)
        for row in examples:  # each example is a real failing sample of the run
            same = samples[
                (samples["failure"] == row["Failure id"])
                & (samples["session"] == row["Session"])
                & (samples["name"] == row["Stats name"])
            ]
            assert len(same) >= 1, row

        report = page.request.get(url + "stats/report")  # the report the UI downloads
        assert report.ok and "wsload-headline" in report.text()
        assert f'data-figure="turns"><b>{shown["turns"]}</b>' in report.text()
        saved = tmp_path / "report.html"
        saved.write_text(report.text())
        report_page = browser.new_page()
        report_page.goto(saved.as_uri())
        report_page.get_by_text("Locust Test Report").wait_for()
        assert report_page.locator("#wsload-headline svg polyline").count() >= 4
        report_page.screenshot(path=artifact("html-report-headline.png"), full_page=True)
