"""Tokens from a real identity provider (npm oidc-provider) and from a token file, through
Locust runs against the reference target validating the provider's RS256 tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from idp_server import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERS, start_identity_provider

from wsload.run.summary import load_samples

REPO = Path(__file__).resolve().parents[2]
ACCESS_TTL_S = 8  # short, so tokens are refreshed at the provider during a run
# Refresh 4 s before expiry: 4 s of slack for a refresh delayed on a busy machine.
REFRESH = ("--refresh-margin", "4")


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    provider = start_identity_provider(tmp_path_factory.mktemp("idp"), access_ttl_s=ACCESS_TTL_S)
    yield provider
    provider.stop()


def idp_target(target_factory, idp, *extra: str):
    """The reference target validating the provider's tokens as a backend behind it does."""
    return target_factory(
        "--algorithm", "RS256", "--jwt-public-key", str(idp.public_key),
        "--issuer", idp.issuer, "--audience", "netra-platform", *extra,
    )  # fmt: skip


def write_profile(folder: Path, idp, grant: str = "password") -> Path:
    path = folder / "behind-idp.toml"
    path.write_text(
        'name = "behind-idp"\n[token]\nalgorithm = "RS256"\n'
        f'issuer = "{idp.issuer}"\n'
        f'[oauth2]\nendpoint = "{idp.endpoint}"\nclient_id = "{CLIENT_ID}"\n'
        f'grant = "{grant}"\nscope = "chat"\n'
    )
    return path


def write_credentials(folder: Path, password: str = PASSWORD) -> Path:
    path = folder / "users.csv"
    path.write_text("email,password\n" + "".join(f"{u},{password}\n" for u in USERS))
    return path


def locust(folder: Path, host: str, *args: str, secret: str = CLIENT_SECRET, timeout: float = 90):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "WSLOAD_"))}
    env["WSLOAD_OAUTH2_CLIENT_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "ws_auth.py")]
        + ["--headless", "--only-summary", "--host", host, "--results", str(folder / "run")]
        + ["--probe-interval", "0.2", "--heartbeat-interval", "1", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outputs_of(run: subprocess.CompletedProcess, folder: Path) -> dict[str, str]:
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    for path in (folder / "run").rglob("*"):
        if path.is_file():
            texts[path.name] = path.read_text(errors="replace")
    return texts


@pytest.mark.slow
def test_password_grant_users_chat_with_provider_tokens_refreshed_before_they_expire(
    tmp_path, idp, target_factory
):
    target = idp_target(target_factory, idp, "--close-on-expiry")
    run = locust(
        tmp_path,
        target.url,
        "-u", "4", "-r", "4", "-t", "9s", "--think-time", "0.2", *REFRESH,
        "--ws-profile", str(write_profile(tmp_path, idp)),
        "--token-source", "oauth2", "--credentials", str(write_credentials(tmp_path)),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    samples = load_samples(tmp_path / "run")
    by_name = samples.groupby("name")
    grants = by_name.get_group("http:token")
    assert len(grants) == 4 and grants.ok.all()  # 3 chat users and the probe user, once each
    refreshes = by_name.get_group("http:refresh")
    assert len(refreshes) >= 3 and refreshes.ok.all(), refreshes[["failure", "detail"]]
    swaps = by_name.get_group("session:refresh")
    assert len(swaps) >= 3 and swaps.ok.all()
    turns = by_name.get_group("turn:e2e")
    assert len(turns) > 20 and turns.ok.all(), turns.failure.value_counts()
    auth = by_name.get_group("auth")
    assert auth.ok.all(), auth[["failure", "detail"]]  # every session acked as its token's sub
    # The target closes a session when its token expires: none was closed, all refreshed.
    assert "session:disconnect" not in by_name.groups
    probes = samples[samples.kind == "probe"]
    assert {"probe:no_token", "probe:bad_signature", "probe:tampered_claims"} <= set(probes.name)
    assert probes.ok.all() and "probe:expired" not in set(probes.name)  # needs the IdP's key
    for name, text in outputs_of(run, tmp_path).items():
        assert CLIENT_SECRET not in text, f"the client secret leaked into {name}"
        assert PASSWORD not in text, f"a password leaked into {name}"


@pytest.mark.slow
def test_an_ack_naming_someone_else_than_the_providers_subject_is_identity_mismatch(
    tmp_path, idp, target_factory
):
    target = idp_target(target_factory, idp, "--auth-mode", "demo", "--connections-per-user", "0")
    run = locust(
        tmp_path,
        target.url,
        "-u", "2", "-r", "2", "-t", "5s", "--probe-users", "0",
        "--ws-profile", str(write_profile(tmp_path, idp, grant="client_credentials")),
        "--token-source", "oauth2",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr[-3000:]
    samples = load_samples(tmp_path / "run")
    mismatches = samples[samples.failure == "identity_mismatch"]
    assert len(mismatches) >= 1
    # client_credentials: the token's subject is the client itself.
    assert f"token subject is '{CLIENT_ID}'" in mismatches.detail.iloc[0]
    assert "'demo-user-001'" in mismatches.detail.iloc[0]


@pytest.mark.parametrize(
    ("secret", "password", "said", "fix"),
    [
        ("wrong-secret", PASSWORD, "HTTP 401 (invalid_client", "--oauth2-client-secret"),
        (CLIENT_SECRET, "wrong-password", "HTTP 400 (invalid_grant", "first line of --credentials"),
    ],
    ids=["bad-client-secret", "bad-password"],
)
def test_a_token_endpoint_refusing_the_grant_stops_the_run_before_load_with_one_message(
    tmp_path, idp, target_factory, secret, password, said, fix
):
    target = idp_target(target_factory, idp)
    run = locust(
        tmp_path,
        target.url,
        "-u", "2", "-r", "2", "-t", "5s",
        "--ws-profile", str(write_profile(tmp_path, idp)),
        "--token-source", "oauth2", "--credentials", str(write_credentials(tmp_path, password)),
        secret=secret,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, run.stderr[-3000:]
    assert f"the token endpoint {idp.endpoint} refused the password grant" in errors[0]
    assert said in errors[0] and fix in run.stderr
    assert secret not in run.stderr and password not in run.stderr
    assert not (tmp_path / "run" / "samples.csv").exists()  # nothing started


@pytest.mark.slow
def test_token_file_users_connect_as_their_subjects_and_refresh_at_the_provider(
    tmp_path, idp, target_factory
):
    target = idp_target(target_factory, idp, "--close-on-expiry")
    users = list(USERS)
    answers = [idp.password_grant(u) for u in users[:2]]
    lines = [
        f"{answers[0]['access_token']},{answers[0]['refresh_token']}",
        json.dumps({**answers[1], "subject": USERS[users[1]]["sub"]}),
    ]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# issued by the provider for this test\n" + "\n".join(lines) + "\n")
    run = locust(
        tmp_path,
        target.url,
        "-u", "4", "-r", "4", "-t", "10s", "--think-time", "0.2", *REFRESH,
        "--ws-profile", str(write_profile(tmp_path, idp)),
        "--token-source", "file", "--token-file", str(tokens),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 of 2 tokens of the token file expire during the planned run of 10 s" in run.stderr
    samples = load_samples(tmp_path / "run")
    refreshes = samples[samples.name == "http:refresh"]
    assert len(refreshes) >= 2 and refreshes.ok.all(), refreshes[["failure", "detail"]]
    turns = samples[samples.name == "turn:e2e"]
    assert len(turns) > 10 and turns.ok.all(), turns.failure.value_counts()
    assert samples[samples.kind == "auth"].ok.all()
    assert "session:disconnect" not in set(samples.name)
    # Two lines, three chat users (and the probe user): the third has no line, stays idle.
    assert samples[samples.name == "turn:e2e"].user.nunique() == 2
    assert "more users than lines in --token-file" in run.stderr


def test_an_expired_token_file_stops_the_run_before_load_naming_the_line(tmp_path, target):
    expired = jwt.encode({"sub": "u1", "exp": int(time.time()) - 3600}, "k" * 32, "HS256")
    valid = jwt.encode({"sub": "u2", "exp": int(time.time()) + 3600}, "k" * 32, "HS256")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{valid}\n{expired}\n")
    run = locust(
        tmp_path, target.url, "-u", "1", "-t", "3s", "--token-source", "file",
        "--token-file", str(tokens),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    assert "holds 1 expired access token of 2 (line 2 expired 60 min ago" in run.stderr
    assert "issue fresh tokens from the identity provider, or delete those lines" in run.stderr
    assert expired not in run.stderr
    assert not (tmp_path / "run" / "samples.csv").exists()


@pytest.mark.slow
def test_users_ask_a_provider_that_went_down_again_only_after_a_backoff(tmp_path, target_factory):
    """The provider stops while sessions stay open: the refresh fails, and each user tries
    again after the run's reconnect backoff (0.5 s doubling to 10 s), not at every turn."""
    provider = start_identity_provider(tmp_path, access_ttl_s=ACCESS_TTL_S)
    try:
        target = idp_target(target_factory, provider)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "WSLOAD_"))}
        env["WSLOAD_OAUTH2_CLIENT_SECRET"] = CLIENT_SECRET
        process = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "ws_auth.py")]
            + ["--headless", "--only-summary", "--host", target.url]
            + ["--results", str(tmp_path / "run"), "ChatUser", *REFRESH]
            + ["-u", "3", "-r", "3", "-t", "16s", "--think-time", "0.1"]
            + ["--ws-profile", str(write_profile(tmp_path, provider))]
            + ["--token-source", "oauth2", "--credentials", str(write_credentials(tmp_path))],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 40
        while not list((tmp_path / "run").glob("turns.*")):  # users connected with tokens
            if process.poll() is not None:
                raise AssertionError(process.communicate()[1][-2000:])
            assert time.monotonic() < deadline, "no turn within 40 s"
            time.sleep(0.2)
    finally:
        provider.stop()  # down before any token is due (8 s lifetime, refreshed at 4 s left)
    _, stderr = process.communicate(timeout=90)
    samples = load_samples(tmp_path / "run")
    asked = samples[samples["name"].isin(["http:refresh", "http:token"]) & ~samples["ok"]]
    turns = samples[samples["name"] == "turn:e2e"]
    assert len(turns) > 100, stderr[-2000:]  # the sessions stayed open and busy
    per_user = asked.groupby("user").size()
    # ~10 s between a user's first failed refresh and the end: asking again at every step
    # was thousands of requests per user (refused at once), with the backoff under 20.
    assert 1 <= per_user.max() <= 20, per_user.to_dict()
