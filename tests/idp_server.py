"""A real identity provider for the token-source tests: node-oidc-provider (tests/idp).

Started by the tests on a loopback port with a signing key they generate, so the
reference target can validate its RS256 access tokens with the public half (as a backend
behind Auth0 or Keycloak validates them with the provider's key).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

HERE = Path(__file__).resolve().parent / "idp"
CLIENT_ID = "wsload-loadtest"
CLIENT_SECRET = "IDP-CLIENT-SECRET-9f3c-do-not-leak-0123456789"
PASSWORD = "IDP-PASSWORD-71de"
USERS = {f"user{i}@corp.test": {"password": PASSWORD, "sub": f"idp-user-{i}"} for i in range(4)}


@dataclass
class IdentityProvider:
    process: subprocess.Popen
    port: int
    public_key: Path

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.issuer}/token"

    def password_grant(self, username: str) -> dict:
        """A token answer for ``username``, asked as a test (not through wsload)."""
        body = urllib.parse.urlencode(
            {"grant_type": "password", "username": username, "password": PASSWORD}
        ).encode()
        request = urllib.request.Request(self.endpoint, data=body, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        request.add_header("Authorization", _basic())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def ensure_installed() -> None:
    """Skip without node; install the pinned provider (``npm ci``) when it is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the identity-provider tests need them")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci in tests/idp failed: {done.stderr[-2000:]}"


def start_identity_provider(folder: Path, *, access_ttl_s: int = 300) -> IdentityProvider:
    """The provider on a free loopback port; its public key written to ``folder``."""
    ensure_installed()
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid="wsload-test", alg="RS256", use="sig")
    public = folder / "idp-public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "IDP_JWK": json.dumps(jwk),
        "IDP_CLIENT_ID": CLIENT_ID,
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "IDP_USERS": json.dumps(USERS),
        "IDP_ACCESS_TTL": str(access_ttl_s),
    }
    process = subprocess.Popen(
        ["node", "server.mjs"],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"the test identity provider did not start: {line!r}")
    return IdentityProvider(process, int(line), public)
