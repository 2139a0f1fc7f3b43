"""The ``wsload`` command's help, ``wsload options`` and ``wsload profile show``, run as real
processes the way a user types them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from wsload.config.options import OPTION_SPECS
from wsload.config.profile import load_profile
from wsload.config.target_knobs import TARGET_SPECS

REPO = Path(__file__).resolve().parents[2]
WSLOAD = Path(sys.executable).parent / "wsload"


def wsload(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [str(WSLOAD), *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )


def test_wsload_help_lists_every_command_in_plain_text():
    done = wsload("--help")
    assert done.returncode == 0, done.stderr
    for command in ("target", "demo", "summary", "report", "gate", "profile", "options"):
        assert f"\n    {command} " in done.stdout, command
    assert "``" not in done.stdout and ":class:" not in done.stdout
    assert "wsload options" in done.stdout and "ws_auth.py" in done.stdout


def test_wsload_options_lists_every_option_with_its_variable_and_default():
    done = wsload("options")
    assert done.returncode == 0, done.stderr
    for spec in OPTION_SPECS + TARGET_SPECS:
        assert f"\n  {spec.flag}" in done.stdout, spec.flag
        if spec.env:
            assert spec.env in done.stdout
    assert "[env WSLOAD_STEP_START; default: 5]" in done.stdout
    assert "--jwt-secret TEXT" in done.stdout
    target = wsload("options", "--group", "target")
    assert "--ttfe" in target.stdout and "--think-time" not in target.stdout


def test_profile_help_names_its_actions_and_show_prints_a_loadable_profile(tmp_path):
    helped = wsload("profile", "check", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "{check,show} NAME|FILE" in helped.stdout
    shown = wsload("profile", "show", "default")
    assert shown.returncode == 0, shown.stderr
    path = tmp_path / "shown.toml"
    path.write_text(shown.stdout, encoding="utf-8")
    default = load_profile("default")
    assert dataclasses.replace(load_profile(path), source=default.source) == default
    checked = wsload("profile", "check", str(path))
    assert checked.returncode == 0 and ": ok (profile 'agent-chat'" in checked.stdout
    missing = wsload("profile", "show", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_target_help_keeps_every_knob():
    done = wsload("target", "--help")
    assert done.returncode == 0, done.stderr
    for spec in TARGET_SPECS:
        assert spec.flag in done.stdout, spec.flag
    assert "Every fault knob is off by default." in done.stdout
