"""The target's options, configuration errors and process handling (real subprocesses)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.sync.client import connect

from wsload.config.profile import load_profile
from wsload.config.tokens import SECRET_ENV, TokenMinter
from wsload.errors import ConfigError
from wsload.target import TargetConfig, start_target
from wsload.target.cli import build_parser, config_from_args
from wsload.target.config import load_material
from wsload.target.process import LISTENING_RE, listening_line

SECRET = "config-test-secret-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


def run_target(*args: str, env_secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the target to completion (for options that must fail before serving)."""
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    if env_secret is not None:
        env[SECRET_ENV] = env_secret
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "wsload.target", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )


def login(http_url: str, email: str, password: str) -> tuple[int, dict]:
    body = json.dumps({"email": email, "password": password}).encode()
    request = urllib.request.Request(
        http_url + "/auth/login", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# configuration ---------------------------------------------------------------------------
def test_options_default_to_the_profile_token_table() -> None:
    config = config_from_args(build_parser().parse_args([]))
    spec = load_profile().token
    assert (config.algorithm, config.issuer, config.audience) == (
        spec.algorithm,
        spec.issuer,
        spec.audience,
    )
    assert config.token_type == "access" and config.max_message_bytes == 8192
    assert config.host == "127.0.0.1" and config.workers == 1


def test_options_override_the_profile() -> None:
    args = build_parser().parse_args(["--audience", "other", "--gap", "0.5", "--tools", "3"])
    config = config_from_args(args)
    assert (config.audience, config.gap_s, config.tools) == ("other", 0.5, 3)


def test_fault_knobs_are_off_by_default_and_limits_follow_the_profile() -> None:
    config = config_from_args(build_parser().parse_args([])).validate()
    assert config.connections_per_user == load_profile().limits.connections_per_user == 10
    assert config.messages_per_minute == 0 and config.max_connections == 0
    assert not config.close_on_expiry and not config.limit_close
    fractions = ("leak_fraction", "drop_mid_turn", "skip_events", "reorder_events")
    fractions += ("duplicate_events", "duplicate_terminal", "error_events", "hostile")
    assert all(getattr(config, name) == 0 for name in fractions)
    assert config.capacity == 0 and config.slow_handshake_s == config.half_open_after_s == 0


def test_fault_options_map_to_the_config() -> None:
    argv = "--close-on-expiry --leak-fraction 0.01 --capacity 20 --overload-delay 0.1 "
    argv += "--drop-mid-turn 0.1 --skip-events 0.2 --reorder-events 0.3 --duplicate-events 0.4 "
    argv += "--duplicate-terminal 0.45 "
    argv += "--error-events 0.5 --hostile 0.6 --hostile-kinds binary,json_array "
    argv += "--slow-handshake 2 --slow-handshake-fraction 0.5 --half-open-after 3 "
    argv += "--half-open-fraction 0.25 --max-connections 100 --limit-close "
    argv += "--connections-per-user 2 --messages-per-minute 30"
    config = config_from_args(build_parser().parse_args(argv.split())).validate()
    assert config.close_on_expiry and config.limit_close
    assert (config.leak_fraction, config.capacity, config.overload_delay_s) == (0.01, 20, 0.1)
    assert (config.drop_mid_turn, config.skip_events, config.reorder_events) == (0.1, 0.2, 0.3)
    assert (config.duplicate_events, config.error_events, config.hostile) == (0.4, 0.5, 0.6)
    assert config.duplicate_terminal == 0.45
    assert config.hostile_kinds == ("binary", "json_array")
    assert (config.slow_handshake_s, config.slow_handshake_fraction) == (2.0, 0.5)
    assert (config.half_open_after_s, config.half_open_fraction) == (3.0, 0.25)
    assert (config.max_connections, config.connections_per_user) == (100, 2)
    assert config.messages_per_minute == 30


@pytest.mark.parametrize(
    ("field", "value", "option"),
    [
        ("gap_s", -1.0, "--gap"),
        ("workers", 0, "--workers"),
        ("jitter", 1.5, "--jitter"),
        ("auth_mode", "lenient", "--auth-mode"),
        ("reject_at_upgrade", 500, "--reject-at-upgrade"),
        ("ticket_ttl_s", 0.0, "--ticket-ttl"),
        ("leak_fraction", 1.5, "--leak-fraction"),
        ("drop_mid_turn", -0.1, "--drop-mid-turn"),
        ("hostile", 2.0, "--hostile"),
        ("duplicate_terminal", -0.5, "--duplicate-terminal"),
        ("hostile_kinds", ("binary", "teapot"), "--hostile-kinds"),
        ("capacity", 10, "--capacity"),  # without --overload-delay
        ("overload_delay_s", 0.1, "--overload-delay"),  # without --capacity
        ("limit_close", True, "--limit-close"),  # without --max-connections
        ("connections_per_user", -1, "--connections-per-user"),
        ("slow_handshake_s", -1.0, "--slow-handshake"),
        ("half_open_fraction", 1.1, "--half-open-fraction"),
    ],
)
def test_bad_values_name_the_option(field: str, value: object, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        TargetConfig(jwt_secret=SECRET, **{field: value}).validate()


def test_summary_and_repr_hide_the_secret() -> None:
    config = TargetConfig(jwt_secret=SECRET).validate()
    assert SECRET not in repr(config)
    assert SECRET not in json.dumps(config.summary(), default=str)


def test_ticket_key_is_derived_from_the_secret_not_equal_to_it() -> None:
    a = TargetConfig(jwt_secret=SECRET).validate()
    b = TargetConfig(jwt_secret=SECRET).validate()
    assert a.ticket_key == b.ticket_key and a.ticket_key != SECRET.encode()


def test_missing_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_material(TargetConfig().validate())


def test_rs256_without_any_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--jwt-public-key"):
        load_material(TargetConfig(algorithm="RS256").validate())


# command line ----------------------------------------------------------------------------
def test_missing_secret_exits_2_with_a_clear_message_and_no_traceback() -> None:
    result = run_target("--port", "0")
    assert result.returncode == 2
    assert "--jwt-secret" in result.stderr and "JWT_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_option_value_exits_2_naming_the_option() -> None:
    result = run_target("--port", "0", "--gap", "-0.5", env_secret=SECRET)
    assert result.returncode == 2
    assert "--gap" in result.stderr and "Traceback" not in result.stderr


def test_unreadable_users_file_exits_2(tmp_path: Path) -> None:
    result = run_target("--port", "0", "--users", str(tmp_path / "nope.csv"), env_secret=SECRET)
    assert result.returncode == 2
    assert "credentials file" in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_exits_2_naming_the_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_target("--port", str(port), env_secret=SECRET)
    assert result.returncode == 2
    assert "--port" in result.stderr and "Traceback" not in result.stderr


def test_start_target_raises_with_the_stderr_when_the_target_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        start_target(timeout=10)


def test_secret_is_passed_by_environment_not_command_line() -> None:
    with start_target(secret=SECRET) as target:
        cmdline = Path(f"/proc/{target.pid}/cmdline").read_bytes().decode()
        assert SECRET not in cmdline


def test_listening_line_round_trips_through_its_parser() -> None:
    match = LISTENING_RE.search(listening_line("127.0.0.1", 8765, 42, 3))
    assert match is not None
    assert (match["host"], match["port"], match["pid"], match["workers"]) == (
        "127.0.0.1",
        "8765",
        "42",
        "3",
    )
    assert LISTENING_RE.search(listening_line("::1", 1, 2, 1))["host"] == "[::1]"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_all_workers_with_exit_0(workers: str) -> None:
    target = start_target(["--workers", workers], secret=SECRET)
    with target:
        children = _children(target.pid)
        assert len(children) == (0 if workers == "1" else 2)
        assert target.stop() == 0
    deadline = time.monotonic() + 3
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def test_workers_die_with_a_killed_parent() -> None:
    target = start_target(["--workers", "2"], secret=SECRET)
    with target:
        children = _children(target.pid)
        os.kill(target.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in children)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# logins and keys -------------------------------------------------------------------------
def test_users_file_restricts_logins(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("email,password\nann@x.test,pw-ann\n")
    with start_target(["--users", str(users)], secret=SECRET) as target:
        assert login(target.http_url, "ann@x.test", "pw-ann")[0] == 200
        assert login(target.http_url, "ann@x.test", "wsload-demo")[0] == 401
        assert login(target.http_url, "bob@x.test", "pw-ann")[0] == 401


def test_es256_target_validates_with_its_key_and_logs_in(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    spec = load_profile().token
    minter = TokenMinter(dataclasses.replace(spec, algorithm="ES256"), key_file=str(private))
    args = ["--algorithm", "ES256", "--jwt-public-key", str(public)]
    with start_target([*args, "--jwt-private-key", str(private)]) as target:
        offer = ["jwt-auth", "jwt-auth." + minter.mint("eve")]
        with connect(target.url, subprotocols=offer, open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=3))["data"]["user_id"] == "eve"
        status, body = login(target.http_url, "lee@x.test", "wsload-demo")
        assert status == 200
        headers = {"Authorization": "Bearer " + body["access_token"]}
        with connect(target.url, additional_headers=headers, open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=3))["data"]["user_id"] == "lee@x.test"
    with start_target(args) as verify_only:
        assert login(verify_only.http_url, "lee@x.test", "wsload-demo")[0] == 501
