"""``wsload profile check`` run as a real process: a profile that cannot work with its own
example frames exits 2 naming the key and the fix; the fixed profile exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WSLOAD = Path(sys.executable).parent / "wsload"

BROKEN = """\
name = "streaming"
[ack]
user_id_field = "user"
[[ack.match]]
event = "ready"
[events]
type_field = "event"
user_id_field = "user"
thread_id_field = "thread"
run_id_field = "run"
sequence = "start delta+ done"
terminal = ["done"]
[examples]
ack = '{"event":"ready","user":"u1"}'
turn = [
  '{"event":"start","user":"u1","thread":"t1","run":"r1"}',
  '{"event":"delta","user":"u1","thread":"t1","run":"r1","text":"a"}',
  '{"event":"delta","user":"u1","thread":"t1","run":"r1","text":"a"}',
  '{"event":"done","user":"u1","thread":"t1","run":"r1"}',
]
pong = '{"type":"pong"}'
"""
FIX = '[heartbeat]\npong_type_field = "type"\n'


def check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WSLOAD), "profile", "check", str(path), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_a_profile_that_fails_its_dry_run_exits_2_naming_each_key(tmp_path):
    path = tmp_path / "streaming.toml"
    path.write_text(BROKEN)
    done = check(path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "loads, but fails its dry run: 2 problems" in done.stdout
    assert "error: events.frames_are_unique: events.frames_are_unique = true makes two " in (
        done.stdout
    )
    assert "identical `delta` frames a sequence_duplicate" in done.stdout
    assert "error: heartbeat.pong_type_field: " in done.stdout
    assert 'set heartbeat.pong_type_field = "type"' in done.stdout
    assert "would fail in a run" in done.stderr


def test_the_fixed_profile_passes_and_strict_fails_on_assumptions(tmp_path):
    path = tmp_path / "streaming.toml"
    path.write_text(
        BROKEN.replace("[examples]", "frames_are_unique = false\n" + FIX + "[examples]")
    )
    done = check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{path}: ok (profile 'streaming'" in done.stdout
    assert "turn (example): start delta delta done" in done.stdout
    assert "rejection (synthesised)" in done.stdout and done.stderr == ""
    bare = tmp_path / "bare.toml"
    bare.write_text('name = "bare"\n')  # the default's grammar, synthesised frames
    loose = check(bare)
    assert loose.returncode == 0 and "warning: events.frames_are_unique" in loose.stdout
    strict = check(bare, "--strict")
    assert strict.returncode == 2 and "error: events.frames_are_unique" in strict.stdout
