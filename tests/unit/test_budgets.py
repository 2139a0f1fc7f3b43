"""Local budgets checked before the ramp: ports per source address, files per process."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import textwrap

import pytest

from wsload import taxonomy
from wsload.errors import ConfigError
from wsload.net.budgets import (
    Budget,
    check_budgets,
    port_range,
    port_search_advice,
    raise_file_limit,
    target_budget,
)
from wsload.net.sockets import classify_socket_error, describe
from wsload.protocol.upgrade import Endpoint


def budget(**changes) -> Budget:
    values = dict(
        users=10_000,
        processes=1,
        source_ips=0,
        destinations=1,
        file_limit=20_000,
        file_hard_limit=20_000,
        ports=(32768, 60999),
    )
    values.update(changes)
    return Budget(**values)


def test_a_run_within_both_budgets_passes():
    check_budgets(budget(), loopback=True, embedded_target=True)
    check_budgets(budget(users=100_000, processes=6, source_ips=4), loopback=True,
                  embedded_target=True)  # fmt: skip


def test_more_sessions_per_process_than_open_files_names_the_limits_and_processes_needed():
    with pytest.raises(ConfigError) as caught:
        check_budgets(budget(users=30_000), loopback=True, embedded_target=True)
    message, fix = caught.value.message, caught.value.fix
    assert "30,000 users over 1 generator process(es)" in message
    assert "RLIMIT_NOFILE soft 20,000, hard 20,000" in message
    assert "--processes 2" in fix


def test_more_sessions_than_ephemeral_ports_of_one_address_names_source_ips():
    with pytest.raises(ConfigError) as caught:
        check_budgets(budget(users=60_000, processes=4), loopback=True, embedded_target=True)
    message, fix = caught.value.message, caught.value.fix
    assert "60,000 connections per source address and destination" in message
    assert "28,232 ephemeral ports" in message and "32768-60999" in message
    assert "--source-ips 127.0.0.2-127.0.0.4" in fix  # 3 addresses of 26,820 usable each
    check_budgets(budget(users=60_000, processes=4, source_ips=3), loopback=True,
                  embedded_target=True)  # fmt: skip
    with pytest.raises(ConfigError) as remote:
        check_budgets(budget(users=60_000, processes=4), loopback=False, embedded_target=False)
    assert "secondary addresses to the NIC" in remote.value.fix


def test_ports_that_fit_but_fill_past_a_quarter_get_advice_naming_enough_source_ips():
    crowded = budget(users=100_000, processes=6, source_ips=6)  # 16,667 of 28,232 each
    advice = port_search_advice(crowded, loopback=True)
    assert advice is not None and "16,667 connections per source address" in advice
    assert "59% of its 28,232 ephemeral ports" in advice
    assert "--source-ips 127.0.0.2-127.0.0.13" in advice  # 12 addresses: 8,334 each, 30%
    assert port_search_advice(budget(users=100_000, processes=6, source_ips=12),
                              loopback=True) is None  # fmt: skip
    remote = port_search_advice(crowded, loopback=False)
    assert remote is not None and "secondary addresses to the NIC" in remote
    # past the ports themselves it is the budget check's error, not advice
    assert port_search_advice(budget(users=60_000, processes=4), loopback=True) is None


def test_the_embedded_target_needs_enough_processes_for_the_sessions():
    with pytest.raises(ConfigError) as caught:
        target_budget(100_000, 2, 20_000)
    assert '--target-args "--workers 6"' in caught.value.fix
    target_budget(100_000, 6, 20_000)


def test_port_range_is_read_from_the_kernel(tmp_path):
    low, high = port_range()
    assert 0 < low < high <= 65535
    (tmp_path / "range").write_text("10000\t10999\n")
    assert port_range(tmp_path / "range") == (10000, 10999)


def test_the_soft_file_limit_is_raised_to_the_hard_one():
    script = textwrap.dedent(
        """
        import resource
        from wsload.net.budgets import raise_file_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        raised = raise_file_limit()
        print(raised == (hard, hard), resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True"], done.stderr
    soft, _ = raise_file_limit()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_out_of_files_during_a_run_is_local_exhausted_not_unreachable(target):
    """A real connect in a process whose file limit is spent."""
    script = textwrap.dedent(
        f"""
        import resource, socket
        from wsload.config.profile import load_profile
        from wsload.net.client import ConnectError, connect
        from wsload.protocol.carrier import place
        profile = load_profile()
        placement = place(profile.auth, {target.url!r}, "x.y.z")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        hoard = []
        try:
            while True:
                hoard.append(socket.socket())
        except OSError:
            pass
        try:
            connect({target.url!r}, profile, placement)
        except ConnectError as err:
            print(err.failure)
            print(err.detail)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)  # fmt: skip
    assert len(done.stdout.splitlines()) == 2, done.stderr[-2000:]
    failure, detail = done.stdout.splitlines()
    assert failure == taxonomy.LOCAL_EXHAUSTED, done.stderr
    assert "out of open files" in detail and "--processes" in detail


def test_no_free_local_port_is_local_exhausted_and_names_source_ips():
    exc = OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
    assert classify_socket_error(exc, taxonomy.TCP_TIMEOUT) == taxonomy.LOCAL_EXHAUSTED
    assert "--source-ips" in describe(exc, Endpoint(False, "127.0.0.1", 8000, "/ws"))
    unreachable = OSError(errno.ENETUNREACH, "unreachable")
    assert classify_socket_error(unreachable, taxonomy.TCP_TIMEOUT) == taxonomy.UNREACHABLE
