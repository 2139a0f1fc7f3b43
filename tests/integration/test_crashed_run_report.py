"""A run that did not stop cleanly (``"stopped": null`` in ``run.json``) says so: in
``load_run``, in the report near its top, and in the pandas-free ``wsload.run.meta``."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wsload_runs import ORIGIN, REPO, real_run, write_run

from wsload import analysis as wa
from wsload.reports import build_report
from wsload.run.meta import crash_notice, read_run_meta
from wsload.run.summary import load_samples
from wsload.run.tables import read_table

PREFIX = "This run did not stop cleanly (crashed or killed) at about "
SUFFIX = "; its last second may be missing."


def _rows(seconds: int) -> list[dict]:
    """One 250 ms turn a second for ``seconds`` seconds, 2 users."""
    return [
        {"node": "gen0", "ts": ORIGIN + t + 0.1, "kind": "turn", "name": "turn:e2e"}
        | {"ms": 250.0, "ok": 1, "users": 2, "turn": t + 1, "session": "s1", "user": 0}
        for t in range(seconds)
    ]


def test_crash_notice_names_the_utc_time_and_the_seconds_after_start():
    meta = {"started": ORIGIN, "stopped": None}
    when = dt.datetime.fromtimestamp(ORIGIN + 12.5, tz=dt.UTC)
    expected = f"{PREFIX}{when:%Y-%m-%dT%H:%M:%SZ} (12.5 s after start){SUFFIX}"
    assert crash_notice(meta, ORIGIN + 12.5) == expected
    assert expected == (
        "This run did not stop cleanly (crashed or killed) at about 2026-09-21T14:13:32Z "
        "(12.5 s after start); its last second may be missing."
    )


def test_crash_notice_is_none_for_a_clean_stop_or_no_stop_key():
    assert crash_notice({"started": ORIGIN, "stopped": ORIGIN + 30.0}, ORIGIN + 29.9) is None
    assert crash_notice({"started": ORIGIN, "stopped": int(ORIGIN) + 30}, None) is None
    assert crash_notice({}, ORIGIN) is None  # no run.json: nothing known either way
    assert crash_notice({"started": ORIGIN}, ORIGIN) is None


def test_crash_notice_without_a_start_or_a_sample_still_warns():
    no_start = crash_notice({"stopped": None}, ORIGIN)
    assert no_start is not None and no_start.startswith(PREFIX) and "after start" not in no_start
    no_sample = crash_notice({"started": ORIGIN, "stopped": None}, None)
    assert no_sample is not None and "did not stop cleanly (crashed or killed)" in no_sample


def test_read_run_meta_is_empty_for_a_missing_or_torn_run_json(tmp_path):
    assert read_run_meta(tmp_path) == {}
    (tmp_path / "run.json").write_text('{"run_id": "x", "stopp')
    assert read_run_meta(tmp_path) == {}
    (tmp_path / "run.json").write_text("[1, 2]")
    assert read_run_meta(tmp_path) == {}
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "x", "stopped": None}))
    assert read_run_meta(tmp_path) == {"run_id": "x", "stopped": None}


def test_runmeta_does_not_import_pandas():
    code = (
        "import sys\n"
        "from wsload.run.meta import crash_notice, read_run_meta\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_load_run_of_a_folder_with_stopped_null_exposes_the_crash(tmp_path):
    folder = write_run(tmp_path / "crashed", _rows(10), meta={"stopped": None})
    run = wa.load_run(folder)
    assert not run.stopped_cleanly
    last_end = ORIGIN + 9.1 + 0.25
    assert run.last_sample_end == pytest.approx(last_end)
    assert run.stopped == pytest.approx(last_end)
    assert run.crash_notice == crash_notice(run.meta, last_end)
    assert "(9.3 s after start)" in run.crash_notice

    clean = wa.load_run(write_run(tmp_path / "clean", _rows(10), meta={"stopped": ORIGIN + 11}))
    assert clean.stopped_cleanly and clean.crash_notice is None
    assert clean.stopped == ORIGIN + 11


def _spawn_and_kill(folder: Path, log: Path) -> float:
    """A real chat run against the embedded target, SIGKILLed once it recorded turns for
    a few seconds; returns when it was killed."""
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET_KEY"}
    args = ["-u", "4", "-r", "4", "-t", "60s", "--think-time", "0.2", "--results", str(folder)]
    process = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "ws_auth.py")]
        + ["--headless", "--only-summary", "--loglevel", "WARNING", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if folder.is_dir() and read_table(folder, "turns", ["turn"]).num_rows >= 20:
                break
            time.sleep(0.25)
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        return time.time()
    finally:
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_real_run_killed_with_sigkill_is_reported_as_not_stopped_cleanly(tmp_path):
    folder = tmp_path / "run"
    killed_at = _spawn_and_kill(folder, tmp_path / "locust.log")
    assert json.loads((folder / "run.json").read_text())["stopped"] is None
    run = wa.load_run(folder)
    assert not run.stopped_cleanly
    assert run.last_sample_end is not None and 0 <= killed_at - run.last_sample_end < 3.0
    notice = run.crash_notice
    assert notice == crash_notice(run.meta, run.last_sample_end)
    when = dt.datetime.fromtimestamp(run.last_sample_end, tz=dt.UTC)
    after = run.last_sample_end - run.meta["started"]
    assert notice == f"{PREFIX}{when:%Y-%m-%dT%H:%M:%SZ} ({after:.1f} s after start){SUFFIX}"

    files = build_report(folder, output=tmp_path / "report")
    markdown, page = files.markdown.read_text(), files.html.read_text()
    warning = f"> **Warning:** {notice}"
    assert warning in markdown
    assert markdown.index(warning) < markdown.index("## ")  # above every section
    html_warning = f'<p class="warn"><strong>Warning:</strong> {notice}</p>'
    assert html_warning in page and page.index(html_warning) < page.index("<h2>")


@pytest.mark.slow
def test_a_clean_real_run_shows_no_crash_notice(tmp_path_factory, tmp_path):
    folder = real_run(tmp_path_factory.getbasetemp(), "chat")
    run = wa.load_run(folder)
    assert run.stopped_cleanly and run.crash_notice is None
    assert isinstance(run.meta["stopped"], float)
    raw = load_samples(folder)
    assert run.stopped >= raw.loc[raw["kind"] != "health", "ts"].max()
    files = build_report(folder, output=tmp_path / "report")
    assert "did not stop cleanly" not in files.markdown.read_text()
    assert "did not stop cleanly" not in files.html.read_text()


def test_a_report_warns_of_a_crashed_run_and_of_a_crashed_baseline(tmp_path):
    crashed = write_run(tmp_path / "crashed", _rows(10), meta={"stopped": None})
    clean = write_run(tmp_path / "clean", _rows(10), meta={"stopped": ORIGIN + 11})
    notice = wa.load_run(crashed).crash_notice
    own = build_report(crashed, output=tmp_path / "own").markdown.read_text()
    assert own.index(f"> **Warning:** {notice}") < own.index("## ")
    compared = build_report(clean, baseline=crashed, output=tmp_path / "cmp")
    markdown = compared.markdown.read_text()
    assert f"> **Warning:** the baseline: {notice}" in markdown
    assert markdown.count("did not stop cleanly") == 1  # the run itself stopped cleanly
