"""The transport options (compression, TLS) and the target's TLS knobs: parsed from the one
option table, bad files refused with the option's name, TLS failures named by reason."""

from __future__ import annotations

import argparse
import ssl

import pytest
import trustme

from wsload import taxonomy
from wsload.config.options import OPTION_SPECS, forget_run_configs, run_config
from wsload.config.profile import ProfileError, load_profile
from wsload.errors import ConfigError
from wsload.net.tls import TlsSettings, failure_reason
from wsload.target import TargetConfig


def namespace(**values: object) -> argparse.Namespace:
    ns = argparse.Namespace(**{spec.dest: spec.default for spec in OPTION_SPECS})
    for dest, value in values.items():
        assert hasattr(ns, dest), dest
        setattr(ns, dest, value)
    return ns


@pytest.fixture(autouse=True)
def fresh_configs():
    forget_run_configs()
    yield
    forget_run_configs()


def test_compression_follows_the_profile_unless_the_option_says_otherwise(tmp_path):
    assert run_config(namespace()).compression == "browser"
    assert run_config(namespace(compression="off")).compression == "off"
    quiet = tmp_path / "quiet.toml"
    quiet.write_text('[endpoint]\ncompression = "off"\n')
    assert run_config(namespace(ws_profile=str(quiet))).compression == "off"
    bad = tmp_path / "bad.toml"
    bad.write_text('[endpoint]\ncompression = "gzip"\n')
    with pytest.raises(ProfileError, match=r"endpoint\.compression"):
        load_profile(str(bad))


def test_tls_options_become_the_runs_tls_settings(tmp_path):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = tmp_path / "client.pem"
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(str(client))
    options = run_config(
        namespace(tls_ca=str(ca_file), tls_insecure=True, tls_client_cert=str(client))
    )
    assert options.tls == TlsSettings(str(ca_file), True, str(client), None)
    assert run_config(namespace()).tls == TlsSettings()


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"tls_ca": "/nonexistent/ca.pem"}, "--tls-ca /nonexistent/ca.pem: no such file"),
        ({"tls_client_key": "README.md"}, "--tls-client-key without --tls-client-cert"),
        ({"tls_ca": "README.md"}, "--tls-ca README.md: not a PEM CA bundle"),
        ({"tls_client_cert": "README.md"}, "--tls-client-cert README.md: cannot load it"),
    ],
)
def test_a_tls_file_that_cannot_serve_stops_the_run_naming_the_option(values, said):
    with pytest.raises(ConfigError) as info:
        run_config(namespace(**values))
    assert said in str(info.value)


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"tls_key": "key.pem"}, "--tls-key"),
        ({"tls_client_ca": "ca.pem"}, "--tls-client-ca"),
        ({"tls_cert": "README.md"}, "--tls-cert"),
    ],
)
def test_the_targets_tls_knobs_are_checked_before_it_binds(changes, option):
    with pytest.raises(ConfigError, match=option):
        TargetConfig(**changes).validate()


def test_a_target_with_a_certificate_serves_wss(tmp_path):
    cert = tmp_path / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    assert TargetConfig(tls_cert=str(cert)).validate().scheme == "wss"
    assert TargetConfig().scheme == "ws"


def verify_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (verify_error(20), taxonomy.TLS_UNKNOWN_CA),
        (verify_error(19), taxonomy.TLS_UNKNOWN_CA),
        (verify_error(10), taxonomy.TLS_EXPIRED),
        (verify_error(9), taxonomy.TLS_NOT_YET_VALID),
        (verify_error(62), taxonomy.TLS_WRONG_HOST),
        (
            ssl.SSLError(
                1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"
            ),
            taxonomy.TLS_CLIENT_CERT,
        ),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), taxonomy.TLS_NOT_TLS),
        (ssl.SSLError(1, "[SSL: NO_SHARED_CIPHER] no shared cipher"), taxonomy.TLS_HANDSHAKE),
    ],
)
def test_tls_failures_are_named_by_the_taxonomys_reasons(error, reason):
    assert failure_reason(error) == reason
    assert reason in taxonomy.TLS_REASONS
